//! Import bench: time and peak memory of [`import_file`] on the models given.
//!
//! ```sh
//! target/onnx-venv/bin/python scripts/external-data-model.py llama target/bench-models/llama4
//! target/onnx-venv/bin/python scripts/external-data-model.py llama target/bench-models/tiny128 \
//!     --layers 128 --hidden 64 --embedded
//! cargo bench -p blockfuse-onnx --bench import -- target/bench-models/llama4/model.onnx \
//!     target/bench-models/tiny128/model.onnx
//! ```
//!
//! For each model: the best of 3 import times, the peak resident set size during the imports
//! (`VmHWM` of `/proc/self/status`, reset before each model through `/proc/self/clear_refs`;
//! Linux only), the weight bytes (constants of the graph), and the ratio of the two. Memory-
//! mapped weight pages count in the RSS only once they are read, which importing does not do.

use blockfuse_ir::Op;
use blockfuse_onnx::import_file;
use std::path::PathBuf;
use std::time::Instant;

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; everything else is a model path.
    let paths: Vec<PathBuf> =
        std::env::args().skip(1).filter(|a| !a.starts_with("--")).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!(
            "usage: cargo bench -p blockfuse-onnx --bench import -- MODEL.onnx...  (see the doc comment)"
        );
        return;
    }
    println!(
        "{:<44} {:>10} {:>12} {:>12} {:>12} {:>7}",
        "model", "nodes", "weights MB", "peak RSS MB", "import ms", "RSS/w"
    );
    for path in paths {
        let _ = std::fs::write("/proc/self/clear_refs", "5"); // reset VmHWM to the current RSS
        let before = status_kb("VmRSS:").unwrap_or(0);
        let mut best = f64::INFINITY;
        let mut summary = (0, 0u64);
        for _ in 0..3 {
            let t = Instant::now();
            let g = match import_file(&path) {
                Ok(g) => g,
                Err(e) => {
                    println!("{}: {e}", path.display());
                    break;
                }
            };
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            let weights: u64 = g
                .node_ids()
                .filter_map(|id| match &g.node(id).op {
                    Op::Constant(t) => Some(t.bytes().len() as u64),
                    _ => None,
                })
                .sum();
            summary = (g.node_ids().count(), weights);
        }
        let peak = status_kb("VmHWM:").unwrap_or(0).saturating_sub(before);
        let (nodes, weights) = summary;
        let mb = |b: u64| b as f64 / 1e6;
        let name = path
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
        println!(
            "{name:<44} {nodes:>10} {:>12.1} {:>12.1} {best:>12.1} {:>7.3}",
            mb(weights),
            mb(peak),
            peak as f64 / weights.max(1) as f64
        );
    }
}
