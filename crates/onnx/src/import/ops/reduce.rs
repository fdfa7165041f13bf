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
        let keepdims = attr_i(n, "keepdims", 1) != 0;
        let is_bool = self.g.value_type(x).dtype == DType::Bool;
        if is_bool && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            // Max of bools is "any", min is "all": exact through 0/1 bytes (whose empty max is 0, empty min 255).
            let xi = self.emit(Op::Cast(DType::U8), &[x])?;
            let r = self.emit(Op::Reduce { op, axes, keepdims }, &[xi])?;
            let v = self.emit(Op::Cast(DType::Bool), &[r])?;
            self.out(n, 0, v);
            return Ok(());
        }
        let v = self.emit(Op::Reduce { op, axes, keepdims }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }
}
