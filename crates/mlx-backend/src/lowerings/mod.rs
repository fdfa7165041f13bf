//! The MLX backend's fused lowerings of the built-in blocks (registered by
//! [`MlxBackend::with_default_lowerings`](crate::MlxBackend::with_default_lowerings)).
//!
//! Each is a plain function with the signature [`Lowerings::register`] takes, so that other
//! crates can register them too, or wrap them. Each checks per call whether MLX computes the
//! block's semantics (blocks.md) for these operands and declines to the fallback subgraph
//! (through the fallback handle) when it does not, so results never depend on which path
//! ran:
//!
//! | block | lowers to | declines when |
//! |---|---|---|
//! | [`RmsNorm`] | `fast::rms_norm` | an operand is f64 |
//! | [`LayerNorm`] | `fast::layer_norm` | an operand is f64 |
//! | [`Rope`] | `fast::rope` (int or array offset, freqs) | x is f64; positions given as a tensor; an offset beyond i32 |
//! | [`Sdpa`] | `fast::scaled_dot_product_attention` | q, k or v is f64 |
//! | [`QuantizedMatmul`] | `quantized_matmul` (packed bytes viewed as uint32) | x or scales are f64 |
//! | `QuantizedEmbedding` | no lowering: its fallback gathers the looked-up rows first (bounds-checked like `Gather`), so only those are dequantized | — |
//! | [`SwiGlu`], [`GeGlu`], [`Gelu`] | one kernel by `mlx::core::compile` ([`fast::fused_elementwise`](crate::fast::fused_elementwise)); f64: MLX elementwise ops | never |

use crate::array::{thread_device, Array, Device};
use crate::error::Result;
use blockfuse_ir::blocks::{GeGlu, Gelu, LayerNorm, QuantizedMatmul, RmsNorm, Rope, Sdpa, SwiGlu};
use blockfuse_ir::dispatch::Lowerings;

mod activation;
mod norm;
mod quantized;
mod rope;
mod sdpa;

pub use activation::{geglu, gelu, swiglu};
pub use norm::{layer_norm, rms_norm};
pub use quantized::quantized_matmul;
pub use rope::rope;
pub use sdpa::sdpa;

/// Registers this crate's lowerings of the built-in blocks.
pub fn register_defaults(l: &mut Lowerings<Array>) {
    l.register::<RmsNorm>(rms_norm);
    l.register::<LayerNorm>(layer_norm);
    l.register::<Rope>(rope);
    l.register::<Sdpa>(sdpa);
    l.register::<SwiGlu>(swiglu);
    l.register::<GeGlu>(geglu);
    l.register::<Gelu>(gelu);
    l.register::<QuantizedMatmul>(quantized_matmul);
}

/// The device ops built on this thread run on.
pub(crate) fn current_device() -> Device {
    thread_device().or_else(|| crate::array::default_device().ok()).unwrap_or(Device::Cpu)
}

/// The dtypes of some arrays.
pub(crate) fn dtypes<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<Vec<blockfuse_ir::DType>> {
    arrays.into_iter().map(Array::dtype).collect()
}
