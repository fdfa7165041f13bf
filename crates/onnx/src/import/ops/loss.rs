//! `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` (= log-softmax over axis 1, then
//! the NLL loss), composed from gathers, selects and sums.

use crate::import::prelude::*;

/// The reduction of a loss.
#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

impl Importer {
    fn reduction(&self, n: &NodeProto) -> R<Reduction> {
        match attr_s(n, "reduction").as_deref().unwrap_or("mean") {
            "none" => Ok(Reduction::None),
            "sum" => Ok(Reduction::Sum),
            "mean" => Ok(Reduction::Mean),
            o => Err(self.err(format!("unknown reduction '{o}'"))),
        }
    }

    /// `input[n, target[n, d…], d…]` for `input: [N, C, d…]`, `target: [N, d…]` (i64, in range).
    fn pick_class(&mut self, input: Value, target: Value) -> R<Value> {
        let it = self.vt(input);
        let tt = self.vt(target);
        if tt.rank() + 1 != it.rank() || it.rank() < 2 {
            return Err(
                self.err(format!("target {tt} does not match input {it} (expected [N, d…] for [N, C, d…])"))
            );
        }
        let mut shape = tt.shape.to_vec();
        shape.insert(1, Dim::Known(1));
        let idx = self.reshape_v(target, shape)?;
        let rank = it.rank();
        let mut comps = vec![];
        for k in 0..rank {
            if k == 1 {
                comps.push(idx);
            } else {
                comps.push(self.iota_along(self.at(&it.shape, k)?, k, rank)?);
            }
        }
        let picked = self.flat_gather(input, comps)?;
        self.reshape_v(picked, tt.shape.to_vec())
    }

    /// The NLL loss of log-probabilities `x` for class indices `target` (ONNX semantics,
    /// including its mean: over the gathered weights, or over all elements when there are no
    /// weights and `ignore_index` is −1).
    fn nll(&mut self, n: &NodeProto, x: Value, target: Value, weight: Option<Value>) -> R<Value> {
        let dt = self.vt(x).dtype;
        let reduction = self.reduction(n)?;
        let ignore = n.attr("ignore_index").and_then(|a| a.as_int());
        let target = self.cast_to(target, DType::I64)?;
        let (mask, safe) = match ignore {
            Some(ii) => {
                let c = self.scalar_of(DType::I64, ii as f64)?;
                let m = self.bin(BinaryOp::Equal, target, c)?;
                let z = self.scalar_of(DType::I64, 0.0)?;
                (Some(m), self.emit(Op::Where, &[m, z, target])?)
            }
            None => (None, target),
        };
        let picked = self.pick_class(x, safe)?;
        let mut w = match weight {
            Some(w) => {
                let w = self.cast_to(w, dt)?;
                Some(self.emit(Op::Gather { axis: 0 }, &[w, safe])?)
            }
            None if ignore == Some(-1) => None,
            None => {
                Some(self.emit(Op::Full { shape: self.vt(safe).shape.to_vec(), value: 1.0, dtype: dt }, &[])?)
            }
        };
        let zero = self.scalar_of(dt, 0.0)?;
        if let (Some(m), Some(wv)) = (mask, w) {
            w = Some(self.emit(Op::Where, &[m, zero, wv])?);
        }
        let mut loss = self.un(blockfuse_ir::UnaryOp::Neg, picked)?;
        if let Some(m) = mask {
            loss = self.emit(Op::Where, &[m, zero, loss])?;
        }
        if let Some(wv) = w {
            loss = self.bin(BinaryOp::Mul, loss, wv)?;
        }
        Ok(match (reduction, w) {
            (Reduction::None, _) => loss,
            (Reduction::Sum, _) => self.reduce_v(ReduceOp::Sum, loss, vec![], false)?,
            (Reduction::Mean, None) => self.reduce_v(ReduceOp::Mean, loss, vec![], false)?,
            (Reduction::Mean, Some(wv)) => {
                let s = self.reduce_v(ReduceOp::Sum, loss, vec![], false)?;
                let ws = self.reduce_v(ReduceOp::Sum, wv, vec![], false)?;
                self.bin(BinaryOp::Div, s, ws)?
            }
        })
    }

    pub(crate) fn nll_node(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        self.need_float(&self.vt(x))?;
        let t = self.input_v(n, 1)?;
        let w = match inp(n, 2) {
            Some(name) => Some(self.value(name)?),
            None => None,
        };
        let y = self.nll(n, x, t, w)?;
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn sce_node(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        self.need_float(&self.vt(x))?;
        if self.vt(x).rank() < 2 {
            return Err(self.err("scores must have at least 2 axes"));
        }
        let lp = self.log_softmax(x, 1)?;
        let t = self.input_v(n, 1)?;
        let w = match inp(n, 2) {
            Some(name) => Some(self.value(name)?),
            None => None,
        };
        let y = self.nll(n, lp, t, w)?;
        self.out(n, 0, y);
        self.out(n, 1, lp);
        Ok(())
    }
}
