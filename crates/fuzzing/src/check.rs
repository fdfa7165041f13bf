//! What every graph a loader accepts must survive, and the NaN-aware value comparison of the
//! differential target.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::{json, text, Bindings, DType, Graph, HostTensor};
use blockfuse_patterns::{default_rules, optimize};

/// Graphs whose values together take more bytes than this (every symbol bound to 2) are not
/// evaluated: the targets look for panics, not for slow inputs.
pub const EVAL_BYTES: u64 = 1 << 20;

/// A graph a loader accepted: it validates, prints, writes to JSON and reads back to the same
/// dump, optimizes to a valid graph, and, when small, evaluates on the fallback evaluator
/// (when the original evaluates, the optimized graph evaluates too, to as many outputs).
/// Panics (with the graph's dump) on any violation.
pub fn accepted_graph(g: &Graph) {
    let dump = match g.validate().and_then(|()| text::dump(g)) {
        Ok(d) => d,
        Err(e) => panic!("an accepted graph does not validate: {e}"),
    };
    let doc = json::to_json(g).unwrap_or_else(|e| panic!("cannot write an accepted graph: {e}\n{dump}"));
    let back =
        json::from_json(&doc).unwrap_or_else(|e| panic!("cannot read back a written graph: {e}\n{doc}"));
    let again = text::dump(&back).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dump, again, "a JSON round trip changed the graph");
    let mut opt = g.clone();
    if let Err(e) = optimize(&mut opt, &default_rules()) {
        panic!("optimizing a valid graph failed: {e}\n{dump}");
    }
    if let Err(e) = opt.validate() {
        panic!("the optimized graph does not validate: {e}\n{dump}");
    }
    let Some(inputs) = small_inputs(g, 0) else { return };
    let fb = FallbackBackend::new();
    if let Ok(want) = fb.run(g, &inputs) {
        match fb.run(&opt, &inputs) {
            Ok(got) => assert_eq!(got.len(), want.len(), "output count changed\n{dump}"),
            Err(e) => panic!("the original evaluates, the optimized graph fails: {e}\n{dump}"),
        }
    }
}

/// Whether some value of `g` is f16 or bf16.
pub fn has_half(g: &Graph) -> bool {
    g.node_ids().any(|id| g.node(id).types.iter().any(|t| matches!(t.dtype, DType::F16 | DType::BF16)))
}

/// Deterministic inputs for `g` (every symbol bound to 2; floats in [−2, 2), integers and
/// bools in {0, 1}), or `None` when the graph's values would take more than [`EVAL_BYTES`].
pub fn small_inputs(g: &Graph, seed: u64) -> Option<Vec<HostTensor>> {
    let mut bindings = Bindings::new();
    for id in g.node_ids() {
        for t in g.node(id).types.iter() {
            for s in t.shape.iter().flat_map(|d| d.symbols()) {
                bindings.entry(s.clone()).or_insert(2);
            }
        }
    }
    let mut total = 0u64;
    for id in g.node_ids() {
        for t in g.node(id).types.iter() {
            let bytes = t
                .shape
                .iter()
                .try_fold(t.dtype.size_bytes() as u64, |a, d| a.checked_mul(d.eval(&bindings)? as u64))?;
            total = total.checked_add(bytes)?;
        }
    }
    if total > EVAL_BYTES {
        return None;
    }
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut out = Vec::new();
    for &id in g.inputs() {
        let ty = g.node(id).types.first()?;
        let dims = ty.eval_dims(&bindings)?;
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| if ty.dtype.is_float() { next() * 4.0 - 2.0 } else { (next() * 2.0).floor() })
            .collect();
        out.push(HostTensor::from_f64(ty.dtype, dims, &v));
    }
    Some(out)
}

/// Whether `got` matches `want` NaN-aware: NaN where `want` is NaN, equal infinities, finite
/// values within `tol` absolute plus `tol` relative (`tol` = 1e-3, or 2e-2 when `half`: the
/// graph rounds to f16/bf16 somewhere, where a reassociation upstream may move a value by an
/// ulp of the half type). Returns the first disagreement.
pub fn close(want: &HostTensor, got: &HostTensor, half: bool) -> Result<(), String> {
    if want.dtype() != got.dtype() || want.dims() != got.dims() {
        return Err(format!("type {}{:?} became {}{:?}", want.dtype(), want.dims(), got.dtype(), got.dims()));
    }
    let tol = if half || matches!(want.dtype(), DType::F16 | DType::BF16) { 2e-2 } else { 1e-3 };
    for (i, (a, b)) in want.to_f64_vec().into_iter().zip(got.to_f64_vec()).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol + tol * a.abs().max(b.abs());
        if !ok {
            return Err(format!("element {i}: {a} (original) vs {b} (optimized)"));
        }
    }
    Ok(())
}
