//! MLX backend of blockfuse.
//!
//! Phase 1: the binding. [`mod@array`] wraps MLX arrays and ops and [`fast`] MLX's fused
//! kernels, through a small C++ shim (`cpp/shim.cpp`, C ABI) linked with `libmlx.so`.
//!
//! # Finding MLX
//! At build time `build.rs` uses `$MLX_PREFIX` (the directory holding the `mlx` package of an
//! installed `mlx-cpu`/`mlx-cuda-*` wheel, i.e. `$MLX_PREFIX/mlx/include` and
//! `$MLX_PREFIX/mlx/lib/libmlx.so`), else pip-installs `mlx-cpu==0.32.4` once into
//! `<target-dir>/mlx-cpu-0.32.4`. `libmlx.so` is linked by soname, so at run time
//! `LD_LIBRARY_PATH` can swap in another build (e.g. the CUDA one).
//!
//! At run time binaries find `libmlx.so` through an rpath. Cargo applies this crate's rpath
//! only to its own tests and examples; a crate with binaries or tests that link this one must
//! depend on it directly and add, in its own `build.rs`:
//!
//! ```ignore
//! fn main() {
//!     // blockfuse-mlx has `links = "mlx"`, so cargo passes its lib dir as DEP_MLX_LIBDIR.
//!     if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
//!         println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
//!     }
//! }
//! ```
#![deny(missing_docs)]

pub mod array;
pub mod fast;
mod ffi;

pub use array::{Array, Device, MlxError};
