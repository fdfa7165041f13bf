//! # blockfuse fallback backend
//!
//! A pure-Rust CPU evaluator for blockfuse graphs: every primitive [`Op`](blockfuse_ir::Op)
//! in every dtype, and every block through the dispatch protocol of
//! [`blockfuse_ir::dispatch`] — a registered lowering when there is one, the block's fallback
//! subgraph otherwise (or when the lowering declines by calling its fallback handle).
//!
//! ```
//! use blockfuse_fallback::FallbackBackend;
//! use blockfuse_ir::blocks::RmsNorm;
//! use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType};
//!
//! let mut g = Graph::new();
//! let mut b = Builder::new(&mut g);
//! let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq"), Dim::Known(4)]));
//! let y = b.block(RmsNorm::new(1e-6), &[x]).unwrap()[0];
//! g.add_output("y", y);
//!
//! let backend = FallbackBackend::new();
//! let x = HostTensor::from_f32(vec![2, 4], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
//! let y = backend.run(&g, &[x]).unwrap();
//! assert!((y[0].get_f64(7) - 1.0).abs() < 1e-6);
//! ```
//!
//! ## Numerics
//! - f32, f16 and bf16 compute in f32; f16/bf16 results are rounded to their dtype after
//!   every op (as ORT and PyTorch do on CPU); matmul accumulates in f32; reductions
//!   accumulate in f64; softmax shifts by the max in f32 and sums in f64. f64 stays f64.
//! - Integers wrap to their dtype. Integer `Div` truncates toward zero (ONNX); `Mod` is floored
//!   (the sign of the divisor, like Python's `%`, as `op.rs` documents); a zero divisor is an
//!   error. Casts from float to integer truncate toward zero and saturate.
//! - `Gather` takes negative indices from the end and fails on others out of range; `Slice`
//!   clamps its bounds like numpy.
//!
//! ## Memory
//! Only the nodes that the outputs depend on run; each value is freed after its last reader,
//! reshapes share their operand's data, and unary ops, float binary ops and casts write over
//! their (first) operand's buffer when nothing else reads it.
#![deny(missing_docs)]

mod error;
mod exec;
mod ops;
mod session;
mod strided;
mod tensor;

pub use error::EvalError;

use blockfuse_ir::dispatch::{Call, Fallback, LowerResult, Lowerings};
use blockfuse_ir::{Block, Graph, HostTensor};
use std::cell::RefCell;
use std::collections::HashMap;
use tensor::Tensor;

/// The lowering table of the fallback backend.
pub type FallbackLowerings = Lowerings<HostTensor>;

/// The reference CPU backend. Blocks without a registered lowering run their fallback
/// subgraph, built with [`fallback_graph`](blockfuse_ir::dispatch::fallback_graph) for the
/// concrete operand types and cached for the rest of the run.
#[derive(Clone, Default)]
pub struct FallbackBackend {
    lowerings: FallbackLowerings,
}

impl FallbackBackend {
    /// A backend with no lowerings: every block runs its fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the lowering of block type `B`. The lowering gets the block,
    /// the call (output types and evaluated operands) and a fallback handle; calling the
    /// handle runs the block's fallback subgraph, which is how a lowering declines.
    pub fn register<B: Block>(
        &mut self,
        lowering: impl Fn(&B, &Call<'_, HostTensor>, &mut dyn Fallback<HostTensor>) -> LowerResult<HostTensor>
            + Send
            + Sync
            + 'static,
    ) {
        self.lowerings.register::<B>(lowering);
    }

    /// Removes the lowering of `B`, so that it runs its fallback again.
    pub fn unregister<B: Block>(&mut self) {
        self.lowerings.unregister::<B>();
    }

    /// The lowering table.
    pub fn lowerings(&self) -> &FallbackLowerings {
        &self.lowerings
    }

    /// Evaluates `g`: `inputs` in graph-input order, outputs in graph-output order. Symbolic
    /// dims are bound from the inputs' dims.
    pub fn run(&self, g: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, EvalError> {
        let exec = exec::Exec { lowerings: &self.lowerings, cache: RefCell::new(HashMap::new()) };
        let inputs = inputs.iter().map(Tensor::from_host).collect();
        let outs = exec.run_graph(g, inputs)?;
        Ok(outs.iter().map(Tensor::to_host).collect())
    }

    /// Like [`FallbackBackend::run`], with the inputs given by name (extra names are
    /// ignored); outputs in graph-output order.
    pub fn run_named(
        &self,
        g: &Graph,
        inputs: &HashMap<String, HostTensor>,
    ) -> Result<Vec<HostTensor>, EvalError> {
        let ordered = g
            .inputs()
            .iter()
            .map(|&id| {
                let name = g.node(id).name.clone().unwrap_or_default();
                inputs.get(&name).cloned().ok_or(EvalError::MissingInput(name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.run(g, &ordered)
    }
}
