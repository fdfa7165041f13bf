//! Shape and layout ops: `Shape`, `Size`, `Reshape`, `Flatten`, `(Un)Squeeze`, `Transpose`,
//! `Expand`, `Slice`, `Concat`, `Split`, `Tile`, and the constant makers `Constant`, `Range`
//! and `ConstantOfShape`.

use crate::import::prelude::*;

impl Importer {
    /// `Shape` (with `start`/`end`): the input's dims as a known vector.
    pub(crate) fn shape_of(&mut self, n: &NodeProto) -> R<()> {
        let t = self.ty(&self.in0(n)?)?;
        let r = t.rank() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = clamp(attr_i(n, "start", 0));
        let e = clamp(attr_i(n, "end", r));
        let vals = self.part(&t.shape, s..e.max(s))?.iter().map(SymInt::from_dim).collect();
        self.set_out_known(n, 0, Known::vec(vals))?;
        Ok(())
    }

    /// `Size`: the element count as a known scalar.
    pub(crate) fn size(&mut self, n: &NodeProto) -> R<()> {
        let t = self.ty(&self.in0(n)?)?;
        let k = Known::new(DType::I64, vec![], vec![SymInt::from_dim(&t.numel())]);
        self.set_out_known(n, 0, k)?;
        Ok(())
    }

    /// `Transpose` (reversed axes without `perm`; the identity on rank ≤ 1).
    pub(crate) fn transpose(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let rank = self.ty(&name)?.rank();
        let perm: Vec<usize> = match attr_ints(n, "perm") {
            Some(p) => p
                .iter()
                .map(|&p| {
                    usize::try_from(p).map_err(|_| self.bad_attr(n, "perm", format!("entry {p} is negative")))
                })
                .collect::<R<_>>()?,
            None => (0..rank).rev().collect(),
        };
        if rank <= 1 {
            let e = self.entry(&name)?.clone();
            self.set_out(n, 0, e)?;
            return Ok(());
        }
        let x = self.value(&name)?;
        let v = self.emit(Op::Transpose { perm }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `Reshape` to a shape known at import time.
    pub(crate) fn reshape(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let target = self.known_req(&self.in_req(n, 1)?, "shape")?;
        let shape = self.resolve_reshape(&t, &target.vals, attr_i(n, "allowzero", 0) != 0)?;
        self.reshape_to(n, &name, shape)
    }

    /// `Flatten` at `axis`: a reshape to two dims.
    pub(crate) fn flatten(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axis = attr_i(n, "axis", 1);
        // Flatten's axis ranges over [-rank, rank] (negative counts from the end; rank
        // itself flattens to {N, 1}).
        let rank = t.rank() as i64;
        let a = usize::try_from(if axis < 0 { axis + rank } else { axis })
            .ok()
            .filter(|&a| a <= t.rank())
            .ok_or_else(|| self.bad_attr(n, "axis", format!("{axis} is out of range for rank {rank}")))?;
        let prod = |d: &[Dim]| d.iter().fold(Dim::Known(1), |acc, x| acc.mul(x));
        let (head, tail) = t.shape.split_at(a.min(t.rank()));
        let shape = vec![prod(head), prod(tail)];
        self.reshape_to(n, &name, shape)
    }

    /// `Unsqueeze`: a reshape inserting 1s at the axes.
    pub(crate) fn unsqueeze(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axes = self.axes(n, 1)?.ok_or_else(|| self.err("Unsqueeze without axes"))?;
        let r = t.rank() + axes.len();
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| normalize_axis(a, r).ok_or_else(|| self.err(format!("axis {a} out of range"))))
            .collect::<R<_>>()?;
        ax.sort();
        if ax.windows(2).any(|w| w.first() == w.last()) {
            return Err(self.err(format!("repeated axes {axes:?}")));
        }
        let mut shape = vec![];
        let mut it = t.shape.iter();
        for i in 0..r {
            if ax.contains(&i) {
                shape.push(Dim::Known(1));
            } else {
                shape.push(it.next().cloned().ok_or_else(|| self.err("bad axes"))?);
            }
        }
        self.reshape_to(n, &name, shape)
    }

    /// `Squeeze`: a reshape dropping the axes (every 1 without axes).
    pub(crate) fn squeeze(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axes = self.axes(n, 1)?;
        let ax: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| {
                    normalize_axis(a, t.rank()).ok_or_else(|| self.err(format!("axis {a} out of range")))
                })
                .collect::<R<_>>()?,
            None => {
                t.shape.iter().enumerate().filter(|(_, d)| **d == Dim::Known(1)).map(|(i, _)| i).collect()
            }
        };
        // (The axes are normalized: below the rank.)
        for &a in &ax {
            let d = self.at(&t.shape, a)?;
            if d != Dim::Known(1) && d.known().is_some() {
                return Err(self.err(format!("axis {a} has size {d}, not 1")));
            }
        }
        let shape =
            t.shape.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, d)| d.clone()).collect();
        self.reshape_to(n, &name, shape)
    }

    pub(crate) fn constant(&mut self, n: &NodeProto) -> R<()> {
        let a = n.attribute.first().ok_or_else(|| self.err("Constant without a value"))?;
        let t = match a.name() {
            "value" => {
                let t = a.t.as_ref().ok_or_else(|| self.err("value is not a tensor"))?;
                if let Some(v) = self.int4_tensor(t, &self.cur.0.clone())? {
                    return self.set_out(n, 0, Entry::Ir(v));
                }
                self.decode_tensor(t)?
            }
            "value_float" => HostTensor::from_f32(vec![], &[a.f()]),
            "value_floats" => {
                self.reserve_const("value_floats".into(), &[a.floats.len()], DType::F32)?;
                HostTensor::from_f32(vec![a.floats.len()], &a.floats)
            }
            "value_int" => HostTensor::from_i64(vec![], &[a.i()]),
            "value_ints" => {
                self.reserve_const("value_ints".into(), &[a.ints.len()], DType::I64)?;
                HostTensor::from_i64(vec![a.ints.len()], &a.ints)
            }
            other => return Err(self.err(format!("unsupported Constant attribute '{other}'"))),
        };
        self.set_out_tensor(n, 0, t)?;
        Ok(())
    }

    pub(crate) fn resolve_reshape(&self, t: &TensorType, target: &[SymInt], allowzero: bool) -> R<Vec<Dim>> {
        let mut out: Vec<Option<Dim>> = vec![];
        let mut infer = None;
        for (i, v) in target.iter().enumerate() {
            out.push(match v {
                SymInt::C(0) if !allowzero => Some(t.shape.get(i).cloned().ok_or_else(|| {
                    self.err(format!("shape entry {i} is 0 but the input has rank {}", t.rank()))
                })?),
                SymInt::C(-1) => {
                    if infer.replace(i).is_some() {
                        return Err(self.err("shape has two -1 entries"));
                    }
                    None
                }
                other => Some(other.to_dim().ok_or_else(|| self.err(format!("bad shape entry {other}")))?),
            });
        }
        if let Some(i) = infer {
            let rest = out.iter().flatten().fold(Dim::Known(1), |a, d| a.mul(d));
            let d = t.numel().div_exact(&rest).ok_or_else(|| {
                self.err(format!(
                    "cannot infer the -1 entry: {} elements / {rest} is not expressible",
                    t.numel()
                ))
            })?;
            *self.at_mut(&mut out, i)? = Some(d);
        }
        // Every entry is filled: the -1 one just above, the others by the loop.
        out.into_iter().map(|d| d.ok_or_else(|| self.err("shape has an unfilled -1 entry"))).collect()
    }

    pub(crate) fn reshape_to(&mut self, n: &NodeProto, name: &str, shape: Vec<Dim>) -> R<()> {
        if let Some(k) = self.known(name) {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(k.vals.len()) {
                    let k = Known::new(k.dtype, dims, k.vals.clone());
                    self.set_out_known(n, 0, k)?;
                    return Ok(());
                }
            }
        }
        if let Some(t) = self.const_tensor(name) {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                if let Ok(t) = t.reshaped(dims) {
                    self.set_out_tensor(n, 0, t)?;
                    return Ok(());
                }
            }
        }
        let x = self.value(name)?;
        let v = self.emit(Op::Reshape { shape }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn expand(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let target = self.known_req(&self.in_req(n, 1)?, "shape")?;
        let shape: Vec<Dim> = target
            .vals
            .iter()
            .map(|v| v.to_dim().ok_or_else(|| self.err(format!("bad shape entry {v}"))))
            .collect::<R<_>>()?;
        if let Some(k) = self.known(&name) {
            let dims = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>();
            let count = dims.as_ref().and_then(|d| d.iter().try_fold(1usize, |a, &x| a.checked_mul(x)));
            if let (Some(dims), Some(count)) = (dims, count.filter(|&c| c <= known::MAX_KNOWN)) {
                let dummy = Known::new(DType::I64, dims, vec![SymInt::C(0); count]);
                if let Some(r) = known::map_n(&[k, &dummy], k.dtype, |x| x.first().map(|&v| v.clone())) {
                    self.set_out_known(n, 0, r)?;
                    return Ok(());
                }
            }
        }
        let x = self.value(&name)?;
        let v = self.emit(Op::Expand { shape }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn slice(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let (starts, ends, axes, steps) = if let Some(s) = attr_ints(n, "starts") {
            let e = attr_ints(n, "ends").unwrap_or_default();
            let a = attr_ints(n, "axes");
            (
                s.into_iter().map(SymInt::C).collect::<Vec<_>>(),
                e.into_iter().map(SymInt::C).collect::<Vec<_>>(),
                a,
                None,
            )
        } else {
            let s = self.known_req(&self.in_req(n, 1)?, "starts")?.vals;
            let e = self.known_req(&self.in_req(n, 2)?, "ends")?.vals;
            let a = match inp(n, 3) {
                Some(a) => {
                    Some(self.known_req(a, "axes")?.consts().ok_or_else(|| self.err("symbolic axes"))?)
                }
                None => None,
            };
            let st = match inp(n, 4) {
                Some(a) => {
                    Some(self.known_req(a, "steps")?.consts().ok_or_else(|| self.err("symbolic steps"))?)
                }
                None => None,
            };
            (s, e, a, st)
        };
        let k = starts.len();
        let axes: Vec<usize> = axes
            .unwrap_or_else(|| (0..k as i64).collect())
            .iter()
            .map(|&a| normalize_axis(a, t.rank()).ok_or_else(|| self.err(format!("axis {a} out of range"))))
            .collect::<R<_>>()?;
        let steps = steps.unwrap_or_else(|| vec![1; k]);
        if ends.len() != k || axes.len() != k || steps.len() != k {
            return Err(self.err("starts, ends, axes and steps differ in length"));
        }
        if steps.contains(&0) {
            return Err(self.err("a slice step is 0"));
        }
        // Known data with constant bounds.
        if let Some(kd) = self.known(&name) {
            let mut cur = Some(kd.clone());
            for (((s, e), &a), &st) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
                let (Some(s), Some(e)) = (s.as_c(), e.as_c()) else {
                    cur = None;
                    break;
                };
                cur = cur.and_then(|c| known::slice_axis(&c, a, s, e, st));
            }
            if let Some(c) = cur {
                self.set_out_known(n, 0, c)?;
                return Ok(());
            }
        }
        let mut x = self.value(&name)?;
        let to_bound = |v: &SymInt| match v {
            SymInt::C(c) => Bound::Const(*c),
            SymInt::D(d) => Bound::Dim(d.clone()),
        };
        let mut spec = SliceSpec { axes: vec![], starts: vec![], ends: vec![], steps: vec![] };
        let mut gathers: Vec<(usize, Value)> = vec![];
        for (((start, end), &axis), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
            let (s, e) = (to_bound(start), to_bound(end));
            let dim = &self.at(&t.shape, axis)?;
            if slice_len(dim, &s, &e, step).is_ok() {
                if matches!((&s, &e, step), (Bound::Const(0), Bound::Const(m), 1) if *m >= i64::MAX / 2) {
                    continue; // the whole axis
                }
                spec.axes.push(axis as i64);
                spec.starts.push(s);
                spec.ends.push(e);
                spec.steps.push(step);
                continue;
            }
            // Workarounds for bounds the IR slice cannot type: gathers with equal semantics.
            let idx = match (&s, &e, step) {
                // x[:d] on an axis of known size: take(x, arange(d)).
                (Bound::Const(0), Bound::Dim(d), 1) => {
                    self.emit(Op::Range { start: 0.0, step: 1.0, len: d.clone(), dtype: DType::I64 }, &[])?
                }
                // x[-k:] on a symbolic axis: take(x, [-k, ..., -1]).
                (Bound::Const(st), Bound::Const(m), 1) if *st < 0 && *m >= i64::MAX / 2 => {
                    let idx: Vec<i64> = (*st..0).collect();
                    self.emit(Op::Constant(HostTensor::from_i64(vec![idx.len()], &idx)), &[])?
                }
                _ => {
                    return Err(self.err(format!(
                        "slice {start}:{end}:{step} of axis {axis} (size {dim}) has no static length"
                    )))
                }
            };
            gathers.push((axis, idx));
        }
        if !spec.axes.is_empty() {
            x = self.emit(Op::Slice(spec), &[x])?;
        }
        for (axis, idx) in gathers {
            x = self.emit(Op::Gather { axis: axis as i64 }, &[x, idx])?;
        }
        self.out(n, 0, x);
        Ok(())
    }

    pub(crate) fn concat(&mut self, n: &NodeProto) -> R<()> {
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        let axis = attr_i(n, "axis", 0);
        if names.is_empty() {
            return Err(self.err("no inputs"));
        }
        let ks: Option<Vec<&Known>> = names.iter().map(|s| self.known(s)).collect();
        if let Some(ks) = ks {
            let rank = ks.first().map_or(0, |k| k.dims.len());
            if let Some(a) = normalize_axis(axis, rank) {
                if let Some(k) = known::concat(&ks, a) {
                    self.set_out_known(n, 0, k)?;
                    return Ok(());
                }
            }
        }
        let mut vs = vec![];
        for name in &names {
            // Skip empty operands (ONNX allows them).
            if self.ty(name)?.numel() == Dim::Known(0) && names.len() > 1 {
                continue;
            }
            vs.push(self.value(name)?);
        }
        if vs.is_empty() {
            // Every operand is empty: the first one has the output's shape on the other axes.
            let first = self.at(&names, 0)?;
            vs.push(self.value(&first)?);
        }
        let v = self.concat_or_one(vs, axis)?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn split(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axis = attr_i(n, "axis", 0);
        let a = normalize_axis(axis, t.rank()).ok_or_else(|| self.err("axis out of range"))?;
        let nout = n.output.len();
        if nout == 0 {
            return Err(self.err("no outputs"));
        }
        let sizes: Vec<Dim> = if let Some(s) = attr_ints(n, "split") {
            s.iter()
                .map(|&v| {
                    usize::try_from(v)
                        .map(Dim::Known)
                        .map_err(|_| self.bad_attr(n, "split", format!("size {v} is negative")))
                })
                .collect::<R<_>>()?
        } else if let Some(sn) = inp(n, 1) {
            self.known_req(sn, "split")?
                .vals
                .iter()
                .map(|v| v.to_dim().ok_or_else(|| self.err("bad split size")))
                .collect::<R<_>>()?
        } else {
            let parts = self.attr_usize(n, "num_outputs", nout)?;
            if parts == 0 {
                return Err(self.bad_attr(n, "num_outputs", "must be at least 1, got 0".into()));
            }
            let d = &self.at(&t.shape, a)?;
            match d.div_exact(&Dim::Known(parts)) {
                Some(p) => vec![p; parts],
                None => match d.known() {
                    Some(len) => {
                        let chunk = len.div_ceil(parts);
                        (0..parts).map(|i| Dim::Known(chunk.min(len.saturating_sub(i * chunk)))).collect()
                    }
                    None => return Err(self.err(format!("cannot split {d} into {parts} parts"))),
                },
            }
        };
        let x = self.value(&name)?;
        let vs = self.emit_multi(Op::Split { axis, sizes }, &[x])?;
        for (i, v) in vs.into_iter().enumerate() {
            self.out(n, i, v);
        }
        Ok(())
    }

    /// A scalar operand: a number (int or float constant) or a symbolic dim.
    pub(crate) fn scalar_operand(&self, name: &str) -> R<(Option<f64>, Option<Dim>, DType)> {
        if let Some(k) = self.known(name) {
            let v = k.scalar().ok_or_else(|| self.err(format!("'{name}' is not a scalar")))?;
            return Ok(match v {
                SymInt::C(c) => (Some(*c as f64), None, k.dtype),
                SymInt::D(d) => (None, Some(d.clone()), k.dtype),
            });
        }
        if let Some(t) = self.const_tensor(name) {
            if t.len() == 1 {
                return Ok((Some(t.get_f64(0)), None, t.dtype()));
            }
        }
        Err(self.unsupported(format!(
            "'{name}' is not computable at import time (a data-dependent shape): {}",
            self.chain(name)
        )))
    }

    pub(crate) fn range(&mut self, n: &NodeProto) -> R<()> {
        let (s, sd, dtype) = self.scalar_operand(&self.in0(n)?)?;
        let (l, ld, _) = self.scalar_operand(&self.in_req(n, 1)?)?;
        let (d, dd, _) = self.scalar_operand(&self.in_req(n, 2)?)?;
        if let (None, Some(start), Some(step)) = (s, &sd, d) {
            return self.range_from_dim(n, start.clone(), (l, ld), step, dtype);
        }
        let (Some(start), Some(step)) = (s, d) else {
            let _ = dd;
            return Err(self.err("Range delta must be a constant"));
        };
        if step == 0.0 || !step.is_finite() || !start.is_finite() || l.is_some_and(|l| !l.is_finite()) {
            return Err(self.err(format!(
                "Range needs a finite non-zero delta and finite bounds, got start {start}, delta {step}"
            )));
        }
        let len = match (l, ld) {
            (Some(limit), _) => {
                let len = ((limit - start) / step).ceil().max(0.0);
                if len >= u64::MAX as f64 {
                    return Err(self.err(format!("Range of {len} elements")));
                }
                Dim::Known(len as usize)
            }
            (None, Some(dim)) if step == 1.0 && start == 0.0 => dim,
            (None, Some(dim)) if step == 1.0 && start > 0.0 && start.fract() == 0.0 => {
                match known::sub(&SymInt::D(dim.clone()), &SymInt::C(start as i64)).and_then(|v| v.to_dim()) {
                    Some(d) => d,
                    None => return Err(self.err(format!("Range length {dim} - {start} is not expressible"))),
                }
            }
            _ => return Err(self.err("Range with a symbolic limit needs step 1")),
        };
        if let Some(count) = len.known().filter(|&c| dtype.is_int() && c <= known::MAX_KNOWN) {
            let (s, st) = (start as i64, step as i64);
            let vals: Option<Vec<SymInt>> = (0..count as i64)
                .map(|i| st.checked_mul(i).and_then(|o| s.checked_add(o)).map(SymInt::C))
                .collect();
            let vals = vals.ok_or_else(|| self.err("Range values overflow i64"))?;
            self.set_out_known(n, 0, Known::new(dtype, vec![count], vals))?;
            return Ok(());
        }
        let v = self.emit(Op::Range { start, step, len, dtype }, &[])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `Range(start, limit, step)` with a symbolic start (a KV cache's new positions,
    /// `past_seq .. past_seq + seq`): the length is `limit − start` when that cancels to a
    /// dim; the values are `start + step·i`, known entries when the length is known, else
    /// `range(0, len) + start` (step 1).
    fn range_from_dim(
        &mut self,
        n: &NodeProto,
        start: Dim,
        (l, ld): (Option<f64>, Option<Dim>),
        step: f64,
        dtype: DType,
    ) -> R<()> {
        if !dtype.is_int() || step.fract() != 0.0 || step == 0.0 {
            return Err(
                self.err(format!("Range from the symbolic start {start} needs an integer type and delta"))
            );
        }
        let limit = match (l, ld) {
            (_, Some(dim)) => dim,
            (Some(x), None) if x >= 0.0 && x.fract() == 0.0 && x < u64::MAX as f64 => Dim::Known(x as usize),
            (Some(x), None) => return Err(self.err(format!("Range from {start} to {x} has no dim length"))),
            (None, None) => return Err(self.err("Range limit is not computable at import time")),
        };
        let span = limit.sub(&start).map_err(|e| self.err(format!("Range length: {e}")))?;
        let len = match step as i64 {
            1 => span,
            k if k > 1 => match span.known() {
                Some(m) => Dim::Known(m.div_ceil(k as usize)),
                None => {
                    return Err(self.err(format!("Range of symbolic length {span} needs delta 1, got {k}")))
                }
            },
            k => {
                return Err(self
                    .err(format!("Range from {start} up to {limit} with delta {k} is empty or unsupported")))
            }
        };
        if let Some(count) = len.known().filter(|&c| c <= known::MAX_KNOWN) {
            let vals: Option<Vec<SymInt>> = (0..count as i64)
                .map(|i| known::add(&SymInt::D(start.clone()), &SymInt::C(i.checked_mul(step as i64)?)))
                .collect();
            let vals = vals.ok_or_else(|| self.err("Range values are not expressible"))?;
            return self.set_out_known(n, 0, Known::new(dtype, vec![count], vals));
        }
        let r = self.emit(Op::Range { start: 0.0, step: 1.0, len, dtype }, &[])?;
        let mut off = self.emit(Op::SymConst(vec![start]), &[])?;
        if dtype != DType::I64 {
            off = self.emit(Op::Cast(dtype), &[off])?;
        }
        let v = self.emit(Op::Binary(BinaryOp::Add), &[r, off])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn constant_of_shape(&mut self, n: &NodeProto) -> R<()> {
        let target = self.known_req(&self.in0(n)?, "shape")?;
        let shape: Vec<Dim> = target
            .vals
            .iter()
            .map(|v| v.to_dim().ok_or_else(|| self.err(format!("bad shape entry {v}"))))
            .collect::<R<_>>()?;
        let (value, dtype) = match n.attr("value").and_then(|a| a.t.as_ref()) {
            Some(t) => {
                let t = self.decode_tensor(t)?;
                if t.len() != 1 {
                    return Err(self.bad_attr(n, "value", format!("must have one element, has {}", t.len())));
                }
                (t.get_f64(0), t.dtype())
            }
            None => (0.0, DType::F32),
        };
        if dtype.is_int() || dtype == DType::Bool {
            if let Some(dims) = shape.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if let Some(count) = count.filter(|&c| c <= known::MAX_KNOWN) {
                    let k = Known::new(dtype, dims, vec![SymInt::C(value as i64); count]);
                    self.set_out_known(n, 0, k)?;
                    return Ok(());
                }
            }
        }
        let v = self.emit(Op::Full { shape, value, dtype }, &[])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `Tile`: each axis `a` with `r` repeats as `{.., d, ..} → {.., 1, d, ..} → expand to
    /// {.., r, d, ..} → {.., r·d, ..}` (one Expand, no copies of the operand list).
    pub(crate) fn tile(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let reps = self
            .known_req(&self.in_req(n, 1)?, "repeats")?
            .consts()
            .ok_or_else(|| self.err("symbolic repeats"))?;
        let t = self.ty(&name)?;
        if reps.len() != t.rank() {
            return Err(self.err(format!("{} repeats for an input of rank {}", reps.len(), t.rank())));
        }
        let reps: Vec<usize> = reps
            .iter()
            .map(|&r| usize::try_from(r).map_err(|_| self.err(format!("repeats entry {r} is negative"))))
            .collect::<R<_>>()?;
        let mut x = self.value(&name)?;
        if reps.iter().all(|&r| r == 1) {
            self.out(n, 0, x);
            return Ok(());
        }
        let (mut split, mut expanded, mut out) = (vec![], vec![], vec![]);
        for (d, &r) in t.shape.iter().zip(&reps) {
            split.extend([Dim::Known(1), d.clone()]);
            expanded.extend([Dim::Known(r), d.clone()]);
            out.push(d.mul(&Dim::Known(r)));
        }
        x = self.reshape_v(x, split)?;
        x = self.emit(Op::Expand { shape: expanded }, &[x])?;
        x = self.reshape_v(x, out)?;
        self.out(n, 0, x);
        Ok(())
    }
}
