//! `blockfuse demo`: the bundled decoder optimized and run on the fallback evaluator and
//! MLX's CPU (when registered), side by side.

use super::{progress, write_file, Failure};
use crate::compare::{compare, Tolerance};
use crate::demo::{llama_decoder, DecoderConfig};
use crate::report::text_report;
use crate::Registry;
use blockfuse_ir::HostTensor;
use blockfuse_patterns::{default_rules, optimize};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `demo`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// Decoder layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Write the unoptimized decoder as blockfuse IR JSON here and stop.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// With --export: write the tiny KV-cache language model (`generate tiny-kv`) instead.
    #[arg(long, requires = "export")]
    kv: bool,
}

/// The backends the demo compares, by registered name and row label.
const ROWS: [(&str, &str); 2] = [("fallback", "fallback"), ("mlx:cpu", "mlx-cpu")];

pub(super) fn run(a: Args, registry: &Registry) -> Result<(), Failure> {
    let cfg = DecoderConfig { layers: a.layers, ..DecoderConfig::demo() };
    if let (Some(path), true) = (&a.export, a.kv) {
        let g = blockfuse_models::llama_kv_model(blockfuse_models::KvConfig::tiny())?;
        write_file(path, blockfuse_ir::json::to_json(&g)?)?;
        println!("wrote the tiny KV-cache model to {}", path.display());
        return Ok(());
    }
    let g = llama_decoder(cfg)?;
    if let Some(path) = a.export {
        write_file(&path, blockfuse_ir::json::to_json(&g)?)?;
        println!("wrote the {}-layer decoder to {}", a.layers, path.display());
        return Ok(());
    }
    println!("blockfuse demo: a {}-layer Llama-style decoder (hidden {}, {} q / {} kv heads), built from primitive ops\n", cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads);
    let mut opt = g.clone();
    let rep = optimize(&mut opt, &default_rules())?;
    print!("{}", text_report(&rep));
    let inputs = crate::verify::random_inputs(&g, 16, 3);
    let reference = registry.create("fallback")?.run(&g, &inputs)?;
    println!("\n{:<10} {:<12} {:>10} {:>8} {:>12}", "backend", "graph", "ms", "speedup", "max |err|");
    const RUNS: usize = 5;
    let rows: Vec<_> = ROWS.iter().filter(|(n, _)| registry.names().iter().any(|m| m == n)).collect();
    let bar = progress((2 * rows.len() * RUNS) as u64, "demo");
    for (name, label) in rows {
        let backend = registry.create(name)?;
        // The two graphs alternate, so both see the same machine state; each is prepared
        // once, as a serving loop would.
        let graphs = [("unoptimized", &g), ("optimized", &opt)];
        let mut sessions = [backend.prepare(&g)?, backend.prepare(&opt)?];
        let mut times = [Vec::new(), Vec::new()];
        let mut outs: [Vec<HostTensor>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for ((s, out), time) in sessions.iter_mut().zip(&mut outs).zip(&mut times) {
                let t = Instant::now();
                *out = s.run(&inputs)?;
                time.push(t.elapsed().as_secs_f64() * 1e3);
                bar.inc(1);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let (plain, fused) = (median(&mut times[0]), median(&mut times[1]));
        for (k, ((gname, _), out)) in graphs.iter().zip(&outs).enumerate() {
            let err = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| compare(a, b, Tolerance { rtol: 0.0, atol: 0.0 }).max_abs)
                .fold(0.0, f64::max);
            let ms = if k == 0 { plain } else { fused };
            let speedup = if k == 0 { "1.00x".to_string() } else { format!("{:.2}x", plain / fused) };
            bar.suspend(|| println!("{label:<10} {gname:<12} {ms:>10.2} {speedup:>8} {err:>12.2e}"));
        }
    }
    bar.finish_and_clear();
    println!(
        "\n(inputs: batch 16, seq 16; median of {RUNS} alternating runs; max |err| against the unoptimized graph on the fallback evaluator)"
    );
    Ok(())
}
