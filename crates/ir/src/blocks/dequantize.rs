//! Blocked linear dequantization (ONNX `DequantizeLinear` with `block_size`, opset 21+): the
//! form quantized weights take before a matmul, kept as one node so that the
//! `quantized_matmul` rule can read its integers, scales and zero points.

use super::common::{self, compute_dtype};
use super::quantized_matmul::dims;
use crate::block::Block;
use crate::builder::Builder;
use crate::error::IrError;
use crate::graph::Value;
use crate::shape::{join_dims, Dim, TensorType};
use serde::{Deserialize, Serialize};

/// Blocked dequantization: `y[i] = (q[i] − zero_point[j]) · scale[j]`, where `j` is `i` with
/// its coordinate `c` along `axis` replaced by `c / block_size` (ONNX `DequantizeLinear` with
/// `block_size`; the last block may be partial).
///
/// Operands, in order: `q` (integer, known dims), `scale` (float, q's dims except
/// `⌈q[axis] / block_size⌉` along `axis`), `zero_point` (q's dtype, scale's dims).
/// Computed in f32 (f64 for f64 scales), rounded once to the scale's dtype.
/// Output: q's dims in the scale's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dequantize {
    /// The blocked axis (non-negative).
    pub axis: usize,
    /// Elements along `axis` sharing one scale and zero point (≥ 1).
    pub block_size: usize,
}

impl Dequantize {
    /// The block's kind.
    pub const KIND: &'static str = "dequantize";

    /// Blocks of `block_size` along `axis`.
    pub fn new(axis: usize, block_size: usize) -> Self {
        Dequantize { axis, block_size }
    }
}

impl Block for Dequantize {
    crate::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::arity(k, inputs, &[3], "q, scale, zero_point")?;
        let (q, scale, zp) = (&inputs[0], &inputs[1], &inputs[2]);
        if !q.dtype.is_int() {
            return Err(format!("{k}: q must be an integer tensor, got {q}"));
        }
        common::float(k, "scale", scale)?;
        if zp.dtype != q.dtype || zp.shape != scale.shape {
            return Err(format!("{k}: zero_point ({zp}) must have q's dtype and scale's dims ({scale})"));
        }
        let qd = q.known_dims().ok_or_else(|| format!("{k}: q must have known dims, got {q}"))?;
        if self.block_size == 0 || self.axis >= qd.len() {
            return Err(format!(
                "{k}: axis {} and block_size {} do not fit q of rank {}",
                self.axis,
                self.block_size,
                qd.len()
            ));
        }
        let mut want = qd.clone();
        want[self.axis] = qd[self.axis].div_ceil(self.block_size);
        if scale.shape.as_slice() != dims(&want).as_slice() {
            return Err(format!(
                "{k}: scale must be [{}] for q [{}] in blocks of {} along axis {}, got [{}]",
                join_dims(&dims(&want)),
                join_dims(&q.shape),
                self.block_size,
                self.axis,
                join_dims(&scale.shape)
            ));
        }
        Ok(vec![TensorType::new(scale.dtype, q.shape.clone())])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let (q, scale, zp) = (inputs[0], inputs[1], inputs[2]);
        let out = b.ty(scale).dtype;
        let c = compute_dtype(out);
        let len = match b.ty(q).shape.get(self.axis) {
            Some(Dim::Known(n)) => *n,
            _ => return Err(IrError::Graph(format!("{}: q dims are not known", Self::KIND))),
        };
        let q = b.cast(q, c)?;
        let z = self.blocked(b, zp, c, len)?;
        let s = self.blocked(b, scale, c, len)?;
        let centered = b.sub(q, z)?;
        let y = b.mul(centered, s)?;
        Ok(vec![b.cast(y, out)?])
    }
}

impl Dequantize {
    /// `p` (scale-shaped) in `c`, each entry repeated `block_size` times along the axis and
    /// cut to `len` there: q's shape.
    fn blocked(&self, b: &mut Builder<'_>, p: Value, c: crate::DType, len: usize) -> Result<Value, IrError> {
        let a = self.axis;
        let p = b.cast(p, c)?;
        let mut up: Vec<Dim> = b.ty(p).shape.to_vec();
        let groups = up[a].known().unwrap_or(0);
        up.insert(a + 1, Dim::Known(1));
        let v = b.reshape(p, up.clone())?;
        up[a + 1] = Dim::Known(self.block_size);
        let v = b.expand(v, up.clone())?;
        up.remove(a + 1);
        up[a] = Dim::Known(groups * self.block_size);
        let v = b.reshape(v, up)?;
        if groups * self.block_size == len {
            return Ok(v);
        }
        b.slice_axis(v, a as i64, 0, len as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn infer_checks_the_blocked_shapes() {
        let t = |d: DType, s: &[usize]| TensorType::new(d, dims(s));
        let b = Dequantize::new(1, 32);
        let ok = [t(DType::U8, &[4, 70]), t(DType::F16, &[4, 3]), t(DType::U8, &[4, 3])];
        assert_eq!(b.infer(&ok).unwrap(), vec![t(DType::F16, &[4, 70])]);
        let mut bad = ok.clone();
        bad[1] = t(DType::F16, &[4, 2]);
        bad[2] = t(DType::U8, &[4, 2]);
        assert!(b.infer(&bad).unwrap_err().contains("scale must be [4, 3]"));
        let mut bad = ok.clone();
        bad[2] = t(DType::I8, &[4, 3]);
        assert!(b.infer(&bad).unwrap_err().contains("zero_point"));
        assert!(Dequantize::new(2, 32).infer(&ok).unwrap_err().contains("do not fit"));
        assert!(Dequantize::new(1, 0).infer(&ok).unwrap_err().contains("do not fit"));
        let mut bad = ok.clone();
        bad[0] = t(DType::F32, &[4, 70]);
        assert!(b.infer(&bad).unwrap_err().contains("integer"));
    }

    #[test]
    fn a_packed_int4_weight_round_trips_through_json() {
        use crate::blocks::{pack_int4, Int4};
        use crate::{Graph, HostTensor};
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let packed = HostTensor::from_bytes(DType::U8, vec![3], pack_int4(&[-8, 7, 1, 2, 3, -1])).unwrap();
        let p = b.constant(packed);
        let q = b.block(Int4::new(true, vec![2, 3]), &[p]).unwrap()[0];
        let s = b.constant(HostTensor::from_f32(vec![2, 1], &[0.5, 0.25]));
        let z = b.constant(HostTensor::from_f64(DType::I8, vec![2, 1], &[1.0, -1.0]));
        let w = b.block(Dequantize::new(1, 4), &[q, s, z]).unwrap()[0];
        g.add_output("w", w);
        let json = crate::json::to_json(&g).unwrap();
        assert!(json.contains("\"block.int4\"") && json.contains("\"block.dequantize\""));
        let back = crate::json::from_json(&json).unwrap();
        assert_eq!(crate::text::dump(&back).unwrap(), crate::text::dump(&g).unwrap());
    }
}
