//! `Pad` (constant, edge, reflect, wrap), `CumSum` and `OneHot`, whose size operands (pads,
//! axis, depth) must be known at import time; composed from slices, concats, fills, masks and
//! reductions.

use crate::import::prelude::*;

/// The largest `D²·rest` mask `CumSum` materializes.
const MAX_CUMSUM_ELEMENTS: usize = 1 << 24;

/// A slice end for a backward walk: negative ends mean "before index 0", not "from the end".
fn back_end(e: i64) -> i64 {
    if e < 0 {
        i64::MIN
    } else {
        e
    }
}

impl Importer {
    fn known_ints(&self, name: &str, what: &str) -> R<Vec<i64>> {
        self.known_req(name, what)?.consts().ok_or_else(|| self.err(format!("{what} must be constants")))
    }

    /// `x` padded (or cropped, for negative pads) along `axis` in `mode`.
    fn pad_one(
        &mut self,
        x: Value,
        axis: usize,
        before: i64,
        after: i64,
        mode: &str,
        fill: Value,
    ) -> R<Value> {
        let mut x = x;
        if before < 0 || after < 0 {
            let n = self
                .at(&self.vt(x).shape, axis)?
                .known()
                .ok_or_else(|| self.err("cropped axis must be known"))? as i64;
            x = self.slice_axis_v(x, axis, (-before).max(0), n - (-after).max(0), 1)?;
        }
        let (b, a) = (before.max(0), after.max(0));
        if b == 0 && a == 0 {
            return Ok(x);
        }
        let t = self.vt(x);
        let n =
            self.at(&t.shape, axis)?.known().ok_or_else(|| self.err("padded axis must have a known size"))?
                as i64;
        let edge = |s: &mut Self, k: i64, first: bool| -> R<Value> {
            let e =
                if first { s.slice_axis_v(x, axis, 0, 1, 1)? } else { s.slice_axis_v(x, axis, n - 1, n, 1)? };
            let mut shape = t.shape.to_vec();
            *s.at_mut(&mut shape, axis)? = Dim::Known(k as usize);
            s.emit(Op::Expand { shape }, &[e])
        };
        let part = |s: &mut Self, k: i64, first: bool| -> R<Value> {
            match mode {
                "constant" => {
                    let mut shape = t.shape.to_vec();
                    *s.at_mut(&mut shape, axis)? = Dim::Known(k as usize);
                    s.emit(Op::Expand { shape }, &[fill])
                }
                "edge" if n > 0 => edge(s, k, first),
                "reflect" if k < n => {
                    if first {
                        s.slice_axis_v(x, axis, k, 0, -1)
                    } else {
                        s.slice_axis_v(x, axis, n - 2, back_end(n - 2 - k), -1)
                    }
                }
                "wrap" if k <= n => {
                    if first {
                        s.slice_axis_v(x, axis, n - k, n, 1)
                    } else {
                        s.slice_axis_v(x, axis, 0, k, 1)
                    }
                }
                m => Err(
                    s.unsupported(format!("Pad mode '{m}' by {k} on an axis of size {n} is not supported"))
                ),
            }
        };
        let mut parts = vec![];
        if b > 0 {
            parts.push(part(self, b, true)?);
        }
        parts.push(x);
        if a > 0 {
            parts.push(part(self, a, false)?);
        }
        self.emit(Op::Concat { axis: axis as i64 }, &parts)
    }

    pub(crate) fn pad(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
        let pads = match (attr_ints(n, "pads"), inp(n, 1)) {
            (Some(p), _) => p,
            (None, Some(name)) => self.known_ints(name, "pads")?,
            (None, None) => return Err(self.err("missing pads")),
        };
        let axes: Vec<usize> = match inp(n, 3) {
            Some(name) => {
                let a = self.known_ints(name, "axes")?;
                a.iter().map(|&v| self.axis_of(v, t.rank())).collect::<R<_>>()?
            }
            None => (0..t.rank()).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(self.err(format!("pads have {} entries for {} axes", pads.len(), axes.len())));
        }
        let fill = match inp(n, 2) {
            Some(name) => {
                let v = self.value(name)?;
                let v = self.cast_to(v, t.dtype)?;
                self.reshape_v(v, vec![])?
            }
            None => {
                let value = attr_f(n, "value", 0.0) as f64;
                self.scalar_of(t.dtype, value)?
            }
        };
        // `pads` is `[begins…, ends…]`, one of each per axis (checked above).
        let (begins, ends) = pads.split_at(axes.len());
        let mut y = x;
        for ((&a, &b), &e) in axes.iter().zip(begins).zip(ends) {
            y = self.pad_one(y, a, b, e, &mode, fill)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `CumSum`: a masked sum over a `[…, D, D]` broadcast (inclusive/exclusive, forward/reverse).
    pub(crate) fn cumsum(&mut self, n: &NodeProto) -> R<()> {
        self.cumulative(n, ReduceOp::Sum)
    }

    /// `CumProd`: the same with a masked product.
    pub(crate) fn cumprod(&mut self, n: &NodeProto) -> R<()> {
        self.cumulative(n, ReduceOp::Prod)
    }

    fn cumulative(&mut self, n: &NodeProto, red: ReduceOp) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let axis = self.known_ints(&self.in_req(n, 1)?, "axis")?;
        let [axis] = axis[..] else { return Err(self.err("axis must be a scalar")) };
        let a = self.axis_of(axis, t.rank())?;
        let d = self
            .at(&t.shape, a)?
            .known()
            .ok_or_else(|| self.unsupported("a cumulative op over a symbolic axis"))?;
        let total = t.known_dims().map(|v| v.iter().product::<usize>()).unwrap_or(usize::MAX);
        if total.saturating_mul(d) > MAX_CUMSUM_ELEMENTS {
            return Err(self.unsupported(format!(
                "{} of {total} elements over an axis of {d} needs a mask over {MAX_CUMSUM_ELEMENTS} elements",
                n.op_type()
            )));
        }
        let (excl, rev) = (attr_i(n, "exclusive", 0) != 0, attr_i(n, "reverse", 0) != 0);
        // Move the axis last, then y[…, i] = Σ_j m[i, j]·x[…, j].
        let r = t.rank();
        let mut perm: Vec<usize> = (0..r).filter(|&k| k != a).collect();
        perm.push(a);
        let xt = if a + 1 == r { x } else { self.emit(Op::Transpose { perm: perm.clone() }, &[x])? };
        let mut shape = self.vt(xt).shape.to_vec();
        shape.insert(r - 1, Dim::Known(1));
        let x4 = self.reshape_v(xt, shape)?;
        let i = self.iota_along(Dim::Known(d), 0, 2)?;
        let j = self.iota_along(Dim::Known(d), 1, 2)?;
        let op = match (excl, rev) {
            (false, false) => BinaryOp::LessEqual,
            (true, false) => BinaryOp::Less,
            (false, true) => BinaryOp::GreaterEqual,
            (true, true) => BinaryOp::Greater,
        };
        let m = self.bin(op, j, i)?;
        let neutral = if red == ReduceOp::Prod { 1.0 } else { 0.0 };
        let z = self.scalar_of(t.dtype, neutral)?;
        let sel = self.emit(Op::Where, &[m, x4, z])?;
        let mut y = self.reduce_v(red, sel, vec![-1], false)?;
        if a + 1 != r {
            let inv = self.inverse_perm(&perm)?;
            y = self.emit(Op::Transpose { perm: inv }, &[y])?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `OneHot(indices, depth, [off, on])`: `on` where the index equals the position.
    pub(crate) fn one_hot(&mut self, n: &NodeProto) -> R<()> {
        let idx = self.input_v(n, 0)?;
        let it = self.vt(idx);
        let depth_name = self.in_req(n, 1)?;
        let depth = match self.const_tensor(&depth_name) {
            Some(t) if t.len() == 1 => t.get_f64(0),
            _ => self.known_ints(&depth_name, "depth")?.first().copied().unwrap_or(0) as f64,
        };
        if !(1.0..1e9).contains(&depth) {
            return Err(self.err(format!("depth {depth} is not a positive size")));
        }
        let depth = depth as usize;
        let r = it.rank() + 1;
        let a = self.axis_of(attr_i(n, "axis", -1), r)?;
        let idx = self.cast_to(idx, DType::I64)?;
        let z = self.scalar_of(DType::I64, 0.0)?;
        let dv = self.scalar_of(DType::I64, depth as f64)?;
        let neg = self.bin(BinaryOp::Less, idx, z)?;
        let wrapped = self.bin(BinaryOp::Add, idx, dv)?;
        let idx = self.emit(Op::Where, &[neg, wrapped, idx])?;
        let mut shape = it.shape.to_vec();
        shape.insert(a, Dim::Known(1));
        let idx = self.reshape_v(idx, shape)?;
        let pos = self.iota_along(Dim::Known(depth), a, r)?;
        let eq = self.bin(BinaryOp::Equal, idx, pos)?;
        let values = self.input_v(n, 2)?;
        let (i0, i1) = (self.scalar_of(DType::I64, 0.0)?, self.scalar_of(DType::I64, 1.0)?);
        let off = self.emit(Op::Gather { axis: 0 }, &[values, i0])?;
        let on = self.emit(Op::Gather { axis: 0 }, &[values, i1])?;
        let y = self.emit(Op::Where, &[eq, on, off])?;
        self.out(n, 0, y);
        Ok(())
    }
}
