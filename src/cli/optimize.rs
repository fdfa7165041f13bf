//! `blockfuse optimize MODEL`: fuse, report, optionally verify against a backend.

use super::{load, write_file, Failure};
use crate::report::{json_report, text_report};
use crate::{verify, Error, Registry};
use blockfuse_ir::{json, text, Graph};
use blockfuse_patterns::{default_rules, optimize_with, OptimizeOptions};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

/// Arguments of `optimize`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// A `.json` blockfuse IR or an `.onnx` model.
    model: PathBuf,
    /// Write the optimized graph here: ONNX when the name ends in `.onnx` (blocks as standard
    /// ops where they exist, else as model-local functions), else blockfuse IR (JSON).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// After fusing, quantize the constant weights of every MatMul (and embedding gather):
    /// `BITS[:GROUP]`, e.g. `4` or `4:64` (lossy; see docs/cli.md).
    #[arg(long, value_name = "BITS[:GROUP]")]
    quantize: Option<blockfuse_patterns::QuantizeOptions>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    report: ReportFormat,
    /// Check the optimized graph against the original on random inputs.
    #[arg(long)]
    verify: bool,
    /// With --verify: run the optimized graph on this backend (the original always runs
    /// on the fallback evaluator).
    #[arg(long, value_name = "BACKEND", default_value = "fallback")]
    against: String,
    /// Disable a rule by name (repeatable).
    #[arg(long = "disable", value_name = "RULE")]
    disable: Vec<String>,
    /// After the rules, fuse the projections that read one activation (q/k/v, gate/up) into
    /// one matmul against the concatenated weight, then a split (what `run --optimize` and
    /// `bench` do on backends that opt in, e.g. MLX).
    #[arg(long)]
    fuse_projections: bool,
    /// Write the graph before optimization as Graphviz DOT.
    #[arg(long, value_name = "FILE")]
    dot_before: Option<PathBuf>,
    /// Write the graph after optimization as Graphviz DOT.
    #[arg(long, value_name = "FILE")]
    dot_after: Option<PathBuf>,
    /// Render the optimized graph to SVG with Graphviz `dot`.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

pub(super) fn run(a: Args, registry: &Registry) -> Result<(), Failure> {
    // The backend first: a bad name is a usage error before any work.
    let against = if a.verify { Some(registry.create(&a.against)?) } else { None };
    let original = load(&a.model)?;
    let mut rules = default_rules();
    for name in &a.disable {
        if !rules.disable(name) {
            let known = rules.names().join(", ");
            return Err(Error::Other(format!("--disable {name}: no such rule (rules: {known})")).into());
        }
    }
    if let Some(p) = &a.dot_before {
        write_file(p, text::to_dot(&original))?;
    }
    let mut g = original.clone();
    let opts = OptimizeOptions {
        fuse_projections: a.fuse_projections.then(blockfuse_patterns::ProjectionOptions::default),
    };
    let rep = optimize_with(&mut g, &rules, opts)?;
    if let Some(p) = &a.dot_after {
        write_file(p, text::to_dot(&g))?;
    }
    if let Some(path) = &a.svg {
        render_svg(&g, path)?;
    }
    if let Some(q) = a.quantize {
        let qr = blockfuse_patterns::quantize_weights(&mut g, q)?;
        eprintln!(
            "quantize {}-bit, groups of {}: {} matmul(s), {} embedding(s); constants {} -> {} bytes; {} weight(s) skipped",
            q.bits,
            q.group_size,
            qr.quantized,
            qr.embeddings,
            qr.constant_bytes_before,
            qr.constant_bytes_after,
            qr.skipped.len()
        );
        for m in &qr.skipped {
            eprintln!("  quantize skipped {}: {}", m.node, m.reason);
        }
    }
    if let Some(path) = &a.output {
        if path.extension().is_some_and(|e| e == "onnx") {
            blockfuse_onnx::write_model(&g, path)
                .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        } else {
            write_file(path, json::to_json(&g)?)?;
        }
    }
    let verdict = match &against {
        Some(b) => Some(verify::verify(&original, &g, &rules, 0, &**b)?),
        None => None,
    };
    match a.report {
        ReportFormat::Json => {
            let mut j = json_report(&rep);
            if let (Some(v), Some(obj)) = (&verdict, j.as_object_mut()) {
                obj.insert("verify".into(), serde_json::json!({"max_abs": v.max_abs, "ok": v.mismatch.is_none(),
                    "against": a.against, "skipped_non_finite": v.skipped_non_finite, "detail": v.detail,
                    "mlx": format!("{:?}", v.mlx),
                    "output": v.mismatch.as_ref().map(|m| m.0.clone()), "rule": v.mismatch.as_ref().and_then(|m| m.1.clone())}));
            }
            println!("{j}");
        }
        ReportFormat::Text => {
            print!("{}", text_report(&rep));
            if let Some(v) = &verdict {
                println!("\nverify ({}):\n{}", a.against, v.summary());
            }
        }
    }
    if let Some((output, rule)) = verdict.and_then(|v| v.mismatch) {
        let by = rule.map(|r| format!(" (rule {r})")).unwrap_or_default();
        return Err(Failure::Mismatch(format!("verify failed: output \"{output}\" changed{by}")));
    }
    Ok(())
}

fn render_svg(g: &Graph, path: &Path) -> Result<(), Failure> {
    use std::io::Write;
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn();
    let mut child = child.map_err(|_| Error::Other("--svg needs Graphviz's `dot` (install it: apt-get install graphviz, or brew install graphviz); --dot-after writes DOT without it".into()))?;
    let mut stdin = child.stdin.take().ok_or_else(|| Error::Other("dot: no stdin".into()))?;
    stdin.write_all(text::to_dot(g).as_bytes()).map_err(|source| Error::Io { path: "dot".into(), source })?;
    drop(stdin);
    let status = child.wait().map_err(|source| Error::Io { path: "dot".into(), source })?;
    if !status.success() {
        return Err(Error::Other(format!("dot exited with {status}")).into());
    }
    Ok(())
}
