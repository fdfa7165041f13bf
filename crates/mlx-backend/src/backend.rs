//! [`MlxBackend`]: runs a blockfuse [`Graph`] on MLX.

use crate::array::{self, with_device, Array, Device};
use crate::bind::{bind_inputs, bind_shapes};
use crate::error::{MlxError, Result};
use crate::lower::{live_nodes, FallbackCache, Lowerer};
use crate::lowerings;
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult, Lowerings};
use blockfuse_ir::{Bindings, Block, DType, Graph, HostTensor, Op};

/// The lowering table of the MLX backend.
pub type MlxLowerings = Lowerings<Array>;

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
        lowering: impl Fn(&B, &Call<'_, Array>, &mut dyn Fallback<Array>) -> LowerResult<Array>
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
    ///
    /// Every call copies the graph's constants (weights) and the inputs to MLX and the outputs
    /// back. To run one graph many times, [`prepare`](Self::prepare) it once instead: its
    /// constants then stay on the device, and [`Prepared::run_arrays`] keeps inputs and
    /// outputs there too. This is `self.prepare(g)?.run(inputs)` without the separate upload.
    pub fn run(&self, g: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        with_device(self.device, || self.prepare_here(g)?.run_here(inputs))?
    }

    /// Prepares `g` for repeated runs: uploads (and evaluates) every constant the outputs
    /// depend on to the backend's device once. The [`Prepared`] graph then runs with those
    /// arrays, so weights cross from the host once, not per run.
    ///
    /// Errors (naming the node) when a constant cannot be made on the device; the graph
    /// itself is checked when it runs, as by [`run`](Self::run).
    ///
    /// ```
    /// use blockfuse_ir::{Builder, DType, Graph, HostTensor, TensorType};
    /// use blockfuse_mlx::{Device, MlxBackend};
    ///
    /// let mut g = Graph::new();
    /// let mut b = Builder::new(&mut g);
    /// let x = b.input("x", TensorType::known(DType::F32, &[2]));
    /// let w = b.constant(HostTensor::from_f32(vec![2], &[10.0, 20.0]));
    /// let y = b.mul(x, w).unwrap();
    /// g.add_output("y", y);
    ///
    /// let backend = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
    /// let prepared = backend.prepare(&g).unwrap(); // w is uploaded here, once
    /// for step in 0..3 {
    ///     let x = HostTensor::from_f32(vec![2], &[step as f32, 1.0]);
    ///     let y = prepared.run(&[x]).unwrap();
    ///     assert_eq!(y[0].get_f64(0), 10.0 * step as f64);
    /// }
    /// ```
    pub fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Prepared<'a>> {
        with_device(self.device, || {
            let p = self.prepare_here(g)?;
            let held: Vec<&Array> = p.constants.iter().flatten().collect();
            array::eval(&held)?;
            Ok(p)
        })?
    }

    /// Makes the arrays of the live constants of `g` (not evaluated).
    fn prepare_here<'a>(&'a self, g: &'a Graph) -> Result<Prepared<'a>> {
        let live = live_nodes(g);
        let mut constants: Vec<Option<Array>> = (0..g.node_bound()).map(|_| None).collect();
        let mut bytes = 0;
        for id in g.node_ids() {
            let node = g.node(id);
            if let (true, Op::Constant(t)) = (live[id.index()], &node.op) {
                let a = Array::from_host(t).map_err(|e| e.at(g.label(id), node.op.name()))?;
                bytes += t.bytes().len();
                constants[id.index()] = Some(a);
            }
        }
        Ok(Prepared { backend: self, graph: g, constants, bytes })
    }
}

/// A graph prepared by [`MlxBackend::prepare`] for repeated runs: its constants (weights)
/// live on the backend's device as MLX arrays, uploaded once, and every run reuses them.
///
/// - [`run`](Self::run) takes and returns host tensors (inputs copied in, outputs out);
/// - [`run_arrays`](Self::run_arrays) takes and returns MLX arrays, so that activations can
///   stay on the device between runs too (e.g. one layer's output fed to the next).
///
/// Runs check their inputs and report errors exactly as [`MlxBackend::run`]. The device
/// memory of the constants is held until the `Prepared` is dropped.
///
/// `Prepared` is neither `Send` nor `Sync` (it holds [`Array`]s, see
/// [`array`](crate::array#threads)): prepare the graph on the thread that runs it, one
/// `Prepared` per thread if several threads run it.
pub struct Prepared<'a> {
    backend: &'a MlxBackend,
    graph: &'a Graph,
    /// By node index: the array of each live constant node.
    constants: Vec<Option<Array>>,
    bytes: usize,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("device", &self.backend.device)
            .field("constants", &self.constants.iter().flatten().count())
            .field("constant_bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<'a> Prepared<'a> {
    /// The backend it runs on.
    pub fn backend(&self) -> &'a MlxBackend {
        self.backend
    }

    /// The graph it runs.
    pub fn graph(&self) -> &'a Graph {
        self.graph
    }

    /// The total size in bytes of the constants held on the device.
    pub fn constant_bytes(&self) -> usize {
        self.bytes
    }

    /// Runs the graph on `inputs` (in graph-input order), returning its outputs (in
    /// graph-output order) as host tensors; see [`MlxBackend::run`].
    pub fn run(&self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        with_device(self.backend.device, || self.run_here(inputs))?
    }

    /// Runs the graph on inputs that are already MLX arrays and returns its outputs as
    /// evaluated MLX arrays, nothing copied through the host (but the results of run-time
    /// checks, one scalar each). Inputs are checked and bind the graph's symbols as in
    /// [`run`](Self::run). Make input arrays on the backend's device (e.g.
    /// [`Array::from_host`] inside [`with_device`]) and on this thread.
    pub fn run_arrays(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        with_device(self.backend.device, || {
            let g = self.graph;
            let dtypes = inputs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.dtype().map_err(|e| MlxError::Input {
                        index: i,
                        name: g.inputs().get(i).and_then(|&id| g.node(id).name.clone()).unwrap_or_default(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let dims: Vec<Vec<usize>> = inputs.iter().map(Array::shape).collect();
            let shapes: Vec<(DType, &[usize])> =
                dtypes.iter().zip(&dims).map(|(&d, s)| (d, s.as_slice())).collect();
            let bindings = bind_shapes(g, &shapes)?;
            self.eval_outputs(&bindings, inputs.to_vec())
        })?
    }

    fn run_here(&self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        let g = self.graph;
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
        let outputs = self.eval_outputs(&bindings, arrays)?;
        outputs.iter().map(Array::to_host).collect()
    }

    /// Lowers the graph on `inputs` with the prepared constants, evaluates the outputs and
    /// the run-time checks, and fails on the first failed check.
    fn eval_outputs(&self, bindings: &Bindings, inputs: Vec<Array>) -> Result<Vec<Array>> {
        self.eval_with(bindings, inputs, &mut FallbackCache::new())
    }

    /// [`eval_outputs`](Self::eval_outputs) reusing (and adding to) the fallback subgraphs
    /// of earlier runs: what a session keeps between runs. Call inside `with_device`.
    pub(crate) fn eval_with(
        &self,
        bindings: &Bindings,
        inputs: Vec<Array>,
        fallbacks: &mut FallbackCache,
    ) -> Result<Vec<Array>> {
        let mut lowerer = Lowerer::new(&self.backend.lowerings);
        lowerer.fallbacks = std::mem::take(fallbacks);
        let outputs = lowerer.lower_graph(self.graph, bindings, inputs, Some(&self.constants));
        *fallbacks = std::mem::take(&mut lowerer.fallbacks);
        let outputs = outputs?;
        let checks = lowerer.checks.into_vec();
        let mut all: Vec<&Array> = outputs.iter().collect();
        all.extend(checks.iter().map(|c| &c.failed));
        array::eval(&all)?;
        for c in checks {
            if c.failed.to_host()?.get_f64(0) != 0.0 {
                return Err(c.error);
            }
        }
        Ok(outputs)
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

    #[test]
    fn prepared_constants_are_reused_and_inputs_checked() {
        use blockfuse_ir::{Builder, TensorType};
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F32, [blockfuse_ir::Dim::sym("n")]));
        let w = b.constant(HostTensor::from_f32(vec![1], &[3.0]));
        let dead = b.constant(HostTensor::from_f32(vec![1], &[7.0]));
        let _ = dead;
        let y = b.mul(x, w).unwrap();
        g.add_output("y", y);
        let backend = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
        let p = backend.prepare(&g).unwrap();
        // Only the live constant is held.
        assert_eq!(p.constant_bytes(), 4);
        for n in [1usize, 4] {
            let x = HostTensor::from_f32(vec![n], &vec![2.0; n]);
            let y = p.run(std::slice::from_ref(&x)).unwrap();
            assert_eq!(y[0].dims(), &[n]);
            assert_eq!(y[0].get_f64(n - 1), 6.0);
            let xa = array::with_device(Device::Cpu, || Array::from_host(&x)).unwrap().unwrap();
            let ya = p.run_arrays(&[xa]).unwrap();
            assert_eq!(ya[0].to_host().unwrap(), y[0]);
        }
        let bad = HostTensor::from_f64(DType::F16, vec![2], &[1.0, 2.0]);
        assert!(matches!(p.run(&[bad]), Err(MlxError::Input { index: 0, .. })));
        let i = array::with_device(Device::Cpu, || Array::from_host(&HostTensor::from_i64(vec![2], &[1, 2])))
            .unwrap()
            .unwrap();
        let e = p.run_arrays(&[i]).unwrap_err();
        assert!(e.to_string().contains("expected f32[n]"), "{e}");
        assert!(p.run_arrays(&[]).is_err());
    }
}
