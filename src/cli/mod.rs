//! The `blockfuse` command line, one module per command. [`main`] runs it with a registry
//! of backends: the binary passes [`default_registry`](crate::default_registry); a binary
//! that links more backends registers them first (see `docs/writing-a-backend.md`).
//!
//! User input reaches every line here: no `unwrap`, `expect` or indexing that could panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod bench;
mod demo;
mod generate;
mod inspect;
mod optimize;
mod run;

use crate::{load_model_limited, Error, Registry};
use blockfuse_ir::backend::Backend;
use blockfuse_ir::limits::Limits;
use blockfuse_ir::{Bindings, Graph};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

/// blockfuse: fuse composed transformer subgraphs into blocks and run them.
#[derive(Parser)]
#[command(name = "blockfuse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The most bytes one tensor of a model may take (a constant, or a value whose dims are
    /// known), checked before allocating (default: half the machine's memory).
    #[arg(long, global = true, value_name = "BYTES")]
    max_tensor_bytes: Option<u64>,
    /// The most bytes all constants of a model may take together (default: three quarters
    /// of the machine's memory).
    #[arg(long, global = true, value_name = "BYTES")]
    max_constant_bytes: Option<u64>,
}

/// The limits of this invocation (set once from the flags in [`main`]).
static LIMITS: OnceLock<Limits> = OnceLock::new();

/// The loaders' and `run`'s byte limits: the flags' values, or the defaults.
fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// Which backend runs a graph: a registered name, optionally with a device.
#[derive(clap::Args, Clone)]
struct BackendArgs {
    /// The backend, by registered name (`blockfuse backends` lists them).
    #[arg(long, default_value = "fallback")]
    backend: String,
    /// Device: picks `NAME:DEVICE` when registered (`--backend mlx --device gpu` = `mlx:gpu`).
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's text IR and statistics (ops, dtypes, symbolic dims, constants).
    Inspect(inspect::Args),
    /// Fuse blocks and report what fused (and what nearly did).
    Optimize(optimize::Args),
    /// Run a model: random or given inputs, optionally checked against reference data.
    Run(run::Args),
    /// Optimize and run the bundled Llama-style decoder on every backend, side by side.
    Demo(demo::Args),
    /// Time the optimized against the unoptimized graph (median of N runs).
    Bench(bench::Args),
    /// Greedy decoding with a KV-cache model: prefill, then one token per step.
    Generate(generate::Args),
    /// List the registered backends and their capabilities.
    Backends,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Gpu,
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

impl From<crate::BackendError> for Failure {
    fn from(e: crate::BackendError) -> Self {
        Failure::Bad(e.into())
    }
}

impl From<blockfuse_ir::IrError> for Failure {
    fn from(e: blockfuse_ir::IrError) -> Self {
        Failure::Bad(e.into())
    }
}

/// Runs the command line (`std::env::args`) with the backends of `registry`.
pub fn main(registry: Registry) -> ExitCode {
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
    let mut limits = Limits::default();
    limits.max_tensor_bytes = cli.max_tensor_bytes.unwrap_or(limits.max_tensor_bytes);
    limits.max_constant_bytes = cli.max_constant_bytes.unwrap_or(limits.max_constant_bytes);
    // Set once per process; a second `main` in the same process keeps the first limits.
    let _ = LIMITS.set(limits);
    match dispatch(cli.command, &registry) {
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

fn dispatch(cmd: Command, registry: &Registry) -> Result<(), Failure> {
    match cmd {
        Command::Inspect(a) => inspect::run(a),
        Command::Optimize(a) => optimize::run(a, registry),
        Command::Run(a) => run::run(a, registry),
        Command::Demo(a) => demo::run(a, registry),
        Command::Bench(a) => bench::run(a, registry),
        Command::Generate(a) => generate::run(a, registry),
        Command::Backends => backends(registry),
    }
}

impl BackendArgs {
    /// The registered name these arguments pick.
    fn name(&self, registry: &Registry) -> String {
        match self.device {
            Some(d) if !self.backend.contains(':') => {
                let device = match d {
                    DeviceArg::Cpu => "cpu",
                    DeviceArg::Gpu => "gpu",
                };
                let full = format!("{}:{device}", self.backend);
                if registry.names().contains(&full) {
                    full
                } else {
                    self.backend.clone()
                }
            }
            _ => self.backend.clone(),
        }
    }

    /// Makes the backend.
    fn create(&self, registry: &Registry) -> Result<Box<dyn Backend>, Error> {
        Ok(registry.create(&self.name(registry))?)
    }
}

fn backends(registry: &Registry) -> Result<(), Failure> {
    println!("{:<12} {:<10} {:<40} native blocks", "name", "devices", "dtypes");
    for name in registry.names() {
        match registry.create(&name) {
            Ok(b) => {
                let c = b.capabilities();
                let dtypes: Vec<&str> = c.dtypes.iter().map(|d| d.name()).collect();
                let native =
                    if c.native_blocks.is_empty() { "-".to_string() } else { c.native_blocks.join(", ") };
                println!("{name:<12} {:<10} {:<40} {native}", c.devices.join(","), dtypes.join(","));
            }
            Err(e) => println!("{name:<12} unavailable: {}", e.message),
        }
        if let Some(about) = registry.about(&name) {
            println!("{:<12} {about}", "");
        }
    }
    Ok(())
}

/// Parses `batch=2,seq=7`.
fn parse_bindings(s: &str) -> Result<Vec<(String, usize)>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("expected NAME=SIZE, got {p:?}"))?;
            let n = v.trim().parse().map_err(|_| format!("{k}: {v:?} is not a size"))?;
            Ok((k.trim().to_string(), n))
        })
        .collect()
}

fn bindings(pairs: &[Vec<(String, usize)>]) -> Bindings {
    pairs.iter().flatten().map(|(k, v)| (std::sync::Arc::from(k.as_str()), *v)).collect()
}

fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// A progress bar on stderr, drawn only when stdout is a terminal.
fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // The template is a constant that parses: the default style is never used.
    let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// Loads a model, with a spinner while large ONNX files import.
fn load(path: &Path) -> Result<Graph, Error> {
    let spinner =
        if std::io::stdout().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    spinner.set_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let g = load_model_limited(path, &limits());
    spinner.finish_and_clear();
    g
}

/// A model argument: a file, or `demo` for the bundled decoder.
fn load_or_demo(model: &str) -> Result<Graph, Error> {
    if model == "demo" {
        Ok(crate::demo::llama_decoder(crate::demo::DecoderConfig::demo())?)
    } else {
        load(Path::new(model))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn bindings_parse() {
        assert_eq!(parse_bindings("batch=2,seq=7").unwrap(), vec![("batch".into(), 2), ("seq".into(), 7)]);
        assert!(parse_bindings("batch").is_err());
        assert!(parse_bindings("batch=x").is_err());
    }
}
