//! ONNX `DFT` (opsets 17 and 20) of a static length, as matrix products with constant
//! cosine and sine matrices: `Y = X·W` per real and imaginary part, with the zero-padding or
//! truncation to `dft_length`, the one-sided output (`onesided`), the inverse (÷ length) and
//! the inverse of a one-sided spectrum (numpy's `irfft`: the Hermitian extension) folded
//! into the matrices.

use crate::import::prelude::*;

/// The largest `input length × output length` matrix made.
const MAX_CELLS: usize = 1 << 22;

/// ONNX's mel filter bank `[dft_length/2 + 1, bins]` (its reference, including the mel step
/// of `(high − low)/(bins + 2)` and the f32 rounding of the edge mels), or `None` when a
/// filter's centre falls outside the spectrum.
fn mel_matrix(
    bins: usize,
    dft_length: usize,
    sample_rate: f64,
    lower_hz: f32,
    upper_hz: f32,
) -> Option<Vec<f64>> {
    let spectrum = dft_length / 2 + 1;
    let ln10 = std::f64::consts::LN_10;
    let mel = |hz: f32| f64::from(2595f32 * (hz / 700f32).ln_1p()) / ln10;
    let (low, high) = (mel(lower_hz), mel(upper_hz));
    let step = (high - low) / (bins + 2) as f64;
    let edges: Vec<i64> = (0..bins + 2)
        .map(|k| {
            let hz = 700.0 * ((k as f64 * step + low) / 2595.0 * ln10).exp_m1();
            ((dft_length + 1) as f64 * hz / sample_rate).floor() as i64
        })
        .collect();
    let mut out = vec![0.0; spectrum * bins];
    for (i, w) in edges.windows(3).enumerate() {
        let &[lo, center, hi] = w else { return None };
        // A cell of column i, `None` (no filter bank) outside the spectrum.
        let mut set = |j: i64, v: f64| -> Option<()> {
            let j = usize::try_from(j).ok().filter(|&j| j < spectrum)?;
            *out.get_mut(j * bins + i)? = v;
            Some(())
        };
        if center == lo {
            set(center, 1.0)?;
        } else {
            for j in lo..=center {
                set(j, (j - lo) as f64 / (center - lo) as f64)?;
            }
        }
        for j in center..hi {
            set(j, (hi - j) as f64 / (hi - center) as f64)?;
        }
    }
    Some(out)
}

/// The four `[n_in, m]` matrices of `Yr = Xr·A + Xi·B`, `Yi = Xr·C + Xi·D`.
struct DftMatrices {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

/// The matrices for an input of `n_in` points, transform length `len`, `m` outputs.
fn dft_matrices(n_in: usize, len: usize, m: usize, inverse: bool, onesided: bool) -> DftMatrices {
    let cells = n_in * m;
    let mut w = DftMatrices {
        a: Vec::with_capacity(cells),
        b: Vec::with_capacity(cells),
        c: Vec::with_capacity(cells),
        d: Vec::with_capacity(cells),
    };
    let l = len as f64;
    // Cell (n, k) of the four matrices, row-major: pushed in order, 0 where no term is.
    let cell = |n: usize, k: usize| -> (f64, f64, f64, f64) {
        if inverse && onesided {
            // Real output k from spectrum entry n (n < len/2 + 1): weight 1 for the DC
            // and (even len) Nyquist entries, 2 for the others; imaginary parts of those
            // two contribute sin = 0.
            if n > len / 2 {
                return (0.0, 0.0, 0.0, 0.0);
            }
            let weight = if n == 0 || (len.is_multiple_of(2) && n == len / 2) { 1.0 } else { 2.0 };
            let th = 2.0 * std::f64::consts::PI * ((n * k) % len) as f64 / l;
            return (weight * th.cos() / l, -weight * th.sin() / l, 0.0, 0.0);
        }
        if n >= len {
            return (0.0, 0.0, 0.0, 0.0);
        }
        let th = 2.0 * std::f64::consts::PI * ((n * k) % len) as f64 / l;
        let (cos, sin) = (th.cos(), th.sin());
        if inverse {
            // (Xr + iXi)(cos + i sin) / len.
            (cos / l, -sin / l, sin / l, cos / l)
        } else {
            // (Xr + iXi)(cos − i sin).
            (cos, sin, -sin, cos)
        }
    };
    for n in 0..n_in {
        for k in 0..m {
            let (a, b, c, d) = cell(n, k);
            w.a.push(a);
            w.b.push(b);
            w.c.push(c);
            w.d.push(d);
        }
    }
    w
}

impl Importer {
    /// `Yr` (and `Yi` when `imaginary`) of `xr`/`xi` (`[…, n_in]`, the transformed axis
    /// last) by the matrices `w` (`[n_in, m]`).
    fn dft_apply(
        &mut self,
        (xr, xi): (Value, Option<Value>),
        w: &DftMatrices,
        (n_in, m): (usize, usize),
        dt: DType,
        imaginary: bool,
    ) -> R<Vec<Value>> {
        let mat = |imp: &mut Self, v: &[f64]| {
            imp.emit(Op::Constant(HostTensor::from_f64(dt, vec![n_in, m], v)), &[])
        };
        let combine = |imp: &mut Self, re: &[f64], im: &[f64]| -> R<Value> {
            let a = mat(imp, re)?;
            let y = imp.emit(Op::MatMul, &[xr, a])?;
            match xi {
                Some(xi) => {
                    let b = mat(imp, im)?;
                    let z = imp.emit(Op::MatMul, &[xi, b])?;
                    imp.bin(BinaryOp::Add, y, z)
                }
                None => Ok(y),
            }
        };
        let yr = combine(self, &w.a, &w.b)?;
        Ok(if imaginary { vec![yr, combine(self, &w.c, &w.d)?] } else { vec![yr] })
    }

    /// ONNX `STFT`: frames of `x` `[B, L, 1 | 2]` every `frame_step` (zero-padded to the
    /// window), times the window, each transformed over `frame_length` points:
    /// `[B, frames, bins, 2]` (`onesided`, default 1: `frame_length/2 + 1` bins).
    pub(crate) fn stft(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let xt = self.g.value_type(x).clone();
        let (batch, sig, parts) = match xt.known_dims().as_deref() {
            Some(&[b, l, p]) if p == 1 || p == 2 => (b, l, p),
            _ => return Err(self.err(format!("signal must be [B, L, 1 | 2] of known size, got {xt}"))),
        };
        if !xt.dtype.is_float() {
            return Err(self.err(format!("STFT of {}", xt.dtype)));
        }
        let scalar = |imp: &Self, name: &str, what: &str| -> R<usize> {
            let k = imp.known_req(name, what)?;
            let v = k
                .consts()
                .and_then(|c| c.first().copied())
                .ok_or_else(|| imp.err(format!("{what} must be one integer")))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| imp.err(format!("{what} {v} must be positive")))
        };
        let step = scalar(self, &self.in_req(n, 1)?, "frame_step")?;
        let window = match inp(n, 2) {
            Some(w) => Some(self.value(w)?),
            None => None,
        };
        let ws = match window {
            Some(w) => match self.g.value_type(w).known_dims().as_deref() {
                Some(&[ws]) => ws,
                _ => return Err(self.err("window must be 1-D of known size")),
            },
            None => sig,
        };
        let len = match inp(n, 3) {
            Some(name) => scalar(self, name, "frame_length")?,
            None => ws,
        };
        let ws = if window.is_some() { ws } else { len };
        let frames = sig
            .checked_sub(len)
            .map(|r| r / step + 1)
            .ok_or_else(|| self.err("the frame is longer than the signal"))?;
        let m = if attr_i(n, "onesided", 1) != 0 { len / 2 + 1 } else { len };
        if ws.checked_mul(m).is_none_or(|c| c > MAX_CELLS)
            || frames.checked_mul(ws).is_none_or(|c| c > MAX_CELLS)
        {
            return Err(self.unsupported(format!("an STFT of {frames} frames of {ws}×{m}")));
        }
        let dt = xt.dtype;
        // The signal zero-padded so the last frame is whole, then one gather of every frame.
        let need = (frames - 1) * step + ws;
        let xp = self.pad_axis(x, 1, 0, need.saturating_sub(sig), 0.0)?;
        let idx: Vec<i64> = (0..frames).flat_map(|f| (0..ws).map(move |w| (f * step + w) as i64)).collect();
        let idx = self.emit(Op::Constant(HostTensor::from_i64(vec![frames, ws], &idx)), &[])?;
        let mut fr = self.emit(Op::Gather { axis: 1 }, &[xp, idx])?;
        if let Some(w) = window {
            let w = if self.g.value_type(w).dtype == dt { w } else { self.emit(Op::Cast(dt), &[w])? };
            let w = self.reshape_v(w, vec![Dim::Known(ws), Dim::Known(1)])?;
            fr = self.bin(BinaryOp::Mul, fr, w)?;
        }
        let shape = vec![Dim::Known(batch), Dim::Known(frames), Dim::Known(ws)];
        let part = |imp: &mut Self, p: i64| -> R<Value> {
            let s = imp.slice_last(fr, p, p + 1)?;
            imp.reshape_v(s, shape.clone())
        };
        let xr = part(self, 0)?;
        let xi = if parts == 2 { Some(part(self, 1)?) } else { None };
        let w = dft_matrices(ws, len, m, false, false);
        let out_shape = vec![Dim::Known(batch), Dim::Known(frames), Dim::Known(m), Dim::Known(1)];
        let outs = self.dft_apply((xr, xi), &w, (ws, m), dt, true)?;
        let mut parts = vec![];
        for y in outs {
            parts.push(self.reshape_v(y, out_shape.clone())?);
        }
        let y = self.emit(Op::Concat { axis: -1 }, &parts)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// ONNX `MelWeightMatrix`: a constant of its five scalar inputs (`output_datatype`,
    /// default float32).
    pub(crate) fn mel_weight_matrix(&mut self, n: &NodeProto) -> R<()> {
        let mut vals = [0.0f64; 5];
        for (i, v) in vals.iter_mut().enumerate() {
            let (c, _, _) = self.scalar_operand(&self.in_req(n, i)?)?;
            *v = c.ok_or_else(|| self.err(format!("input {i} must be a constant scalar")))?;
        }
        let [bins, len, rate, lo, hi] = vals;
        let count = |v: f64, what: &str| {
            (v.fract() == 0.0 && v > 0.0 && v <= (1u64 << 24) as f64)
                .then_some(v as usize)
                .ok_or_else(|| self.err(format!("{what} {v} must be a positive integer up to 2^24")))
        };
        let (bins, len) = (count(bins, "num_mel_bins")?, count(len, "dft_length")?);
        if (len / 2 + 1).checked_mul(bins).is_none_or(|c| c > MAX_CELLS) || rate.is_nan() || rate <= 0.0 {
            return Err(
                self.err(format!("a mel matrix of {bins} bins, dft_length {len}, sample_rate {rate}"))
            );
        }
        let m = mel_matrix(bins, len, rate, lo as f32, hi as f32)
            .ok_or_else(|| self.err("a mel filter lies outside the spectrum (edges past the sample rate)"))?;
        let dt = self.attr_dtype(n, "output_datatype", 1)?;
        let c = self.emit(Op::Constant(HostTensor::from_f64(dt, vec![len / 2 + 1, bins], &m)), &[])?;
        self.out(n, 0, c);
        Ok(())
    }

    /// ONNX `DFT`: `x` is `[…, N, …, 1]` (real) or `[…, N, …, 2]` (complex) along `axis`.
    pub(crate) fn dft(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let xt = self.g.value_type(x).clone();
        let dims = xt.known_dims().ok_or_else(|| self.unsupported("DFT of symbolic dims"))?;
        if !xt.dtype.is_float() {
            return Err(self.err(format!("DFT of {}", xt.dtype)));
        }
        let rank = dims.len();
        let parts =
            dims.last().copied().filter(|&c| c == 1 || c == 2).ok_or_else(|| {
                self.err(format!("the last axis must be 1 (real) or 2 (complex), got {xt}"))
            })?;
        let axis = match (n.attr("axis").and_then(|a| a.i), inp(n, 2)) {
            (Some(a), _) => a,
            (None, Some(name)) => {
                let k = self.known_req(name, "axis")?;
                k.consts()
                    .and_then(|c| c.first().copied())
                    .ok_or_else(|| self.err("axis must be one integer"))?
            }
            // Opset 17's default is 1, opset 20's −2: the same axis for rank 3 only.
            (None, None) if rank == 3 => 1,
            (None, None) => {
                return Err(self.unsupported(
                    "DFT without an axis on a rank other than 3 (the default depends on the opset)",
                ))
            }
        };
        let axis = normalize_axis(axis, rank)
            .filter(|&a| a + 1 < rank)
            .ok_or_else(|| self.err(format!("axis {axis} for an input of rank {rank}")))?;
        let inverse = attr_i(n, "inverse", 0) != 0;
        let onesided = attr_i(n, "onesided", 0) != 0;
        let n_in = self.at(&dims, axis)?;
        let len = match inp(n, 1) {
            Some(name) => {
                let k = self.known_req(name, "dft_length")?;
                let l = k
                    .consts()
                    .and_then(|c| c.first().copied())
                    .ok_or_else(|| self.err("dft_length must be one integer"))?;
                usize::try_from(l)
                    .ok()
                    .filter(|&l| l > 0)
                    .ok_or_else(|| self.err(format!("dft_length {l}")))?
            }
            None if inverse && onesided => 2 * n_in.saturating_sub(1),
            None => n_in,
        };
        if len == 0 {
            return Err(self.err("a DFT of length 0"));
        }
        let (m, out_parts) = match (inverse, onesided) {
            (true, true) => (len, 1),
            (false, true) => (len / 2 + 1, 2),
            _ => (len, 2),
        };
        if n_in.checked_mul(m).is_none_or(|c| c > MAX_CELLS) {
            return Err(self.unsupported(format!("a DFT matrix of {n_in}×{m} (at most {MAX_CELLS} cells)")));
        }
        let w = dft_matrices(n_in, len, m, inverse, onesided);
        let dt = xt.dtype;
        // Each part as [..., N] with the transformed axis last.
        let mut perm: Vec<usize> = (0..rank - 1).filter(|&a| a != axis).collect();
        perm.push(axis);
        // (rank ≥ 2: the axis is before the last.)
        let squeezed: Vec<Dim> = dims.iter().take(rank - 1).map(|&d| Dim::Known(d)).collect();
        let part = |imp: &mut Self, p: usize| -> R<Value> {
            let s = imp.slice_last(x, p as i64, p as i64 + 1)?;
            let s = imp.reshape_v(s, squeezed.clone())?;
            imp.emit(Op::Transpose { perm: perm.clone() }, &[s])
        };
        let xr = part(self, 0)?;
        let xi = if parts == 2 { Some(part(self, 1)?) } else { None };
        let outs = self.dft_apply((xr, xi), &w, (n_in, m), dt, out_parts == 2)?;
        // Back to the input's axis order, with the part axis last.
        let inv = self.inverse_perm(&perm)?;
        let mut shaped = vec![];
        for y in outs {
            let y = self.emit(Op::Transpose { perm: inv.clone() }, &[y])?;
            let mut shape = squeezed.clone();
            *self.at_mut(&mut shape, axis)? = Dim::Known(m);
            shape.push(Dim::Known(1));
            shaped.push(self.reshape_v(y, shape)?);
        }
        let y = self.concat_or_one(shaped, -1)?;
        self.out(n, 0, y);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward matrices give numpy's `fft` of a small real signal.
    #[test]
    fn forward_matrices_match_a_direct_sum() {
        let x = [1.0, 2.0, -1.0, 0.5];
        let w = dft_matrices(4, 4, 4, false, false);
        for k in 0..4 {
            let (re, im): (f64, f64) =
                (0..4).fold((0.0, 0.0), |(r, i), n| (r + x[n] * w.a[n * 4 + k], i + x[n] * w.c[n * 4 + k]));
            let th = |n: usize| -2.0 * std::f64::consts::PI * (n * k) as f64 / 4.0;
            let want_re: f64 = (0..4).map(|n| x[n] * th(n).cos()).sum();
            let want_im: f64 = (0..4).map(|n| x[n] * th(n).sin()).sum();
            assert!((re - want_re).abs() < 1e-12 && (im - want_im).abs() < 1e-12, "k = {k}");
        }
    }

    /// irfft ∘ rfft is the identity on a real signal of even and odd length.
    #[test]
    fn inverse_onesided_undoes_onesided() {
        for len in [4usize, 5] {
            let x: Vec<f64> = (0..len).map(|i| (i as f64 * 0.7).sin() + 0.3).collect();
            let half = len / 2 + 1;
            let f = dft_matrices(len, len, half, false, true);
            let spec: Vec<(f64, f64)> = (0..half)
                .map(|k| {
                    (0..len).fold((0.0, 0.0), |(r, i), n| {
                        (r + x[n] * f.a[n * half + k], i + x[n] * f.c[n * half + k])
                    })
                })
                .collect();
            let g = dft_matrices(half, len, len, true, true);
            for (t, &want) in x.iter().enumerate() {
                let y: f64 =
                    (0..half).map(|k| spec[k].0 * g.a[k * len + t] + spec[k].1 * g.b[k * len + t]).sum();
                assert!((y - want).abs() < 1e-12, "len {len}, t {t}: {y} vs {want}");
            }
        }
    }
}
