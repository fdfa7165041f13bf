//! A 2-layer Llama-style decoder (hidden 256, 4 heads × 64, SwiGLU MLP of 688, seq 64,
//! batch 1) run by the fallback backend, twice: built from primitive ops as an exporter
//! writes it (`blockfuse_models::llama_decoder`: RMSNorm, RoPE, attention and SwiGLU
//! composed), after `blockfuse_patterns::optimize` with those four as blocks (which then
//! run their fallback subgraphs), and with the projections fused as well (`fuse_projections`:
//! q/k/v and gate/up as one matmul and a split each).
//!
//! `cargo bench -p blockfuse-fallback --bench decoder -- --warm-up-time 1 --measurement-time 3`

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::DType;
use blockfuse_models::{llama_decoder, random_tensor, DecoderConfig};
use blockfuse_patterns::{
    block_counts, default_rules, optimize, optimize_with, OptimizeOptions, ProjectionOptions,
};
use criterion::{criterion_group, criterion_main, Criterion};

const HIDDEN: usize = 256;
const SEQ: usize = 64;

fn bench(c: &mut Criterion) {
    let cfg = DecoderConfig {
        layers: 2,
        hidden: HIDDEN,
        heads: 4,
        kv_heads: 4,
        intermediate: 688,
        dtype: DType::F32,
        weight_scale: 1.0 / (HIDDEN as f64).sqrt(),
        seed: 42,
        final_norm: true,
    };
    let composed = llama_decoder(cfg).unwrap();
    let mut blocks = composed.clone();
    optimize(&mut blocks, &default_rules()).unwrap();
    let counts = block_counts(&blocks);
    for (kind, n) in [("rms_norm", 1), ("residual_rms_norm", 4), ("rope", 4), ("sdpa", 2), ("swiglu", 2)] {
        assert_eq!(counts.get(kind).copied(), Some(n), "{kind} blocks after optimize: {counts:?}");
    }
    let x = random_tensor(DType::F32, &[1, SEQ, HIDDEN], 1.0, 7);
    let backend = FallbackBackend::new();
    // Both spellings compute the same decoder.
    let a = backend.run(&composed, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let b = backend.run(&blocks, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-3, "composed and block decoders differ by {diff}");

    // The same blocks with q/k/v and gate/up as one matmul each and a split (bit for bit).
    let mut fused = composed.clone();
    let on = OptimizeOptions { fuse_projections: Some(ProjectionOptions::default()) };
    let report = optimize_with(&mut fused, &default_rules(), on).unwrap();
    assert_eq!(report.rules["fuse_projections"], 4);
    assert_eq!(backend.run(&fused, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec(), b);

    let mut group = c.benchmark_group("decoder_2x256_seq64");
    group.bench_function("composed", |bench| {
        bench.iter(|| backend.run(&composed, std::slice::from_ref(&x)).unwrap())
    });
    group.bench_function("blocks", |bench| {
        bench.iter(|| backend.run(&blocks, std::slice::from_ref(&x)).unwrap())
    });
    group.bench_function("blocks_fused_projections", |bench| {
        bench.iter(|| backend.run(&fused, std::slice::from_ref(&x)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
