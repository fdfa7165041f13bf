//! Shared by the ONNX crate's integration tests: where the real models are (the project's
//! corpus and the generated ONNX node tests) and their model directories. Each lookup
//! says, loudly, when its data is absent, and the test then skips.
#![allow(dead_code)]

use blockfuse_onnx::test_data::{shared_dir, workspace_root};
use std::path::{Path, PathBuf};

/// `shared/corpus` (exported transformers with `test_data_set_*`), or `None` after a
/// `SKIPPED` line.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = shared_dir().map(|d| d.join("corpus")).filter(|d| d.is_dir());
    if dir.is_none() {
        eprintln!(
            "\n!!! SKIPPED: no corpus: shared/corpus is neither beside nor inside the \
             workspace root {} (set BLOCKFUSE_SHARED_DIR to the shared/ folder)\n",
            workspace_root().display()
        );
    }
    dir
}

/// The ONNX operator conformance tests that scripts/onnx-node-tests.sh generates:
/// `$ONNX_NODE_TESTS_DIR` when set (any directory), else `target/onnx-node-tests` once the
/// script has completed it; `None` after a `SKIPPED` line.
pub fn node_tests_dir() -> Option<PathBuf> {
    let explicit = std::env::var_os("ONNX_NODE_TESTS_DIR").filter(|v| !v.is_empty());
    let dir = explicit
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/onnx-node-tests"));
    let present = if explicit.is_some() { dir.is_dir() } else { dir.join(".complete").is_file() };
    if !present {
        eprintln!("\n!!! SKIPPED: no ONNX node tests in {}: run scripts/onnx-node-tests.sh\n", dir.display());
        return None;
    }
    Some(dir)
}

/// The directories directly under `root` that hold a `model.onnx`, sorted.
pub fn model_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// [`model_dirs`] whose names contain the value of the environment variable `filter_var`
/// (all of them when it is unset or empty), to run a subset.
pub fn model_dirs_matching(root: &Path, filter_var: &str) -> Vec<PathBuf> {
    let filter = std::env::var(filter_var).unwrap_or_default();
    let mut dirs = model_dirs(root);
    dirs.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&filter)));
    dirs
}
