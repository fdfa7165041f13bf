//! [`MlxBackend`]: runs a blockfuse [`Graph`] on MLX.

use crate::array::{self, with_device, Array, Device};
use crate::bind::bind_inputs;
use crate::error::{MlxError, Result};
use crate::lower::Lowerer;
use crate::lowerings;
use blockfuse_ir::dispatch::{Call, Fallback, Lowerings};
use blockfuse_ir::{Block, Graph, HostTensor};

/// The lowering table of the MLX backend.
pub type MlxLowerings = Lowerings<Array, MlxError>;

/// Runs graphs on MLX: every primitive op as MLX ops, every block through its registered
/// lowering (see [`lowerings`](crate::lowerings)) or, without one or when the lowering
/// declines, its fallback subgraph lowered op by op.
///
/// A run builds the whole graph lazily as MLX arrays on the backend's device, in
/// topological order, and evaluates every output in one `eval`. Symbolic dims are bound
/// from the actual input dims. Every error names what it is about: the input, or the node
/// (and, inside a block's fallback, the fallback's node within the block's node).
///
/// ```
/// use blockfuse_ir::blocks::RmsNorm;
/// use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType};
/// use blockfuse_mlx::{Device, MlxBackend};
///
/// let mut g = Graph::new();
/// let mut b = Builder::new(&mut g);
/// let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq"), Dim::Known(4)]));
/// let y = b.block(RmsNorm::new(1e-6), &[x]).unwrap()[0];
/// g.add_output("y", y);
///
/// let backend = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
/// let x = HostTensor::from_f32(vec![2, 4], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
/// let y = backend.run(&g, &[x]).unwrap();
/// assert!((y[0].get_f64(7) - 1.0).abs() < 1e-6);
/// ```
///
/// The backend is `Send` and `Sync` (it holds no MLX arrays); each run builds and evaluates
/// its arrays on the calling thread.
#[derive(Clone)]
pub struct MlxBackend {
    device: Device,
    lowerings: MlxLowerings,
}

impl std::fmt::Debug for MlxBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlxBackend").field("device", &self.device).finish_non_exhaustive()
    }
}

impl MlxBackend {
    /// A backend on `device` with no lowerings: every block runs its fallback subgraph.
    /// Errors (never aborts) when the linked MLX cannot use the device, e.g.
    /// [`Device::Gpu`] with the CPU-only library.
    pub fn new(device: Device) -> Result<Self> {
        if !device.is_available() {
            return Err(MlxError::DeviceUnavailable { device, version: array::version() });
        }
        Ok(MlxBackend { device, lowerings: Lowerings::new() })
    }

    /// A backend on `device` with this crate's fused lowerings of the built-in blocks
    /// ([`lowerings::register_defaults`]).
    pub fn with_default_lowerings(device: Device) -> Result<Self> {
        let mut b = Self::new(device)?;
        lowerings::register_defaults(&mut b.lowerings);
        Ok(b)
    }

    /// The device the backend runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Registers (or replaces) the lowering of block type `B`. It gets the block, the call
    /// (concrete output types and the operands as MLX arrays) and a fallback handle to
    /// decline with (`fallback.run(call.args)`).
    pub fn register<B: Block>(
        &mut self,
        lowering: impl Fn(&B, &Call<'_, Array>, &mut dyn Fallback<Array, MlxError>) -> Result<Vec<Array>>
            + Send
            + Sync
            + 'static,
    ) {
        self.lowerings.register::<B>(lowering);
    }

    /// Removes the lowering of `B`, so that it runs its fallback subgraph.
    pub fn unregister<B: Block>(&mut self) {
        self.lowerings.unregister::<B>();
    }

    /// The lowering table.
    pub fn lowerings(&self) -> &MlxLowerings {
        &self.lowerings
    }

    /// The lowering table, to edit.
    pub fn lowerings_mut(&mut self) -> &mut MlxLowerings {
        &mut self.lowerings
    }

    /// Runs `g` on `inputs` (in graph-input order) and returns its outputs (in graph-output
    /// order) as host tensors.
    ///
    /// Inputs are checked against the graph's input types (dtype, rank, known dims) and bind
    /// its symbols; a node whose operands or results disagree with the graph at run time, a
    /// failed MLX call and a failed run-time check (integer division by zero, an index out of
    /// range) are errors naming the node.
    pub fn run(&self, g: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        with_device(self.device, || self.run_here(g, inputs))?
    }

    fn run_here(&self, g: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        let bindings = bind_inputs(g, inputs)?;
        let arrays = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Array::from_host(t).map_err(|e| MlxError::Input {
                    index: i,
                    name: g.node(g.inputs()[i]).name.clone().unwrap_or_default(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut lowerer = Lowerer::new(&self.lowerings);
        let outputs = lowerer.lower_graph(g, &bindings, arrays)?;
        let checks = lowerer.checks.into_vec();
        let mut all: Vec<&Array> = outputs.iter().collect();
        all.extend(checks.iter().map(|c| &c.failed));
        array::eval(&all)?;
        for c in checks {
            if c.failed.to_host()?.get_f64(0) != 0.0 {
                return Err(c.error);
            }
        }
        outputs.iter().map(Array::to_host).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MlxBackend>();
    }
}
