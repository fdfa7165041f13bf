//! MLX backend of blockfuse.
//!
//! - [`MlxBackend`] runs a [`Graph`](blockfuse_ir::Graph) on MLX: primitive ops as MLX ops,
//!   blocks through the dispatch protocol of [`blockfuse_ir::dispatch`] — a registered
//!   lowering ([`lowerings`] has ours, onto `mlx::core::fast`) or the block's fallback
//!   subgraph, lowered op by op. The whole graph is built lazily and evaluated once.
//! - [`Prepared`] ([`MlxBackend::prepare`]) keeps a graph's constants (weights) on the device
//!   across runs, and [`Prepared::run_arrays`] its inputs and outputs too.
//! - The binding: [`mod@array`] wraps MLX arrays and ops and [`fast`] MLX's fused kernels,
//!   through a small C++ shim (`cpp/shim.cpp`, C ABI) linked with `libmlx.so`.
//!
//! Errors are [`MlxError`]s; a failure while running a graph names the input or the node
//! (see [`MlxError::Node`]). Nothing aborts the process.
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
mod backend;
pub mod bind;
mod compile;
pub mod error;
pub mod fast;
mod ffi;
mod lower;
pub mod lowerings;
mod prim;
mod session;

pub use array::{Array, Device};
pub use backend::{MlxBackend, MlxLowerings, Prepared};
pub use error::MlxError;
pub use session::MlxSession;
