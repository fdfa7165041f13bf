//! Decoding a concat-form KV-cache model (`present = concat(past, new)`, typed
//! `past_seq+seq`) through [`blockfuse_mlx::MlxSession`] on the CPU: the optimized graph's
//! logits equal the fallback evaluator's on the composed graph at every step while the
//! cache grows, the cache stays in the session, and the lowering is planned once per
//! input-shape signature (each cache length is one).

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::{Backend, CachePair, Session};
use blockfuse_ir::HostTensor;
use blockfuse_mlx::{Device, MlxBackend};
use blockfuse_models::{llama_concat_kv_model, KvConfig};
use blockfuse_patterns::{default_rules, optimize};

fn max_diff(a: &HostTensor, b: &HostTensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn decode_steps_with_a_growing_cache_match_the_fallback_and_plan_once_per_length() {
    let g = llama_concat_kv_model(KvConfig::tiny().decoder, 96).unwrap();
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules()).unwrap();
    assert_eq!(report.blocks.get("sdpa"), Some(&2), "{:?}", report.near_misses);
    // present.L.* (outputs 1..=4) are the next past_key_values.L.* (inputs 1..=4).
    let pairs: Vec<CachePair> = (1..=4).map(|i| CachePair { input: i, output: i }).collect();
    let mlx = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
    let mut s = mlx.session(&opt).unwrap();
    let fallback = FallbackBackend::new();
    let mut reference = Backend::prepare(&fallback, &g).unwrap();
    // A 4-token prompt, then 4 single-token steps: past_seq = 0, 4, 5, 6, 7.
    let steps: Vec<Vec<i64>> = vec![vec![3, 17, 42, 5], vec![9], vec![61], vec![0], vec![95]];
    for round in 0..2 {
        s.reset_cache();
        reference.reset_cache();
        for (k, ids) in steps.iter().enumerate() {
            let input = [HostTensor::from_i64(vec![1, ids.len()], ids)];
            let got = s.step(&input, &pairs).unwrap();
            let want = reference.step(&input, &pairs).unwrap();
            let (got, want) = (got[0].as_ref().unwrap(), want[0].as_ref().unwrap());
            assert_eq!(got.dims(), &[1, ids.len(), 96]);
            let d = max_diff(got, want);
            assert!(d < 1e-4, "round {round}, step {k}: logits differ by {d}");
        }
        let (cache, want) = (s.cache().unwrap(), reference.cache().unwrap());
        assert_eq!(cache.len(), 4);
        for (c, w) in cache.iter().zip(&want) {
            assert_eq!(c.dims(), &[1, 2, 8, 16], "4 prompt tokens + 4 decoded");
            assert!(max_diff(c, w) < 1e-4);
        }
        // One plan per cache length, made in the first round and reused in the second.
        assert_eq!(s.stats().lowerings, steps.len(), "round {round}");
    }
    assert_eq!(s.stats().runs, 2 * steps.len());
}
