// Platform logic of build.rs, kept free of cargo and I/O side effects (it only looks at
// files) so that `tests/build_platform.rs` can unit-test it on any host: build.rs and that
// test both `include!` this file. Plain comments only: an included file cannot carry
// inner doc comments. The includer brings `std::path::{Path, PathBuf}` into scope.


/// The MLX wheel this build links, per target OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux: the `mlx-cpu` wheel, `libmlx.so` (BLAS/LAPACK in `mlx_cpu.libs/`).
    Linux,
    /// macOS (Apple silicon): the `mlx-metal` wheel, `libmlx.dylib` plus the Metal kernels
    /// `mlx.metallib`, which libmlx loads from beside itself at run time.
    MacOs,
}

/// Where the headers and the library of an installed wheel are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<prefix>/mlx/include` (holds `mlx/mlx.h`).
    pub include: PathBuf,
    /// `<prefix>/mlx/lib`.
    pub libdir: PathBuf,
    /// The shared library itself.
    pub lib: PathBuf,
}

impl Platform {
    /// The platform for cargo's `CARGO_CFG_TARGET_OS`; other targets are an error that says
    /// which wheels exist.
    pub fn from_target_os(os: &str) -> Result<Platform, String> {
        match os {
            "linux" => Ok(Platform::Linux),
            "macos" => Ok(Platform::MacOs),
            other => Err(format!(
                "MLX wheels exist for linux (mlx-cpu) and macos (mlx-metal), not for target os '{other}'; \
                 set MLX_PREFIX to an MLX build of your own"
            )),
        }
    }

    /// The PyPI package holding headers and library.
    pub fn wheel(self) -> &'static str {
        match self {
            Platform::Linux => "mlx-cpu",
            Platform::MacOs => "mlx-metal",
        }
    }

    /// The library's file name.
    pub fn lib_name(self) -> &'static str {
        match self {
            Platform::Linux => "libmlx.so",
            Platform::MacOs => "libmlx.dylib",
        }
    }

    /// Files that must sit beside the library.
    pub fn companions(self) -> &'static [&'static str] {
        match self {
            Platform::Linux => &[],
            Platform::MacOs => &["mlx.metallib"],
        }
    }

    /// The shared install directory's name under the target dir (`mlx-cpu-0.32.4`).
    pub fn install_dir_name(self, version: &str) -> String {
        format!("{}-{version}", self.wheel())
    }

    /// The arguments after `python3` that install the wheel into `target`.
    pub fn pip_args(self, version: &str, target: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--quiet"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push("--target".into());
        args.push(target.display().to_string());
        args.push(format!("{}=={version}", self.wheel()));
        args
    }

    /// The linker argument giving binaries an rpath to `libdir` (both linkers take
    /// `-rpath`; on macOS libmlx.dylib's install name is `@rpath/libmlx.dylib`).
    pub fn rpath_arg(self, libdir: &Path) -> String {
        format!("-Wl,-rpath,{}", libdir.display())
    }

    /// The layout under `prefix` (the directory holding the wheel's `mlx` package), when
    /// the header, the library and its companions are all there; else what is missing.
    pub fn locate(self, prefix: &Path) -> Result<Layout, String> {
        let include = prefix.join("mlx").join("include");
        let libdir = prefix.join("mlx").join("lib");
        let lib = libdir.join(self.lib_name());
        let mut needed = vec![include.join("mlx").join("mlx.h"), lib.clone()];
        needed.extend(self.companions().iter().map(|c| libdir.join(c)));
        let missing: Vec<String> =
            needed.iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "MLX not found under {}: missing {}. MLX_PREFIX must be the directory that contains \
                 the `mlx` package of an installed {} wheel (its site-packages or pip --target directory).",
                prefix.display(),
                missing.join(", "),
                self.wheel()
            ));
        }
        Ok(Layout { include, libdir, lib })
    }
}
