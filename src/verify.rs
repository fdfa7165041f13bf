//! `optimize --verify [--against NAME]`: evaluate the original graph with the fallback
//! evaluator and the optimized graph on a chosen backend (the fallback evaluator by default)
//! on the same random inputs and, on a mismatch, name the rule responsible.

use crate::compare::{compare, Tolerance};
use crate::Error;
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::{Bindings, DType, Graph, HostTensor};
use blockfuse_patterns::{optimize, RuleSet};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Largest |optimized − original| over all outputs.
    pub max_abs: f64,
    /// None when every output agrees; else the first mismatching output and the rule
    /// whose rewrites alone reproduce the mismatch (if one does).
    pub mismatch: Option<(String, Option<String>)>,
}

/// Random inputs for `g`: symbols bound to `sym_size`, floats ~ N(0,1)-ish, integers in
/// `0..2` (valid token ids and mask values), bools random.
pub fn random_inputs(g: &Graph, sym_size: usize, seed: u64) -> Vec<HostTensor> {
    random_inputs_with(g, &Bindings::new(), sym_size, seed)
}

/// [`random_inputs`] with some symbols bound (`--bind batch=2,seq=7`); the others are
/// bound to `sym_size`.
pub fn random_inputs_with(g: &Graph, bind: &Bindings, sym_size: usize, seed: u64) -> Vec<HostTensor> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut bindings = bind.clone();
    g.inputs()
        .iter()
        .map(|&id| {
            let ty = &g.node(id).types[0];
            for d in &ty.shape {
                for s in d.symbols() {
                    bindings.entry(s.clone()).or_insert(sym_size);
                }
            }
            let dims = ty.eval_dims(&bindings).unwrap_or_default();
            let n: usize = dims.iter().product();
            let values: Vec<f64> = (0..n)
                .map(|_| match ty.dtype {
                    d if d.is_float() => rng.gen_range(-2.0..2.0),
                    DType::Bool => rng.gen_range(0..2) as f64,
                    _ => rng.gen_range(0..2) as f64,
                })
                .collect();
            HostTensor::from_f64(ty.dtype, dims, &values)
        })
        .collect()
}

fn outputs_agree(a: &[HostTensor], b: &[HostTensor]) -> (f64, Option<usize>) {
    let mut max_abs = 0.0f64;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = Tolerance::for_dtype(y.dtype());
        let c = compare(x, y, Tolerance { rtol: tol.rtol * 10.0, atol: tol.atol * 10.0 });
        max_abs = max_abs.max(c.max_abs);
        if !c.passed() {
            return (max_abs, Some(i));
        }
    }
    (max_abs, None)
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
    let (max_abs, bad) = outputs_agree(&got, &want);
    let Some(bad) = bad else {
        return Ok(Verdict { max_abs, mismatch: None });
    };
    let output = original.outputs()[bad].0.clone();
    // Bisect by rule: the first rule whose rewrites alone change the outputs is named.
    for rule in rules.rules() {
        let mut g = original.clone();
        let only = RuleSet::new().with(rule.clone());
        optimize(&mut g, &only)?;
        if outputs_agree(&run(&g)?, &want).1.is_some() {
            return Ok(Verdict { max_abs, mismatch: Some((output, Some(rule.name.to_string()))) });
        }
    }
    Ok(Verdict { max_abs, mismatch: Some((output, None)) })
}
