//! `blockfuse bench MODEL`: the optimized against the unoptimized graph on one backend,
//! each prepared once (weights uploaded once), timed over repeated runs.

use super::{load_or_demo, progress, BackendArgs, Failure};
use crate::{Error, Registry, Session};
use blockfuse_ir::HostTensor;
use blockfuse_patterns::driver::op_node_count;
use blockfuse_patterns::{default_rules, optimize_with, OptimizeOptions};
use indicatif::ProgressBar;
use std::time::Instant;

/// Arguments of `bench`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// A `.json` blockfuse IR or an `.onnx` model, or `demo` for the bundled decoder.
    model: String,
    #[command(flatten)]
    backend: BackendArgs,
    /// Runs per graph.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Size bound to every symbolic dim of the inputs.
    #[arg(long, default_value_t = 16)]
    sym_size: usize,
}

/// Median wall time of `runs` runs (after one warm-up) and the mean host-copy time per run
/// the session reports, both in ms.
fn time_runs(
    s: &mut dyn Session,
    inputs: &[HostTensor],
    runs: usize,
    bar: &ProgressBar,
) -> Result<(f64, f64), Error> {
    s.run(inputs)?;
    let copy0 = s.stats().host_copy_s;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        s.run(inputs)?;
        bar.inc(1);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    Ok((median, (s.stats().host_copy_s - copy0) * 1e3 / runs as f64))
}

pub(super) fn run(a: Args, registry: &Registry) -> Result<(), Failure> {
    let backend = a.backend.create(registry)?;
    let g = load_or_demo(&a.model)?;
    let runs = a.runs.max(1);
    let mut opt = g.clone();
    optimize_with(&mut opt, &default_rules(), OptimizeOptions::for_backend(&backend.capabilities()))?;
    let inputs = crate::verify::random_inputs(&g, a.sym_size, 1);
    let mut plain = backend.prepare(&g)?;
    let mut fused = backend.prepare(&opt)?;
    // Interleave the two graphs so that both see the same machine state.
    let (mut t_plain, mut t_opt) = (Vec::new(), Vec::new());
    let bar = progress(6 * runs as u64, "bench");
    for _ in 0..3 {
        t_plain.push(time_runs(&mut *plain, &inputs, runs, &bar)?);
        t_opt.push(time_runs(&mut *fused, &inputs, runs, &bar)?);
    }
    bar.finish_and_clear();
    t_plain.sort_by(|a, b| a.0.total_cmp(&b.0));
    t_opt.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The middle of the three rounds.
    let middle = |t: &[(f64, f64)]| t.get(1).copied().unwrap_or_default();
    let (p, o) = (middle(&t_plain), middle(&t_opt));
    println!("backend: {}", backend.name());
    println!("{:<12} {:>12} {:>12} {:>14} {:>8}", "graph", "nodes", "median ms", "host copy ms", "ratio");
    println!("{:<12} {:>12} {:>12.3} {:>14.3} {:>8}", "unoptimized", op_node_count(&g), p.0, p.1, "1.00");
    println!(
        "{:<12} {:>12} {:>12.3} {:>14.3} {:>7.2}x",
        "optimized",
        op_node_count(&opt),
        o.0,
        o.1,
        p.0 / o.0
    );
    Ok(())
}
