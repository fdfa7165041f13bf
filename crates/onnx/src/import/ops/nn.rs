//! Linear algebra and masks: `MatMul`, `Gemm`, `Trilu`.

use crate::import::prelude::*;

impl Importer {
    /// `MatMul` (numpy semantics, batched).
    pub(crate) fn matmul(&mut self, n: &NodeProto) -> R<()> {
        let a = self.value(&self.in0(n)?)?;
        let b = self.value(&self.in_req(n, 1)?)?;
        let v = self.emit(Op::MatMul, &[a, b])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// `Trilu` with a constant `k`.
    pub(crate) fn trilu(&mut self, n: &NodeProto) -> R<()> {
        let x = self.value(&self.in0(n)?)?;
        let k = match inp(n, 1) {
            Some(kn) => self
                .known_req(kn, "k")?
                .scalar()
                .and_then(SymInt::as_c)
                .ok_or_else(|| self.err("k must be a constant scalar"))?,
            None => 0,
        };
        let v = self.emit(Op::Trilu { upper: attr_i(n, "upper", 1) != 0, k }, &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn gemm(&mut self, n: &NodeProto) -> R<()> {
        let mut a = self.value(&self.in0(n)?)?;
        let mut b = self.value(&self.in_req(n, 1)?)?;
        if attr_i(n, "transA", 0) != 0 {
            a = self.emit(Op::Transpose { perm: vec![1, 0] }, &[a])?;
        }
        if attr_i(n, "transB", 0) != 0 {
            b = self.emit(Op::Transpose { perm: vec![1, 0] }, &[b])?;
        }
        let mut y = self.emit(Op::MatMul, &[a, b])?;
        let dt = self.g.value_type(y).dtype;
        let alpha = attr_f(n, "alpha", 1.0);
        if alpha != 1.0 {
            let s = self.emit(Op::Constant(HostTensor::scalar(dt, alpha as f64)), &[])?;
            y = self.emit(Op::Binary(BinaryOp::Mul), &[y, s])?;
        }
        if let Some(c) = inp(n, 2) {
            let mut c = self.value(c)?;
            let beta = attr_f(n, "beta", 1.0);
            if beta != 1.0 {
                let s = self.emit(Op::Constant(HostTensor::scalar(dt, beta as f64)), &[])?;
                c = self.emit(Op::Binary(BinaryOp::Mul), &[c, s])?;
            }
            y = self.emit(Op::Binary(BinaryOp::Add), &[y, c])?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}
