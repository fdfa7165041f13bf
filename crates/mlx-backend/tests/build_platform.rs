//! The platform logic of build.rs (`build_support/platform.rs`), run here on Linux against
//! fake prefixes laid out like each wheel: `mlx-cpu` (Linux) and `mlx-metal` (macOS). Not
//! run on a Mac: the macOS branch is checked for its file layout and pip arguments only.

#[allow(dead_code)]
mod platform {
    use std::path::{Path, PathBuf};
    include!("../build_support/platform.rs");
}

use platform::{Layout, Platform};
use std::path::{Path, PathBuf};

/// A fresh prefix holding `files` (relative paths) as empty files.
fn fake_prefix(tag: &str, files: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fake-mlx-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    for f in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }
    dir
}

const HEADER: &str = "mlx/include/mlx/mlx.h";

#[test]
fn target_os_picks_the_wheel() {
    assert_eq!(Platform::from_target_os("linux"), Ok(Platform::Linux));
    assert_eq!(Platform::from_target_os("macos"), Ok(Platform::MacOs));
    let e = Platform::from_target_os("windows").unwrap_err();
    assert!(e.contains("'windows'") && e.contains("MLX_PREFIX"), "{e}");
    assert_eq!((Platform::Linux.wheel(), Platform::Linux.lib_name()), ("mlx-cpu", "libmlx.so"));
    assert_eq!((Platform::MacOs.wheel(), Platform::MacOs.lib_name()), ("mlx-metal", "libmlx.dylib"));
    assert_eq!(Platform::Linux.install_dir_name("0.32.4"), "mlx-cpu-0.32.4");
    assert_eq!(Platform::MacOs.install_dir_name("0.32.4"), "mlx-metal-0.32.4");
    let args = Platform::MacOs.pip_args("0.32.4", Path::new("/t/x"));
    assert_eq!(args[args.len() - 3..], ["--target", "/t/x", "mlx-metal==0.32.4"]);
    assert_eq!(Platform::MacOs.rpath_arg(Path::new("/p/mlx/lib")), "-Wl,-rpath,/p/mlx/lib");
}

#[test]
fn linux_prefix_of_the_mlx_cpu_layout() {
    let p = fake_prefix("linux", &[HEADER, "mlx/lib/libmlx.so", "mlx_cpu.libs/libopenblas.so"]);
    let Layout { include, libdir, lib } = Platform::Linux.locate(&p).unwrap();
    assert_eq!(
        (include, libdir.clone(), lib),
        (p.join("mlx/include"), p.join("mlx/lib"), libdir.join("libmlx.so"))
    );
    // The same prefix is not a macOS install.
    let e = Platform::MacOs.locate(&p).unwrap_err();
    assert!(e.contains("libmlx.dylib") && e.contains("mlx.metallib") && e.contains("mlx-metal"), "{e}");
}

#[test]
fn macos_prefix_of_the_mlx_metal_layout() {
    let p = fake_prefix("macos", &[HEADER, "mlx/lib/libmlx.dylib", "mlx/lib/mlx.metallib"]);
    let layout = Platform::MacOs.locate(&p).unwrap();
    assert_eq!(layout.lib, p.join("mlx/lib/libmlx.dylib"));
    assert!(Platform::Linux.locate(&p).unwrap_err().contains("libmlx.so"));
    // Without its Metal kernels the library cannot run: say so at build time.
    let p = fake_prefix("macos-no-metallib", &[HEADER, "mlx/lib/libmlx.dylib"]);
    let e = Platform::MacOs.locate(&p).unwrap_err();
    assert!(e.contains("mlx.metallib") && !e.contains("libmlx.dylib,"), "{e}");
    // And without headers neither platform is found.
    let p = fake_prefix("no-header", &["mlx/lib/libmlx.so"]);
    assert!(Platform::Linux.locate(&p).unwrap_err().contains("mlx.h"));
}
