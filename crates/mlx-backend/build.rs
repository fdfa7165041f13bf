//! Finds (or installs) MLX, compiles the C++ shim and links libmlx dynamically.
//!
//! The wheel per target OS (`build_support/platform.rs`, unit-tested in
//! `tests/build_platform.rs`): Linux `mlx-cpu` (`libmlx.so`), macOS `mlx-metal`
//! (`libmlx.dylib` and `mlx.metallib` beside it). MLX location, in order:
//! 1. `MLX_PREFIX`: a directory holding `mlx/include/mlx/mlx.h` and `mlx/lib/<libmlx>`, i.e.
//!    the `site-packages` directory (or `pip install --target` directory) into which the
//!    wheel (or `mlx-cuda-*` on Linux) was installed — the parent of its `mlx` package.
//! 2. Otherwise `python3 -m pip install --no-deps --target <target-dir>/<wheel>-0.32.4
//!    <wheel>==0.32.4`, once, shared by all profiles of this target dir. The wheel alone
//!    holds the headers and the library (on Linux with its BLAS/LAPACK in `mlx_cpu.libs/`,
//!    found through libmlx's own `$ORIGIN` RPATH); the `mlx` Python package is not needed.
//!
//! Outputs: links `mlx` by soname (`NEEDED libmlx.so`), adds an rpath to this package's own
//! tests/examples, and publishes `DEP_MLX_LIBDIR` / `DEP_MLX_INCLUDE` (via `links = "mlx"`)
//! so that direct dependents can add the rpath to their binaries (cargo does not propagate
//! `rustc-link-arg` from a library to its dependents).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MLX_VERSION: &str = "0.32.4";

include!("build_support/platform.rs");

fn platform() -> Platform {
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    Platform::from_target_os(&os).unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_support/platform.rs");
    println!("cargo:rerun-if-changed=cpp/shim.cpp");
    println!("cargo:rerun-if-changed=cpp/shim.h");
    println!("cargo:rerun-if-env-changed=MLX_PREFIX");

    let platform = platform();
    let prefix = match env::var_os("MLX_PREFIX") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => install_wheel(platform),
    };
    let Layout { include, libdir, lib } = platform.locate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    // Rerun when the library goes away (e.g. the shared install dir was deleted).
    println!("cargo:rerun-if-changed={}", lib.display());

    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file("cpp/shim.cpp")
        // -isystem: MLX's headers are not warning-clean under -Wall -Wextra.
        .flag("-isystem")
        .flag(include.to_str().expect("MLX include path is not UTF-8"))
        .warnings(true)
        .compile("blockfuse_mlx_shim");

    println!("cargo:rustc-link-search=native={}", libdir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    // Applies to this package's own tests, examples and benches only.
    println!("cargo:rustc-link-arg={}", platform.rpath_arg(&libdir));
    // Links metadata for direct dependents' build scripts: DEP_MLX_LIBDIR, DEP_MLX_INCLUDE.
    println!("cargo:libdir={}", libdir.display());
    println!("cargo:include={}", include.display());
    // For the crate itself (`blockfuse_mlx::array::BUILD_LIBDIR`).
    println!("cargo:rustc-env=BLOCKFUSE_MLX_LIBDIR={}", libdir.display());
}

/// `<target-dir>/<wheel>-<version>`: OUT_DIR is `<target-dir>/[<triple>/]<profile>/build/
/// <pkg>-<hash>/out`, so four levels up is shared by every profile.
fn shared_install_dir(platform: Platform) -> PathBuf {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let base = match out.ancestors().nth(2) {
        Some(build) if build.file_name().is_some_and(|n| n == "build") => {
            build.parent().and_then(Path::parent).map(Path::to_path_buf)
        }
        _ => None,
    };
    base.unwrap_or(out).join(platform.install_dir_name(MLX_VERSION))
}

fn install_wheel(platform: Platform) -> PathBuf {
    let dest = shared_install_dir(platform);
    let installed = |d: &Path| platform.locate(d).is_ok();
    if installed(&dest) {
        return dest;
    }
    // Install into a private directory, then rename it into place: the rename is atomic, and
    // when a concurrent build won the race the rename fails and its copy is used instead.
    let parent = dest.parent().expect("install dir has a parent");
    fs::create_dir_all(parent).expect("create the MLX install parent dir");
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{}",
        platform.install_dir_name(MLX_VERSION),
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    let status = Command::new("python3").args(platform.pip_args(MLX_VERSION, &tmp)).status();
    match status {
        Ok(s) if s.success() && installed(&tmp) => {}
        other => {
            let _ = fs::remove_dir_all(&tmp);
            panic!(
                "installing {}=={MLX_VERSION} with `python3 -m pip install --target` failed \
                 ({other:?}); install it yourself and set MLX_PREFIX to the directory holding \
                 its `mlx` package",
                platform.wheel()
            );
        }
    }
    if fs::rename(&tmp, &dest).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        if !installed(&dest) {
            panic!("could not move the MLX install into {}", dest.display());
        }
    }
    dest
}
