//! The bundled example: a small Llama-style decoder written in primitive ops the way
//! exporters spell it (pow/mean/sqrt/div RMSNorm, rotate_half RoPE, repeat_kv, eager
//! attention with an additive causal mask, SiLU-gated MLP), and the `demo` command.
//!
//! The builder lives in [`blockfuse_models`] (shared with the benches and the MLX GPU
//! bench); this module re-exports it under the names the CLI has always used.

/// The decoder's size, dtype and weights; [`DecoderConfig::demo`] is the demo's model.
pub use blockfuse_models::DecoderConfig;

/// Builds the decoder: input `hidden_states` {batch, seq, hidden}; output `out`.
pub use blockfuse_models::llama_decoder;
