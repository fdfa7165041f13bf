//! The op converters, and [`OPS`]: the one table from ONNX op type (default domain) to the
//! converter that imports a node of that type. [`SUPPORTED`](super::SUPPORTED) is made from
//! this table, so the claimed ops and the dispatched ones cannot drift apart.
//!
//! To support a new op: write its converter (`fn(&mut Importer, &NodeProto) -> R<()>`, in the
//! module of its family, or a new one) and add ONE line to [`OPS`].

mod attention;
mod col2im;
mod composite;
mod conv_pool;
mod dft;
mod einsum;
mod elementwise;
mod fused;
mod gather_scatter;
mod grid;
mod grid_sample;
mod linear_attention;
mod loss;
mod misc;
mod nn;
mod pad_cumsum;
mod quantized;
mod recurrent;
mod reduce;
mod resize;
mod scatter;
mod sequence;
mod shape;
mod topk;

use crate::import::prelude::*;

/// A converter: imports one node, binding its outputs in the importer.
pub(super) type Converter = fn(&mut Importer, &NodeProto) -> R<()>;

/// ONNX op type → converter. One line per op type; order is that of `docs/onnx-support.md`.
#[rustfmt::skip]
pub(super) const OPS: &[(&str, Converter)] = &[
    // Elementwise binary (Max/Min are variadic).
    ("Add", |i, n| i.binary(n, BinaryOp::Add)),
    ("Sub", |i, n| i.binary(n, BinaryOp::Sub)),
    ("Mul", |i, n| i.binary(n, BinaryOp::Mul)),
    ("Div", |i, n| i.binary(n, BinaryOp::Div)),
    ("Pow", |i, n| i.binary(n, BinaryOp::Pow)),
    ("Max", |i, n| i.binary(n, BinaryOp::Max)),
    ("Min", |i, n| i.binary(n, BinaryOp::Min)),
    ("Mod", |i, n| i.mod_(n)),
    ("Equal", |i, n| i.binary(n, BinaryOp::Equal)),
    ("Less", |i, n| i.binary(n, BinaryOp::Less)),
    ("LessOrEqual", |i, n| i.binary(n, BinaryOp::LessEqual)),
    ("Greater", |i, n| i.binary(n, BinaryOp::Greater)),
    ("GreaterOrEqual", |i, n| i.binary(n, BinaryOp::GreaterEqual)),
    ("And", |i, n| i.binary(n, BinaryOp::And)),
    ("Or", |i, n| i.binary(n, BinaryOp::Or)),
    ("Xor", |i, n| i.binary(n, BinaryOp::Xor)),
    // Elementwise unary.
    ("Not", |i, n| i.unary(n, UnaryOp::Not)),
    ("Neg", |i, n| i.unary(n, UnaryOp::Neg)),
    ("Abs", |i, n| i.unary(n, UnaryOp::Abs)),
    ("Sqrt", |i, n| i.unary(n, UnaryOp::Sqrt)),
    ("Reciprocal", |i, n| i.unary(n, UnaryOp::Reciprocal)),
    ("Exp", |i, n| i.unary(n, UnaryOp::Exp)),
    ("Log", |i, n| i.unary(n, UnaryOp::Log)),
    ("Erf", |i, n| i.unary(n, UnaryOp::Erf)),
    ("Tanh", |i, n| i.unary(n, UnaryOp::Tanh)),
    ("Sigmoid", |i, n| i.unary(n, UnaryOp::Sigmoid)),
    ("Sin", |i, n| i.unary(n, UnaryOp::Sin)),
    ("Cos", |i, n| i.unary(n, UnaryOp::Cos)),
    ("Relu", |i, n| i.unary(n, UnaryOp::Relu)),
    ("Floor", |i, n| i.unary(n, UnaryOp::Floor)),
    ("Ceil", |i, n| i.unary(n, UnaryOp::Ceil)),
    ("IsNaN", |i, n| i.unary(n, UnaryOp::IsNan)),
    ("Cast", |i, n| i.cast_attr(n)),
    ("CastLike", |i, n| i.cast_like(n)),
    ("Identity", |i, n| i.identity(n)),
    ("Dropout", |i, n| i.dropout(n)),
    ("Where", |i, n| i.where_(n)),
    // Reductions.
    ("ReduceMean", |i, n| i.reduce(n, ReduceOp::Mean)),
    ("ReduceSum", |i, n| i.reduce(n, ReduceOp::Sum)),
    ("ReduceMax", |i, n| i.reduce(n, ReduceOp::Max)),
    ("ReduceMin", |i, n| i.reduce(n, ReduceOp::Min)),
    ("ReduceProd", |i, n| i.reduce(n, ReduceOp::Prod)),
    ("Softmax", |i, n| i.softmax(n)),
    // Linear algebra and masks.
    ("MatMul", |i, n| i.matmul(n)),
    ("Gemm", |i, n| i.gemm(n)),
    ("Trilu", |i, n| i.trilu(n)),
    // Shape and layout.
    ("Transpose", |i, n| i.transpose(n)),
    ("Reshape", |i, n| i.reshape(n)),
    ("Expand", |i, n| i.expand(n)),
    ("Slice", |i, n| i.slice(n)),
    ("Concat", |i, n| i.concat(n)),
    ("Split", |i, n| i.split(n)),
    ("Unsqueeze", |i, n| i.unsqueeze(n)),
    ("Squeeze", |i, n| i.squeeze(n)),
    ("Flatten", |i, n| i.flatten(n)),
    ("Shape", |i, n| i.shape_of(n)),
    ("Size", |i, n| i.size(n)),
    ("Tile", |i, n| i.tile(n)),
    ("Range", |i, n| i.range(n)),
    ("ConstantOfShape", |i, n| i.constant_of_shape(n)),
    ("Constant", |i, n| i.constant(n)),
    // Indexing.
    ("Gather", |i, n| i.gather(n)),
    ("GatherND", |i, n| i.gather_nd(n)),
    ("GatherElements", |i, n| i.gather_elements(n)),
    // Blocks and fused ops.
    ("Gelu", |i, n| i.gelu(n)),
    ("LayerNormalization", |i, n| i.layer_norm(n)),
    ("RMSNormalization", |i, n| i.rms_norm(n)),
    ("RotaryEmbedding", |i, n| i.rotary(n)),
    ("Attention", |i, n| i.attention(n)),
    ("LinearAttention", |i, n| i.linear_attention(n)),
    ("DFT", |i, n| i.dft(n)),
    ("STFT", |i, n| i.stft(n)),
    ("MelWeightMatrix", |i, n| i.mel_weight_matrix(n)),
    ("AffineGrid", |i, n| i.affine_grid(n)),
    ("Col2Im", |i, n| i.col2im(n)),
    ("GridSample", |i, n| i.grid_sample(n)),
    // Sequences.
    ("SplitToSequence", |i, n| i.split_to_sequence(n)),
    ("SequenceAt", |i, n| i.sequence_at(n)),
    // Activations composed of IR ops (composite.rs).
    ("LogSoftmax", |i, n| i.log_softmax_node(n)),
    ("Clip", |i, n| i.clip(n)),
    ("Sum", |i, n| i.variadic(n, false)),
    ("Mean", |i, n| i.variadic(n, true)),
    ("Softplus", |i, n| i.softplus_node(n)),
    ("Softsign", |i, n| i.softsign(n)),
    ("HardSigmoid", |i, n| i.hard_sigmoid_node(n)),
    ("HardSwish", |i, n| i.hard_swish(n)),
    ("Elu", |i, n| i.elu(n)),
    ("Celu", |i, n| i.celu(n)),
    ("Selu", |i, n| i.selu(n)),
    ("LeakyRelu", |i, n| i.leaky_relu(n)),
    ("ThresholdedRelu", |i, n| i.thresholded_relu(n)),
    ("PRelu", |i, n| i.prelu(n)),
    ("Swish", |i, n| i.swish_node(n)),
    ("Mish", |i, n| i.mish(n)),
    ("Shrink", |i, n| i.shrink_node(n)),
    ("Sign", |i, n| i.sign(n)),
    ("IsInf", |i, n| i.is_inf(n)),
    ("Sinh", |i, n| i.sinh_cosh(n, true)),
    ("Cosh", |i, n| i.sinh_cosh(n, false)),
    ("Tan", |i, n| i.tan(n)),
    ("Round", |i, n| i.round(n)),
    ("Asinh", |i, n| i.inverse_hyperbolic(n)),
    ("Acosh", |i, n| i.inverse_hyperbolic(n)),
    ("Atanh", |i, n| i.inverse_hyperbolic(n)),
    ("SwiGLU", |i, n| i.swiglu_node(n)),
    // Normalizations and named reductions (composite.rs).
    ("BatchNormalization", |i, n| i.batch_norm(n)),
    ("InstanceNormalization", |i, n| i.instance_norm(n)),
    ("GroupNormalization", |i, n| i.group_norm(n)),
    ("MeanVarianceNormalization", |i, n| i.mvn(n)),
    ("LpNormalization", |i, n| i.lp_norm(n)),
    ("GlobalAveragePool", |i, n| i.global_pool(n, ReduceOp::Mean)),
    ("GlobalMaxPool", |i, n| i.global_pool(n, ReduceOp::Max)),
    ("ReduceL1", |i, n| i.reduce_named(n)),
    ("ReduceL2", |i, n| i.reduce_named(n)),
    ("ReduceLogSum", |i, n| i.reduce_named(n)),
    ("ReduceLogSumExp", |i, n| i.reduce_named(n)),
    ("ReduceSumSquare", |i, n| i.reduce_named(n)),
    ("ArgMax", |i, n| i.arg_node(n)),
    ("ArgMin", |i, n| i.arg_node(n)),
    ("Hardmax", |i, n| i.hardmax(n)),
    // Layout and quantization (composite.rs).
    ("DepthToSpace", |i, n| i.depth_space(n)),
    ("SpaceToDepth", |i, n| i.depth_space(n)),
    ("EyeLike", |i, n| i.eye_like(n)),
    ("HannWindow", |i, n| i.window(n)),
    ("HammingWindow", |i, n| i.window(n)),
    ("BlackmanWindow", |i, n| i.window(n)),
    ("DequantizeLinear", |i, n| i.dequantize(n)),
    ("QuantizeLinear", |i, n| i.quantize(n)),
    ("DynamicQuantizeLinear", |i, n| i.dynamic_quantize(n)),
    ("MatMulInteger", |i, n| i.matmul_integer(n)),
    ("QLinearMatMul", |i, n| i.qlinear_matmul(n)),
    // Losses (loss.rs), Einsum (einsum.rs), pooling and convolution (conv_pool.rs).
    ("NegativeLogLikelihoodLoss", |i, n| i.nll_node(n)),
    ("SoftmaxCrossEntropyLoss", |i, n| i.sce_node(n)),
    ("Einsum", |i, n| i.einsum_node(n)),
    ("MaxPool", |i, n| i.pool_node(n, true)),
    ("AveragePool", |i, n| i.pool_node(n, false)),
    ("LpPool", |i, n| i.lp_pool_node(n)),
    ("Resize", |i, n| i.resize(n)),
    ("Upsample", |i, n| i.upsample(n)),
    ("Conv", |i, n| i.conv_node(n)),
    ("ConvTranspose", |i, n| i.conv_transpose_node(n)),
    ("CausalConvWithState", |i, n| i.causal_conv_with_state(n)),
    // Scatters composed of masks and reductions (scatter.rs).
    ("ScatterND", |i, n| i.scatter_nd(n)),
    ("ScatterElements", |i, n| i.scatter_elements(n)),
    ("Scatter", |i, n| i.scatter_elements(n)),
    ("TensorScatter", |i, n| i.tensor_scatter(n)),
    ("ReverseSequence", |i, n| i.reverse_sequence(n)),
    ("CenterCropPad", |i, n| i.center_crop_pad(n)),
    ("LRN", |i, n| i.lrn(n)),
    ("Det", |i, n| i.det(n)),
    ("Atan", |i, n| i.inverse_trig(n)),
    ("Asin", |i, n| i.inverse_trig(n)),
    ("Acos", |i, n| i.inverse_trig(n)),
    // Recurrent nets, unrolled (recurrent.rs).
    ("RNN", |i, n| i.recurrent(n, recurrent::Cell::Rnn)),
    ("GRU", |i, n| i.recurrent(n, recurrent::Cell::Gru)),
    ("LSTM", |i, n| i.recurrent(n, recurrent::Cell::Lstm)),
    // Size-parameterized compositions (pad_cumsum.rs).
    ("Pad", |i, n| i.pad(n)),
    ("CumSum", |i, n| i.cumsum(n)),
    ("CumProd", |i, n| i.cumprod(n)),
    ("OneHot", |i, n| i.one_hot(n)),
    ("TopK", |i, n| i.top_k(n)),
];

/// The ops of the `com.microsoft` domain (ONNX Runtime's contrib ops) that the importer
/// claims, the one table for that domain: any other op of it is refused.
#[rustfmt::skip]
pub(super) const MICROSOFT_OPS: &[(&str, Converter)] = &[
    ("MatMulNBits", |i, n| i.matmul_nbits(n)),
    ("GatherBlockQuantized", |i, n| i.gather_block_quantized(n)),
];

/// The converter of an op type of the default domain, if the table has one.
pub(super) fn converter(op_type: &str) -> Option<Converter> {
    OPS.iter().find(|(name, _)| *name == op_type).map(|(_, f)| *f)
}

/// The converter of a `com.microsoft` op type, if [`MICROSOFT_OPS`] has one.
pub(super) fn microsoft_converter(op_type: &str) -> Option<Converter> {
    MICROSOFT_OPS.iter().find(|(name, _)| *name == op_type).map(|(_, f)| *f)
}

/// The op types of `table`, in order (a compile-time copy for [`SUPPORTED`](super::SUPPORTED)).
// Evaluated at compile time only (a const item): `i < N = table.len()`, and an out-of-bounds
// index there would be a compile error, not a run-time panic. Iterators are not const.
#[allow(clippy::indexing_slicing)]
pub(super) const fn names<const N: usize>(table: &[(&'static str, Converter)]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = table[i].0;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_type_has_one_converter() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in OPS {
            assert!(seen.insert(*name), "{name} is in the table twice");
        }
        assert_eq!(super::super::SUPPORTED.len(), OPS.len());
        assert!(super::super::SUPPORTED.iter().all(|s| converter(s).is_some()));
        assert!(converter("NoSuchOp").is_none());
        assert_eq!(super::super::SUPPORTED_MICROSOFT.len(), MICROSOFT_OPS.len());
        assert!(super::super::SUPPORTED_MICROSOFT.iter().all(|s| microsoft_converter(s).is_some()));
        assert!(converter("MatMulNBits").is_none() && microsoft_converter("MatMul").is_none());
    }
}
