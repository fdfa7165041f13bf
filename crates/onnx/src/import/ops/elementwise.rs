//! Elementwise ops: arithmetic, comparisons and logic (folded on known values), unary
//! math, casts, `Where`, `Identity` and inference-mode `Dropout`.

use crate::import::prelude::*;

impl Importer {
    /// `Identity`, and the output of `Dropout`: the input's entry, under the output's name.
    pub(crate) fn identity(&mut self, n: &NodeProto) -> R<()> {
        let x = self.in0(n)?;
        let e = self.entry(&x)?.clone();
        let v = self.made.get(x.as_str()).copied();
        self.set_out(n, 0, e)?;
        if let Some(v) = v {
            self.made.insert(self.out_name(n, 0)?, v);
        }
        Ok(())
    }

    /// `Dropout` in inference mode: the identity, and an all-true mask.
    pub(crate) fn dropout(&mut self, n: &NodeProto) -> R<()> {
        self.dropout_check(n)?;
        self.identity(n)?;
        if self.output_used(n, 1) {
            // Inference mode: the mask is all true.
            let shape = self.ty(&self.in0(n)?)?.shape.to_vec();
            let m = self.emit(Op::Full { shape, value: 1.0, dtype: DType::Bool }, &[])?;
            self.out(n, 1, m);
        }
        Ok(())
    }

    /// `Cast` to the dtype of its `to` attribute.
    pub(crate) fn cast_attr(&mut self, n: &NodeProto) -> R<()> {
        let d = self.attr_dtype(n, "to", 0)?;
        self.cast(n, d)
    }

    /// `CastLike`: a cast to the dtype of input 1.
    pub(crate) fn cast_like(&mut self, n: &NodeProto) -> R<()> {
        let d = self.ty(&self.in_req(n, 1)?)?.dtype;
        self.cast(n, d)
    }

    /// `Mod`: floored (`fmod=0`) or truncated (`fmod=1`) remainder.
    pub(crate) fn mod_(&mut self, n: &NodeProto) -> R<()> {
        if attr_i(n, "fmod", 0) != 0 {
            self.fmod(n)
        } else {
            self.binary(n, BinaryOp::Mod)
        }
    }

    /// Dropout is the identity in inference mode: `training_mode` absent or a constant
    /// false, or a zero `ratio`. Training-mode (random) dropout is refused; a `training_mode`
    /// or `ratio` that is a graph input is refused as not computable at import time (the
    /// model imports once specialized on its value).
    pub(crate) fn dropout_check(&self, n: &NodeProto) -> R<()> {
        let Some(t) = inp(n, 2) else { return Ok(()) };
        let scalar = |name: &str, what: &str| match self.const_tensor(name) {
            Some(c) if c.len() == 1 => Ok(c.get_f64(0)),
            Some(_) => Err(self.err(format!("{what} '{name}' is not a scalar"))),
            // A graph input: known once the model is specialized on its value.
            None => Err(self.unsupported(format!(
                "{what} '{name}' is not computable at import time (Dropout's mode must be known)"
            ))),
        };
        let ratio_zero =
            inp(n, 1).and_then(|r| self.const_tensor(r)).is_some_and(|r| r.len() == 1 && r.get_f64(0) == 0.0);
        if ratio_zero || scalar(t, "training_mode")? == 0.0 {
            return Ok(());
        }
        // Training mode with ratio 0 keeps every element (ONNX's reference returns x and an
        // all-true mask); any other ratio draws random numbers.
        match inp(n, 1) {
            Some(r) if scalar(r, "ratio")? == 0.0 => Ok(()),
            _ => Err(self.unsupported("Dropout in training mode (random) is not supported")),
        }
    }

    /// `Mod` with `fmod=1` (the remainder takes the sign of the dividend), from the floored
    /// remainder `r`: `r − b` where `r ≠ 0` and the signs of `a` and `b` differ, else `r`.
    pub(crate) fn fmod(&mut self, n: &NodeProto) -> R<()> {
        let a = self.value(&self.in0(n)?)?;
        let mut b = self.value(&self.in_req(n, 1)?)?;
        let dt = self.g.value_type(a).dtype;
        if self.g.value_type(b).dtype != dt {
            b = self.emit(Op::Cast(dt), &[b])?;
        }
        let r = self.bin(BinaryOp::Mod, a, b)?;
        let zero = self.emit(Op::Constant(HostTensor::scalar(dt, 0.0)), &[])?;
        let a_neg = self.bin(BinaryOp::Less, a, zero)?;
        let b_neg = self.bin(BinaryOp::Less, b, zero)?;
        let differ = self.bin(BinaryOp::Xor, a_neg, b_neg)?;
        let r_zero = self.bin(BinaryOp::Equal, r, zero)?;
        let r_nonzero = self.emit(Op::Unary(UnaryOp::Not), &[r_zero])?;
        let fix = self.bin(BinaryOp::And, differ, r_nonzero)?;
        let shifted = self.bin(BinaryOp::Sub, r, b)?;
        let v = self.emit(Op::Where, &[fix, shifted, r])?;
        self.out(n, 0, v);
        Ok(())
    }

    pub(crate) fn binary(&mut self, n: &NodeProto, op: BinaryOp) -> R<()> {
        // Variadic Max/Min fold pairwise.
        let names: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        let Some((first, rest)) = names.split_first() else {
            return Err(self.err("no inputs"));
        };
        if rest.is_empty() {
            let e = self.entry(first)?.clone();
            self.set_out(n, 0, e)?;
            return Ok(());
        }
        if names.len() != 2 && !matches!(op, BinaryOp::Max | BinaryOp::Min) {
            return Err(self.err(format!("expects 2 inputs, got {}", names.len())));
        }
        // Known fold.
        let ks: Option<Vec<&Known>> = names.iter().map(|s| self.known(s)).collect();
        if let Some((k0, ks)) = ks.as_deref().and_then(<[_]>::split_first) {
            let dtype = if op.is_comparison() { DType::Bool } else { k0.dtype };
            let mut acc = Some((*k0).clone());
            for k in ks {
                acc = acc.and_then(|a| {
                    known::map_n(&[&a, k], dtype, |x| match *x {
                        [a, b] => fold_binary(op, a, b),
                        _ => None,
                    })
                });
            }
            if let Some(k) = acc {
                self.set_out_known(n, 0, k)?;
                return Ok(());
            }
        }
        if let Some(t) = self.fold_float_binary(op, &names) {
            self.set_out_tensor(n, 0, t)?;
            return Ok(());
        }
        let mut acc = self.value(first)?;
        for name in rest {
            let mut b = self.value(name)?;
            let da = self.g.value_type(acc).dtype;
            if self.g.value_type(b).dtype != da {
                b = self.emit(Op::Cast(da), &[b])?;
            }
            acc = self.emit(Op::Binary(op), &[acc, b])?;
        }
        self.out(n, 0, acc);
        Ok(())
    }

    pub(crate) fn unary(&mut self, n: &NodeProto, op: UnaryOp) -> R<()> {
        let name = self.in0(n)?;
        if let Some(k) = self.known(&name) {
            let f = |x: &SymInt| -> Option<SymInt> {
                match (op, x) {
                    (UnaryOp::Not, SymInt::C(c)) => Some(SymInt::C((*c == 0) as i64)),
                    (UnaryOp::Neg, SymInt::C(c)) => c.checked_neg().map(SymInt::C),
                    (UnaryOp::Abs, SymInt::C(c)) => c.checked_abs().map(SymInt::C),
                    (UnaryOp::Abs, SymInt::D(d)) => Some(SymInt::D(d.clone())),
                    _ => None,
                }
            };
            if let Some(r) = known::map_n(&[k], k.dtype, |x| x.first().and_then(|v| f(v))) {
                self.set_out_known(n, 0, r)?;
                return Ok(());
            }
        }
        if let Some(t) = self.const_tensor(&name).filter(|t| t.dtype().is_float()) {
            if let Some(r) =
                known::map_f64(&[&t], t.dtype(), |x| x.first().and_then(|&v| fold_float_unary(op, v)))
            {
                self.set_out_tensor(n, 0, r)?;
                return Ok(());
            }
        }
        let x = self.value(&name)?;
        let v = self.emit(Op::Unary(op), &[x])?;
        self.out(n, 0, v);
        Ok(())
    }

    /// A binary op (pairwise over variadic operands) on small constant float tensors,
    /// folded at import (shape arithmetic done in floats: `Cast → Div → Ceil → Mul → Cast`).
    fn fold_float_binary(&self, op: BinaryOp, names: &[String]) -> Option<HostTensor> {
        let ts: Vec<HostTensor> = names.iter().map(|s| self.const_tensor(s)).collect::<Option<_>>()?;
        let dtype = ts.first()?.dtype();
        if !dtype.is_float() || ts.iter().any(|t| t.dtype() != dtype) {
            return None;
        }
        let out_dtype = if op.is_comparison() { DType::Bool } else { dtype };
        let (first, rest) = ts.split_first()?;
        let mut acc = first.clone();
        for t in rest {
            acc = known::map_f64(&[&acc, t], out_dtype, |x| match *x {
                [a, b] => fold_float(op, a, b),
                _ => None,
            })?;
        }
        Some(acc)
    }

    pub(crate) fn cast(&mut self, n: &NodeProto, d: DType) -> R<()> {
        let name = self.in0(n)?;
        match self.entry(&name)?.clone() {
            Entry::Known(k) if d.is_int() || d == DType::Bool => {
                self.set_out_known(n, 0, k.cast(d))?;
            }
            Entry::Known(k) if k.to_tensor().is_some() => {
                let t = k.to_tensor().ok_or_else(|| self.err("known value is not constant"))?;
                self.set_out_tensor(n, 0, t.cast(d))?;
            }
            Entry::Tensor(t) => {
                self.reserve_const(format!("the cast of '{name}' to {d}"), t.dims(), d)?;
                self.set_out_tensor(n, 0, t.cast(d))?;
            }
            _ => {
                let x = self.value(&name)?;
                let v = if self.g.value_type(x).dtype == d { x } else { self.emit(Op::Cast(d), &[x])? };
                self.out(n, 0, v);
            }
        }
        Ok(())
    }

    pub(crate) fn where_(&mut self, n: &NodeProto) -> R<()> {
        let names = [self.in0(n)?, self.in_req(n, 1)?, self.in_req(n, 2)?];
        if let (Some(c), Some(a), Some(b)) =
            (self.known(&names[0]), self.known(&names[1]), self.known(&names[2]))
        {
            let f = |x: &[&SymInt]| match *x {
                [SymInt::C(0), _, b] => Some(b.clone()),
                [SymInt::C(_), a, _] => Some(a.clone()),
                _ => None,
            };
            if let Some(k) = known::map_n(&[c, a, b], a.dtype, f) {
                self.set_out_known(n, 0, k)?;
                return Ok(());
            }
        }
        let c = self.value(&names[0])?;
        let a = self.value(&names[1])?;
        let mut b = self.value(&names[2])?;
        let da = self.g.value_type(a).dtype;
        if self.g.value_type(b).dtype != da {
            b = self.emit(Op::Cast(da), &[b])?;
        }
        let v = self.emit(Op::Where, &[c, a, b])?;
        self.out(n, 0, v);
        Ok(())
    }
}

pub(crate) fn fold_binary(op: BinaryOp, a: &SymInt, b: &SymInt) -> Option<SymInt> {
    use std::cmp::Ordering::*;
    let bool_ = |v: bool| Some(SymInt::C(v as i64));
    match op {
        BinaryOp::Add => known::add(a, b),
        BinaryOp::Sub => known::sub(a, b),
        BinaryOp::Mul => known::mul(a, b),
        BinaryOp::Div => known::div(a, b),
        BinaryOp::Mod => known::modulo(a, b),
        BinaryOp::Max => known::max(a, b),
        BinaryOp::Min => known::min(a, b),
        BinaryOp::Pow => match (a, b) {
            (SymInt::C(x), SymInt::C(y)) if *y >= 0 => x.checked_pow(u32::try_from(*y).ok()?).map(SymInt::C),
            _ => None,
        },
        BinaryOp::Equal => {
            let o = known::cmp(a, b);
            match o {
                Some(o) => bool_(o == Equal),
                // A symbolic dim never equals a negative constant.
                None => None,
            }
        }
        BinaryOp::Less => bool_(known::cmp(a, b)? == Less),
        BinaryOp::LessEqual => bool_(known::cmp(a, b)? != Greater),
        BinaryOp::Greater => bool_(known::cmp(a, b)? == Greater),
        BinaryOp::GreaterEqual => bool_(known::cmp(a, b)? != Less),
        BinaryOp::And => bool_(a.as_c()? != 0 && b.as_c()? != 0),
        BinaryOp::Or => bool_(a.as_c()? != 0 || b.as_c()? != 0),
        BinaryOp::Xor => bool_((a.as_c()? != 0) != (b.as_c()? != 0)),
    }
}

/// `op` on two float values (`None` for ops without float semantics here).
fn fold_float(op: BinaryOp, a: f64, b: f64) -> Option<f64> {
    let bool_ = |v: bool| Some(f64::from(u8::from(v)));
    match op {
        BinaryOp::Add => Some(a + b),
        BinaryOp::Sub => Some(a - b),
        BinaryOp::Mul => Some(a * b),
        BinaryOp::Div => Some(a / b),
        BinaryOp::Pow => Some(a.powf(b)),
        BinaryOp::Max => Some(if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }),
        BinaryOp::Min => Some(if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }),
        BinaryOp::Equal => bool_(a == b),
        BinaryOp::Less => bool_(a < b),
        BinaryOp::LessEqual => bool_(a <= b),
        BinaryOp::Greater => bool_(a > b),
        BinaryOp::GreaterEqual => bool_(a >= b),
        BinaryOp::Mod | BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => None,
    }
}

/// `op` on one float value, for the ops that are exact (or the same in f64 and rounded
/// once) on constants.
fn fold_float_unary(op: UnaryOp, x: f64) -> Option<f64> {
    Some(match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        _ => return None,
    })
}
