//! The `blockfuse` command line: inspect, optimize, run, demo, bench.

use blockfuse::compare::{compare, Tolerance};
use blockfuse::demo::{llama_decoder, DecoderConfig};
use blockfuse::ir::{text, Dim, Graph, HostTensor, Op};
use blockfuse::mlx::Device;
use blockfuse::patterns::{default_rules, optimize, RuleSet};
use blockfuse::report::{json_report, text_report};
use blockfuse::{load_model, run_backend, verify, Backend, Error};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// blockfuse: fuse composed transformer subgraphs into blocks and run them.
#[derive(Parser)]
#[command(name = "blockfuse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's text IR and statistics (ops, dtypes, symbolic dims, constants).
    Inspect {
        /// A `.json` blockfuse IR or an `.onnx` model.
        model: PathBuf,
        /// Statistics only, without the text dump.
        #[arg(long)]
        stats_only: bool,
    },
    /// Fuse blocks and report what fused (and what nearly did).
    Optimize {
        /// A `.json` blockfuse IR or an `.onnx` model.
        model: PathBuf,
        /// Write the optimized IR (JSON) here.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value = "text")]
        report: ReportFormat,
        /// Check the optimized graph against the original on random inputs (fallback evaluator).
        #[arg(long)]
        verify: bool,
        /// Disable a rule by name (repeatable).
        #[arg(long = "disable", value_name = "RULE")]
        disable: Vec<String>,
        /// Write the graph before optimization as Graphviz DOT.
        #[arg(long, value_name = "FILE")]
        dot_before: Option<PathBuf>,
        /// Write the graph after optimization as Graphviz DOT.
        #[arg(long, value_name = "FILE")]
        dot_after: Option<PathBuf>,
        /// Render the optimized graph to SVG with Graphviz `dot`.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Run a model, optionally checking its outputs against reference data.
    Run {
        /// A `.json` blockfuse IR or an `.onnx` model.
        model: PathBuf,
        /// Optimize before running.
        #[arg(long)]
        optimize: bool,
        /// Which backend runs the graph.
        #[arg(long, value_enum, default_value = "fallback")]
        backend: BackendArg,
        /// MLX device.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// A directory with input_*.pb and output_*.pb (ONNX TensorProto) to check against.
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
        /// Relative tolerance (default: 1e-4 for f32/f64, 1e-2 for f16/bf16).
        #[arg(long)]
        rtol: Option<f64>,
        /// Absolute tolerance (default as rtol).
        #[arg(long)]
        atol: Option<f64>,
    },
    /// Optimize and run the bundled Llama-style decoder on every backend, side by side.
    Demo {
        /// Decoder layers.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// Write the unoptimized decoder as blockfuse IR JSON here and stop.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
    },
    /// Time the optimized against the unoptimized graph (median of N runs).
    Bench {
        /// A `.json` blockfuse IR or an `.onnx` model, or `demo` for the bundled decoder.
        model: String,
        /// Which backend runs the graph.
        #[arg(long, value_enum, default_value = "fallback")]
        backend: BackendArg,
        /// MLX device.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// Runs per graph.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Size bound to every symbolic dim of the inputs.
        #[arg(long, default_value_t = 16)]
        sym_size: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Fallback,
    Mlx,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Gpu,
}

fn backend(b: BackendArg, d: DeviceArg) -> Backend {
    match (b, d) {
        (BackendArg::Fallback, _) => Backend::Fallback,
        (BackendArg::Mlx, DeviceArg::Cpu) => Backend::Mlx(Device::Cpu),
        (BackendArg::Mlx, DeviceArg::Gpu) => Backend::Mlx(Device::Gpu),
    }
}

/// Exit status 1: ran, but outputs disagree. Status 2: bad input or usage.
enum Failure {
    Mismatch(String),
    Bad(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Bad(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or("bad usage").to_string();
            eprintln!("blockfuse: {first}");
            return ExitCode::from(2);
        }
    };
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Mismatch(msg)) => {
            eprintln!("blockfuse: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Bad(e)) => {
            eprintln!("blockfuse: {}", e.to_string().replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Inspect { model, stats_only } => inspect(&load(&model)?, stats_only),
        Command::Optimize { model, output, report, verify, disable, dot_before, dot_after, svg } => {
            let original = load(&model)?;
            let mut rules = default_rules();
            for name in &disable {
                if !rules.disable(name) {
                    return Err(Error::Other(format!(
                        "--disable {name}: no such rule (rules: {})",
                        rules.names().join(", ")
                    ))
                    .into());
                }
            }
            write_opt(dot_before.as_ref(), || blockfuse::ir::text::to_dot(&original))?;
            let mut g = original.clone();
            let rep = optimize(&mut g, &rules).map_err(|e| Error::Other(e.to_string()))?;
            write_opt(dot_after.as_ref(), || text::to_dot(&g))?;
            if let Some(path) = &svg {
                render_svg(&g, path)?;
            }
            if let Some(path) = &output {
                let js = blockfuse::ir::json::to_json(&g).map_err(|e| Error::Other(e.to_string()))?;
                std::fs::write(path, js)
                    .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
            }
            let verdict = if verify { Some(verify::verify(&original, &g, &rules, 0)?) } else { None };
            match report {
                ReportFormat::Json => {
                    let mut j = json_report(&rep);
                    if let Some(v) = &verdict {
                        j["verify"] = serde_json::json!({"max_abs": v.max_abs, "ok": v.mismatch.is_none(),
                            "output": v.mismatch.as_ref().map(|m| m.0.clone()), "rule": v.mismatch.as_ref().and_then(|m| m.1.clone())});
                    }
                    println!("{j}");
                }
                ReportFormat::Text => {
                    print!("{}", text_report(&rep));
                    if let Some(v) = &verdict {
                        println!("\nverify: max |optimized - original| = {:.3e}", v.max_abs);
                    }
                }
            }
            if let Some(v) = verdict {
                if let Some((output, rule)) = v.mismatch {
                    let by = rule.map(|r| format!(" (rule {r})")).unwrap_or_default();
                    return Err(Failure::Mismatch(format!("verify failed: output \"{output}\" changed{by}")));
                }
            }
            Ok(())
        }
        Command::Run { model, optimize: opt, backend: b, device, check, rtol, atol } => {
            let mut g = load(&model)?;
            if opt {
                optimize(&mut g, &default_rules()).map_err(|e| Error::Other(e.to_string()))?;
            }
            let be = backend(b, device);
            match check {
                Some(dir) => run_check(&g, be, &dir, rtol, atol),
                None => {
                    let inputs = blockfuse::verify::random_inputs(&g, 4, 0);
                    let outs = run_backend(&g, &inputs, be)?;
                    for ((name, _), t) in g.outputs().iter().zip(outs) {
                        println!("{name}: {}{:?}", t.dtype(), t.dims());
                    }
                    Ok(())
                }
            }
        }
        Command::Demo { layers, export } => demo(layers, export),
        Command::Bench { model, backend: b, device, runs, sym_size } => {
            let g = if model == "demo" {
                llama_decoder(DecoderConfig::demo()).map_err(|e| Error::Other(e.to_string()))?
            } else {
                load_model(std::path::Path::new(&model))?
            };
            bench(&g, backend(b, device), runs.max(1), sym_size)
        }
    }
}

fn write_opt(path: Option<&PathBuf>, make: impl FnOnce() -> String) -> Result<(), Failure> {
    if let Some(p) = path {
        std::fs::write(p, make()).map_err(|source| Error::Io { path: p.display().to_string(), source })?;
    }
    Ok(())
}

fn render_svg(g: &Graph, path: &PathBuf) -> Result<(), Failure> {
    use std::io::Write;
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn();
    let mut child = child.map_err(|_| Error::Other("--svg needs Graphviz's `dot` (install it: apt-get install graphviz, or brew install graphviz); --dot-after writes DOT without it".into()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text::to_dot(g).as_bytes())
        .map_err(|e| Error::Other(format!("dot: {e}")))?;
    let status = child.wait().map_err(|e| Error::Other(format!("dot: {e}")))?;
    if !status.success() {
        return Err(Error::Other(format!("dot exited with {status}")).into());
    }
    Ok(())
}

fn inspect(g: &Graph, stats_only: bool) -> Result<(), Failure> {
    if !stats_only {
        print!("{}", text::dump(g).map_err(|e| Error::Other(e.to_string()))?);
        println!();
    }
    let mut dtypes = std::collections::BTreeMap::new();
    let mut symbols = std::collections::BTreeSet::new();
    let (mut const_bytes, mut consts) = (0usize, 0usize);
    for id in g.node_ids() {
        let n = g.node(id);
        for t in &n.types {
            *dtypes.entry(t.dtype.name()).or_insert(0usize) += 1;
            for d in &t.shape {
                if let Dim::Sym(_) = d {
                    symbols.extend(d.symbols().map(|s| s.to_string()));
                }
            }
        }
        if let Op::Constant(t) = &n.op {
            consts += 1;
            const_bytes += t.bytes().len();
        }
    }
    println!("nodes: {} ({} inputs, {} outputs)", g.node_count(), g.inputs().len(), g.outputs().len());
    println!("constants: {consts}, {const_bytes} bytes");
    println!("symbolic dims: {}", symbols.into_iter().collect::<Vec<_>>().join(", "));
    println!(
        "dtypes (values): {}",
        dtypes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    println!("\n{:<24} {:>6}", "op", "count");
    for (op, n) in g.op_histogram() {
        println!("{op:<24} {n:>6}");
    }
    Ok(())
}

fn run_check(
    g: &Graph,
    be: Backend,
    dir: &std::path::Path,
    rtol: Option<f64>,
    atol: Option<f64>,
) -> Result<(), Failure> {
    let data = blockfuse::onnx::TestDataSet::open(dir)
        .map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    let given = data.read_inputs().map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    let expected = data.read_outputs().map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    let names: Vec<String> =
        g.inputs().iter().map(|&id| g.node(id).name.clone().unwrap_or_default()).collect();
    let by_name = names.iter().all(|n| given.iter().any(|(m, _)| m == n));
    if given.len() != names.len() {
        return Err(Error::Other(format!(
            "{}: {} input files for {} graph inputs",
            dir.display(),
            given.len(),
            names.len()
        ))
        .into());
    }
    let inputs: Vec<HostTensor> = if by_name {
        names.iter().map(|n| given.iter().find(|(m, _)| m == n).expect("checked").1.clone()).collect()
    } else {
        given.into_iter().map(|(_, t)| t).collect()
    };
    let outs = run_backend(g, &inputs, be)?;
    let mut all_ok = true;
    for (i, (name, _)) in g.outputs().iter().enumerate() {
        let Some(want) = expected.iter().find(|(m, _)| m == name).or(expected.get(i)).map(|(_, t)| t) else {
            return Err(Error::Other(format!("{}: no reference for output \"{name}\"", dir.display())).into());
        };
        let mut tol = Tolerance::for_dtype(want.dtype());
        tol.rtol = rtol.unwrap_or(tol.rtol);
        tol.atol = atol.unwrap_or(tol.atol);
        let c = compare(&outs[i], want, tol);
        let verdict = if c.passed() { "ok" } else { "MISMATCH" };
        println!(
            "{name}: max_abs {:.3e} max_rel {:.3e} {verdict}{}",
            c.max_abs,
            c.max_rel,
            c.incompatible.clone().map(|s| format!(" ({s})")).unwrap_or_default()
        );
        all_ok &= c.passed();
    }
    if all_ok {
        Ok(())
    } else {
        Err(Failure::Mismatch("outputs differ from the reference".into()))
    }
}

/// A progress bar on stderr, drawn only when stdout is a terminal.
fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}").expect("valid template");
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// Loads a model, with a spinner while large ONNX files import.
fn load(path: &std::path::Path) -> Result<Graph, Error> {
    let spinner =
        if std::io::stdout().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    spinner.set_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let g = load_model(path);
    spinner.finish_and_clear();
    g
}

fn median_ms(mut f: impl FnMut() -> Result<(), Error>, runs: usize, bar: &ProgressBar) -> Result<f64, Error> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        bar.inc(1);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

fn bench(g: &Graph, be: Backend, runs: usize, sym_size: usize) -> Result<(), Failure> {
    let mut opt = g.clone();
    optimize(&mut opt, &default_rules()).map_err(|e| Error::Other(e.to_string()))?;
    let inputs = blockfuse::verify::random_inputs(g, sym_size, 1);
    // Interleave the two graphs so that both see the same machine state.
    let mut t_plain = Vec::new();
    let mut t_opt = Vec::new();
    let bar = progress(6 * runs as u64, "bench");
    for _ in 0..3 {
        t_plain.push(median_ms(|| run_backend(g, &inputs, be).map(|_| ()), runs, &bar)?);
        t_opt.push(median_ms(|| run_backend(&opt, &inputs, be).map(|_| ()), runs, &bar)?);
    }
    bar.finish_and_clear();
    t_plain.sort_by(|a, b| a.total_cmp(b));
    t_opt.sort_by(|a, b| a.total_cmp(b));
    let (p, o) = (t_plain[1], t_opt[1]);
    println!("{:<12} {:>12} {:>12} {:>8}", "graph", "nodes", "median ms", "ratio");
    println!(
        "{:<12} {:>12} {:>12.3} {:>8}",
        "unoptimized",
        blockfuse::patterns::driver::op_node_count(g),
        p,
        "1.00"
    );
    println!(
        "{:<12} {:>12} {:>12.3} {:>7.2}x",
        "optimized",
        blockfuse::patterns::driver::op_node_count(&opt),
        o,
        p / o
    );
    Ok(())
}

fn demo(layers: usize, export: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = DecoderConfig { layers, ..DecoderConfig::demo() };
    let g = llama_decoder(cfg).map_err(|e| Error::Other(e.to_string()))?;
    if let Some(path) = export {
        let js = blockfuse::ir::json::to_json(&g).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(&path, js).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        println!("wrote the {layers}-layer decoder to {}", path.display());
        return Ok(());
    }
    println!("blockfuse demo: a {}-layer Llama-style decoder (hidden {}, {} q / {} kv heads), built from primitive ops\n", cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads);
    let mut opt = g.clone();
    let rules: RuleSet = default_rules();
    let rep = optimize(&mut opt, &rules).map_err(|e| Error::Other(e.to_string()))?;
    print!("{}", text_report(&rep));
    let inputs = blockfuse::verify::random_inputs(&g, 16, 3);
    let reference = run_backend(&g, &inputs, Backend::Fallback)?;
    println!("\n{:<10} {:<12} {:>10} {:>8} {:>12}", "backend", "graph", "ms", "speedup", "max |err|");
    const RUNS: usize = 5;
    let bar = progress((2 * 2 * RUNS) as u64, "demo");
    for (bname, be) in [("fallback", Backend::Fallback), ("mlx-cpu", Backend::Mlx(Device::Cpu))] {
        // The two graphs alternate, so both see the same machine state.
        let graphs = [("unoptimized", &g), ("optimized", &opt)];
        let mut times = [Vec::new(), Vec::new()];
        let mut outs: [Vec<HostTensor>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for (k, (_, graph)) in graphs.iter().enumerate() {
                let t = Instant::now();
                outs[k] = run_backend(graph, &inputs, be)?;
                times[k].push(t.elapsed().as_secs_f64() * 1e3);
                bar.inc(1);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (plain, fused) = (median(&mut times[0]), median(&mut times[1]));
        for (k, (gname, _)) in graphs.iter().enumerate() {
            let err = outs[k]
                .iter()
                .zip(&reference)
                .map(|(a, b)| compare(a, b, Tolerance { rtol: 0.0, atol: 0.0 }).max_abs)
                .fold(0.0, f64::max);
            let ms = if k == 0 { plain } else { fused };
            let speedup = if k == 0 { "1.00x".to_string() } else { format!("{:.2}x", plain / fused) };
            bar.suspend(|| println!("{bname:<10} {gname:<12} {ms:>10.2} {speedup:>8} {err:>12.2e}"));
        }
    }
    bar.finish_and_clear();
    println!(
        "\n(inputs: batch 16, seq 16; median of {RUNS} alternating runs; max |err| against the unoptimized graph on the fallback evaluator)"
    );
    Ok(())
}
