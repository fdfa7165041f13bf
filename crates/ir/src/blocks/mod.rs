//! The block library: one file per block. Every block states its math in its doc comment and
//! in its fallback (primitive ops through the [`Builder`](crate::Builder)); validation errors
//! start with the block's kind ("rms_norm: weight has 63 elements, the last axis has 64").
//!
//! | kind | type | operands |
//! |---|---|---|
//! | `rms_norm` | [`RmsNorm`] | x [, weight] |
//! | `residual_rms_norm` | [`ResidualRmsNorm`] | x, a [, weight]; outputs h = x + a, y = rms_norm(h) |
//! | `layer_norm` | [`LayerNorm`] | x [, weight] [, bias] |
//! | `rope` | [`Rope`] | x [, offsets \| positions] [, freqs]; cos/sin form: x, cos, sin |
//! | `sdpa` | [`Sdpa`] | q, k, v [, mask \| key_padding] [, sinks] |
//! | `swiglu` | [`SwiGlu`] | gate, up |
//! | `geglu` | [`GeGlu`] | gate, up |
//! | `gelu` | [`Gelu`] | x |
//! | `quantized_matmul` | [`QuantizedMatmul`] | x, packed, scales, biases |
//! | `quantized_embedding` | [`QuantizedEmbedding`] | ids, packed, scales, biases |
//! | `dequantize` | [`Dequantize`] | q, scale, zero_point |
//! | `int4` | [`Int4`] | packed |

use crate::block::{Block, BlockRegistry, ParityCase};
use std::sync::{OnceLock, RwLock};

mod common;
mod dequantize;
mod geglu;
mod gelu;
mod int4;
mod layer_norm;
mod quantized_embedding;
mod quantized_matmul;
mod residual_rms_norm;
mod rms_norm;
mod rope;
mod sdpa;
mod swiglu;

pub use common::{compute_dtype, parity_tol, result_type};
pub use dequantize::Dequantize;
pub use geglu::GeGlu;
pub use gelu::{Gelu, GeluKind};
pub use int4::{pack_int4, Int4};
pub use layer_norm::LayerNorm;
pub use quantized_embedding::QuantizedEmbedding;
pub use quantized_matmul::{quantize_affine, QuantizedMatmul, QuantizedWeight, BITS, GROUP_SIZES};
pub use residual_rms_norm::ResidualRmsNorm;
pub use rms_norm::RmsNorm;
pub use rope::{Rope, RopePosition};
pub use sdpa::{MaskKind, Sdpa};
pub use swiglu::SwiGlu;

/// The one list of built-in blocks: the registry, the kind list of every report and the
/// docs table are made from it, so a new block is added here once.
macro_rules! builtin_blocks {
    ($($block:ty),* $(,)?) => {
        /// The kinds of the built-in blocks, in the order reports list them.
        pub const BUILTIN_KINDS: &[&str] = &[$(<$block>::KIND),*];

        /// The parity tables of the built-in blocks ([`Block::parity_cases`]), in list order.
        pub fn builtin_parity_cases() -> Vec<ParityCase> {
            let mut cases = Vec::new();
            $(cases.extend(<$block as Block>::parity_cases());)*
            cases
        }

        /// A registry holding every block kind of this crate.
        pub fn builtin_registry() -> BlockRegistry {
            let mut r = BlockRegistry::new();
            $(r.register::<$block>(<$block>::KIND);)*
            r
        }
    };
}

builtin_blocks!(
    RmsNorm,
    LayerNorm,
    Rope,
    Sdpa,
    SwiGlu,
    GeGlu,
    Gelu,
    QuantizedMatmul,
    QuantizedEmbedding,
    ResidualRmsNorm,
    Dequantize,
    Int4
);

/// The process-wide registry, seeded with the built-in blocks on first use.
fn registry_cell() -> &'static RwLock<BlockRegistry> {
    static CELL: OnceLock<RwLock<BlockRegistry>> = OnceLock::new();
    CELL.get_or_init(|| RwLock::new(builtin_registry()))
}

/// A snapshot of the process-wide registry (the built-in blocks plus everything registered
/// with [`register_block`]); `json::from_json` decodes blocks through it.
pub fn global_registry() -> BlockRegistry {
    registry_cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Adds a block type to the process-wide registry, for JSON reading.
pub fn register_block<B>(kind: &str)
where
    B: Block + serde::de::DeserializeOwned,
{
    registry_cell().write().unwrap_or_else(|e| e.into_inner()).register::<B>(kind);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_built_in_kind_is_registered_once() {
        let r = super::builtin_registry();
        let kinds: Vec<&str> = r.kinds().collect();
        let mut listed = super::BUILTIN_KINDS.to_vec();
        listed.sort_unstable();
        assert_eq!(kinds, listed);
    }
}
