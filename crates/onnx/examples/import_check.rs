//! Imports every `model.onnx` under the directories given (or `../shared/corpus-kv`) and runs
//! its test data sets on the fallback evaluator: one line per model and data set, with the
//! error or the largest difference from the reference.
//!
//! `cargo run -p blockfuse-onnx --example import_check -- DIR...`

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::HostTensor;
use blockfuse_onnx::{import_file, TestDataSet};
use std::collections::HashMap;
use std::path::PathBuf;

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let roots = if args.is_empty() { vec![PathBuf::from("../shared/corpus-kv")] } else { args };
    let backend = FallbackBackend::new();
    for root in roots {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|r| {
                r.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("model.onnx").is_file())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        for dir in dirs {
            let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let g = match import_file(&dir.join("model.onnx")) {
                Ok(g) => g,
                Err(e) => {
                    println!("{name}: import FAILED: {e}");
                    continue;
                }
            };
            for k in 0..4 {
                let set = dir.join(format!("test_data_set_{k}"));
                if !set.is_dir() {
                    break;
                }
                let line = (|| -> Result<String, String> {
                    let ds = TestDataSet::open(&set).map_err(|e| e.to_string())?;
                    let inputs: HashMap<String, HostTensor> =
                        ds.read_inputs().map_err(|e| e.to_string())?.into_iter().collect();
                    let outs = backend.run_named(&g, &inputs).map_err(|e| format!("run: {e}"))?;
                    let refs = ds.read_outputs().map_err(|e| e.to_string())?;
                    let mut worst = 0f64;
                    for (got, (_, want)) in outs.iter().zip(&refs) {
                        if got.dims() != want.dims() {
                            return Err(format!("shape {:?} vs {:?}", got.dims(), want.dims()));
                        }
                        for (a, b) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
                            worst = worst.max((a - b).abs() / (1.0 + b.abs()));
                        }
                    }
                    Ok(format!("ok, {} outputs, max rel diff {worst:.2e}", outs.len()))
                })();
                println!("{name}/set{k}: {}", line.unwrap_or_else(|e| format!("FAILED: {e}")));
            }
        }
    }
}
