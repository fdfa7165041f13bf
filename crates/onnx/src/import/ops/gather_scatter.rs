//! Indexing ops: `Gather`, `GatherND`, `GatherElements`.

use crate::import::prelude::*;

impl Importer {
    pub(crate) fn gather(&mut self, n: &NodeProto) -> R<()> {
        let data = self.in0(n)?;
        let idx = self.in_req(n, 1)?;
        let axis = attr_i(n, "axis", 0);
        if let (Some(kd), Some(ki)) = (self.known(&data), self.known(&idx)) {
            if let Some(a) = normalize_axis(axis, kd.dims.len()) {
                if let Some(k) = known::gather(kd, ki, a) {
                    self.set_out_known(n, 0, k)?;
                    return Ok(());
                }
            }
        }
        let d = self.value(&data)?;
        let i = self.value(&idx)?;
        let v = self.emit(Op::Gather { axis }, &[d, i])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// A dim as an i64 IR value of shape `[1]` (or a scalar constant when known).
    pub(crate) fn dim_value(&mut self, d: &Dim) -> R<Value> {
        match d.known() {
            Some(k) => self.emit(Op::Constant(HostTensor::from_i64(vec![], &[k as i64])), &[]),
            None => self.emit(Op::SymConst(vec![d.clone()]), &[]),
        }
    }

    /// `data[c0, c1, ..., c_{r-1}, ...]` with broadcast i64 index tensors `comps` for the
    /// leading `r = comps.len()` axes: one Gather on the data flattened over those axes.
    pub(crate) fn flat_gather(&mut self, data: Value, comps: Vec<Value>) -> R<Value> {
        let dt = self.g.value_type(data).clone();
        let r = comps.len();
        let mut flat = self.at(&comps, 0)?;
        for (j, c) in comps.iter().enumerate().skip(1) {
            let d = self.dim_value(&self.at(&dt.shape, j)?)?;
            flat = self.bin(BinaryOp::Mul, flat, d)?;
            flat = self.bin(BinaryOp::Add, flat, *c)?;
        }
        let (indexed, rest) = dt.shape.split_at(r.min(dt.rank()));
        let lead = indexed.iter().fold(Dim::Known(1), |a, d| a.mul(d));
        let mut shape = vec![lead];
        shape.extend(rest.iter().cloned());
        let data = self.reshape_v(data, shape)?;
        self.emit(Op::Gather { axis: 0 }, &[data, flat])
    }

    pub(crate) fn i64_value(&mut self, name: &str) -> R<Value> {
        let v = self.value(name)?;
        if self.g.value_type(v).dtype == DType::I64 {
            Ok(v)
        } else {
            self.emit(Op::Cast(DType::I64), &[v])
        }
    }

    /// `GatherND` (non-negative indices; `batch_dims` leading axes shared by data and indices).
    pub(crate) fn gather_nd(&mut self, n: &NodeProto) -> R<()> {
        let data = self.value(&self.in0(n)?)?;
        let idx = self.i64_value(&self.in_req(n, 1)?)?;
        let it = self.g.value_type(idx).clone();
        let r = it
            .shape
            .last()
            .and_then(Dim::known)
            .filter(|&r| r >= 1)
            .ok_or_else(|| self.err("the last index axis must have a known, positive size"))?;
        let data_rank = self.g.value_type(data).rank();
        let batch = usize::try_from(attr_i(n, "batch_dims", 0))
            .ok()
            .filter(|&b| b < it.rank() && b + r <= data_rank)
            .ok_or_else(|| {
                self.err("batch_dims must be in [0, rank(indices)) with batch_dims + r ≤ rank(data)")
            })?;
        // The batch axes index themselves: iotas shaped as the index tuples (`indices[..., 0]`).
        let mut comps = vec![];
        let lead = it.rank() - 1;
        for k in 0..batch {
            let len = self.at(&it.shape, k)?;
            let rg =
                self.emit(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])?;
            let mut shape = vec![Dim::Known(1); lead];
            *self.at_mut(&mut shape, k)? = len;
            comps.push(self.reshape_v(rg, shape)?);
        }
        for j in 0..r {
            let jv = self.emit(Op::Constant(HostTensor::from_i64(vec![], &[j as i64])), &[])?;
            comps.push(self.emit(Op::Gather { axis: -1 }, &[idx, jv])?);
        }
        let v = self.flat_gather(data, comps)?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `GatherElements` (non-negative indices).
    pub(crate) fn gather_elements(&mut self, n: &NodeProto) -> R<()> {
        let data = self.value(&self.in0(n)?)?;
        let idx = self.i64_value(&self.in_req(n, 1)?)?;
        let it = self.g.value_type(idx).clone();
        let rank = it.rank();
        let axis = normalize_axis(attr_i(n, "axis", 0), rank).ok_or_else(|| self.err("axis out of range"))?;
        let mut comps = vec![];
        for k in 0..rank {
            if k == axis {
                comps.push(idx);
                continue;
            }
            let len = self.at(&it.shape, k)?;
            let rg =
                self.emit(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])?;
            let mut shape = vec![Dim::Known(1); rank];
            *self.at_mut(&mut shape, k)? = len;
            comps.push(self.reshape_v(rg, shape)?);
        }
        let v = self.flat_gather(data, comps)?;
        self.out(n, 0, v);
        Ok(())
    }
}
