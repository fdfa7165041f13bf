//! Quantized weights as frontends leave them (`Dequantize(q, scale, zero_point)`, q a
//! constant of 8-bit integers or an `Int4` block over packed bytes): reading their integers,
//! and repacking a blocked dequantization into MLX's affine layout
//! ([`QuantizedMatmul`]: `W[n, k] = scales[n, k / g] · q'[n, k] + biases[n, k / g]`).
//!
//! The map is exact in the integers: `(q − zp) · s = s · q' + b` with `q' = q + o` (`o` =
//! 2^(bits−1) for signed q, 0 for unsigned, so that `q' ∈ [0, 2^bits)`) and
//! `b = −s · (zp + o)`, rounded once to the scale's dtype.

use blockfuse_ir::blocks::{Int4, QuantizedMatmul, GROUP_SIZES};
use blockfuse_ir::{DType, Graph, HostTensor, Op, Value};

/// A constant integer tensor, read element by element without unpacking it.
#[derive(Debug, Clone)]
pub struct IntConst {
    /// Dims of the integer tensor.
    pub dims: Vec<usize>,
    /// 4 or 8: the bits each value takes.
    pub bits: u32,
    /// Whether the values are two's complement.
    pub signed: bool,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// One byte a value (i8 or u8).
    Bytes(HostTensor),
    /// Two values a byte.
    Nibbles(HostTensor, Int4),
    /// Every value the same.
    Fill(i32),
}

impl IntConst {
    /// Value `i` (row-major).
    pub fn get(&self, i: usize) -> i32 {
        match &self.source {
            Source::Bytes(t) if self.signed => t.bytes()[i] as i8 as i32,
            Source::Bytes(t) => t.bytes()[i] as i32,
            Source::Nibbles(t, b) => b.get(t.bytes(), i),
            Source::Fill(v) => *v,
        }
    }
}

/// The integers of `v` when it is a constant of 8-bit integers, a `full` of one, or an
/// [`Int4`] block over a constant; otherwise why not.
pub fn int_constant(g: &Graph, v: Value) -> Result<IntConst, String> {
    let ty = g.value_type(v);
    let bits_of = |d: DType| match d {
        DType::I8 | DType::U8 => Ok(8),
        d => Err(format!("its integers are {d}, not 4- or 8-bit")),
    };
    let dims = ty.known_dims().ok_or("its dims are not known")?;
    let (bits, source) = match &g.node(v.node).op {
        Op::Constant(t) => (bits_of(t.dtype())?, Source::Bytes(t.clone())),
        Op::Full { value, dtype, .. } => (bits_of(*dtype)?, Source::Fill(*value as i32)),
        Op::Block(b) => {
            let int4 =
                b.downcast_ref::<Int4>().ok_or_else(|| format!("it comes from a {} block", b.kind()))?;
            let packed = g.node(v.node).operands[0];
            let t = g.node(packed.node).op.as_constant().ok_or("its packed bytes are not a constant")?;
            (4, Source::Nibbles(t.clone(), int4.clone()))
        }
        op => return Err(format!("it is not a constant (its op is `{}`)", op.name())),
    };
    Ok(IntConst { dims, bits, signed: matches!(ty.dtype, DType::I8), source })
}

/// Whether blocks of `block` along an input dim of `k` are MLX's groups: a group size it
/// supports that divides K.
pub fn groups_fit(k: usize, block: usize) -> Result<(), String> {
    if !GROUP_SIZES.iter().any(|&s| s as usize == block) {
        return Err(format!("block size {block} is not a group size MLX supports ({GROUP_SIZES:?})"));
    }
    if !k.is_multiple_of(block) {
        return Err(format!("the input dim K = {k} is not a multiple of the block size {block}"));
    }
    Ok(())
}

/// A blocked dequantization repacked for [`QuantizedMatmul`].
#[derive(Debug, Clone)]
pub struct AffineWeight {
    /// The block (bits, group size).
    pub block: QuantizedMatmul,
    /// `u8 {N, K·bits/8}`.
    pub packed: HostTensor,
    /// `{N, K/g}` in the scale's dtype.
    pub scales: HostTensor,
    /// `{N, K/g}` in the scale's dtype.
    pub biases: HostTensor,
}

/// Repacks `(q − zp) · scale`, blocks of `block` along the input dim `k_axis` of the 2-D
/// weight (0: `W {K, N}` as `MatMul` reads it; 1: `W {N, K}`, transposed before it), into
/// MLX's affine layout; the error says why the layout does not map.
pub fn affine_weight(
    q: &IntConst,
    scale: &HostTensor,
    zp: &IntConst,
    k_axis: usize,
    block: usize,
) -> Result<AffineWeight, String> {
    let [r, c] = q.dims[..] else { return Err(format!("the weight has dims {:?}, not 2-D", q.dims)) };
    let (k, n) = if k_axis == 0 { (r, c) } else { (c, r) };
    let g = block;
    groups_fit(k, g)?;
    // The zero points' width does not matter (a `full` of them has none); their sign does.
    if zp.signed != q.signed {
        return Err("the zero points are not of the weight's integer type".to_string());
    }
    let groups = k / g;
    let at =
        |row: usize, col: usize, cols: usize| if k_axis == 0 { col * cols + row } else { row * cols + col };
    let offset = if q.signed { 1i32 << (q.bits - 1) } else { 0 };
    let values = scale.to_f64_vec();
    let mut scales = Vec::with_capacity(n * groups);
    let mut biases = Vec::with_capacity(n * groups);
    for row in 0..n {
        for grp in 0..groups {
            let i = at(row, grp, if k_axis == 0 { n } else { groups });
            scales.push(values[i]);
            biases.push(-values[i] * (zp.get(i) + offset) as f64);
        }
    }
    let level =
        |row: usize, col: usize| (q.get(at(row, col, if k_axis == 0 { n } else { k })) + offset) as u8;
    let mut packed = Vec::with_capacity(n * k * q.bits as usize / 8);
    for row in 0..n {
        match q.bits {
            8 => packed.extend((0..k).map(|col| level(row, col))),
            _ => packed.extend((0..k / 2).map(|j| level(row, 2 * j) | (level(row, 2 * j + 1) << 4))),
        }
    }
    let dims = vec![n, groups];
    let bytes = packed.len() / n;
    Ok(AffineWeight {
        block: QuantizedMatmul::new(q.bits, g as u32),
        packed: HostTensor::from_bytes(DType::U8, vec![n, bytes], packed).map_err(|e| e.to_string())?,
        scales: HostTensor::from_f64(scale.dtype(), dims.clone(), &scales),
        biases: HostTensor::from_f64(scale.dtype(), dims, &biases),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::blocks::pack_int4;

    fn int4(vals: &[i32], dims: Vec<usize>) -> IntConst {
        let t = HostTensor::from_bytes(DType::U8, vec![vals.len().div_ceil(2)], pack_int4(vals)).unwrap();
        IntConst {
            dims: dims.clone(),
            bits: 4,
            signed: true,
            source: Source::Nibbles(t, Int4::new(true, dims)),
        }
    }

    /// Dequantizes the packed form as QuantizedMatmul defines it: W[n, k].
    fn unpack(w: &AffineWeight, n: usize, k: usize) -> Vec<f64> {
        let (b, g) = (w.block.bits as usize, w.block.group_size as usize);
        let (s, z) = (w.scales.to_f64_vec(), w.biases.to_f64_vec());
        (0..n * k)
            .map(|i| {
                let (row, col) = (i / k, i % k);
                let byte = w.packed.bytes()[row * k * b / 8 + col * b / 8];
                let q = if b == 8 { byte } else { (byte >> (4 * (col % 2))) & 15 };
                s[row * k / g + col / g] * q as f64 + z[row * k / g + col / g]
            })
            .collect()
    }

    #[test]
    fn signed_int4_blocks_along_k_repack_exactly() {
        let (k, n, g) = (64, 3, 32);
        let vals: Vec<i32> = (0..k * n).map(|i| (i as i32 * 7 % 16) - 8).collect();
        let q = int4(&vals, vec![k, n]);
        let scale: Vec<f64> = (0..2 * n).map(|i| 0.5 + i as f64 / 8.0).collect();
        let s = HostTensor::from_f64(DType::F32, vec![2, n], &scale);
        let zps: Vec<i32> = (0..2 * n).map(|i| i as i32 - 3).collect();
        let zp = int4(&zps, vec![2, n]);
        let w = affine_weight(&q, &s, &zp, 0, g).unwrap();
        assert_eq!(w.packed.dims(), [n, k / 2]);
        let got = unpack(&w, n, k);
        for (i, v) in got.iter().enumerate() {
            let (row, col) = (i / k, i % k);
            let j = (col / g) * n + row;
            let want = (vals[col * n + row] - zps[j]) as f64 * scale[j];
            assert!((v - want).abs() < 1e-5, "W[{row}, {col}] = {v}, want {want}");
        }
    }

    #[test]
    fn unsigned_bytes_transposed_and_the_refusals() {
        let (n, k) = (2, 32);
        let t = HostTensor::from_bytes(DType::U8, vec![n, k], (0..64u8).map(|v| v * 3).collect::<Vec<_>>())
            .unwrap();
        let q = IntConst { dims: vec![n, k], bits: 8, signed: false, source: Source::Bytes(t.clone()) };
        let zp = IntConst { dims: vec![n, 1], bits: 8, signed: false, source: Source::Fill(10) };
        let s = HostTensor::from_f64(DType::F32, vec![n, 1], &[0.25, 2.0]);
        let w = affine_weight(&q, &s, &zp, 1, 32).unwrap();
        let got = unpack(&w, n, k);
        for (i, v) in got.iter().enumerate() {
            let want = (t.bytes()[i] as f64 - 10.0) * [0.25, 2.0][i / k];
            assert_eq!(*v, want);
        }
        assert!(affine_weight(&q, &s, &zp, 1, 16).unwrap_err().contains("block size 16"));
        let q48 = IntConst { dims: vec![n, 48], ..q.clone() };
        assert!(affine_weight(&q48, &s, &zp, 1, 32).unwrap_err().contains("K = 48"));
        let signed_zp = IntConst { signed: true, ..zp };
        assert!(affine_weight(&q, &s, &signed_zp, 1, 32).unwrap_err().contains("zero points"));
    }
}
