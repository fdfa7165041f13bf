//! Cache pairs of KV-cache graphs: which output is the next value of which input
//! (`present.0.key` of `past_key_values.0.key`). See `docs/ir-format.md`, "Cache pairs".
//!
//! Pairs come, in this order, from explicit overrides (`--cache-pair IN=OUT`), from the
//! names (`past_key_values.N.key` → `present.N.key`, `past_key_N` → `present_key_N`, ...),
//! and from the shapes: an input whose name mentions `past` or `cache` and has no pair yet
//! pairs with the one unpaired output of its dtype and rank whose dims equal its own on
//! every axis but at most one (the sequence axis a concat-form cache grows along). An
//! input with several such outputs stays unpaired: no guessing.

use crate::Error;
use blockfuse_ir::backend::CachePair;
use blockfuse_ir::Graph;

/// The name an exporter gives the present value of the past input `name`, if its name says.
pub fn present_name(name: &str) -> Option<String> {
    for (past, present) in [
        ("past_key_values", "present"),
        ("past_key", "present_key"),
        ("past_value", "present_value"),
        ("past", "present"),
    ] {
        if let Some(rest) = name.strip_prefix(past) {
            return Some(format!("{present}{rest}"));
        }
    }
    None
}

/// The cache pairs of `g`: `overrides` (input name, output name) first, then by name, then
/// by shape (see the module docs). Unknown override names are errors.
pub fn cache_pairs(g: &Graph, overrides: &[(String, String)]) -> Result<Vec<CachePair>, Error> {
    let input_names: Vec<String> =
        g.inputs().iter().map(|&id| g.node(id).name.clone().unwrap_or_default()).collect();
    let output_of = |n: &str| g.outputs().iter().position(|(m, _)| m == n);
    let mut pairs: Vec<CachePair> = Vec::new();
    let taken = |pairs: &[CachePair], i: usize, o: usize| pairs.iter().any(|p| p.input == i || p.output == o);
    for (i_name, o_name) in overrides {
        let input = input_names.iter().position(|n| n == i_name).ok_or_else(|| {
            Error::Other(format!("--cache-pair {i_name}={o_name}: the graph has no input \"{i_name}\""))
        })?;
        let output = output_of(o_name).ok_or_else(|| {
            Error::Other(format!("--cache-pair {i_name}={o_name}: the graph has no output \"{o_name}\""))
        })?;
        pairs.retain(|p| p.input != input && p.output != output);
        pairs.push(CachePair { input, output });
    }
    for (input, name) in input_names.iter().enumerate() {
        if let Some(output) = present_name(name).and_then(|p| output_of(&p)) {
            if !taken(&pairs, input, output) {
                pairs.push(CachePair { input, output });
            }
        }
    }
    for (input, name) in input_names.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !(lower.contains("past") || lower.contains("cache")) || pairs.iter().any(|p| p.input == input) {
            continue;
        }
        let ty = &g.node(g.inputs()[input]).types[0];
        let fits: Vec<usize> = (0..g.outputs().len())
            .filter(|&o| !pairs.iter().any(|p| p.output == o))
            .filter(|&o| {
                let out = g.value_type(g.outputs()[o].1);
                out.dtype == ty.dtype
                    && out.rank() == ty.rank()
                    && out.shape.iter().zip(&ty.shape).filter(|(a, b)| a != b).count() <= 1
            })
            .collect();
        if let [output] = fits[..] {
            pairs.push(CachePair { input, output });
        }
    }
    pairs.sort();
    Ok(pairs)
}

/// Parses `IN=OUT` (a `--cache-pair` value).
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((i, o)) if !i.is_empty() && !o.is_empty() => Ok((i.to_string(), o.to_string())),
        _ => Err(format!("expected INPUT=OUTPUT, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, DType, Dim, TensorType};

    fn graph(inputs: &[&str], outputs: &[&str], cache_dims: &[Dim]) -> Graph {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("hidden", TensorType::new(DType::F32, cache_dims.iter().cloned()));
        let vals: Vec<_> = inputs
            .iter()
            .map(|n| b.input(n, TensorType::new(DType::F32, cache_dims.iter().cloned())))
            .collect();
        let outs: Vec<_> = vals.iter().map(|&v| b.add2(v, x).unwrap()).collect();
        for (n, v) in outputs.iter().zip(outs) {
            g.add_output(n, v);
        }
        g
    }

    #[test]
    fn pairs_by_name_then_by_shape() {
        let d = [Dim::sym("batch"), Dim::Known(2), Dim::Known(8), Dim::Known(4)];
        let g = graph(
            &["past_key_values.0.key", "past_key_values.0.value"],
            &["present.0.value", "present.0.key"],
            &d,
        );
        let p = cache_pairs(&g, &[]).unwrap();
        assert_eq!(p, vec![CachePair { input: 1, output: 1 }, CachePair { input: 2, output: 0 }]);
        // Names that say nothing: by shape, only when unique.
        let g = graph(&["past_key_values_0_0"], &["cat_3"], &d);
        assert_eq!(cache_pairs(&g, &[]).unwrap(), vec![CachePair { input: 1, output: 0 }]);
        let g = graph(&["past_a", "past_b"], &["cat_1", "cat_2"], &d);
        // Two candidates each, so no pair.
        assert!(cache_pairs(&g, &[]).unwrap().is_empty());
        let o = [("past_b".to_string(), "cat_1".to_string())];
        // past_b=cat_1 by override; then past_a has one candidate left.
        let want = vec![CachePair { input: 1, output: 1 }, CachePair { input: 2, output: 0 }];
        assert_eq!(cache_pairs(&g, &o).unwrap(), want);
        let bad = [("nope".to_string(), "cat_1".to_string())];
        assert!(cache_pairs(&g, &bad).unwrap_err().to_string().contains("no input \"nope\""));
        assert_eq!(parse_override("a=b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_override("a").is_err());
        assert_eq!(present_name("past_key_values.3.value").as_deref(), Some("present.3.value"));
    }
}
