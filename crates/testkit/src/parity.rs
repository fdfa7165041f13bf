//! The parity harness over [`ParityCase`] tables: random operands of a case, the exact
//! widening to f64 the references run on, and the two runners every backend's parity test
//! (and a third-party block crate's) calls with its list of cases: [`f64_failures`] (a
//! backend against itself in f64) and [`reference_failures`] (backends against a reference
//! backend). Both take any [`Backend`], so this crate depends on no backend.

use crate::compare::max_abs_diff;
use crate::random::rand;
use blockfuse_ir::backend::Backend;
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

/// Runs each case on `backend` on its operands, and again on the same operands widened to
/// f64, and compares the two within the case's tolerance. Returns one line per failure
/// (a mismatch, a wrong output dtype, or a run error), empty when all cases pass.
pub fn f64_failures(backend: &dyn Backend, cases: &[ParityCase]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let run = || -> Result<Vec<String>, String> {
            let x = operands(case)?;
            let x64: Vec<_> = x.iter().map(widen).collect();
            let types64: Vec<TensorType> = x64.iter().map(type_of).collect();
            let err = |e: &dyn std::fmt::Display| format!("{}: {e}", case.what());
            let got =
                backend.run(&case.graph(&case.operands).map_err(|e| err(&e))?, &x).map_err(|e| err(&e))?;
            let want = backend.run(&case.graph(&types64).map_err(|e| err(&e))?, &x64).map_err(|e| err(&e))?;
            let declared = case.block.infer(&case.operands).map_err(|e| err(&e))?;
            let mut out = Vec::new();
            for (i, ((g, w), d)) in got.iter().zip(&want).zip(&declared).enumerate() {
                if g.dtype() != d.dtype {
                    out.push(format!(
                        "{} output {i}: dtype {} ≠ declared {}",
                        case.what(),
                        g.dtype(),
                        d.dtype
                    ));
                }
                let e = max_abs_diff(&widen(g), w, case.tol);
                if e != 0.0 {
                    out.push(format!("{} output {i}: error {e:e} > {:e}", case.what(), case.tol));
                }
            }
            Ok(out)
        };
        match run() {
            Ok(f) => failures.extend(f),
            Err(e) => failures.push(e),
        }
    }
    failures
}

/// Runs each case on every `(label, backend)` of `backends` and compares the outputs (dtype,
/// dims, values within `tol(case)`) with `reference`'s on the same operands. Returns one line
/// per failure, empty when all cases pass.
pub fn reference_failures(
    reference: &dyn Backend,
    backends: &[(&str, &dyn Backend)],
    cases: &[ParityCase],
    tol: impl Fn(&ParityCase) -> f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let tol = tol(case);
        let prepared = operands(case).and_then(|x| {
            let g = case.graph(&case.operands).map_err(|e| format!("{}: {e}", case.what()))?;
            let want = reference.run(&g, &x).map_err(|e| format!("{} (reference): {e}", case.what()))?;
            Ok((x, g, want))
        });
        let (x, g, want) = match prepared {
            Ok(p) => p,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for (how, backend) in backends {
            let got = match backend.run(&g, &x) {
                Ok(got) => got,
                Err(e) => {
                    failures.push(format!("{} ({how}): {e}", case.what()));
                    continue;
                }
            };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if (g.dtype(), g.dims()) != (w.dtype(), w.dims()) {
                    failures.push(format!(
                        "{} ({how}) output {i}: type differs from the reference's",
                        case.what()
                    ));
                    continue;
                }
                let err = max_abs_diff(g, w, tol);
                if err != 0.0 {
                    failures.push(format!("{} ({how}) output {i}: error {err:e} > {tol:e}", case.what()));
                }
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::blocks::{Gelu, GeluKind};

    /// What a [`Toy`] backend returns for its inputs.
    type Outputs = fn(&[HostTensor]) -> Vec<HostTensor>;

    /// A backend whose every run returns `f(inputs)`, or fails when `f` is `None`.
    struct Toy(Option<Outputs>);

    impl Backend for Toy {
        fn name(&self) -> String {
            "toy".into()
        }
        fn capabilities(&self) -> blockfuse_ir::backend::Capabilities {
            Default::default()
        }
        fn prepare<'a>(
            &'a self,
            _: &'a blockfuse_ir::Graph,
        ) -> Result<Box<dyn blockfuse_ir::backend::Session + 'a>, blockfuse_ir::backend::BackendError>
        {
            let f = self.0.ok_or_else(|| blockfuse_ir::backend::BackendError::new("toy", "cannot run"))?;
            Ok(Box::new(blockfuse_ir::backend::HostSession::new(move |x| Ok(f(x)))))
        }
    }

    #[test]
    fn runners_report_mismatches_and_errors_per_case() {
        let cases = vec![ParityCase::new(Gelu::new(GeluKind::Exact), DType::F32, &[&[2, 3]], 5.0, 1e-5)];
        let same = Toy(Some(|x| x.to_vec()));
        let zeros = Toy(Some(|x| vec![HostTensor::from_f64(x[0].dtype(), x[0].dims().to_vec(), &[0.0; 6])]));
        // The identity is its own f64 computation; zeros differ from the identity.
        assert_eq!(f64_failures(&same, &cases), Vec::<String>::new());
        let both: [(&str, &dyn Backend); 2] = [("same", &same), ("zeros", &zeros)];
        let f = reference_failures(&same, &both, &cases, |c| c.tol);
        assert!(f.len() == 1 && f[0].contains("(zeros) output 0: error"), "{f:?}");
        let f = f64_failures(&Toy(None), &cases);
        assert!(f.len() == 1 && f[0].contains("block.gelu") && f[0].contains("cannot run"), "{f:?}");
        let f = reference_failures(&Toy(None), &both[..1], &cases, |c| c.tol);
        assert!(f.len() == 1 && f[0].contains("(reference)"), "{f:?}");
    }

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
