//! ONNX `GridSample` as ONNX's reference computes it: per spatial axis, the grid coordinate
//! is denormalized (`align_corners`), rounded (`nearest`), and moved inside the image when it
//! lies outside (`border`: clamped, `reflection`: reflected); the taps of the interpolation
//! (1 nearest, 2 linear, 4 cubic with Keys' α = −0.75) get their source index fixed the same
//! way (`zeros`: a tap outside the image weighs 0). Every combination of taps over the axes
//! is one `gather` from the image flattened over the batch and spatial axes, times the
//! product of its weights; the combinations are summed.

use crate::import::prelude::*;

/// The most tap combinations (`taps per axis ^ spatial axes`).
const MAX_COMBINATIONS: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// One tap along one axis: the source index (i64), its weight, and whether it lies inside
/// the image (`zeros` padding only).
struct Tap {
    index: Value,
    weight: Option<Value>,
    inside: Option<Value>,
}

impl Importer {
    /// `v` reflected into `[lo, hi]` when outside (ONNX's `_gs_reflect`).
    fn gs_reflect(&mut self, v: Value, lo: f64, hi: f64) -> R<Value> {
        let (lo_v, hi_v) = (self.scalar_like(v, lo)?, self.scalar_like(v, hi)?);
        let range = self.scalar_like(v, hi - lo)?;
        let two = self.scalar_like(v, 2.0)?;
        let zero = self.scalar_like(v, 0.0)?;
        // The distance past the near border, less whole ranges; even counts of ranges come
        // back from the near border, odd from the far one.
        let side = |imp: &mut Self, dx: Value, below: bool| -> R<Value> {
            let q = imp.bin(BinaryOp::Div, dx, range)?;
            let k = imp.un(UnaryOp::Floor, q)?;
            let kr = imp.bin(BinaryOp::Mul, k, range)?;
            let r = imp.bin(BinaryOp::Sub, dx, kr)?;
            let parity = imp.bin(BinaryOp::Mod, k, two)?;
            let even = imp.bin(BinaryOp::Equal, parity, zero)?;
            let lo_plus = imp.bin(BinaryOp::Add, lo_v, r)?;
            let hi_minus = imp.bin(BinaryOp::Sub, hi_v, r)?;
            let (e, o) = if below { (lo_plus, hi_minus) } else { (hi_minus, lo_plus) };
            imp.emit(Op::Where, &[even, e, o])
        };
        let below_dx = self.bin(BinaryOp::Sub, lo_v, v)?;
        let below = side(self, below_dx, true)?;
        let above_dx = self.bin(BinaryOp::Sub, v, hi_v)?;
        let above = side(self, above_dx, false)?;
        let is_below = self.bin(BinaryOp::Less, v, lo_v)?;
        let is_above = self.bin(BinaryOp::Greater, v, hi_v)?;
        let v = self.emit(Op::Where, &[is_above, above, v])?;
        self.emit(Op::Where, &[is_below, below, v])
    }

    fn gs_clamp(&mut self, v: Value, lo: f64, hi: f64) -> R<Value> {
        let (lo, hi) = (self.scalar_like(v, lo)?, self.scalar_like(v, hi)?);
        let v = self.bin(BinaryOp::Max, v, lo)?;
        self.bin(BinaryOp::Min, v, hi)
    }

    /// The tap at float index `i` (integral) of an axis of `d` elements.
    fn gs_tap(
        &mut self,
        i: Value,
        weight: Option<Value>,
        d: usize,
        pad: Padding,
        (lo, hi): (f64, f64),
    ) -> R<Tap> {
        let top = d as f64 - 1.0;
        let (i, inside) = match pad {
            Padding::Zeros => {
                let (zero, last) = (self.scalar_like(i, 0.0)?, self.scalar_like(i, top)?);
                let ge = self.bin(BinaryOp::GreaterEqual, i, zero)?;
                let le = self.bin(BinaryOp::LessEqual, i, last)?;
                (self.gs_clamp(i, 0.0, top)?, Some(self.bin(BinaryOp::And, ge, le)?))
            }
            Padding::Border => (self.gs_clamp(i, 0.0, top)?, None),
            Padding::Reflection => {
                // int(reflect(i)): toward zero, then kept in range.
                let r = self.gs_reflect(i, lo, hi)?;
                let zero = self.scalar_like(r, 0.0)?;
                let neg = self.bin(BinaryOp::Less, r, zero)?;
                let (c, f) = (self.un(UnaryOp::Ceil, r)?, self.un(UnaryOp::Floor, r)?);
                let t = self.emit(Op::Where, &[neg, c, f])?;
                (self.gs_clamp(t, 0.0, top)?, None)
            }
        };
        Ok(Tap { index: self.emit(Op::Cast(DType::I64), &[i])?, weight, inside })
    }

    /// Keys' cubic weights (α = −0.75) of the taps −1, 0, 1, 2 at fraction `t`.
    fn gs_cubic(&mut self, t: Value) -> R<[Value; 4]> {
        let a = -0.75;
        let c = |imp: &mut Self, v: f64| imp.scalar_like(t, v);
        let one = c(self, 1.0)?;
        let two = c(self, 2.0)?;
        // Outer taps at distance s ∈ {t + 1, 2 − t}: ((a·s − 5a)·s + 8a)·s − 4a.
        let outer = |imp: &mut Self, s: Value| -> R<Value> {
            let (av, a5, a8, a4) = (c(imp, a)?, c(imp, 5.0 * a)?, c(imp, 8.0 * a)?, c(imp, 4.0 * a)?);
            let p = imp.bin(BinaryOp::Mul, av, s)?;
            let p = imp.bin(BinaryOp::Sub, p, a5)?;
            let p = imp.bin(BinaryOp::Mul, p, s)?;
            let p = imp.bin(BinaryOp::Add, p, a8)?;
            let p = imp.bin(BinaryOp::Mul, p, s)?;
            imp.bin(BinaryOp::Sub, p, a4)
        };
        // Inner taps at distance s ∈ {t, 1 − t}: ((a + 2)·s − (a + 3))·s·s + 1.
        let inner = |imp: &mut Self, s: Value| -> R<Value> {
            let (a2, a3) = (c(imp, a + 2.0)?, c(imp, a + 3.0)?);
            let p = imp.bin(BinaryOp::Mul, a2, s)?;
            let p = imp.bin(BinaryOp::Sub, p, a3)?;
            let p = imp.bin(BinaryOp::Mul, p, s)?;
            let p = imp.bin(BinaryOp::Mul, p, s)?;
            imp.bin(BinaryOp::Add, p, one)
        };
        let t1 = self.bin(BinaryOp::Add, t, one)?;
        let omt = self.bin(BinaryOp::Sub, one, t)?;
        let tmt = self.bin(BinaryOp::Sub, two, t)?;
        Ok([outer(self, t1)?, inner(self, t)?, inner(self, omt)?, outer(self, tmt)?])
    }

    /// ONNX `GridSample` (opsets 16 and 20 mode names; see the module docs).
    pub(crate) fn grid_sample(&mut self, n: &NodeProto) -> R<()> {
        let mode = match attr_s(n, "mode").as_deref().unwrap_or("linear") {
            "nearest" => Mode::Nearest,
            "linear" | "bilinear" => Mode::Linear,
            "cubic" | "bicubic" => Mode::Cubic,
            m => return Err(self.err(format!("mode '{m}' (nearest, linear or cubic)"))),
        };
        let pad = match attr_s(n, "padding_mode").as_deref().unwrap_or("zeros") {
            "zeros" => Padding::Zeros,
            "border" => Padding::Border,
            "reflection" => Padding::Reflection,
            p => return Err(self.err(format!("padding_mode '{p}' (zeros, border or reflection)"))),
        };
        let align = attr_i(n, "align_corners", 0) != 0;
        let x = self.input_v(n, 0)?;
        let grid = self.input_v(n, 1)?;
        let (xt, gt) = (self.g.value_type(x).clone(), self.g.value_type(grid).clone());
        let (Some(xd), Some(gd)) = (xt.known_dims(), gt.known_dims()) else {
            return Err(self.unsupported("GridSample of symbolic dims"));
        };
        let r = xd.len().saturating_sub(2);
        if r == 0 || gd.len() != r + 2 || gd.last() != Some(&r) || gd.first() != xd.first() {
            return Err(self.err(format!("X {xt} and grid {gt} do not match ([N, C, D…] and [N, O…, r])")));
        }
        if !xt.dtype.is_float() || !gt.dtype.is_float() {
            return Err(self.err("X and grid must be float"));
        }
        let per_axis = match mode {
            Mode::Nearest => 1,
            Mode::Linear => 2,
            Mode::Cubic => 4,
        };
        let combos =
            (0..r).try_fold(1usize, |c, _| c.checked_mul(per_axis)).filter(|&c| c <= MAX_COMBINATIONS);
        let combos =
            combos.ok_or_else(|| self.unsupported(format!("GridSample with {per_axis}^{r} taps")))?;
        let &[nb, c, ref spatial @ ..] = xd.as_slice() else {
            return Err(self.err(format!("X {xt} must be [N, C, D…]")));
        };
        // (gd has r + 2 entries: [N, O…, r].)
        let out: Vec<Dim> = gd.iter().take(r + 1).map(|&d| Dim::Known(d)).collect();
        // The taps of each spatial axis (grid component r − 1 − i is axis i).
        let mut axes: Vec<Vec<Tap>> = vec![];
        for (i, &d) in spatial.iter().enumerate() {
            let comp = (r - 1 - i) as i64;
            let g = self.slice_last(grid, comp, comp + 1)?;
            let g = self.reshape_v(g, out.clone())?;
            let one = self.scalar_like(g, 1.0)?;
            let two = self.scalar_like(g, 2.0)?;
            let g1 = self.bin(BinaryOp::Add, g, one)?;
            let mut v = if align {
                let h = self.bin(BinaryOp::Div, g1, two)?;
                let dm = self.scalar_like(g, d as f64 - 1.0)?;
                self.bin(BinaryOp::Mul, h, dm)?
            } else {
                let dv = self.scalar_like(g, d as f64)?;
                let s = self.bin(BinaryOp::Mul, g1, dv)?;
                let s = self.bin(BinaryOp::Sub, s, one)?;
                self.bin(BinaryOp::Div, s, two)?
            };
            if mode == Mode::Nearest {
                v = self.round_half_even(v)?;
            }
            let bounds = if align { (0.0, d as f64 - 1.0) } else { (-0.5, d as f64 - 0.5) };
            v = match pad {
                Padding::Zeros => v,
                Padding::Border => {
                    let (lo, hi) = (self.scalar_like(v, bounds.0)?, self.scalar_like(v, bounds.1)?);
                    let below = self.bin(BinaryOp::Less, v, lo)?;
                    let above = self.bin(BinaryOp::Greater, v, hi)?;
                    let outside = self.bin(BinaryOp::Or, below, above)?;
                    let clamped = self.gs_clamp(v, 0.0, d as f64 - 1.0)?;
                    self.emit(Op::Where, &[outside, clamped, v])?
                }
                Padding::Reflection => self.gs_reflect(v, bounds.0, bounds.1)?,
            };
            let taps = if mode == Mode::Nearest {
                vec![self.gs_tap(v, None, d, pad, bounds)?]
            } else {
                let f = self.un(UnaryOp::Floor, v)?;
                let t = self.bin(BinaryOp::Sub, v, f)?;
                let weights = if mode == Mode::Linear {
                    let one = self.scalar_like(t, 1.0)?;
                    vec![self.bin(BinaryOp::Sub, one, t)?, t]
                } else {
                    self.gs_cubic(t)?.to_vec()
                };
                let first = if mode == Mode::Linear { 0.0 } else { -1.0 };
                let mut taps = vec![];
                for (k, w) in weights.into_iter().enumerate() {
                    let off = self.scalar_like(f, first + k as f64)?;
                    let idx = self.bin(BinaryOp::Add, f, off)?;
                    taps.push(self.gs_tap(idx, Some(w), d, pad, bounds)?);
                }
                taps
            };
            axes.push(taps);
        }
        // X as [N·S, C]; a combination's rows are n·S + Σ index_i·stride_i.
        let plane: usize = spatial.iter().product();
        let xf = self.reshape_v(x, vec![Dim::Known(nb), Dim::Known(c), Dim::Known(plane)])?;
        let xf = self.emit(Op::Transpose { perm: vec![0, 2, 1] }, &[xf])?;
        let xf = self.reshape_v(xf, vec![Dim::Known(nb * plane), Dim::Known(c)])?;
        let batch = self.emit(
            Op::Range { start: 0.0, step: plane as f64, len: Dim::Known(nb), dtype: DType::I64 },
            &[],
        )?;
        let mut bshape = vec![Dim::Known(nb)];
        bshape.extend(std::iter::repeat_n(Dim::Known(1), r));
        let batch = self.reshape_v(batch, bshape)?;
        let mut wshape = out.clone();
        wshape.push(Dim::Known(1));
        let mut acc: Option<Value> = None;
        for combo in 0..combos {
            let mut rest = combo;
            let mut row = batch;
            let mut weight: Option<Value> = None;
            let mut stride = plane;
            for (taps, &len) in axes.iter().zip(spatial) {
                // (Each axis has `per_axis` taps.)
                let tap = taps.get(rest % per_axis).ok_or_else(|| self.err("an axis with too few taps"))?;
                rest /= per_axis;
                stride /= len;
                let s = self.scalar_of(DType::I64, stride as f64)?;
                let part = self.bin(BinaryOp::Mul, tap.index, s)?;
                row = self.bin(BinaryOp::Add, row, part)?;
                let mut w = tap.weight;
                if let Some(inside) = tap.inside {
                    let m = self.emit(Op::Cast(gt.dtype), &[inside])?;
                    w = Some(match w {
                        Some(w) => self.bin(BinaryOp::Mul, w, m)?,
                        None => m,
                    });
                }
                weight = match (weight, w) {
                    (Some(a), Some(b)) => Some(self.bin(BinaryOp::Mul, a, b)?),
                    (a, b) => a.or(b),
                };
            }
            let mut y = self.emit(Op::Gather { axis: 0 }, &[xf, row])?;
            if let Some(w) = weight {
                let w = if gt.dtype == xt.dtype { w } else { self.emit(Op::Cast(xt.dtype), &[w])? };
                let w = self.reshape_v(w, wshape.clone())?;
                y = self.bin(BinaryOp::Mul, y, w)?;
            }
            acc = Some(match acc {
                Some(a) => self.bin(BinaryOp::Add, a, y)?,
                None => y,
            });
        }
        let y = acc.ok_or_else(|| self.err("no taps"))?;
        // [N, O…, C] → [N, C, O…].
        let mut perm = vec![0, r + 1];
        perm.extend(1..=r);
        let y = self.emit(Op::Transpose { perm }, &[y])?;
        self.out(n, 0, y);
        Ok(())
    }
}
