//! ONNX `Attention` (opsets 23–24) as an `Sdpa` block, with what ONNX adds around the
//! product: past/present key-values (a concat before the block), `nonpad_kv_seqlen` (a
//! padding mask from the lengths), causal and sliding-window masks aligned at the cache
//! offset, `softcap` (the block's attribute), the fully-masked-row guard, and the
//! `qk_matmul_output` output (computed beside the block in primitive ops).

use crate::import::prelude::*;

/// What restricts which keys a query sees, besides `attn_mask`: the causal frontier and the
/// sliding window, both aligned at `offset + i` for query `i`.
#[derive(Clone, Copy)]
struct Frontier {
    causal: bool,
    /// `left_window_size` (keys at most this far before the query), when ≥ 0.
    left: Option<i64>,
    /// `right_window_size` (keys at most this far after the query), when ≥ 0.
    right: Option<i64>,
}

impl Frontier {
    fn is_none(&self) -> bool {
        !self.causal && self.left.is_none() && self.right.is_none()
    }

    /// Whether query position `p` (absolute) may see key `j`.
    fn allows(&self, p: i64, j: i64) -> bool {
        (!self.causal || j <= p)
            && self.left.is_none_or(|l| p - j <= l)
            && self.right.is_none_or(|r| j - p <= r)
    }
}

impl Importer {
    /// The `attn_mask` operand of `Attention`, padded on the last axis to the key length
    /// `tk` (with false, or −inf when additive) when it is shorter, as ONNX allows.
    fn attention_mask(&mut self, name: &str, tk: &Dim) -> R<Value> {
        let m = self.value(name)?;
        let mt = self.g.value_type(m).clone();
        let (Some(have), Some(want)) = (mt.shape.last().and_then(Dim::known), tk.known()) else {
            return Ok(m);
        };
        if have >= want {
            return Ok(m);
        }
        let mut shape = mt.shape.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = Dim::Known(want - have);
        }
        let value = if mt.dtype == DType::Bool { 0.0 } else { f64::NEG_INFINITY };
        let pad = self.emit(Op::Full { shape, value, dtype: mt.dtype }, &[])?;
        self.emit(Op::Concat { axis: -1 }, &[m, pad])
    }

    /// Q, K or V as `[B, H, T, D]` (3-D inputs are split into `heads` heads).
    fn attention_heads(
        &mut self,
        n: &NodeProto,
        i: usize,
        heads_attr: &str,
    ) -> R<(Value, Option<TensorType>)> {
        let name = self.in_req(n, i)?;
        let t = self.ty(&name)?;
        let v = self.value(&name)?;
        match t.rank() {
            4 => Ok((v, None)),
            3 => {
                let h = usize::try_from(attr_i(n, heads_attr, 0))
                    .ok()
                    .filter(|&h| h > 0)
                    .ok_or_else(|| self.err(format!("3-D inputs need a positive {heads_attr}")))?;
                let [b, s, hidden] = t.shape.as_slice() else {
                    return Err(self.err(format!("inputs must have 3 or 4 axes, got {}", t.rank())));
                };
                let hd = hidden
                    .div_exact(&Dim::Known(h))
                    .ok_or_else(|| self.err("hidden size is not a multiple of the heads"))?;
                let shape = vec![b.clone(), s.clone(), Dim::Known(h), hd];
                let v = self.reshape_v(v, shape)?;
                Ok((self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[v])?, Some(t)))
            }
            r => Err(self.err(format!("inputs must have 3 or 4 axes, got {r}"))),
        }
    }

    /// Which keys each query may see, as a boolean mask, or `None` when every key is
    /// allowed: the frontier at the static cache offset `offset` (a constant `[tq, tk]`),
    /// or, with `nonpad` (`[B]` valid key counts), at `nonpad[b] − tq` and with the keys
    /// past `nonpad[b]` masked (`[B, 1, tq, tk]`, computed from the lengths at run time).
    fn attention_allowed(
        &mut self,
        f: Frontier,
        nonpad: Option<Value>,
        offset: usize,
        (tq, tk): (&Dim, &Dim),
    ) -> R<Option<Value>> {
        let Some(nonpad) = nonpad else {
            if f.is_none() {
                return Ok(None);
            }
            let (Some(nq), Some(nk)) = (tq.known(), tk.known()) else {
                return Err(self.unsupported(format!(
                    "a causal or windowed Attention with query length {tq} and key length {tk} (needs known lengths)"
                )));
            };
            let cells = nq.checked_mul(nk).filter(|&c| c <= 1 << 24).ok_or_else(|| {
                self.unsupported(format!("an Attention mask of {nq}×{nk} (at most 2^24 cells)"))
            })?;
            let mut allowed = Vec::with_capacity(cells);
            for i in 0..nq {
                for j in 0..nk {
                    allowed.push(f64::from(u8::from(f.allows((offset + i) as i64, j as i64))));
                }
            }
            let c = HostTensor::from_f64(DType::Bool, vec![nq, nk], &allowed);
            return Ok(Some(self.emit(Op::Constant(c), &[])?));
        };
        let iota = |imp: &mut Self, len: &Dim, shape: Vec<Dim>| -> R<Value> {
            let r =
                imp.emit(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])?;
            imp.reshape_v(r, shape)
        };
        let one = Dim::Known(1);
        let j = iota(self, tk, vec![one.clone(), one.clone(), one.clone(), tk.clone()])?;
        let lens = self.emit(Op::Cast(DType::I64), &[nonpad])?;
        let b = self.g.value_type(lens).shape.first().cloned().unwrap_or(Dim::Known(1));
        let lens = self.reshape_v(lens, vec![b, one.clone(), one.clone(), one.clone()])?;
        let mut allowed = self.bin(BinaryOp::Less, j, lens)?;
        if !f.is_none() {
            let i = iota(self, tq, vec![one.clone(), one.clone(), tq.clone(), one])?;
            let nq = tq
                .known()
                .ok_or_else(|| self.unsupported("a causal Attention with a symbolic query length"))?;
            let nq = self.scalar_of(DType::I64, nq as f64)?;
            let off = self.bin(BinaryOp::Sub, lens, nq)?;
            let p = self.bin(BinaryOp::Add, i, off)?;
            if f.causal {
                let c = self.bin(BinaryOp::LessEqual, j, p)?;
                allowed = self.bin(BinaryOp::And, allowed, c)?;
            }
            for (bound, ahead) in [(f.left, false), (f.right, true)] {
                let Some(w) = bound else { continue };
                let d = if ahead { self.bin(BinaryOp::Sub, j, p)? } else { self.bin(BinaryOp::Sub, p, j)? };
                let w = self.scalar_of(DType::I64, w as f64)?;
                let c = self.bin(BinaryOp::LessEqual, d, w)?;
                allowed = self.bin(BinaryOp::And, allowed, c)?;
            }
        }
        Ok(Some(allowed))
    }

    /// `mask` restricted to `allowed`: `mask ∧ allowed` (boolean) or `where(allowed, mask,
    /// −inf)` (additive); either alone when the other is absent.
    fn attention_combine(&mut self, mask: Option<Value>, allowed: Option<Value>) -> R<Option<Value>> {
        Ok(match (mask, allowed) {
            (m, None) => m,
            (None, a) => a,
            (Some(m), Some(a)) if self.g.value_type(m).dtype == DType::Bool => {
                Some(self.bin(BinaryOp::And, m, a)?)
            }
            (Some(m), Some(a)) => {
                let ninf = self.scalar_like(m, f64::NEG_INFINITY)?;
                Some(self.emit(Op::Where, &[a, m, ninf])?)
            }
        })
    }

    /// The mask as an additive bias of dtype `dt` (0 where allowed, −inf where not).
    fn attention_bias(&mut self, mask: Value, dt: DType) -> R<Value> {
        if self.g.value_type(mask).dtype != DType::Bool {
            return Ok(mask);
        }
        let zero = self.scalar_of(dt, 0.0)?;
        let ninf = self.scalar_of(dt, f64::NEG_INFINITY)?;
        self.emit(Op::Where, &[mask, zero, ninf])
    }

    /// Zeroes the rows of `x` (`[…, tq, ·]`) whose keys are all masked (ONNX decides this on
    /// the additive bias), as ONNX does for `Y` and the probabilities.
    fn attention_guard(&mut self, x: Value, mask: Value) -> R<Value> {
        let dt = self.g.value_type(x).dtype;
        let md = self.g.value_type(mask).dtype;
        let live = if md == DType::Bool {
            let mf = self.emit(Op::Cast(dt), &[mask])?;
            let any = self.emit(Op::Reduce { op: ReduceOp::Max, axes: vec![-1], keepdims: true }, &[mf])?;
            self.emit(Op::Cast(DType::Bool), &[any])?
        } else {
            let top = self.emit(Op::Reduce { op: ReduceOp::Max, axes: vec![-1], keepdims: true }, &[mask])?;
            let ninf = self.scalar_of(md, f64::NEG_INFINITY)?;
            self.bin(BinaryOp::Greater, top, ninf)?
        };
        let zero = self.scalar_of(dt, 0.0)?;
        self.emit(Op::Where, &[live, x, zero])
    }

    /// ONNX `Attention` (opsets 23–24) as an `Sdpa` block (see the module docs).
    pub(crate) fn attention(&mut self, n: &NodeProto) -> R<()> {
        let softcap = attr_f(n, "softcap", 0.0);
        if !softcap.is_finite() {
            return Err(self.unsupported(format!("Attention with softcap {softcap}")));
        }
        let softcap = (softcap > 0.0).then_some(softcap);
        let mode = attr_i(n, "qk_matmul_output_mode", 0);
        if !(0..=3).contains(&mode) {
            return Err(self.err(format!("qk_matmul_output_mode {mode} (0 to 3)")));
        }
        let window = |name: &str| match attr_i(n, name, -1) {
            -1 => Ok(None),
            w if w >= 0 => Ok(Some(w)),
            w => Err(self.err(format!("{name} {w} (−1 or ≥ 0)"))),
        };
        let frontier = Frontier {
            causal: attr_i(n, "is_causal", 0) != 0,
            left: window("left_window_size")?,
            right: window("right_window_size")?,
        };
        let (past_k, past_v) = (inp(n, 4), inp(n, 5));
        if past_k.is_some() != past_v.is_some() {
            return Err(self.err("past_key and past_value must be given together"));
        }
        let nonpad = match inp(n, 6) {
            Some(_) if past_k.is_some() => {
                return Err(self.err("nonpad_kv_seqlen cannot be combined with past key-values"))
            }
            Some(name) => Some(self.value(name)?),
            None => None,
        };
        let (q, three_d) = self.attention_heads(n, 0, "q_num_heads")?;
        let (mut k, _) = self.attention_heads(n, 1, "kv_num_heads")?;
        let (mut v, _) = self.attention_heads(n, 2, "kv_num_heads")?;
        let mut offset = 0;
        if let (Some(pk), Some(pv)) = (past_k, past_v) {
            let (pk, pv) = (self.value(pk)?, self.value(pv)?);
            offset = match self.g.value_type(pk).shape.get(2).map(Dim::known) {
                Some(Some(len)) => len,
                Some(None) if frontier.is_none() => 0,
                _ => {
                    return Err(self.unsupported(
                        "Attention with past key-values of unknown length and a causal or windowed mask",
                    ))
                }
            };
            k = self.emit(Op::Concat { axis: 2 }, &[pk, k])?;
            v = self.emit(Op::Concat { axis: 2 }, &[pv, v])?;
        }
        self.out(n, 1, k);
        self.out(n, 2, v);
        let qt = self.g.value_type(q).clone();
        let scale = match n.attr("scale").and_then(|a| a.as_float()) {
            Some(s) => s,
            None => Sdpa::default_scale(
                self.at(&qt.shape, 3)?.known().ok_or_else(|| self.err("head size must be known"))?,
            ),
        };
        let (tq, tk) = (self.at(&qt.shape, 2)?, self.at(&self.g.value_type(k).shape, 2)?);
        let attn_mask = match inp(n, 3) {
            Some(m) => Some(self.attention_mask(m, &tk)?),
            None => None,
        };
        let qk_out = self.output_used(n, 3);
        // The block's own causal mode is aligned bottom-right (query i sees keys
        // j ≤ i + tk − tq), which is ONNX's frontier at the cache offset when nothing else masks.
        let block_causal = frontier.causal
            && frontier.left.is_none()
            && frontier.right.is_none()
            && attn_mask.is_none()
            && nonpad.is_none()
            && !qk_out
            && ((offset == 0 && tq == tk)
                || tq.known().zip(tk.known()).is_some_and(|(nq, nk)| nk == nq + offset));
        let mask = if block_causal {
            None
        } else {
            let allowed = self.attention_allowed(frontier, nonpad, offset, (&tq, &tk))?;
            self.attention_combine(attn_mask, allowed)?
        };
        let kind = match mask {
            _ if block_causal => MaskKind::Causal,
            None => MaskKind::None,
            Some(m) if self.g.value_type(m).dtype == DType::Bool => MaskKind::Boolean,
            Some(_) => MaskKind::Additive,
        };
        let mut operands = vec![q, k, v];
        operands.extend(mask);
        let block = Sdpa::new(scale, kind).with_softcap(softcap);
        let mut y = self.emit(Op::Block(Arc::new(block)), &operands)?;
        if let Some(m) = mask {
            // ONNX (like PyTorch's SDPA) gives 0 for a query row whose keys are all masked.
            y = self.attention_guard(y, m)?;
        }
        if qk_out {
            let out = self.attention_scores(n, (q, k), scale, softcap, mode, mask)?;
            self.out(n, 3, out);
        }
        if let Some(t) = three_d {
            y = self.emit(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y])?;
            let yt = self.g.value_type(y).clone();
            let (heads, hd) = (self.at(&yt.shape, 2)?, self.at(&yt.shape, 3)?);
            let shape = vec![self.at(&t.shape, 0)?, self.at(&t.shape, 1)?, heads.mul(&hd)];
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `qk_matmul_output` beside the block, as ONNX's reference computes it: the scores
    /// `(q·√s)(k·√s)ᵀ` (key heads repeated for GQA), softcapped when `softcap` is set
    /// (modes 0 and 1), plus the mask's bias (mode 2), or the guarded softmax of that (mode
    /// 3, in `softmax_precision` when given).
    fn attention_scores(
        &mut self,
        n: &NodeProto,
        (q, k): (Value, Value),
        scale: f32,
        softcap: Option<f32>,
        mode: i64,
        mask: Option<Value>,
    ) -> R<Value> {
        let (qt, kt) = (self.g.value_type(q).clone(), self.g.value_type(k).clone());
        let dt = qt.dtype;
        let (hq, hk) = (self.at(&qt.shape, 1)?, self.at(&kt.shape, 1)?);
        let mut k = k;
        if hq != hk {
            let reps =
                hq.div_exact(&hk).ok_or_else(|| self.err("query heads are not a multiple of key heads"))?;
            let [b, _, t, d] = kt.shape.as_slice() else {
                return Err(self.err(format!("keys must have 4 axes, got {kt}")));
            };
            let wide = vec![b.clone(), hk.clone(), Dim::Known(1), t.clone(), d.clone()];
            k = self.reshape_v(k, wide)?;
            let wide = vec![b.clone(), hk.clone(), reps, t.clone(), d.clone()];
            k = self.emit(Op::Expand { shape: wide }, &[k])?;
            k = self.reshape_v(k, vec![b.clone(), hq.clone(), t.clone(), d.clone()])?;
        }
        let root = self.scalar_of(dt, f64::from(scale).sqrt())?;
        let qs = self.bin(BinaryOp::Mul, q, root)?;
        let ks = self.bin(BinaryOp::Mul, k, root)?;
        let kt = self.emit(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[ks])?;
        let mut s = self.emit(Op::MatMul, &[qs, kt])?;
        if let Some(c) = softcap {
            let c = self.scalar_of(dt, f64::from(c))?;
            let t = self.bin(BinaryOp::Div, s, c)?;
            let t = self.un(UnaryOp::Tanh, t)?;
            s = self.bin(BinaryOp::Mul, t, c)?;
        }
        if mode <= 1 {
            return Ok(s);
        }
        let biased = match mask {
            Some(m) => {
                let b = self.attention_bias(m, dt)?;
                self.bin(BinaryOp::Add, s, b)?
            }
            None => s,
        };
        if mode == 2 {
            return Ok(biased);
        }
        let precision = match n.attr("softmax_precision").and_then(|a| a.i) {
            Some(p) => dtype_from_onnx(i32::try_from(p).unwrap_or(-1))
                .filter(|d| d.is_float())
                .ok_or_else(|| self.err(format!("softmax_precision {p} is not a float type")))?,
            None => dt,
        };
        let x = if precision == dt { biased } else { self.emit(Op::Cast(precision), &[biased])? };
        let mut p = self.emit(Op::Softmax { axis: -1 }, &[x])?;
        if precision != dt {
            p = self.emit(Op::Cast(dt), &[p])?;
        }
        match mask {
            Some(m) => self.attention_guard(p, m),
            None => Ok(p),
        }
    }
}
