//! `TopK` (with a known `k`), composed from comparisons and reductions: along the axis, the
//! rank of each element is the number of elements that beat it (greater — or smaller for
//! `largest = 0` — or equal with a lower index, so ties keep index order, as ONNX says); the
//! `t`-th output is the element of rank `t`. The `[…, D, D]` comparison is bounded.

use crate::import::prelude::*;

/// The largest `D²·rest` comparison `TopK` materializes.
const MAX_TOPK_ELEMENTS: usize = 1 << 24;

impl Importer {
    pub(crate) fn top_k(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        if t.dtype == DType::Bool {
            return Err(self.err("needs numbers, got bool"));
        }
        let k = match (inp(n, 1), n.attr("k").and_then(|a| a.as_int())) {
            (Some(name), _) => {
                let v = self.known_req(name, "k")?.consts().ok_or_else(|| self.err("symbolic k"))?;
                *v.first().ok_or_else(|| self.err("k is empty"))?
            }
            (None, Some(k)) => k,
            (None, None) => return Err(self.err("missing k")),
        };
        let r = t.rank();
        let a = self.axis_of(attr_i(n, "axis", -1), r)?;
        let d = self.at(&t.shape, a)?.known().ok_or_else(|| self.unsupported("TopK over a symbolic axis"))?;
        let k = usize::try_from(k)
            .ok()
            .filter(|&k| k <= d)
            .ok_or_else(|| self.err(format!("k = {k} is not in 0..={d} (the axis size)")))?;
        let total = t.known_dims().map(|v| v.iter().product::<usize>()).unwrap_or(usize::MAX);
        if total.saturating_mul(d.max(k)) > MAX_TOPK_ELEMENTS {
            return Err(self.unsupported(format!(
                "TopK of {total} elements over an axis of {d} needs a comparison over {MAX_TOPK_ELEMENTS} elements"
            )));
        }
        let largest = attr_i(n, "largest", 1) != 0;
        // Axis last: xs [..., D].
        let mut perm: Vec<usize> = (0..r).filter(|&q| q != a).collect();
        perm.push(a);
        let moved = a + 1 != r;
        let xs = if moved { self.emit(Op::Transpose { perm: perm.clone() }, &[x])? } else { x };
        let lead: Vec<Dim> = self.vt(xs).shape.iter().take(r.saturating_sub(1)).cloned().collect();
        let with = |tail: &[usize]| -> Vec<Dim> {
            lead.iter().cloned().chain(tail.iter().map(|&v| Dim::Known(v))).collect()
        };
        let xi = self.reshape_v(xs, with(&[d, 1]))?;
        let xj = self.reshape_v(xs, with(&[1, d]))?;
        let better = self.bin(if largest { BinaryOp::Greater } else { BinaryOp::Less }, xj, xi)?;
        let same = self.bin(BinaryOp::Equal, xj, xi)?;
        let ii = self.iota_along(Dim::Known(d), 0, 2)?;
        let jj = self.iota_along(Dim::Known(d), 1, 2)?;
        let earlier = self.bin(BinaryOp::Less, jj, ii)?;
        let tie = self.bin(BinaryOp::And, same, earlier)?;
        let beats = self.bin(BinaryOp::Or, better, tie)?;
        let beats = self.cast_to(beats, DType::I64)?;
        let rank = self.reduce_v(ReduceOp::Sum, beats, vec![-1], false)?; // [..., D]
        let rank = self.reshape_v(rank, with(&[1, d]))?;
        let tk = self.iota_along(Dim::Known(k), 0, 2)?; // [k, 1]
        let sel = self.bin(BinaryOp::Equal, rank, tk)?; // [..., k, D]
        let z = self.scalar_of(t.dtype, 0.0)?;
        let vals = self.emit(Op::Where, &[sel, xj, z])?;
        let vals = self.reduce_v(ReduceOp::Sum, vals, vec![-1], false)?;
        let zi = self.scalar_of(DType::I64, 0.0)?;
        let jrow = self.iota_along(Dim::Known(d), 1, 2)?;
        let idx = self.emit(Op::Where, &[sel, jrow, zi])?;
        let idx = self.reduce_v(ReduceOp::Sum, idx, vec![-1], false)?;
        let (mut vals, mut idx) = (vals, idx);
        if moved {
            let inv = self.inverse_perm(&perm)?;
            vals = self.emit(Op::Transpose { perm: inv.clone() }, &[vals])?;
            idx = self.emit(Op::Transpose { perm: inv }, &[idx])?;
        }
        self.out(n, 0, vals);
        self.out(n, 1, idx);
        Ok(())
    }
}
