//! `RNN`, `GRU` and `LSTM`, unrolled over the (static) sequence: every time step is a few
//! matmuls and elementwise gates, exactly the ONNX cell equations (default activations; gate
//! orders `zrh` for GRU and `iofc` for LSTM; `linear_before_reset`; peepholes; forward,
//! reverse and bidirectional; `layout` 0 and 1; forward `sequence_lens` masking).

use crate::import::prelude::*;

/// Which cell.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    Rnn,
    Gru,
    Lstm,
}

/// The largest sequence length that is unrolled.
const MAX_STEPS: usize = 4096;

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
}

impl Importer {
    /// `x[:, k·h .. (k+1)·h]` of a `[B, G·H]` value.
    fn gate(&mut self, x: Value, k: usize, h: usize) -> R<Value> {
        self.slice_axis_v(x, 1, (k * h) as i64, ((k + 1) * h) as i64, 1)
    }

    /// `[dirs, …]` parameter `i`, direction `d`, as `[…]` (`None` when absent).
    fn dir_param(&mut self, n: &NodeProto, i: usize, d: usize, dt: DType) -> R<Option<Value>> {
        let Some(name) = inp(n, i) else { return Ok(None) };
        let v = self.value(name)?;
        let v = self.cast_to(v, dt)?;
        let t = self.vt(v);
        let s = self.slice_axis_v(v, 0, d as i64, d as i64 + 1, 1)?;
        Ok(Some(self.reshape_v(s, self.part(&t.shape, 1..)?.to_vec())?))
    }

    pub(crate) fn recurrent(&mut self, n: &NodeProto, cell: Cell) -> R<()> {
        if attr_ints(n, "activations").is_some()
            || n.attr("activations").is_some_and(|a| !a.strings.is_empty())
        {
            return Err(self.unsupported("custom activations are not supported"));
        }
        if n.attr("clip").is_some() {
            return Err(self.unsupported("clip is not supported"));
        }
        let x = self.input_v(n, 0)?;
        let xt = self.vt(x);
        self.need_float(&xt)?;
        let dt = xt.dtype;
        let layout = attr_i(n, "layout", 0);
        let x = if layout == 1 { self.emit(Op::Transpose { perm: vec![1, 0, 2] }, &[x])? } else { x };
        let Some(&[steps, b, input_size]) = self.vt(x).known_dims().as_deref() else {
            return Err(self.err(format!("X must be 3-D with known dims, got {xt}")));
        };
        if steps > MAX_STEPS {
            return Err(
                self.unsupported(format!("a sequence of {steps} steps (over {MAX_STEPS}) is not unrolled"))
            );
        }
        let h = usize::try_from(attr_i(n, "hidden_size", 0)).ok().filter(|&h| h > 0);
        let h = h.ok_or_else(|| self.err("hidden_size must be a positive integer"))?;
        let dirs: Vec<bool> = match attr_s(n, "direction").as_deref().unwrap_or("forward") {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            o => return Err(self.err(format!("unknown direction '{o}'"))),
        };
        let lens = match inp(n, 4) {
            Some(name) => {
                if dirs.iter().any(|&r| r) {
                    return Err(self.unsupported("sequence_lens with a reverse direction is not supported"));
                }
                let l = self.value(name)?;
                let l = self.cast_to(l, DType::I64)?;
                Some(self.reshape_v(l, vec![Dim::Known(b), Dim::Known(1)])?)
            }
            None => None,
        };
        let g = cell.gates();
        let lbr = attr_i(n, "linear_before_reset", 0) != 0;
        let zeros = |s: &mut Self| {
            s.emit(Op::Full { shape: vec![Dim::Known(b), Dim::Known(h)], value: 0.0, dtype: dt }, &[])
        };
        let (mut ys, mut yh, mut yc) = (vec![], vec![], vec![]);
        for (d, &rev) in dirs.iter().enumerate() {
            let w = self.dir_param(n, 1, d, dt)?.ok_or_else(|| self.err("missing W"))?;
            let r = self.dir_param(n, 2, d, dt)?.ok_or_else(|| self.err("missing R"))?;
            let wt = self.emit(Op::Transpose { perm: vec![1, 0] }, &[w])?; // [I, G·H]
            let rt = self.emit(Op::Transpose { perm: vec![1, 0] }, &[r])?; // [H, G·H]
            let bias = self.dir_param(n, 3, d, dt)?; // [2·G·H]
            let (wb, rb) = match bias {
                Some(bv) => {
                    let wb = self.slice_axis_v(bv, 0, 0, (g * h) as i64, 1)?;
                    let rb = self.slice_axis_v(bv, 0, (g * h) as i64, (2 * g * h) as i64, 1)?;
                    (Some(wb), Some(rb))
                }
                None => (None, None),
            };
            let mut hs = match self.dir_param(n, 5, d, dt)? {
                Some(v) => v,
                None => zeros(self)?,
            };
            let mut cs = match (cell, self.dir_param(n, 6, d, dt)?) {
                (Cell::Lstm, Some(v)) => v,
                _ => zeros(self)?,
            };
            let peep = if cell == Cell::Lstm { self.dir_param(n, 7, d, dt)? } else { None };
            let mut outs: Vec<Option<Value>> = vec![None; steps];
            for k in 0..steps {
                let t = if rev { steps - 1 - k } else { k };
                let xs = self.slice_axis_v(x, 0, t as i64, t as i64 + 1, 1)?;
                let xs = self.reshape_v(xs, vec![Dim::Known(b), Dim::Known(input_size)])?;
                let mut xw = self.emit(Op::MatMul, &[xs, wt])?;
                if let Some(wb) = wb {
                    xw = self.bin(BinaryOp::Add, xw, wb)?;
                }
                let mut hr = self.emit(Op::MatMul, &[hs, rt])?;
                if let Some(rb) = rb {
                    hr = self.bin(BinaryOp::Add, hr, rb)?;
                }
                let (h_new, c_new) = self.cell_step(cell, xw, hr, hs, cs, h, lbr, (rt, rb), peep)?;
                let (h_new, c_new) = match lens {
                    Some(l) => {
                        let tv = self.scalar_of(DType::I64, t as f64)?;
                        let valid = self.bin(BinaryOp::Less, tv, l)?; // [B, 1]
                        let hk = self.emit(Op::Where, &[valid, h_new, hs])?;
                        let ck = self.emit(Op::Where, &[valid, c_new, cs])?;
                        let z = self.scalar_of(dt, 0.0)?;
                        let out = self.emit(Op::Where, &[valid, h_new, z])?;
                        *self.at_mut(&mut outs, t)? = Some(out);
                        (hk, ck)
                    }
                    None => {
                        *self.at_mut(&mut outs, t)? = Some(h_new);
                        (h_new, c_new)
                    }
                };
                hs = h_new;
                cs = c_new;
            }
            let one = |s: &mut Self, v: Value| s.reshape_v(v, [1, b, h].map(Dim::Known).to_vec());
            let parts: Vec<Value> = outs
                .into_iter()
                .map(|o| {
                    let o = o.ok_or_else(|| self.err("a step without an output"))?;
                    one(self, o)
                })
                .collect::<R<_>>()?;
            let y = self.concat_or_one(parts, 0)?; // [T, B, H]
            ys.push(self.reshape_v(y, [steps, 1, b, h].map(Dim::Known).to_vec())?);
            yh.push(one(self, hs)?);
            yc.push(one(self, cs)?);
        }
        let cat = |s: &mut Self, v: Vec<Value>, axis: i64| -> R<Value> { s.concat_or_one(v, axis) };
        let mut y = cat(self, ys, 1)?; // [T, dirs, B, H]
        let mut yh = cat(self, yh, 0)?; // [dirs, B, H]
        let mut yc = cat(self, yc, 0)?;
        if layout == 1 {
            y = self.emit(Op::Transpose { perm: vec![2, 0, 1, 3] }, &[y])?;
            yh = self.emit(Op::Transpose { perm: vec![1, 0, 2] }, &[yh])?;
            yc = self.emit(Op::Transpose { perm: vec![1, 0, 2] }, &[yc])?;
        }
        self.out(n, 0, y);
        self.out(n, 1, yh);
        if cell == Cell::Lstm {
            self.out(n, 2, yc);
        }
        Ok(())
    }

    /// One step of the cell: the new hidden (and, for LSTM, cell) state.
    #[allow(clippy::too_many_arguments)]
    fn cell_step(
        &mut self,
        cell: Cell,
        xw: Value,
        hr: Value,
        hs: Value,
        cs: Value,
        h: usize,
        lbr: bool,
        (rt, rb): (Value, Option<Value>),
        peep: Option<Value>,
    ) -> R<(Value, Value)> {
        use BinaryOp::{Add, Mul, Sub};
        let sig = UnaryOp::Sigmoid;
        match cell {
            Cell::Rnn => {
                let s = self.bin(Add, xw, hr)?;
                Ok((self.un(UnaryOp::Tanh, s)?, cs))
            }
            Cell::Gru => {
                let (xz, xr, xh) = (self.gate(xw, 0, h)?, self.gate(xw, 1, h)?, self.gate(xw, 2, h)?);
                let (hz, hrr) = (self.gate(hr, 0, h)?, self.gate(hr, 1, h)?);
                let z = self.bin(Add, xz, hz)?;
                let z = self.un(sig, z)?;
                let r = self.bin(Add, xr, hrr)?;
                let r = self.un(sig, r)?;
                let hh = if lbr {
                    let hrh = self.gate(hr, 2, h)?;
                    self.bin(Mul, r, hrh)?
                } else {
                    let rh = self.bin(Mul, r, hs)?;
                    let rth = self.gate(rt, 2, h)?;
                    let mut v = self.emit(Op::MatMul, &[rh, rth])?;
                    if let Some(rb) = rb {
                        let rbh = self.slice_axis_v(rb, 0, (2 * h) as i64, (3 * h) as i64, 1)?;
                        v = self.bin(Add, v, rbh)?;
                    }
                    v
                };
                let hh = self.bin(Add, xh, hh)?;
                let hh = self.un(UnaryOp::Tanh, hh)?;
                let one = self.scalar_like(z, 1.0)?;
                let omz = self.bin(Sub, one, z)?;
                let a = self.bin(Mul, omz, hh)?;
                let bz = self.bin(Mul, z, hs)?;
                Ok((self.bin(Add, a, bz)?, cs))
            }
            Cell::Lstm => {
                let s = self.bin(Add, xw, hr)?;
                let (si, so, sf, sc) =
                    (self.gate(s, 0, h)?, self.gate(s, 1, h)?, self.gate(s, 2, h)?, self.gate(s, 3, h)?);
                let p = |me: &mut Self, k: usize| -> R<Option<Value>> {
                    match peep {
                        Some(pv) => {
                            Ok(Some(me.slice_axis_v(pv, 0, (k * h) as i64, ((k + 1) * h) as i64, 1)?))
                        }
                        None => Ok(None),
                    }
                };
                let with_peep = |me: &mut Self, v: Value, k: usize, c: Value| -> R<Value> {
                    match p(me, k)? {
                        Some(pk) => {
                            let pc = me.bin(Mul, pk, c)?;
                            me.bin(Add, v, pc)
                        }
                        None => Ok(v),
                    }
                };
                let i = with_peep(self, si, 0, cs)?;
                let i = self.un(sig, i)?;
                let f = with_peep(self, sf, 2, cs)?;
                let f = self.un(sig, f)?;
                let ct = self.un(UnaryOp::Tanh, sc)?;
                let fc = self.bin(Mul, f, cs)?;
                let ic = self.bin(Mul, i, ct)?;
                let c = self.bin(Add, fc, ic)?;
                let o = with_peep(self, so, 1, c)?;
                let o = self.un(sig, o)?;
                let tc = self.un(UnaryOp::Tanh, c)?;
                Ok((self.bin(Mul, o, tc)?, c))
            }
        }
    }
}
