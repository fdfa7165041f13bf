//! Inputs of the parity tables ([`ParityCase`]): random operands of a case, and the exact
//! widening to f64 the references run on.

use crate::random::rand;
use blockfuse_ir::block::ParityCase;
use blockfuse_ir::{DType, HostTensor, TensorType};

/// The case's operands: `scale · noise` of each operand type (seeds 1, 2, ...); `Err` names
/// an operand whose dims are not all known.
pub fn operands(case: &ParityCase) -> Result<Vec<HostTensor>, String> {
    case.operands
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let dims =
                t.known_dims().ok_or_else(|| format!("{}: operand {i} is {t}, not concrete", case.what()))?;
            Ok(rand(t.dtype, &dims, 1 + i as u64, case.scale))
        })
        .collect()
}

/// `t` in f64 (exact for every float dtype); other dtypes unchanged.
pub fn widen(t: &HostTensor) -> HostTensor {
    let d = if t.dtype().is_float() { DType::F64 } else { t.dtype() };
    HostTensor::from_f64(d, t.dims().to_vec(), &t.to_f64_vec())
}

/// The type of a host tensor.
pub fn type_of(t: &HostTensor) -> TensorType {
    TensorType::known(t.dtype(), t.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::blocks::{Gelu, GeluKind};

    #[test]
    fn operands_follow_the_case_and_widen_exactly() {
        let case = ParityCase::new(Gelu::new(GeluKind::Exact), DType::BF16, &[&[2, 3]], 5.0, 1e-2);
        let x = operands(&case).unwrap();
        assert_eq!((x.len(), type_of(&x[0])), (1, TensorType::known(DType::BF16, &[2, 3])));
        let w = widen(&x[0]);
        assert_eq!((w.dtype(), w.to_f64_vec()), (DType::F64, x[0].to_f64_vec()));
        let g = case.graph(&case.operands).unwrap();
        assert_eq!((g.inputs().len(), g.outputs().len()), (1, 1));
        let mut symbolic = case.clone();
        symbolic.operands = vec![TensorType::new(DType::F32, [blockfuse_ir::Dim::sym("n")])];
        assert!(operands(&symbolic).unwrap_err().contains("not concrete"));
    }
}
