//! Affine-quantized matmul: a weight stored as 4- or 8-bit integers with a scale and a bias
//! per group of `group_size` input channels (MLX's `quantize` / `quantized_matmul` layout).

use super::common::{self, compute_dtype, result_type};
use crate::block::Block;
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::BinaryOp;
use crate::shape::{join_dims, Dim, TensorType};
use serde::{Deserialize, Serialize};

/// The group sizes MLX's affine quantization supports.
pub const GROUP_SIZES: [u32; 3] = [32, 64, 128];
/// The bit widths this block supports.
pub const BITS: [u32; 2] = [4, 8];

/// Affine-quantized matmul (MLX's `quantized_matmul` with `transpose = true`, mode `affine`):
///
/// `y = x · Wᵀ`, `W[n, k] = scales[n, k / g] · q[n, k] + biases[n, k / g]`, `g = group_size`.
///
/// Operands, in order:
/// - `x` `{..., K}` (float, rank ≥ 2);
/// - `packed` `{N, K·bits/8}` (u8): the integers `q[n, k] ∈ [0, 2^bits)` packed little-endian,
///   element `k` of a row in bits `(k·bits) mod 8 ..` of byte `k·bits / 8` — byte for byte the
///   memory of MLX's uint32 packing, so backends can reinterpret it without repacking;
/// - `scales`, `biases` `{N, K / g}` (float, one dtype).
///
/// Computed in f32 (f64 when x is f64): the weight dequantized exactly in that type, x cast
/// to it, f32 accumulation, one rounding to the result type of x and scales.
/// Output: `{..., N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuantizedMatmul {
    /// Bits per weight: 4 or 8.
    pub bits: u32,
    /// Input channels sharing one scale and bias: 32, 64 or 128.
    pub group_size: u32,
}

impl QuantizedMatmul {
    /// The block's kind.
    pub const KIND: &'static str = "quantized_matmul";

    /// A block of `bits` bits per weight and `group_size` channels per group.
    pub fn new(bits: u32, group_size: u32) -> Self {
        QuantizedMatmul { bits, group_size }
    }

    /// Checks bits and group size; the error names the attribute.
    pub fn validate(&self) -> Result<(), String> {
        let k = Self::KIND;
        if !BITS.contains(&self.bits) {
            return Err(format!("{k}: bits must be one of {BITS:?}, got {}", self.bits));
        }
        if !GROUP_SIZES.contains(&self.group_size) {
            return Err(format!("{k}: group_size must be one of {GROUP_SIZES:?}, got {}", self.group_size));
        }
        Ok(())
    }
}

/// `(N, K)` from the packed weight's shape, when its dims are known.
fn packed_dims(bits: u32, packed: &TensorType) -> Option<(usize, usize)> {
    match packed.shape.as_slice() {
        [Dim::Known(n), Dim::Known(bytes)] => Some((*n, bytes * 8 / bits as usize)),
        _ => None,
    }
}

impl Block for QuantizedMatmul {
    crate::block_identity!();

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        self.validate()?;
        common::arity(k, inputs, &[4], "x, packed, scales, biases")?;
        let (x, packed, scales, biases) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        common::float(k, "x", x)?;
        common::float(k, "scales", scales)?;
        if packed.dtype != DType::U8 {
            return Err(format!("{k}: packed must be u8, got {}", packed.dtype));
        }
        if biases.dtype != scales.dtype || biases.shape != scales.shape {
            return Err(format!("{k}: biases ({biases}) must have the type of scales ({scales})"));
        }
        let (n, kk) = packed_dims(self.bits, packed).ok_or_else(|| {
            format!("{k}: packed must be 2-D with known dims, got [{}]", join_dims(&packed.shape))
        })?;
        if !kk.is_multiple_of(self.group_size as usize) {
            return Err(format!("{k}: K = {kk} is not a multiple of group_size {}", self.group_size));
        }
        let groups = kk / self.group_size as usize;
        if scales.shape.as_slice() != [Dim::Known(n), Dim::Known(groups)] {
            return Err(format!(
                "{k}: scales must be [{n}, {groups}] for a packed weight [{}], got [{}]",
                join_dims(&packed.shape),
                join_dims(&scales.shape)
            ));
        }
        if x.rank() < 2 || x.shape.last() != Some(&Dim::Known(kk)) {
            return Err(format!(
                "{k}: x must have rank ≥ 2 and last axis K = {kk}, got [{}]",
                join_dims(&x.shape)
            ));
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank ≥ 2") = Dim::Known(n);
        Ok(vec![TensorType::new(result_type(x.dtype, scales.dtype), shape)])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let (x, packed, scales, biases) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let out = result_type(b.ty(x).dtype, b.ty(scales).dtype);
        let c = compute_dtype(b.ty(x).dtype);
        let [n, bytes] = [0, 1].map(|i| b.ty(packed).shape[i].clone());
        let (Dim::Known(n), Dim::Known(bytes)) = (n, bytes) else {
            return Err(IrError::Graph(format!("{}: packed dims are not known", Self::KIND)));
        };
        let kk = bytes * 8 / self.bits as usize;
        let rows = [Dim::Known(n)];
        let q = unpack(b, packed, self.bits, &rows, bytes)?;
        let w = dequantize(b, q, scales, biases, &rows, kk, self.group_size as usize, c)?;
        let wt = b.transpose(w, &[1, 0])?;
        let x = b.cast(x, c)?;
        let y = b.matmul(x, wt)?;
        Ok(vec![b.cast(y, out)?])
    }
}

pub(crate) fn dims(d: &[usize]) -> Vec<Dim> {
    d.iter().map(|&v| Dim::Known(v)).collect()
}

/// The integers (i32) of packed u8 rows `{prefix..., bytes}`: `{prefix..., bytes·8/bits}`.
pub(crate) fn unpack(
    b: &mut Builder<'_>,
    packed: Value,
    bits: u32,
    prefix: &[Dim],
    bytes: usize,
) -> Result<Value, IrError> {
    let p = b.cast(packed, DType::I32)?;
    if bits == 8 {
        return Ok(p);
    }
    let with = |tail: &[usize]| prefix.iter().cloned().chain(dims(tail)).collect::<Vec<_>>();
    // Two 4-bit values a byte: the low nibble is the earlier element.
    let sixteen = b.scalar(DType::I32, 16.0);
    let low = b.binary(BinaryOp::Mod, p, sixteen)?;
    let high = b.binary(BinaryOp::Div, p, sixteen)?;
    let low = b.reshape(low, with(&[bytes, 1]))?;
    let high = b.reshape(high, with(&[bytes, 1]))?;
    let pairs = b.concat(&[low, high], -1)?;
    b.reshape(pairs, with(&[bytes * 2]))
}

/// `scales · q + biases` per group: q `{prefix..., K}` (i32), scales and biases
/// `{prefix..., K / g}`, in `c`; returns `{prefix..., K}` in `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dequantize(
    b: &mut Builder<'_>,
    q: Value,
    scales: Value,
    biases: Value,
    prefix: &[Dim],
    k: usize,
    g: usize,
    c: DType,
) -> Result<Value, IrError> {
    let with = |tail: &[usize]| prefix.iter().cloned().chain(dims(tail)).collect::<Vec<_>>();
    let q = b.cast(q, c)?;
    let q = b.reshape(q, with(&[k / g, g]))?;
    let mut group = |v: Value| -> Result<Value, IrError> {
        let v = b.cast(v, c)?;
        b.reshape(v, with(&[k / g, 1]))
    };
    let (s, z) = (group(scales)?, group(biases)?);
    let w = b.mul(q, s)?;
    let w = b.add2(w, z)?;
    b.reshape(w, with(&[k]))
}

/// Affine quantization of a weight `w {N, K}` (row-major f32 values) along K, in groups of
/// `group_size`: per group `scale = (max − min) / (2^bits − 1)`, `bias = min`,
/// `q = round((w − bias) / scale)` clamped to `[0, 2^bits)`. Returns the packed bytes
/// `{N, K·bits/8}`, scales and biases `{N, K / group_size}` (f32). A constant group gets
/// scale 0 and stores its value exactly in the bias.
pub fn quantize_affine(
    w: &[f32],
    n: usize,
    k: usize,
    bits: u32,
    group_size: u32,
) -> Result<QuantizedWeight, String> {
    let g = group_size as usize;
    let block = QuantizedMatmul::new(bits, group_size);
    block.validate()?;
    if w.len() != n * k || !k.is_multiple_of(g) {
        return Err(format!(
            "quantize: weight of {} values is not [{n}, {k}] with K a multiple of {g}",
            w.len()
        ));
    }
    let levels = ((1u32 << bits) - 1) as f32;
    let mut q = vec![0u8; n * k];
    let (mut scales, mut biases) = (Vec::with_capacity(n * k / g), Vec::with_capacity(n * k / g));
    for (group, qs) in w.chunks(g).zip(q.chunks_mut(g)) {
        let (lo, hi) =
            group.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !lo.is_finite() || !hi.is_finite() {
            return Err("quantize: the weight has a non-finite value".to_string());
        }
        let scale = (hi - lo) / levels;
        for (qv, &v) in qs.iter_mut().zip(group) {
            *qv = if scale > 0.0 { ((v - lo) / scale).round().clamp(0.0, levels) as u8 } else { 0 };
        }
        scales.push(scale);
        biases.push(lo);
    }
    let packed = match bits {
        8 => q,
        _ => q.chunks(2).map(|p| p[0] | (p[1] << 4)).collect(),
    };
    Ok(QuantizedWeight { block, n, k, packed, scales, biases })
}

/// A weight quantized by [`quantize_affine`]: the block and its three constant operands.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// The block that multiplies by this weight.
    pub block: QuantizedMatmul,
    /// Output channels (rows of W).
    pub n: usize,
    /// Input channels (columns of W).
    pub k: usize,
    /// Packed integers, `{N, K·bits/8}`.
    pub packed: Vec<u8>,
    /// Scales, `{N, K / group_size}`.
    pub scales: Vec<f32>,
    /// Biases, `{N, K / group_size}`.
    pub biases: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let (n, k) = (3, 64);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        for bits in BITS {
            let q = quantize_affine(&w, n, k, bits, 32).unwrap();
            assert_eq!(q.packed.len(), n * k * bits as usize / 8);
            for (i, &v) in w.iter().enumerate() {
                let (row, col) = (i / k, i % k);
                let byte = q.packed[row * k * bits as usize / 8 + col * bits as usize / 8];
                let qi = if bits == 8 {
                    byte
                } else if col.is_multiple_of(2) {
                    byte & 15
                } else {
                    byte >> 4
                };
                let gi = row * (k / 32) + col / 32;
                let back = q.scales[gi] * qi as f32 + q.biases[gi];
                assert!((back - v).abs() <= q.scales[gi] / 2.0 + 1e-6, "bits {bits} at {i}: {back} vs {v}");
            }
        }
    }

    #[test]
    fn constant_groups_are_exact_and_bad_shapes_error() {
        let q = quantize_affine(&[0.25; 64], 1, 64, 4, 64).unwrap();
        assert_eq!((q.scales[0], q.biases[0]), (0.0, 0.25));
        assert!(quantize_affine(&[0.0; 60], 1, 60, 4, 32).unwrap_err().contains("multiple of 32"));
        assert!(quantize_affine(&[0.0; 64], 1, 64, 3, 32).unwrap_err().contains("bits"));
        assert!(quantize_affine(&[f32::NAN; 32], 1, 32, 4, 32).unwrap_err().contains("non-finite"));
    }

    #[test]
    fn infer_names_each_broken_rule() {
        let t = |d: DType, s: &[usize]| TensorType::new(d, dims(s));
        let b = QuantizedMatmul::new(4, 32);
        let ok =
            [t(DType::F32, &[2, 64]), t(DType::U8, &[8, 32]), t(DType::F32, &[8, 2]), t(DType::F32, &[8, 2])];
        assert_eq!(b.infer(&ok).unwrap(), vec![t(DType::F32, &[2, 8])]);
        let mut bad = ok.clone();
        bad[0] = t(DType::F32, &[2, 63]);
        assert!(b.infer(&bad).unwrap_err().contains("last axis K = 64"));
        let mut bad = ok.clone();
        bad[2] = t(DType::F32, &[8, 3]);
        assert!(b.infer(&bad).unwrap_err().contains("biases"));
        bad[3] = t(DType::F32, &[8, 3]);
        assert!(b.infer(&bad).unwrap_err().contains("scales must be [8, 2]"));
        let mut bad = ok.clone();
        bad[1] = t(DType::I8, &[8, 32]);
        assert!(b.infer(&bad).unwrap_err().contains("packed must be u8"));
        assert!(QuantizedMatmul::new(4, 48).infer(&ok).unwrap_err().contains("group_size"));
    }
}
