//! The command line of the device benches (`gpu_bench`, `kv_bench`).

/// `--device cpu|gpu` (default gpu), `--small`, `--iters N` (default 20), and the bench's own
/// on/off flags (e.g. `--no-parity`).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchArgs {
    /// Run on the GPU (`--device gpu`, the default) rather than the CPU.
    pub gpu: bool,
    /// Small dimensions (a quick check).
    pub small: bool,
    /// Timed iterations per case.
    pub iters: usize,
    /// The bench's own flags that were given.
    pub flags: Vec<String>,
}

impl BenchArgs {
    /// Parses `args` (without the program name); `flags` are the bench's own switches.
    /// `Err` says what is wrong and lists the accepted arguments.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Result<BenchArgs, String> {
        let usage = || {
            let own: String = flags.iter().map(|f| format!(", {f}")).collect();
            format!("(--device cpu|gpu, --small, --iters N{own})")
        };
        let mut a = BenchArgs { gpu: true, small: false, iters: 20, flags: Vec::new() };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--device" => {
                    a.gpu = match args.next().as_deref() {
                        Some("cpu") => false,
                        Some("gpu") => true,
                        other => return Err(format!("--device cpu|gpu, not {other:?}")),
                    }
                }
                "--small" => a.small = true,
                "--iters" => {
                    let n = args.next();
                    a.iters =
                        n.as_deref().and_then(|s| s.parse().ok()).ok_or(format!("--iters N, not {n:?}"))?;
                }
                f if flags.contains(&f) => a.flags.push(arg),
                other => return Err(format!("unknown argument {other} {}", usage())),
            }
        }
        Ok(a)
    }

    /// True when the bench's own `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BenchArgs, String> {
        BenchArgs::parse(s.split_whitespace().map(String::from), &["--no-perf"])
    }

    #[test]
    fn defaults_flags_and_errors() {
        assert_eq!(parse("").unwrap(), BenchArgs { gpu: true, small: false, iters: 20, flags: vec![] });
        let a = parse("--device cpu --small --iters 3 --no-perf").unwrap();
        assert!(!a.gpu && a.small && a.iters == 3 && a.has("--no-perf") && !a.has("--no-parity"));
        assert!(parse("--device tpu").unwrap_err().contains("--device cpu|gpu"));
        assert!(parse("--iters x").unwrap_err().contains("--iters N"));
        assert!(parse("--iters").unwrap_err().contains("--iters N"));
        let e = parse("--fast").unwrap_err();
        assert!(e.contains("unknown argument --fast") && e.contains("--no-perf"), "{e}");
    }
}
