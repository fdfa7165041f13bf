//! Every model of `../shared/corpus-kv` (a tiny Llama exported with and without a KV cache,
//! f32 and bf16): imports, fuses into exactly `ground_truth.fusion_targets` of its
//! `index.json` entry, and matches the reference outputs of both data sets as imported and
//! optimized, on the fallback evaluator and on MLX CPU.
//!
//! The cache exports are the concat form: `present.L.key = concat(past_key_values.L.key,
//! new)`, typed `{batch, 2, past_seq+seq, 16}`; set 0 is a prefill with a past (past 5, 3 new
//! tokens), set 1 a decode step (past 6, 1 token), so attention has Tq ≠ Tk.

use blockfuse::compare::{compare, Tolerance};
use blockfuse::ir::{Graph, HostTensor};
use blockfuse::patterns::{default_rules, optimize};
use blockfuse::run_backend;
use common::{blocks_of, corpus_dir, index, DataSet, DATA_SETS};

mod common;

/// Output elements outside the dtype's tolerance, not counting the rows of query positions
/// that `attention_mask` pads (a left-padded row attends to nothing: its output is
/// implementation-defined, and the exporters' references differ there).
fn unexcused(got: &HostTensor, want: &HostTensor, mask: Option<&HostTensor>, seq: usize) -> usize {
    let tol = Tolerance::for_dtype(want.dtype());
    let dims = want.dims();
    let width: usize = dims.iter().skip(2).product();
    let padded = |i: usize| {
        let Some(m) = mask else { return false };
        // The mask covers past + new; the query at row t of batch b is mask[b, past + t].
        let (b, t) = (i / width.max(1) / seq.max(1), i / width.max(1) % seq.max(1));
        let total = m.dims()[1];
        dims.len() >= 2 && dims[1] == seq && m.get_f64(b * total + total - seq + t) == 0.0
    };
    (0..want.len())
        .filter(|&i| {
            let (a, b) = (got.get_f64(i), want.get_f64(i));
            let bad = (a.is_nan() != b.is_nan()) || (a - b).abs() > tol.atol + tol.rtol * b.abs();
            bad && !padded(i)
        })
        .count()
}

fn check_data_sets(name: &str, dir: &std::path::Path, g: &Graph, label: &str, backend: &str) {
    for set in DATA_SETS {
        let data = DataSet::read(name, dir, set, g);
        let seq = data.input("input_ids").map_or(1, |t| t.dims()[1]);
        let mask = data.input("attention_mask");
        let outs =
            run_backend(g, &data.inputs, backend).unwrap_or_else(|e| panic!("{name} ({label}, {set}): {e}"));
        assert_eq!(outs.len(), data.want.len(), "{name}: outputs");
        for ((out_name, _), got) in g.outputs().iter().zip(&outs) {
            let reference = data.reference(out_name);
            assert_eq!(got.dims(), reference.dims(), "{name} ({label}, {set}): {out_name} dims");
            let c = compare(got, reference, Tolerance::for_dtype(reference.dtype()));
            let bad = unexcused(got, reference, mask, seq);
            assert!(
                c.incompatible.is_none() && bad == 0,
                "{name} ({label}, {set}, {backend}): output {out_name} max_abs {:.3e} max_rel {:.3e}, {bad} bad elements",
                c.max_abs,
                c.max_rel,
            );
        }
    }
}

fn corpus_kv_case(name: &str) {
    let Some(root) = corpus_dir("corpus-kv") else { return };
    let index = index(&root);
    let entry = &index["models"][name];
    let dir = root.join(name);
    let g = blockfuse::load_model(&dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
    g.validate().unwrap();
    if entry["cache"].as_bool() == Some(true) {
        // The concat form: present is typed past_seq + seq, and pairs with past by name.
        let present = g.outputs().iter().find(|(n, _)| n == "present.0.key").expect("present.0.key");
        assert_eq!(g.value_type(present.1).shape[2].to_string(), "past_seq+seq", "{name}");
        let pairs = blockfuse::cache::cache_pairs(&g, &[]).unwrap();
        assert_eq!(pairs.len(), 4, "{name}: cache pairs {pairs:?}");
    }
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules()).unwrap();
    opt.validate().unwrap();
    let targets = entry["ground_truth"]["fusion_targets"].as_object().expect("fusion_targets");
    for (kind, want) in targets {
        assert_eq!(
            blocks_of(&report, kind),
            want.as_u64().unwrap(),
            "{name}: {kind} blocks (near-misses: {:?})",
            report.near_misses
        );
    }
    for backend in ["fallback", "mlx:cpu"] {
        check_data_sets(name, &dir, &g, "imported", backend);
        check_data_sets(name, &dir, &opt, "optimized", backend);
    }
}

macro_rules! case {
    ($($fn_name:ident => $model:literal),* $(,)?) => {
        $(
            #[test]
            fn $fn_name() {
                corpus_kv_case($model);
            }
        )*
    };
}

case! {
    llama_eager_f32_cache_dynamo => "llama__eager__f32__cache__dynamo",
    llama_eager_bf16_cache_dynamo => "llama__eager__bf16__cache__dynamo",
    llama_sdpa_f32_cache_dynamo => "llama__sdpa__f32__cache__dynamo",
    llama_sdpa_bf16_cache_dynamo => "llama__sdpa__bf16__cache__dynamo",
    llama_eager_f32_nocache_dynamo => "llama__eager__f32__nocache__dynamo",
    llama_eager_bf16_nocache_dynamo => "llama__eager__bf16__nocache__dynamo",
    llama_eager_f32_nocache_legacy => "llama__eager__f32__nocache__legacy",
    llama_sdpa_f32_nocache_dynamo => "llama__sdpa__f32__nocache__dynamo",
    llama_sdpa_bf16_nocache_dynamo => "llama__sdpa__bf16__nocache__dynamo",
    llama_sdpa_f32_nocache_legacy => "llama__sdpa__f32__nocache__legacy",
}
