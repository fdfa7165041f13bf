//! The `blockfuse` command line: inspect, optimize, run, bench, generate, demo, backends.
//! The commands live in [`blockfuse::cli`]; this binary runs them with the default
//! registry of backends.

fn main() -> std::process::ExitCode {
    blockfuse::cli::main(blockfuse::default_registry())
}
