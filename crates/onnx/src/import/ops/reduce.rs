//! Reductions and `Softmax`.

use crate::import::prelude::*;

impl Importer {
    /// `Softmax` along `axis`.
    pub(crate) fn softmax(&mut self, n: &NodeProto) -> R<()> {
        let x = self.value(&self.in0(n)?)?;
        let v = self.emit(Op::Softmax { axis: attr_i(n, "axis", -1) }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn reduce(&mut self, n: &NodeProto, op: ReduceOp) -> R<()> {
        let x = self.value(&self.in0(n)?)?;
        let axes = self.axes(n, 1)?.unwrap_or_default();
        if axes.is_empty() && attr_i(n, "noop_with_empty_axes", 0) != 0 {
            self.out(n, 0, x);
            return Ok(());
        }
        let v = self.emit(Op::Reduce { op, axes, keepdims: attr_i(n, "keepdims", 1) != 0 }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }
}
