//! Optimizer scaling: the same decoder at 8, 32 and 128 layers. Time per node should stay
//! flat (no pass may be quadratic in graph size).

use blockfuse::demo::{llama_decoder, DecoderConfig};
use blockfuse::patterns::{default_rules, optimize};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench_optimize(c: &mut Criterion) {
    let rules = default_rules();
    let mut group = c.benchmark_group("optimize_decoder");
    group.sample_size(10);
    for layers in [8usize, 32, 128] {
        let cfg = DecoderConfig {
            layers,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            ..DecoderConfig::demo()
        };
        let g = llama_decoder(cfg).expect("decoder builds");
        group.throughput(Throughput::Elements(g.node_count() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(layers), &g, |b, g| {
            b.iter_batched(
                || g.clone(),
                |mut g| optimize(&mut g, &rules).expect("optimizes"),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_optimize);
criterion_main!(benches);
