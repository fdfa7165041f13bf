//! One decoder layer with a static KV cache, in primitive ops the way exporters write it,
//! run through `MlxSession`: prefill and decode against a cache, device-resident (inputs
//! uploaded once, outputs evaluated on the device). One row per step of the work:
//!
//! - the cache written with a one-hot matmul + `where` (exporters without a scatter op),
//!   unoptimized and optimized;
//! - written with `slice_update` (what `TensorScatter` imports to), optimized;
//! - the same through `MlxSession::set_compiled` (the whole lowered graph `mx::compile`d once
//!   per shape): unoptimized; optimized without the `residual_rms_norm` rule; optimized;
//!   optimized with the q/k/v and gate/up projections fused horizontally; with 4-bit weights.
//!
//! ```sh
//! cargo build --release --example kv_bench -p blockfuse-mlx
//! target/release/examples/kv_bench --device gpu          # Llama-3-8B dims, bf16
//! target/release/examples/kv_bench --device cpu --small  # small dims, f32, checked
//! target/release/examples/kv_bench --case decode --rows compiled   # a subset (for profilers)
//! ```
//!
//! Full dims (as `../shared/gpu/anchor_layer_bench.py`): hidden 4096, 32 q / 8 kv heads of
//! 128, MLP 14336, bf16; prefill T = 2048 into a 2048-slot cache; decode T = 1 at position
//! 4096 of a 4097-slot cache whose first 4096 slots hold random keys and values.
//! `--small`: hidden 256, 4 / 2 heads, MLP 512, f32, prefill 64, decode at 128, and every
//! case's outputs compared with the fallback evaluator on the unoptimized graph.
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::{CachePair, Session};
use blockfuse_ir::{DType, Graph, HostTensor};
use blockfuse_mlx::array::with_device;
use blockfuse_mlx::{Array, Device, MlxBackend};
use blockfuse_models::{llama_kv_layer_with, random_tensor, CacheWrite, DecoderConfig};
use blockfuse_patterns::{
    block_counts, default_rules, optimize, optimize_with, quantize_weights, OptimizeOptions,
    ProjectionOptions,
};
use std::time::Instant;

struct Case {
    name: &'static str,
    seq: usize,
    max_cache: usize,
    /// Position of the first new token (the filled part of the cache before it).
    start: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn inputs(d: &DecoderConfig, c: &Case) -> Vec<HostTensor> {
    let hd = d.head_dim();
    let x = random_tensor(d.dtype, &[1, c.seq, d.hidden], 1.0, 1);
    let pos: Vec<i64> = (c.start..c.start + c.seq).map(|p| p as i64).collect();
    let cache = |seed| {
        let t = random_tensor(d.dtype, &[1, d.kv_heads, c.max_cache, hd], 1.0, seed);
        // Slots at and after `start` are unwritten: zeros, as a fresh buffer.
        let mut v = t.to_f64_vec();
        for (i, x) in v.iter_mut().enumerate() {
            if (i / hd) % c.max_cache >= c.start {
                *x = 0.0;
            }
        }
        HostTensor::from_f64(d.dtype, t.dims().to_vec(), &v)
    };
    vec![x, HostTensor::from_i64(vec![c.seq], &pos), cache(2), cache(3)]
}

fn max_err(a: &[HostTensor], b: &[HostTensor]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.to_f64_vec().into_iter().zip(y.to_f64_vec()).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut device, mut small, mut iters) = (Device::Gpu, false, 20usize);
    let (mut case_filter, mut row_filter) = (String::new(), String::new());
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--device" => {
                i += 1;
                device = match args.get(i).map(String::as_str) {
                    Some("cpu") => Device::Cpu,
                    Some("gpu") => Device::Gpu,
                    other => panic!("--device cpu|gpu, not {other:?}"),
                };
            }
            "--small" => small = true,
            "--case" => {
                i += 1;
                case_filter = args.get(i).cloned().expect("--case SUBSTRING");
            }
            "--rows" => {
                i += 1;
                row_filter = args.get(i).cloned().expect("--rows SUBSTRING");
            }
            "--iters" => {
                i += 1;
                iters = args.get(i).and_then(|s| s.parse().ok()).expect("--iters N");
            }
            other => {
                panic!("unknown argument {other} (--device cpu|gpu, --small, --iters N, --case S, --rows S)")
            }
        }
        i += 1;
    }
    let d = if small {
        // The demo decoder's sizes, one layer of them.
        DecoderConfig { layers: 1, seed: 5, final_norm: false, ..DecoderConfig::demo() }
    } else {
        DecoderConfig {
            layers: 1,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            intermediate: 14336,
            dtype: DType::BF16,
            weight_scale: 0.02,
            seed: 5,
            final_norm: false,
        }
    };
    let cases = if small {
        [
            Case { name: "prefill T=64", seq: 64, max_cache: 64, start: 0 },
            Case { name: "decode T=1, cache 128", seq: 1, max_cache: 129, start: 128 },
        ]
    } else {
        [
            Case { name: "prefill T=2048", seq: 2048, max_cache: 2048, start: 0 },
            Case { name: "decode T=1, cache 4096", seq: 1, max_cache: 4097, start: 4096 },
        ]
    };
    let backend = MlxBackend::with_default_lowerings(device).expect("the MLX device is available");
    println!(
        "kv_bench: one layer, hidden {}, {}/{} heads, MLP {}, {}, MLX {device}, median of {iters}",
        d.hidden, d.heads, d.kv_heads, d.intermediate, d.dtype
    );
    println!(
        "| case | graph | nodes | blocks | device-resident ms | host graph build ms | + host copy ms | step (cache fed back) ms | lowerings / traces | max err |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for c in cases.iter().filter(|c| c.name.contains(&case_filter)) {
        let one_hot = llama_kv_layer_with(d, c.max_cache, CacheWrite::OneHot).expect("the layer builds");
        let plain = llama_kv_layer_with(d, c.max_cache, CacheWrite::SliceUpdate).expect("the layer builds");
        let optimized = |g: &Graph| {
            let mut g = g.clone();
            optimize(&mut g, &default_rules()).expect("optimizes");
            g
        };
        let (one_hot_opt, opt) = (optimized(&one_hot), optimized(&plain));
        let mut no_residual = plain.clone();
        let mut rules = default_rules();
        rules.disable("residual_rms_norm");
        optimize(&mut no_residual, &rules).expect("optimizes");
        let mut fused = plain.clone();
        let fuse = OptimizeOptions { fuse_projections: Some(ProjectionOptions::default()) };
        optimize_with(&mut fused, &default_rules(), fuse).expect("optimizes");
        let host = inputs(&d, c);
        let reference = small.then(|| FallbackBackend::new().run(&one_hot, &host).expect("reference runs"));
        // The same optimized layer with its seven projections quantized (lossy: its max err is
        // the quantization's, not the lowering's).
        let mut q4 = opt.clone();
        quantize_weights(&mut q4, "4:64".parse().expect("valid spec")).expect("quantizes");
        let rows: [(&str, &Graph, bool); 8] = [
            ("one-hot write, unoptimized", &one_hot, false),
            ("one-hot write, optimized", &one_hot_opt, false),
            ("slice_update, optimized", &opt, false),
            ("slice_update, unoptimized, compiled", &plain, true),
            ("slice_update, optimized without residual_rms_norm, compiled", &no_residual, true),
            ("slice_update, optimized, compiled", &opt, true),
            ("slice_update, optimized + fused projections, compiled", &fused, true),
            ("slice_update, optimized + 4-bit g64, compiled", &q4, true),
        ];
        for (label, g, compiled) in rows.into_iter().filter(|r| r.0.contains(&row_filter)) {
            row(&backend, g, label, compiled, c, &host, iters, reference.as_deref());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    backend: &MlxBackend,
    g: &Graph,
    label: &str,
    compiled: bool,
    c: &Case,
    host: &[HostTensor],
    iters: usize,
    reference: Option<&[HostTensor]>,
) {
    let device = backend.device();
    let mut s = backend.session(g).expect("the session prepares");
    s.set_compiled(compiled);
    let arrays: Vec<Array> =
        with_device(device, || host.iter().map(|t| Array::from_host(t).expect("uploads")).collect())
            .expect("device");
    // A graph this MLX build cannot run (e.g. a kernel its JIT cannot compile) is a row that
    // says why, not the end of the table.
    if let Err(e) = s.run_arrays(arrays.clone()) {
        let why = e.to_string();
        println!(
            "| {} | {label} | {} | - | not run: {} | | | | | |",
            c.name,
            g.node_count(),
            why.lines().next().unwrap_or("")
        );
        return;
    }
    let mut resident = Vec::new();
    let mut build = Vec::new();
    for k in 0..iters + 3 {
        let t = Instant::now();
        let b0 = s.host_build_s();
        let outs = s.run_arrays(arrays.clone()).expect("runs");
        drop(outs);
        if k >= 3 {
            resident.push(t.elapsed().as_secs_f64() * 1e3);
            build.push((s.host_build_s() - b0) * 1e3);
        }
    }
    let mut with_copy = Vec::new();
    let mut last = Vec::new();
    for k in 0..iters.min(5) + 1 {
        let t = Instant::now();
        last = Session::run(&mut s, host).expect("runs");
        if k >= 1 {
            with_copy.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    // Steps: the present buffers become the next step's past, on the device.
    let pairs = [CachePair { input: 2, output: 1 }, CachePair { input: 3, output: 2 }];
    let given = arrays[..2].to_vec();
    let mut steps = Vec::new();
    for k in 0..iters + 3 {
        let t = Instant::now();
        let outs = s.step_arrays(given.clone(), &pairs).expect("steps");
        drop(outs);
        if k >= 3 {
            steps.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let blocks: Vec<String> = block_counts(g).into_iter().map(|(k, n)| format!("{k} {n}")).collect();
    let err = reference.map(|r| format!("{:.2e}", max_err(&last, r))).unwrap_or_else(|| "-".into());
    println!(
        "| {} | {label} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} / {} | {err} |",
        c.name,
        g.node_count(),
        if blocks.is_empty() { "-".into() } else { blocks.join(", ") },
        median(resident),
        median(build),
        median(with_copy),
        median(steps),
        s.stats().lowerings,
        s.traces(),
    );
}
