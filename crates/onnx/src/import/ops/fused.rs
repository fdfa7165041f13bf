//! ONNX ops that are blockfuse blocks or expand into a few primitive ops: `Gelu`,
//! `LayerNormalization`, `RMSNormalization`, `RotaryEmbedding` (`Attention` is in `attention.rs`).

use crate::import::prelude::*;

impl Importer {
    /// ONNX `Gelu` (opset 20) as a `Gelu` block.
    pub(crate) fn gelu(&mut self, n: &NodeProto) -> R<()> {
        let x = self.value(&self.in0(n)?)?;
        let kind = match attr_s(n, "approximate").as_deref() {
            None | Some("none") => GeluKind::Exact,
            Some("tanh") => GeluKind::Tanh,
            Some(o) => return Err(self.err(format!("unknown approximate '{o}'"))),
        };
        let v = self.emit(Op::Block(Arc::new(Gelu::new(kind))), &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// The input of a normalization over the axes `[axis, rank)`, as `{prefix..., S}` (`S` the
    /// product of the normalized dims), the normalized dims, and the shape to restore after
    /// the block (`None` when `axis` is already the last one).
    pub(crate) fn norm_input(&mut self, name: &str, axis: i64) -> R<(Value, Vec<Dim>, Option<Vec<Dim>>)> {
        let t = self.ty(name)?;
        let rank = t.rank();
        let a = normalize_axis(axis, rank).ok_or_else(|| self.err(format!("axis {axis} out of range")))?;
        let x = self.value(name)?;
        let (prefix, norm) = t.shape.split_at(a.min(rank));
        let norm = norm.to_vec();
        if a + 1 == rank {
            return Ok((x, norm, None));
        }
        let mut shape = prefix.to_vec();
        shape.push(norm.iter().fold(Dim::Known(1), |acc, d| acc.mul(d)));
        let x = self.reshape_v(x, shape)?;
        Ok((x, norm, Some(t.shape.to_vec())))
    }

    /// A scale or bias (broadcastable to the normalized dims `norm`) as a vector over them.
    pub(crate) fn norm_param(&mut self, name: &str, norm: &[Dim]) -> R<Value> {
        let mut w = self.value(name)?;
        let t = self.g.value_type(w).clone();
        if t.shape.len() > norm.len() || t.shape.iter().rev().zip(norm.iter().rev()).any(|(a, b)| a != b) {
            w = self.emit(Op::Expand { shape: norm.to_vec() }, &[w])?;
        }
        self.flat_param(w)
    }

    pub(crate) fn layer_norm(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let xt = self.ty(&name)?;
        let axis = attr_i(n, "axis", -1);
        let eps = attr_f(n, "epsilon", 1e-5);
        let (x, norm, restore) = self.norm_input(&name, axis)?;
        let mut args = vec![x];
        let has_weight = inp(n, 1).is_some();
        let has_bias = inp(n, 2).is_some();
        for i in 1..3 {
            if let Some(w) = inp(n, i) {
                args.push(self.norm_param(w, &norm)?);
            }
        }
        let block = LayerNorm { eps, has_weight, has_bias };
        let mut y = self.emit(Op::Block(Arc::new(block)), &args)?;
        if let Some(shape) = restore {
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        if self.output_used(n, 1) || self.output_used(n, 2) {
            // Mean and InvStdDev, in the stash type, with the normalized axes kept as 1s.
            let st = self.attr_dtype(n, "stash_type", 1)?;
            let xs = if xt.dtype == st { x } else { self.emit(Op::Cast(st), &[x])? };
            let mean_op = || Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
            let mean = self.emit(mean_op(), &[xs])?;
            let d = self.bin(BinaryOp::Sub, xs, mean)?;
            let d2 = self.bin(BinaryOp::Mul, d, d)?;
            let var = self.emit(mean_op(), &[d2])?;
            let e = self.emit(Op::Constant(HostTensor::scalar(st, eps as f64)), &[])?;
            let ve = self.bin(BinaryOp::Add, var, e)?;
            let sd = self.emit(Op::Unary(UnaryOp::Sqrt), &[ve])?;
            let inv = self.emit(Op::Unary(UnaryOp::Reciprocal), &[sd])?;
            let keep = xt.rank().saturating_sub(norm.len());
            let mut shape: Vec<Dim> = xt.shape.iter().take(keep).cloned().collect();
            shape.resize(xt.rank(), Dim::Known(1));
            for (i, v) in [(1, mean), (2, inv)] {
                let v = self.reshape_v(v, shape.clone())?;
                self.out(n, i, v);
            }
        }
        Ok(())
    }

    /// A weight of shape `{1, ..., 1, D}` as `{D}`.
    pub(crate) fn flat_param(&mut self, w: Value) -> R<Value> {
        let t = self.g.value_type(w).clone();
        if t.rank() <= 1 {
            return Ok(w);
        }
        let shape = vec![t.numel()];
        self.emit(Op::Reshape { shape }, &[w])
    }

    pub(crate) fn rms_norm(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let eps = attr_f(n, "epsilon", 1e-5);
        let (x, norm, restore) = self.norm_input(&name, attr_i(n, "axis", -1))?;
        let w = self.norm_param(&self.in_req(n, 1)?, &norm)?;
        let mut y = self.emit(Op::Block(Arc::new(RmsNorm::new(eps))), &[x, w])?;
        if let Some(shape) = restore {
            y = self.reshape_v(y, shape)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// ONNX `RotaryEmbedding` (opset 23), expanded into primitive ops in rotate-half form:
    /// `out = x·cos + rotate_half(x)·sin` (pairwise when interleaved).
    pub(crate) fn rotary(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let xt = self.ty(&name)?;
        let mut x = self.value(&name)?;
        let interleaved = attr_i(n, "interleaved", 0) != 0;
        let three_d = match xt.rank() {
            4 => false,
            3 => {
                let nh = attr_i(n, "num_heads", 0);
                if nh <= 0 {
                    return Err(self.err("a 3-D input needs num_heads"));
                }
                let [b, s, hidden] = xt.shape.as_slice() else {
                    return Err(self.err(format!("input must have 3 or 4 axes, got {}", xt.rank())));
                };
                let hd = hidden
                    .div_exact(&Dim::Known(nh as usize))
                    .ok_or_else(|| self.err("hidden size is not a multiple of num_heads"))?;
                let shape = vec![b.clone(), s.clone(), Dim::Known(nh as usize), hd];
                x = self.reshape_v(x, shape)?;
                true
            }
            r => return Err(self.err(format!("input must have 3 or 4 axes, got {r}"))),
        };
        let x4 = self.g.value_type(x).clone();
        let d = self.at(&x4.shape, 3)?.known().ok_or_else(|| self.err("head size must be known"))?;
        let rd = match self.attr_usize(n, "rotary_embedding_dim", 0)? {
            0 => d,
            r => r,
        };
        if rd > d || rd % 2 != 0 {
            return Err(self.bad_attr(
                n,
                "rotary_embedding_dim",
                format!("{rd} must be even and at most the head size {d}"),
            ));
        }
        let half = rd / 2;
        let mut cs = [self.value(&self.in_req(n, 1)?)?, self.value(&self.in_req(n, 2)?)?];
        let pos = inp(n, 3).map(str::to_string);
        for c in cs.iter_mut() {
            if let Some(p) = &pos {
                let p = self.value(p)?;
                *c = self.emit(Op::Gather { axis: 0 }, &[*c, p])?;
            }
            let ct = self.g.value_type(*c).clone();
            if ct.rank() != 3 {
                return Err(self.err(format!("cos/sin must be {{B, S, D/2}} here, got {ct}")));
            }
            if self.at(&ct.shape, 2)? != Dim::Known(half) {
                *c = self.slice_last(*c, 0, half as i64)?;
            }
            let ct = self.g.value_type(*c).clone();
            let (b, s) = (self.at(&ct.shape, 0)?, self.at(&ct.shape, 1)?);
            let shape = if three_d {
                vec![b, s, Dim::Known(1), Dim::Known(half)]
            } else {
                vec![b, Dim::Known(1), s, Dim::Known(half)]
            };
            *c = self.reshape_v(*c, shape)?;
            if ct.dtype != x4.dtype {
                *c = self.emit(Op::Cast(x4.dtype), &[*c])?;
            }
            // Widen to rd entries: [c, c] (half split) or [c0, c0, c1, c1, ...] (interleaved).
            *c = if interleaved {
                let mut s5 = dims_of(self.g.value_type(*c));
                s5.push(Dim::Known(1));
                let c5 = self.reshape_v(*c, s5.clone())?;
                *self.at_mut(&mut s5, 4)? = Dim::Known(2);
                let c5 = self.emit(Op::Expand { shape: s5.clone() }, &[c5])?;
                let mut s4 = self.part(&s5, ..4)?.to_vec();
                *self.at_mut(&mut s4, 3)? = Dim::Known(rd);
                self.reshape_v(c5, s4)?
            } else {
                self.emit(Op::Concat { axis: -1 }, &[*c, *c])?
            };
        }
        let [cos, sin] = cs;
        let (xr, xp) = if rd < d {
            (self.slice_last(x, 0, rd as i64)?, Some(self.slice_last(x, rd as i64, d as i64)?))
        } else {
            (x, None)
        };
        let rot = if interleaved {
            let mut s5 = dims_of(self.g.value_type(xr));
            *self.at_mut(&mut s5, 3)? = Dim::Known(half);
            s5.push(Dim::Known(2));
            let p = self.reshape_v(xr, s5)?;
            let x1 = self.slice_last(p, 0, 1)?;
            let x2 = self.slice_last(p, 1, 2)?;
            let nx2 = self.emit(Op::Unary(UnaryOp::Neg), &[x2])?;
            let r = self.emit(Op::Concat { axis: -1 }, &[nx2, x1])?;
            let s4 = dims_of(self.g.value_type(xr));
            self.reshape_v(r, s4)?
        } else {
            let x1 = self.slice_last(xr, 0, half as i64)?;
            let x2 = self.slice_last(xr, half as i64, rd as i64)?;
            let nx2 = self.emit(Op::Unary(UnaryOp::Neg), &[x2])?;
            self.emit(Op::Concat { axis: -1 }, &[nx2, x1])?
        };
        let a = self.bin(BinaryOp::Mul, xr, cos)?;
        let b = self.bin(BinaryOp::Mul, rot, sin)?;
        let mut y = self.bin(BinaryOp::Add, a, b)?;
        if let Some(xp) = xp {
            y = self.emit(Op::Concat { axis: -1 }, &[y, xp])?;
        }
        if three_d {
            y = self.reshape_v(y, dims_of(&xt))?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}
