//! Blocks written as standard ONNX ops, where one computes exactly what the block's fallback
//! computes: same formula, same compute dtype, same operand dtypes.
//!
//! | block | ONNX op (opset 23) | when |
//! |---|---|---|
//! | `rms_norm` | `RMSNormalization(x, weight)`, `axis = −1`, `stash_type = f32` | a weight of x's dtype, no weight offset, x f32/f16/bf16 |
//! | `layer_norm` | `LayerNormalization(x, weight [, bias])`, `axis = −1`, `stash_type = f32` | a weight (and bias) of x's dtype, x f32/f16/bf16 |
//!
//! Both ONNX ops normalize in f32, cast the normalized value back to x's dtype, and then
//! scale (and shift) in that dtype, which is what the fallbacks do for these operand types.
//! `rope`, `sdpa` and the activation blocks become model-local functions: ONNX's
//! `RotaryEmbedding` and `Attention` take their operands in other layouts (position ids
//! into a cos/sin cache, a 4-D or 3-D packing of heads), so matching them is a rewrite of its
//! own, not an attribute mapping.

use super::emit::{attr_f, attr_i};
use crate::proto::AttributeProto;
use blockfuse_ir::blocks::{LayerNorm, RmsNorm};
use blockfuse_ir::{Block, DType, TensorType};

/// A standard ONNX op standing for a block.
pub struct StandardOp {
    /// The op type (`RMSNormalization`).
    pub op_type: &'static str,
    /// Its attributes.
    pub attrs: Vec<AttributeProto>,
}

/// The standard op computing exactly what `block` computes on operands of `types`, if any.
pub fn standard_op(block: &dyn Block, types: &[&TensorType]) -> Option<StandardOp> {
    let x = types.first()?.dtype;
    let same_dtype = types.iter().all(|t| t.dtype == x);
    if !same_dtype || !matches!(x, DType::F32 | DType::F16 | DType::BF16) {
        return None;
    }
    let norm_attrs = |eps: f32| vec![attr_i("axis", -1), attr_f("epsilon", eps), attr_i("stash_type", 1)];
    if let Some(rms) = block.downcast_ref::<RmsNorm>() {
        return (rms.weight_offset == 0.0 && types.len() == 2)
            .then(|| StandardOp { op_type: "RMSNormalization", attrs: norm_attrs(rms.eps) });
    }
    if let Some(ln) = block.downcast_ref::<LayerNorm>() {
        return ln
            .has_weight
            .then(|| StandardOp { op_type: "LayerNormalization", attrs: norm_attrs(ln.eps) });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(d: DType) -> TensorType {
        TensorType::known(d, &[2, 4])
    }

    #[test]
    fn rms_norm_maps_only_when_exact() {
        let (f32t, f16t, w) = (ty(DType::F32), ty(DType::F16), TensorType::known(DType::F32, &[4]));
        let op = standard_op(&RmsNorm::new(1e-6), &[&f32t, &w]).unwrap();
        assert_eq!(op.op_type, "RMSNormalization");
        assert_eq!(op.attrs[1].f, Some(1e-6));
        // Gemma's 1 + w, a missing weight, or mixed dtypes: the fallback function instead.
        assert!(standard_op(&RmsNorm::gemma(1e-6), &[&f32t, &w]).is_none());
        assert!(standard_op(&RmsNorm::new(1e-6), &[&f32t]).is_none());
        assert!(standard_op(&RmsNorm::new(1e-6), &[&f16t, &w]).is_none());
        let f64t = ty(DType::F64);
        assert!(standard_op(&RmsNorm::new(1e-6), &[&f64t, &f64t]).is_none());
    }

    #[test]
    fn layer_norm_needs_a_weight() {
        let (x, w) = (ty(DType::F32), TensorType::known(DType::F32, &[4]));
        let op = standard_op(&LayerNorm::new(1e-5), &[&x, &w, &w]).unwrap();
        assert_eq!(op.op_type, "LayerNormalization");
        let no_weight = LayerNorm { eps: 1e-5, has_weight: false, has_bias: true };
        assert!(standard_op(&no_weight, &[&x, &w]).is_none());
    }
}
