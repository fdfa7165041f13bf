//! The Python interpreter of the tests that check blockfuse against the ONNX Python
//! packages (`onnx.checker`, ONNX Runtime, ...).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter those tests use: `$BLOCKFUSE_PYTHON`, else the venv that
/// `scripts/onnx-node-tests.sh` makes, `target/onnx-venv/bin/python` of the workspace.
pub fn interpreter() -> PathBuf {
    std::env::var_os("BLOCKFUSE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        // This crate is crates/testkit: the workspace root is two levels up.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        root.canonicalize().unwrap_or(root).join("target/onnx-venv/bin/python")
    })
}

/// True when `py` can `import module`.
pub fn can_import(py: &Path, module: &str) -> bool {
    Command::new(py).args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success())
}

/// The [`interpreter`] when it can import `onnx` and every module of `extra` (pairs of the
/// module and the pip package that installs it, `("onnx_ir", "onnx-ir")`); else `None`,
/// after a loud `SKIPPED` line on stderr saying what is missing. Under `CI` (the variable
/// set) a venv without `onnx` fails the test, and missing `extra` packages are installed
/// into it with pip: there the tests must run, not skip.
pub fn python_with(extra: &[(&str, &str)]) -> Option<PathBuf> {
    let py = interpreter();
    let ci = std::env::var_os("CI").is_some();
    if !can_import(&py, "onnx") {
        assert!(
            !ci,
            "CI: no Python venv with onnx at {} (scripts/onnx-node-tests.sh makes it)",
            py.display()
        );
        eprintln!("\n!!! SKIPPED: {} has no onnx (set BLOCKFUSE_PYTHON)\n", py.display());
        return None;
    }
    if extra.iter().all(|(module, _)| can_import(&py, module)) {
        return Some(py);
    }
    let packages: Vec<&str> = extra.iter().map(|&(_, package)| package).collect();
    if ci {
        let ok = Command::new(&py).args(["-m", "pip", "install", "--quiet"]).args(&packages).status();
        assert!(ok.is_ok_and(|s| s.success()), "CI: pip install {} failed", packages.join(" "));
        return Some(py);
    }
    eprintln!(
        "\n!!! SKIPPED: {} lacks {} (pip install {})\n",
        py.display(),
        packages.join(" or "),
        packages.join(" ")
    );
    None
}
