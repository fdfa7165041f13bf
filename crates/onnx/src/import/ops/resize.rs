//! `Resize` (nearest, linear, cubic; antialias; every coordinate transformation mode), as
//! ONNX's reference computes it: separable, one axis at a time. For each resized axis the
//! taps of every output position (source indices, clamped, and their weights) are computed at
//! import time; the axis becomes one `Gather` of the taps, a multiply by the weights and a sum
//! over the taps (then a select for `tf_crop_and_resize` extrapolation).

use crate::import::prelude::*;

fn attr_floats(n: &NodeProto, name: &str) -> Option<Vec<f64>> {
    n.attr(name).map(|a| a.floats.iter().map(|&f| f as f64).collect()).filter(|v: &Vec<f64>| !v.is_empty())
}

/// How the taps are weighted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Interp {
    /// Nearest, with ONNX's `nearest_mode`.
    Nearest(NearestMode),
    /// Linear (antialiased when downscaling with `antialias`).
    Linear { antialias: bool },
    /// Cubic with coefficient `a`.
    Cubic { a: f64, antialias: bool },
}

/// ONNX `nearest_mode`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// One axis: output size, scale, and per output position the tap indices and weights, and
/// whether it is extrapolated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AxisTaps {
    pub idx: Vec<Vec<i64>>,
    pub w: Vec<Vec<f64>>,
    pub extrapolated: Vec<bool>,
}

fn coeffs(interp: Interp, ratio: f64, scale: f64) -> Vec<f64> {
    match interp {
        Interp::Nearest(m) => {
            if ratio.fract() == 0.0 {
                return vec![0.0, 1.0];
            }
            let up = match m {
                NearestMode::RoundPreferFloor => ratio > 0.5,
                NearestMode::RoundPreferCeil => ratio >= 0.5,
                NearestMode::Floor => false,
                NearestMode::Ceil => true,
            };
            if up {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        Interp::Linear { antialias: false } => vec![1.0 - ratio, ratio],
        Interp::Linear { antialias: true } => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            let c: Vec<f64> = (start..start + footprint)
                .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                .collect();
            let sum: f64 = c.iter().sum();
            c.iter().map(|v| v / sum).collect()
        }
        Interp::Cubic { a, antialias: false } => {
            let (r, q) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
            ]
        }
        Interp::Cubic { a, antialias: true } => {
            let s = scale.min(1.0);
            let f = |x: f64| {
                let x = x.abs();
                let (x2, x3) = (x * x, x * x * x);
                if x <= 1.0 {
                    (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                } else if x < 2.0 {
                    a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / s).floor() as i64 + 1;
            let c: Vec<f64> = (start..2 - start).map(|i| f(s * (i as f64 - ratio))).collect();
            let sum: f64 = c.iter().sum();
            c.iter().map(|v| v / sum).collect()
        }
    }
}

/// The taps of one axis (the reference's `_interpolate_1d_along_axis`).
pub(crate) fn axis_taps(
    input: usize,
    output: usize,
    scale: f64,
    interp: Interp,
    mode: &str,
    roi: Option<(f64, f64)>,
    exclude_outside: bool,
) -> Result<AxisTaps, String> {
    if input == 0 {
        return Err("cannot resize an empty axis".into());
    }
    let out_w = scale * input as f64;
    let inw = input as f64;
    let mut t = AxisTaps { idx: vec![], w: vec![], extrapolated: vec![] };
    for j in 0..output {
        let y = j as f64;
        let mut ext = false;
        let x = match mode {
            "align_corners" if out_w == 1.0 => 0.0,
            "align_corners" => y * (inw - 1.0) / (out_w - 1.0),
            "asymmetric" => y / scale,
            "tf_crop_and_resize" => {
                let (r0, r1) = roi.ok_or("tf_crop_and_resize needs a roi")?;
                let x = if out_w == 1.0 {
                    (r1 - r0) * (inw - 1.0) / 2.0
                } else {
                    y * (r1 - r0) * (inw - 1.0) / (out_w - 1.0)
                } + r0 * (inw - 1.0);
                ext = x < 0.0 || x > inw - 1.0;
                x
            }
            "pytorch_half_pixel" if out_w == 1.0 => -0.5,
            "pytorch_half_pixel" | "half_pixel" => (y + 0.5) / scale - 0.5,
            "half_pixel_symmetric" => {
                let offset = inw / 2.0 * (1.0 - output as f64 / out_w);
                offset + (y + 0.5) / scale - 0.5
            }
            m => return Err(format!("unknown coordinate_transformation_mode '{m}'")),
        };
        let xi = x.floor();
        let ratio = if x == xi { 1.0 } else { x - xi };
        let mut c = coeffs(interp, ratio, scale);
        let n = c.len() as i64;
        let pad = (c.len() as i64 + 1) / 2;
        let xp = x + pad as f64;
        let p = xp.floor();
        let frac = xp - p;
        let off = if n % 2 == 0 {
            if frac == 0.0 {
                -(n / 2)
            } else {
                -(n / 2) + 1
            }
        } else if frac <= 0.5 {
            -((n - 1) / 2)
        } else {
            -((n - 1) / 2) + 1
        };
        let start = p as i64 + off;
        let idx: Vec<i64> = (0..n).map(|k| start + k - pad).collect();
        if exclude_outside {
            for (w, &i) in c.iter_mut().zip(&idx) {
                if i < 0 || i >= input as i64 {
                    *w = 0.0;
                }
            }
            let s: f64 = c.iter().sum();
            let s = if s == 0.0 { 1.0 } else { s };
            c.iter_mut().for_each(|v| *v /= s);
        }
        t.idx.push(idx.iter().map(|&i| i.clamp(0, input as i64 - 1)).collect());
        t.w.push(c);
        t.extrapolated.push(ext);
    }
    Ok(t)
}

impl Importer {
    /// A float operand that must be constant at import time (`scales`, `roi`).
    fn const_floats(&self, name: &str, what: &str) -> R<Vec<f64>> {
        match self.const_tensor(name) {
            Some(t) => Ok(t.to_f64_vec()),
            None => Err(self.unsupported(format!(
                "{what} '{name}' is not computable at import time (a data-dependent shape; shape operands \
                 must be constants or Shape computations)"
            ))),
        }
    }

    /// `Upsample` (deprecated; `Resize` with `scales` as input 1, asymmetric coordinates).
    pub(crate) fn upsample(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let dims = self.vt(x).known_dims().ok_or_else(|| self.unsupported("Upsample of symbolic dims"))?;
        let scales = match (attr_floats(n, "scales"), inp(n, 1)) {
            (Some(s), _) => s,
            (None, Some(name)) => self.const_floats(name, "scales")?,
            (None, None) => return Err(self.err("missing scales")),
        };
        if scales.len() != dims.len() {
            return Err(self.err(format!("{} scales for rank {}", scales.len(), dims.len())));
        }
        let interp = match attr_s(n, "mode").as_deref().unwrap_or("nearest") {
            "nearest" => Interp::Nearest(NearestMode::Floor),
            "linear" | "bilinear" => Interp::Linear { antialias: false },
            m => return Err(self.err(format!("unknown mode '{m}'"))),
        };
        if interp != Interp::Nearest(NearestMode::Floor) && !self.vt(x).dtype.is_float() {
            return Err(self.err("linear Upsample needs a float input"));
        }
        let mut y = x;
        for (a, (&s, &d)) in scales.iter().zip(&dims).enumerate() {
            if s == 1.0 {
                continue;
            }
            let out = (s * d as f64) as usize;
            let taps = axis_taps(d, out, s, interp, "asymmetric", None, false).map_err(|e| self.err(e))?;
            y = self.apply_taps(y, a, &taps, 0.0)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn resize(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let dims =
            t.known_dims().ok_or_else(|| self.unsupported(format!("Resize of symbolic dims ({t})")))?;
        let r = dims.len();
        let axes: Vec<usize> = match attr_ints(n, "axes") {
            Some(a) => a.iter().map(|&v| self.axis_of(v, r)).collect::<R<_>>()?,
            None => (0..r).collect(),
        };
        let roi = match inp(n, 1) {
            Some(name) => Some(self.const_floats(name, "roi")?).filter(|v| !v.is_empty()),
            None => None,
        };
        let scales = match inp(n, 2) {
            Some(name) => Some(self.const_floats(name, "scales")?).filter(|v| !v.is_empty()),
            None => None,
        };
        let sizes = match inp(n, 3) {
            Some(name) => {
                Some(self.known_req(name, "sizes")?.consts().ok_or_else(|| self.err("symbolic sizes"))?)
            }
            None => None,
        };
        let mut scale: Vec<f64> = vec![1.0; r];
        let mut out: Vec<usize> = dims.clone();
        match (scales, sizes) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(self.err(format!("{} scales for {} axes", s.len(), axes.len())));
                }
                for (&a, &sk) in axes.iter().zip(&s) {
                    if sk.is_nan() || sk <= 0.0 {
                        return Err(self.err(format!("scale {sk} is not positive")));
                    }
                    *self.at_mut(&mut scale, a)? = sk;
                    *self.at_mut(&mut out, a)? = (sk * self.at(&dims, a)? as f64) as usize;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != axes.len() {
                    return Err(self.err(format!("{} sizes for {} axes", sz.len(), axes.len())));
                }
                for (&a, &size) in axes.iter().zip(&sz) {
                    let o = usize::try_from(size).map_err(|_| self.err("sizes must not be negative"))?;
                    *self.at_mut(&mut out, a)? = o;
                    *self.at_mut(&mut scale, a)? = o as f64 / self.at(&dims, a)? as f64;
                }
                let policy = attr_s(n, "keep_aspect_ratio_policy").unwrap_or_else(|| "stretch".into());
                if policy != "stretch" {
                    // (The axes are normalized: below the rank, the length of `scale`.)
                    let it = axes.iter().filter_map(|&a| scale.get(a).copied());
                    let s = match policy.as_str() {
                        "not_larger" => it.fold(f64::INFINITY, f64::min),
                        "not_smaller" => it.fold(0.0, f64::max),
                        p => return Err(self.err(format!("unknown keep_aspect_ratio_policy '{p}'"))),
                    };
                    for &a in &axes {
                        *self.at_mut(&mut scale, a)? = s;
                        *self.at_mut(&mut out, a)? = (s * self.at(&dims, a)? as f64 + 0.5) as usize;
                    }
                }
            }
            _ => return Err(self.err("exactly one of scales and sizes must be given")),
        }
        let antialias = attr_i(n, "antialias", 0) != 0;
        let interp = match attr_s(n, "mode").as_deref().unwrap_or("nearest") {
            "nearest" => {
                Interp::Nearest(match attr_s(n, "nearest_mode").as_deref().unwrap_or("round_prefer_floor") {
                    "round_prefer_floor" => NearestMode::RoundPreferFloor,
                    "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                    "floor" => NearestMode::Floor,
                    "ceil" => NearestMode::Ceil,
                    m => return Err(self.err(format!("unknown nearest_mode '{m}'"))),
                })
            }
            "linear" => Interp::Linear { antialias },
            "cubic" => Interp::Cubic { a: attr_f(n, "cubic_coeff_a", -0.75) as f64, antialias },
            m => return Err(self.err(format!("unknown mode '{m}'"))),
        };
        let ctm = attr_s(n, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
        let exclude = attr_i(n, "exclude_outside", 0) != 0;
        let extrap = attr_f(n, "extrapolation_value", 0.0) as f64;
        // Computed in f32 (f64 stays f64), rounded to the input type at the end.
        let ct = if t.dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let mut y = self.cast_to(x, ct)?;
        for &a in &axes {
            // roi is `[starts…, ends…]` over the axes: a shorter one is refused, not indexed past.
            let ax_roi = match &roi {
                Some(v) => {
                    let k = axes.iter().position(|&b| b == a).unwrap_or(0);
                    let bounds = v.get(k).zip(v.get(axes.len() + k)).map(|(&r0, &r1)| (r0, r1));
                    Some(bounds.ok_or_else(|| {
                        self.err(format!("roi has {} entries, not 2 per axis ({} axes)", v.len(), axes.len()))
                    })?)
                }
                None => None,
            };
            let (sa, oa, da) = (self.at(&scale, a)?, self.at(&out, a)?, self.at(&dims, a)?);
            let identity = (sa - 1.0).abs() < 1e-9
                && oa == da
                && ax_roi.is_none_or(|(r0, r1)| r0.abs() < 1e-9 && (r1 - 1.0).abs() < 1e-9);
            if identity {
                continue;
            }
            let taps = axis_taps(da, oa, sa, interp, &ctm, ax_roi, exclude).map_err(|e| self.err(e))?;
            y = self.apply_taps(y, a, &taps, extrap)?;
        }
        let y =
            if t.dtype.is_float() { self.cast_to(y, t.dtype)? } else { self.saturating_round(y, t.dtype)? };
        self.out(n, 0, y);
        Ok(())
    }

    /// `y[…, j, …] = Σ_k w[j][k]·x[…, idx[j][k], …]` along `axis` (extrapolated positions set).
    fn apply_taps(&mut self, x: Value, axis: usize, taps: &AxisTaps, extrap: f64) -> R<Value> {
        let t = self.vt(x);
        let (o, k) = (taps.idx.len(), taps.idx.first().map_or(0, Vec::len));
        let idx: Vec<i64> = taps.idx.iter().flatten().copied().collect();
        let w: Vec<f64> = taps.w.iter().flatten().copied().collect();
        let iv = self.emit(Op::Constant(HostTensor::from_i64(vec![o, k], &idx)), &[])?;
        let g = self.emit(Op::Gather { axis: axis as i64 }, &[x, iv])?; // […, o, k, …]
        let mut wshape = vec![1; t.rank() + 1];
        *self.at_mut(&mut wshape, axis)? = o;
        *self.at_mut(&mut wshape, axis + 1)? = k;
        let wv = self.emit(Op::Constant(HostTensor::from_f64(t.dtype, wshape, &w)), &[])?;
        let p = self.bin(BinaryOp::Mul, g, wv)?;
        let mut y = self.reduce_v(ReduceOp::Sum, p, vec![axis as i64 + 1], false)?;
        if taps.extrapolated.iter().any(|&e| e) {
            let mut mshape = vec![1; t.rank()];
            *self.at_mut(&mut mshape, axis)? = o;
            let m: Vec<f64> = taps.extrapolated.iter().map(|&e| e as u8 as f64).collect();
            let mv = self.emit(Op::Constant(HostTensor::from_f64(DType::Bool, mshape, &m)), &[])?;
            let ev = self.scalar_of(t.dtype, extrap)?;
            y = self.emit(Op::Where, &[mv, ev, y])?;
        }
        Ok(y)
    }

    /// A float resized back into an integer type: rounded half to even, saturated.
    fn saturating_round(&mut self, y: Value, dt: DType) -> R<Value> {
        let (lo, hi) = match dt {
            DType::U8 => (0.0, 255.0),
            DType::I8 => (-128.0, 127.0),
            DType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DType::I64 => (i64::MIN as f64, i64::MAX as f64),
            d => return Err(self.err(format!("cannot resize {d}"))),
        };
        let q = self.round_half_even(y)?;
        let (l, h) = (self.scalar_like(q, lo)?, self.scalar_like(q, hi)?);
        let q = self.bin(BinaryOp::Max, q, l)?;
        let q = self.bin(BinaryOp::Min, q, h)?;
        self.cast_to(q, dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_upsample_by_two_repeats() {
        let t =
            axis_taps(2, 4, 2.0, Interp::Nearest(NearestMode::RoundPreferFloor), "asymmetric", None, false)
                .unwrap();
        let picked: Vec<i64> =
            t.idx.iter().zip(&t.w).map(|(i, w)| i[w.iter().position(|&v| v == 1.0).unwrap()]).collect();
        assert_eq!(picked, vec![0, 0, 1, 1]);
    }

    #[test]
    fn linear_half_pixel_weights_sum_to_one_and_clamp() {
        let t = axis_taps(4, 8, 2.0, Interp::Linear { antialias: false }, "half_pixel", None, false).unwrap();
        for (i, w) in t.idx.iter().zip(&t.w) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(i.iter().all(|&v| (0..4).contains(&v)));
        }
        // Output 0 maps to x = -0.25: both taps clamp to index 0.
        assert_eq!(t.idx[0], vec![0, 0]);
    }

    #[test]
    fn tf_crop_marks_extrapolation() {
        let t = axis_taps(
            4,
            3,
            0.75,
            Interp::Linear { antialias: false },
            "tf_crop_and_resize",
            Some((0.4, 1.2)),
            false,
        )
        .unwrap();
        assert_eq!(t.extrapolated, vec![false, false, true]);
        assert!(axis_taps(4, 3, 0.75, Interp::Linear { antialias: false }, "bogus", None, false).is_err());
    }
}
