//! ONNX `LinearAttention`: the recurrence over a `[d_k, d_v]` state per key head, unrolled
//! over the (static) sequence as ONNX's reference computes it, in f32.
//!
//! Per step `t`: `S ← S·exp(g_t)` (gated rules), `v_t ← β_t·(v_t − k_tᵀS)` (delta rules),
//! `S ← S + k_t ⊗ v_t`, `o_t = scale · q_t S` (key-head states repeated for grouped query
//! heads). `present_state` is the final `S`.

use crate::import::prelude::*;

/// The most sequence steps unrolled (each is a handful of IR ops).
const MAX_STEPS: usize = 4096;

impl Importer {
    /// A 3-D `[B, T, H·D]` operand as f32 `[B, H, T, D]`; `d` is `D` when the last axis is
    /// `H·1` per head scalars (`decay`/`beta` of one value per head) or `None` to derive it.
    fn la_heads(&mut self, x: Value, heads: usize) -> R<Value> {
        let t = self.g.value_type(x).clone();
        let [b, steps, hidden] = t.shape.as_slice() else {
            return Err(self.err(format!("operands must be [B, T, H·D], got {t}")));
        };
        let d = hidden
            .div_exact(&Dim::Known(heads))
            .ok_or_else(|| self.err(format!("last axis of {t} is not a multiple of {heads} heads")))?;
        let x = if t.dtype == DType::F32 { x } else { self.emit(Op::Cast(DType::F32), &[x])? };
        let x = self.reshape_v(x, vec![b.clone(), steps.clone(), Dim::Known(heads), d])?;
        self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[x])
    }

    /// Step `i` of `[B, H, T, D]`: `[B, H, 1, D]`.
    fn la_step(&mut self, x: Value, i: usize) -> R<Value> {
        let spec = SliceSpec {
            axes: vec![2],
            starts: vec![Bound::Const(i as i64)],
            ends: vec![Bound::Const(i as i64 + 1)],
            steps: vec![1],
        };
        self.emit(Op::Slice(spec), &[x])
    }

    /// ONNX `LinearAttention` (`update_rule` `linear`, `gated`, `delta`, `gated_delta`).
    pub(crate) fn linear_attention(&mut self, n: &NodeProto) -> R<()> {
        let rule = attr_s(n, "update_rule").unwrap_or_else(|| "gated_delta".into());
        let (gating, delta) = match rule.as_str() {
            "linear" => (false, false),
            "gated" => (true, false),
            "delta" => (false, true),
            "gated_delta" => (true, true),
            r => return Err(self.err(format!("update_rule '{r}' (linear, gated, delta or gated_delta)"))),
        };
        let heads = |name: &str| usize::try_from(attr_i(n, name, 0)).ok().filter(|&h| h > 0);
        let (Some(hq), Some(hk)) = (heads("q_num_heads"), heads("kv_num_heads")) else {
            return Err(self.err("q_num_heads and kv_num_heads must be positive"));
        };
        if hq % hk != 0 {
            return Err(self.err(format!("q_num_heads {hq} is not a multiple of kv_num_heads {hk}")));
        }
        let (decay_in, beta_in) = (inp(n, 4), inp(n, 5));
        if gating != decay_in.is_some() || delta != beta_in.is_some() {
            return Err(self.err(format!("update_rule '{rule}' takes decay: {gating}, beta: {delta}")));
        }
        let query = self.input_v(n, 0)?;
        let out_dt = self.g.value_type(query).dtype;
        let q = self.la_heads(query, hq)?;
        let k = self.input_v(n, 1)?;
        let k = self.la_heads(k, hk)?;
        let v = self.input_v(n, 2)?;
        let v = self.la_heads(v, hk)?;
        let (qt, vt) = (self.g.value_type(q).clone(), self.g.value_type(v).clone());
        let (b, steps, dk, dv) =
            (self.at(&qt.shape, 0)?, self.at(&qt.shape, 2)?, self.at(&qt.shape, 3)?, self.at(&vt.shape, 3)?);
        let steps = steps.known().filter(|&s| s <= MAX_STEPS).ok_or_else(|| {
            self.unsupported(format!("LinearAttention over {steps} steps (a known length ≤ {MAX_STEPS})"))
        })?;
        let nk = dk.known().ok_or_else(|| self.err("the key head size must be known"))?;
        let state_shape = vec![b.clone(), Dim::Known(hk), dk.clone(), dv.clone()];
        let (mut state, state_dt) = match inp(n, 3) {
            Some(p) => {
                let p = self.value(p)?;
                let pt = self.g.value_type(p).clone();
                if pt.shape.as_slice() != state_shape.as_slice() {
                    return Err(
                        self.err(format!("past_state is {pt}, expected [{}]", dims_str(&state_shape)))
                    );
                }
                (if pt.dtype == DType::F32 { p } else { self.emit(Op::Cast(DType::F32), &[p])? }, pt.dtype)
            }
            None => (self.emit(Op::Full { shape: state_shape, value: 0.0, dtype: DType::F32 }, &[])?, out_dt),
        };
        // decay: one value per head ([B, Hkv, T, 1]) or per key dim ([B, Hkv, T, d_k]);
        // beta: per head or one for all ([B, Hkv or 1, T, 1]).
        let per_head = |imp: &mut Self, name: &str, allowed: &[usize]| -> R<Value> {
            let x = imp.value(name)?;
            let last = imp.g.value_type(x).shape.last().and_then(Dim::known);
            match last {
                Some(l) if allowed.contains(&l) => imp.la_heads(x, l),
                Some(l) if l == hk * nk && allowed.len() == 1 => imp.la_heads(x, hk),
                _ => Err(
                    imp.err(format!("'{name}' must have {allowed:?} (or kv_num_heads·d_k) on its last axis"))
                ),
            }
        };
        let decay = match decay_in {
            Some(d) => Some(per_head(self, d, &[hk])?),
            None => None,
        };
        let beta = match beta_in {
            Some(bn) => Some(per_head(self, bn, &[hk, 1])?),
            None => None,
        };
        let scale = match n.attr("scale").and_then(|a| a.as_float()).filter(|&s| s != 0.0) {
            Some(s) => f64::from(s),
            None => 1.0 / (nk as f64).sqrt(),
        };
        let scale = self.scalar_of(DType::F32, scale)?;
        let group = hq / hk;
        let mut outs = Vec::with_capacity(steps);
        for i in 0..steps {
            let (q_t, k_t, mut v_t) = (self.la_step(q, i)?, self.la_step(k, i)?, self.la_step(v, i)?);
            if let Some(d) = decay {
                // [B, H, 1, d_k | 1] → [B, H, d_k | 1, 1]: broadcast over d_v.
                let g = self.la_step(d, i)?;
                let g = self.emit(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[g])?;
                let g = self.un(UnaryOp::Exp, g)?;
                state = self.bin(BinaryOp::Mul, state, g)?;
            }
            if let Some(bt) = beta {
                let retrieved = self.emit(Op::MatMul, &[k_t, state])?;
                let diff = self.bin(BinaryOp::Sub, v_t, retrieved)?;
                let bt = self.la_step(bt, i)?;
                v_t = self.bin(BinaryOp::Mul, bt, diff)?;
            }
            let kc = self.emit(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[k_t])?;
            let outer = self.emit(Op::MatMul, &[kc, v_t])?;
            state = self.bin(BinaryOp::Add, state, outer)?;
            let read = if group == 1 {
                state
            } else {
                let wide = |g: Dim| vec![b.clone(), Dim::Known(hk), g, dk.clone(), dv.clone()];
                let s = self.reshape_v(state, wide(Dim::Known(1)))?;
                let s = self.emit(Op::Expand { shape: wide(Dim::Known(group)) }, &[s])?;
                self.reshape_v(s, vec![b.clone(), Dim::Known(hq), dk.clone(), dv.clone()])?
            };
            let o = self.emit(Op::MatMul, &[q_t, read])?;
            outs.push(self.bin(BinaryOp::Mul, o, scale)?);
        }
        let o = self.concat_or_one(outs, 2)?;
        let o = self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[o])?;
        let o = self.reshape_v(o, vec![b, Dim::Known(steps), Dim::Known(hq).mul(&dv)])?;
        let o = if out_dt == DType::F32 { o } else { self.emit(Op::Cast(out_dt), &[o])? };
        self.out(n, 0, o);
        let present = if state_dt == DType::F32 { state } else { self.emit(Op::Cast(state_dt), &[state])? };
        self.out(n, 1, present);
        Ok(())
    }
}

fn dims_str(d: &[Dim]) -> String {
    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
