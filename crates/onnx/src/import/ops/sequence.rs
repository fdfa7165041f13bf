//! Sequences of tensors, as far as exporters use them: `SplitToSequence`, `SequenceAt`.

use crate::import::prelude::*;

impl Importer {
    /// `SequenceAt` with a constant position.
    pub(crate) fn sequence_at(&mut self, n: &NodeProto) -> R<()> {
        let Entry::Seq(items) = self.entry(&self.in0(n)?)?.clone() else {
            return Err(self.err("input is not a sequence"));
        };
        let pos = self
            .known_req(&self.in_req(n, 1)?, "position")?
            .scalar()
            .and_then(SymInt::as_c)
            .ok_or_else(|| self.err("position must be a constant"))?;
        let len = items.len() as i64;
        let p = if pos < 0 { pos + len } else { pos };
        let e = items
            .get(p as usize)
            .filter(|_| p >= 0)
            .cloned()
            .ok_or_else(|| self.err(format!("position {pos} out of range for {len} items")))?;
        self.set_out(n, 0, e)?;
        Ok(())
    }

    pub(crate) fn split_to_sequence(&mut self, n: &NodeProto) -> R<()> {
        let name = self.in0(n)?;
        let t = self.ty(&name)?;
        let axis = attr_i(n, "axis", 0);
        let a = normalize_axis(axis, t.rank()).ok_or_else(|| self.err("axis out of range"))?;
        let len =
            self.at(&t.shape, a)?.known().ok_or_else(|| self.err("split axis must have a known size"))?;
        let (sizes, squeeze): (Vec<usize>, bool) = match inp(n, 1) {
            Some(s) => {
                let k = self.known_req(s, "split")?;
                let c = k.consts().ok_or_else(|| self.err("symbolic split"))?;
                let sizes: Vec<usize> = c
                    .iter()
                    .map(|&v| usize::try_from(v).map_err(|_| self.err(format!("split size {v} is negative"))))
                    .collect::<R<_>>()?;
                match (k.dims.is_empty(), sizes.first()) {
                    (true, Some(&0)) => {
                        return Err(self.err("split size 0 (a scalar split must be positive)"))
                    }
                    (true, Some(&chunk)) => {
                        let parts = len.div_ceil(chunk);
                        ((0..parts).map(|i| chunk.min(len - i * chunk)).collect(), false)
                    }
                    _ => (sizes, false),
                }
            }
            None => (vec![1; len], attr_i(n, "keepdims", 1) == 0),
        };
        let x = self.value(&name)?;
        let vs =
            self.emit_multi(Op::Split { axis, sizes: sizes.iter().map(|&s| Dim::Known(s)).collect() }, &[x])?;
        let mut items = vec![];
        for v in vs {
            let v = if squeeze {
                let mut shape = dims_of(self.g.value_type(v));
                shape.remove(a);
                self.emit(Op::Reshape { shape }, &[v])?
            } else {
                v
            };
            items.push(Entry::Ir(v));
        }
        self.set_out(n, 0, Entry::Seq(items))?;
        Ok(())
    }
}
