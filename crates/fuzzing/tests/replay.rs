//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`, crashers found by the fuzzers
//! included) through the targets' entry points, on stable: what `cargo fuzz run` found once
//! must not come back.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let name = f.display().to_string();
        if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
            let msg = e.downcast_ref::<String>().cloned().or(e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{name}: {}", msg.unwrap_or_default());
        }
    }
}

#[test]
fn json_ir_corpus() {
    replay("json_ir", blockfuse_fuzzing::json_ir);
}

#[test]
fn onnx_model_corpus() {
    replay("onnx_model", blockfuse_fuzzing::onnx_model);
}

#[test]
fn optimize_eval_corpus() {
    replay("optimize_eval", blockfuse_fuzzing::optimize_eval);
}
