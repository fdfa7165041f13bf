//! The test kit of blockfuse: seeded random tensors in every dtype ([`random`]), random
//! inputs for a graph from its input types and symbol bindings
//! ([`random::random_inputs_with`]), and tolerance comparison with NaN/∞ agreement and the
//! first bad index ([`compare`]), the inputs of the blocks' parity tables ([`parity`]), the
//! device benches' command line ([`bench`]), a block for the dispatch tests
//! ([`blocks::IntRatio`]), and the Python interpreter of the tests that run the ONNX Python
//! packages ([`python`]).
//!
//! One copy for the whole tree: the crates' tests and the GPU benches use it as a
//! dev-dependency; `blockfuse-models` (weights of its reference models) and the facade
//! (`optimize --verify`, `run --check`) use it as a normal one. It depends on
//! `blockfuse-ir` only.
#![deny(missing_docs)]

pub mod bench;
pub mod blocks;
pub mod compare;
pub mod parity;
pub mod python;
pub mod random;

pub use bench::BenchArgs;
pub use compare::{assert_close, compare, max_abs_diff, ulp, Comparison, Tolerance};
pub use random::{noise, rand, random_bytes, random_inputs, random_inputs_with, random_tensor};
