//! Quantized weights: `DequantizeLinear` with `block_size` (opset 21+) and `com.microsoft`
//! `MatMulNBits`, both imported as the [`Dequantize`] block (over the packed bytes, through
//! [`Int4`] for 4-bit values) feeding a `MatMul`, which the `quantized_matmul` rule turns into
//! the `QuantizedMatmul` block when the layout maps exactly (or explains why not).

use crate::import::prelude::*;
use blockfuse_ir::blocks::{Dequantize, Int4};

impl Importer {
    /// `DequantizeLinear` with `block_size > 0`: the [`Dequantize`] block (a missing zero
    /// point is zero), cast to `output_dtype` when given and not the scale's type.
    pub(crate) fn dequantize_blocked(&mut self, n: &NodeProto, block: usize) -> R<()> {
        let q = self.input_v(n, 0)?;
        let scale = self.input_v(n, 1)?;
        let (qt, st) = (self.vt(q), self.vt(scale));
        let axis = self.axis_of(attr_i(n, "axis", 1), qt.rank())?;
        let zp = match inp(n, 2) {
            Some(z) => self.value(z)?,
            None => self.emit(Op::Full { shape: st.shape.to_vec(), value: 0.0, dtype: qt.dtype }, &[])?,
        };
        let y = self.emit(Op::Block(Arc::new(Dequantize::new(axis, block))), &[q, scale, zp])?;
        let y = match attr_i(n, "output_dtype", 0) {
            0 => y,
            d => {
                let to = self.attr_dtype(n, "output_dtype", d)?;
                self.cast_to(y, to)?
            }
        };
        self.out(n, 0, y);
        Ok(())
    }

    /// `com.microsoft` `MatMulNBits`: `Y = A · dequantize(B)ᵀ (+ bias)`, B `uint8 [N, n_blocks,
    /// block_size·bits/8]` holding row n's K values (padded to whole blocks) packed low bits
    /// first, scales `[N·n_blocks]`, optional packed `uint8` zero points (each row padded to
    /// whole bytes; default `2^(bits−1)`). Imported as `MatMul(A, transpose(Dequantize(q,
    /// scales, zero points)))`. Refused: bits other than 4 and 8, `g_idx`, float zero points,
    /// a B that is not a constant.
    pub(crate) fn matmul_nbits(&mut self, n: &NodeProto) -> R<()> {
        let k = self.attr_usize(n, "K", 0)?;
        let nn = self.attr_usize(n, "N", 0)?;
        let bits = self.attr_usize(n, "bits", 4)?;
        let bs = self.attr_usize(n, "block_size", 0)?;
        if bits != 4 && bits != 8 {
            return Err(self.unsupported(format!("bits = {bits} (4 and 8 are supported)")));
        }
        if !(16..=1 << 24).contains(&bs) || !bs.is_power_of_two() || k == 0 || nn == 0 {
            return Err(self.err(format!(
                "block_size {bs} must be a power of 2 in 16..=2^24, K ({k}) and N ({nn}) positive"
            )));
        }
        if inp(n, 4).is_some() {
            return Err(self.unsupported("g_idx (act-order group indices) is not supported"));
        }
        let blocks = k.div_ceil(bs);
        let b_name = self.in_req(n, 1)?;
        let b = self.const_tensor(&b_name).ok_or_else(|| {
            self.unsupported(format!("B '{b_name}' is not a constant (an initializer or Constant)"))
        })?;
        let blob = bs * bits / 8;
        let need = [blocks, blob].iter().try_fold(nn, |a, &d| a.checked_mul(d));
        if blocks.checked_mul(bs).is_none() || b.dtype() != DType::U8 || Some(b.len()) != need {
            return Err(self.err(format!(
                "B must be uint8 [{nn}, {blocks}, {blob}] for N = {nn}, K = {k}, block_size {bs}, bits \
                 {bits}, got {}{:?}",
                b.dtype(),
                b.dims()
            )));
        }
        let q = self.packed_rows(&b_name, &b, bits, nn, blocks * bs)?;
        let q = if blocks * bs == k { q } else { self.slice_axis_v(q, 1, 0, k as i64, 1)? };
        let scales = self.nbits_scales(n, nn, blocks)?;
        let zp = self.nbits_zero_points(n, bits, nn, blocks)?;
        let w = self.emit(Op::Block(Arc::new(Dequantize::new(1, bs))), &[q, scales, zp])?;
        let wt = self.emit(Op::Transpose { perm: vec![1, 0] }, &[w])?;
        let a = self.input_v(n, 0)?;
        let mut y = self.emit(Op::MatMul, &[a, wt])?;
        if let Some(bias) = inp(n, 5) {
            let bias = self.value(bias)?;
            y = self.bin(BinaryOp::Add, y, bias)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `com.microsoft` `GatherBlockQuantized` of a 2-D table: `Gather(Dequantize(data, scales,
    /// zero_points), indices)` along `gather_axis`, blocks of `block_size` along
    /// `quantize_axis`. data is int4/uint4, or uint8 holding `bits` = 4 (two a byte, low nibble
    /// first, along the last axis) or 8 bit values; a missing zero point is 0, or `2^(bits−1)`
    /// for uint8 data. Refused: other ranks, other bits, packed 4-bit data or zero points that
    /// are not constants.
    pub(crate) fn gather_block_quantized(&mut self, n: &NodeProto) -> R<()> {
        let bits = self.attr_usize(n, "bits", 4)?;
        let bs = self.attr_usize(n, "block_size", 128)?;
        let q = self.nibble_table(n, 0, bits)?;
        let (qt, scales) = (self.vt(q), self.input_v(n, 2)?);
        let st = self.vt(scales).shape.to_vec();
        let zp = match inp(n, 3) {
            Some(_) => self.nibble_table(n, 3, bits)?,
            None => {
                let mid =
                    if qt.dtype == DType::U8 && !self.is_int4(q) { (1u32 << (bits - 1)) as f64 } else { 0.0 };
                self.emit(Op::Full { shape: st.clone(), value: mid, dtype: qt.dtype }, &[])?
            }
        };
        let zp = match (self.vt(zp).shape.get(1).and_then(Dim::known), st.get(1).and_then(Dim::known)) {
            (Some(have), Some(want)) if have > want => self.slice_axis_v(zp, 1, 0, want as i64, 1)?,
            _ => zp,
        };
        let axis = self.axis_of(attr_i(n, "quantize_axis", 1), 2)?;
        let w = self.emit(Op::Block(Arc::new(Dequantize::new(axis, bs))), &[q, scales, zp])?;
        let idx = self.input_v(n, 1)?;
        let y = self.emit(Op::Gather { axis: attr_i(n, "gather_axis", 0) }, &[w, idx])?;
        self.out(n, 0, y);
        Ok(())
    }

    /// Input `i` of a `GatherBlockQuantized` as a 2-D integer table: uint8 with `bits` = 4
    /// unpacked through [`Int4`] (two values a byte along the last axis), else as it is.
    fn nibble_table(&mut self, n: &NodeProto, i: usize, bits: usize) -> R<Value> {
        let name = self.in_req(n, i)?;
        let v = self.value(&name)?;
        let t = self.vt(v);
        if t.rank() == 2 && self.is_int4(v) {
            return Ok(v);
        }
        if t.rank() != 2 {
            return Err(self.unsupported(format!("'{name}' has rank {} (2-D tables only)", t.rank())));
        }
        match (t.dtype, bits) {
            (DType::U8, 4) => {
                let c = self.const_tensor(&name).ok_or_else(|| {
                    self.unsupported(format!("4-bit data '{name}' packed in uint8 is not a constant"))
                })?;
                let &[rows, cols] = c.dims() else {
                    return Err(self.err(format!("'{name}' is not a 2-D table")));
                };
                let cols = cols * 2;
                self.packed_rows(&name, &c, 4, rows, cols)
            }
            (DType::U8, 8) | (DType::I8, _) => Ok(v),
            (d, b) => Err(self.unsupported(format!("{d} '{name}' with bits = {b}"))),
        }
    }

    /// Whether `v` is the output of an [`Int4`] block (ONNX int4/uint4 data).
    fn is_int4(&self, v: Value) -> bool {
        self.g.node(v.node).op.as_block().is_some_and(|b| b.is::<Int4>())
    }

    /// Rows of `cols` `bits`-bit values packed in `t` (row-major, low bits first, each row
    /// whole bytes): `u8 [rows, cols]` for 8 bits, [`Int4`] of the bytes for 4.
    fn packed_rows(&mut self, name: &str, t: &HostTensor, bits: usize, rows: usize, cols: usize) -> R<Value> {
        let flat = |dims| t.reshaped(dims).map_err(|e| self.err(format!("'{name}': {e}")));
        let (t, unpack) = match bits {
            8 => (flat(vec![rows, cols])?, None),
            _ => (flat(vec![t.len()])?, Some(Int4::new(false, vec![rows, cols]))),
        };
        let c = self.add_named1(Op::Constant(t), &[], name.to_string())?;
        match unpack {
            None => Ok(c),
            Some(block) => self.add_named1(Op::Block(Arc::new(block)), &[c], name.to_string()),
        }
    }

    /// The scales as `[N, n_blocks]` (reshaped on the host when constant).
    fn nbits_scales(&mut self, n: &NodeProto, rows: usize, blocks: usize) -> R<Value> {
        let name = self.in_req(n, 2)?;
        let dims = vec![rows, blocks];
        if let Some(t) = self.const_tensor(&name).filter(|t| t.len() == rows * blocks) {
            let t = t.reshaped(dims).map_err(|e| self.err(format!("scales: {e}")))?;
            return self.add_named1(Op::Constant(t), &[], name);
        }
        let s = self.value(&name)?;
        self.reshape_v(s, dims.into_iter().map(Dim::Known).collect())
    }

    /// The zero points as `u8 [N, n_blocks]`: unpacked from their rows of whole bytes, or
    /// `2^(bits−1)` everywhere when absent.
    fn nbits_zero_points(&mut self, n: &NodeProto, bits: usize, rows: usize, blocks: usize) -> R<Value> {
        let shape = vec![Dim::Known(rows), Dim::Known(blocks)];
        let Some(name) = inp(n, 3).map(str::to_string) else {
            let mid = (1u32 << (bits - 1)) as f64;
            return self.emit(Op::Full { shape, value: mid, dtype: DType::U8 }, &[]);
        };
        let t = self.const_tensor(&name).ok_or_else(|| {
            self.unsupported(format!("zero_points '{name}' is not a constant uint8 tensor"))
        })?;
        let per_row = (blocks * bits).div_ceil(8);
        if t.dtype() != DType::U8 {
            return Err(self.unsupported(format!("{} zero_points (only packed uint8 ones)", t.dtype())));
        }
        if Some(t.len()) != rows.checked_mul(per_row) {
            return Err(self.err(format!(
                "zero_points must have {} bytes ({rows} rows of {per_row}), got {:?}",
                rows * per_row,
                t.dims()
            )));
        }
        let z = self.packed_rows(&name, &t, bits, rows, per_row * 8 / bits)?;
        if per_row * 8 / bits == blocks {
            Ok(z)
        } else {
            self.slice_axis_v(z, 1, 0, blocks as i64, 1)
        }
    }
}
