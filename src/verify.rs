//! `optimize --verify [--against NAME]`: evaluate the original graph with the fallback
//! evaluator and the optimized graph on a chosen backend (the fallback evaluator by default)
//! on the same random inputs and, on a mismatch, name the rule responsible; then, when the
//! build has MLX, run the optimized graph on MLX (CPU) and compare it too. NaN and ∞
//! mismatches are counted and located ([`Comparison`]), since `max_abs` skips them.

use crate::compare::{compare, Comparison, Tolerance};
use crate::Error;
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::{Graph, HostTensor};
use blockfuse_patterns::{optimize, RuleSet};

/// What verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Largest |optimized − original| over all outputs, finite elements only.
    pub max_abs: f64,
    /// None when every output agrees; else the first mismatching output and the rule
    /// whose rewrites alone reproduce the mismatch (if one does).
    pub mismatch: Option<(String, Option<String>)>,
    /// Elements of all outputs that `max_abs` skipped because one side was NaN or ±∞.
    pub skipped_non_finite: usize,
    /// The mismatching output's comparison ([`Comparison::summary`]: NaN and ∞ mismatches,
    /// first bad index).
    pub detail: Option<String>,
    /// The optimized graph on MLX (CPU) against the fallback evaluator.
    pub mlx: MlxCheck,
}

/// The MLX (CPU) side of verification.
#[derive(Debug, Clone, PartialEq)]
pub enum MlxCheck {
    /// MLX could not run the graph (the reason), e.g. an op it does not support.
    NotRun(String),
    /// Every output agrees with the fallback evaluator.
    Agrees,
    /// The first output that differs, and its comparison summary.
    Differs(String, String),
}

impl Verdict {
    /// The report lines: the max_abs line (saying what it skipped), the mismatch detail, and
    /// the MLX comparison.
    pub fn summary(&self) -> String {
        let mut s = format!("verify: max |optimized - original| = {:.3e}", self.max_abs);
        if self.skipped_non_finite > 0 {
            s.push_str(&format!(" ({} non-finite elements skipped)", self.skipped_non_finite));
        }
        if let (Some((output, _)), Some(detail)) = (&self.mismatch, &self.detail) {
            s.push_str(&format!("\nverify: output \"{output}\": {detail}"));
        }
        s.push_str(&match &self.mlx {
            MlxCheck::Agrees => "\nverify: MLX (CPU) agrees with the fallback evaluator".to_string(),
            MlxCheck::NotRun(why) => format!("\nverify: MLX (CPU) not compared: {why}"),
            MlxCheck::Differs(o, d) => {
                format!("\nverify: MLX (CPU) differs from the fallback on \"{o}\": {d}")
            }
        });
        s
    }
}

pub use blockfuse_testkit::random::{random_inputs, random_inputs_with};

/// [`random_inputs_with`], refusing first (naming the input) an input that would take more
/// than `max_tensor_bytes` once its symbols are bound, or whose size overflows.
pub fn random_inputs_limited(
    g: &Graph,
    bind: &Bindings,
    sym_size: usize,
    seed: u64,
    max_tensor_bytes: u64,
) -> Result<Vec<HostTensor>, Error> {
    let mut bindings = bind.clone();
    for &id in g.inputs() {
        let node = g.node(id);
        let Some(ty) = node.types.first() else { continue };
        for s in ty.shape.iter().flat_map(|d| d.symbols()) {
            bindings.entry(s.clone()).or_insert(sym_size);
        }
        let bytes = blockfuse_ir::limits::type_bytes(ty, &bindings).unwrap_or(u64::MAX);
        if bytes > max_tensor_bytes {
            let name = node.name.as_deref().unwrap_or("");
            return Err(Error::Other(format!(
                "input \"{name}\": {ty} takes {bytes} bytes with these sizes, over the limit \
                 max_tensor_bytes = {max_tensor_bytes} (--max-tensor-bytes)"
            )));
        }
    }
    Ok(random_inputs_with(g, bind, sym_size, seed))
}

/// The comparison of every output pair, at ten times the dtype's tolerance.
fn comparisons(a: &[HostTensor], b: &[HostTensor]) -> Vec<Comparison> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let tol = Tolerance::for_dtype(y.dtype());
            compare(x, y, Tolerance { rtol: tol.rtol * 10.0, atol: tol.atol * 10.0 })
        })
        .collect()
}

fn first_bad(cs: &[Comparison]) -> Option<usize> {
    cs.iter().position(|c| !c.passed())
}

/// The optimized graph on MLX (CPU), from the registry, against `want`: what the verified
/// backend (by default the fallback evaluator) computed for it.
fn check_mlx(
    g: &Graph,
    names: &[String],
    inputs: &[HostTensor],
    want: &[HostTensor],
    against: &str,
) -> MlxCheck {
    if against.starts_with("mlx") {
        return MlxCheck::NotRun(format!("the comparison above already ran on {against}"));
    }
    let run = || -> Result<Vec<HostTensor>, String> {
        let mlx = crate::default_registry().create("mlx").map_err(|e| e.to_string())?;
        mlx.run(g, inputs).map_err(|e| e.to_string())
    };
    match run() {
        Err(why) => MlxCheck::NotRun(why),
        Ok(got) => {
            let cs = comparisons(&got, want);
            match first_bad(&cs) {
                None => MlxCheck::Agrees,
                Some(i) => MlxCheck::Differs(names[i].clone(), cs[i].summary()),
            }
        }
    }
}

/// Checks that `optimized` (made from `original` with `rules`) computes the same outputs on
/// `against` as `original` does on the fallback evaluator.
pub fn verify(
    original: &Graph,
    optimized: &Graph,
    rules: &RuleSet,
    seed: u64,
    against: &dyn Backend,
) -> Result<Verdict, Error> {
    let inputs = random_inputs(original, 3, seed);
    let run = |g: &Graph| Ok::<_, Error>(against.run(g, &inputs)?);
    let want = Backend::run(&FallbackBackend::new(), original, &inputs)?;
    let got = run(optimized)?;
    let names: Vec<String> = original.outputs().iter().map(|(n, _)| n.clone()).collect();
    let cs = comparisons(&got, &want);
    let mut verdict = Verdict {
        max_abs: cs.iter().map(|c| c.max_abs).fold(0.0, f64::max),
        mismatch: None,
        skipped_non_finite: cs.iter().map(|c| c.skipped_non_finite).sum(),
        detail: None,
        mlx: check_mlx(optimized, &names, &inputs, &got, &against.name()),
    };
    let Some(bad) = first_bad(&cs) else {
        return Ok(verdict);
    };
    verdict.detail = Some(cs[bad].summary());
    let output = names[bad].clone();
    // Bisect by rule: the first rule whose rewrites alone change the outputs is named.
    for rule in rules.rules() {
        let mut g = original.clone();
        let only = RuleSet::new().with(rule.clone());
        optimize(&mut g, &only)?;
        if first_bad(&comparisons(&run(&g)?, &want)).is_some() {
            verdict.mismatch = Some((output, Some(rule.name.to_string())));
            return Ok(verdict);
        }
    }
    verdict.mismatch = Some((output, None));
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, DType, TensorType};

    /// `y = x · c`.
    fn scaled(c: f64) -> Graph {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::known(DType::F32, &[2, 3]));
        let c = b.scalar(DType::F32, c);
        let y = b.mul(x, c).unwrap();
        g.add_output("y", y);
        g
    }

    #[test]
    fn nan_differences_are_counted_and_mlx_is_compared() {
        let (original, broken) = (scaled(1.0), scaled(f64::NAN));
        let v = verify(&original, &broken, &RuleSet::new(), 0, &FallbackBackend::new()).unwrap();
        assert_eq!(v.max_abs, 0.0, "every element differs only in NaN-ness");
        assert_eq!(v.skipped_non_finite, 6);
        assert_eq!(v.mismatch, Some(("y".to_string(), None)));
        let s = v.summary();
        assert!(s.contains("(6 non-finite elements skipped)") && s.contains("6 NaN mismatches"), "{s}");
        assert!(s.contains("first at index 0"), "{s}");
        if cfg!(feature = "mlx") {
            assert_eq!(v.mlx, MlxCheck::Agrees, "MLX computes the same NaNs as the fallback evaluator");
        }
        let ok = verify(&original, &original, &RuleSet::new(), 0, &FallbackBackend::new()).unwrap();
        assert_eq!((ok.mismatch, ok.skipped_non_finite, ok.detail), (None, 0, None));
    }
}
