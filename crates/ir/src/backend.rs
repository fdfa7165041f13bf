//! Pluggable backends: the [`Backend`] trait every executor implements, the [`Session`] it
//! prepares for one graph, and a [`Registry`] of backends by name.
//!
//! A backend is anything that runs a [`Graph`]: the fallback evaluator, MLX on a device, or a
//! crate of your own. It says what it can do ([`Capabilities`]), and
//! [`prepare`](Backend::prepare)s a graph into a [`Session`] that runs it repeatedly with host
//! tensors at the boundary. Backend-specific fast paths (MLX device arrays) stay on the
//! concrete session types.
//!
//! Sessions also run *decode steps* of KV-cache graphs ([`Session::step`]): the graph's
//! cache pairs ([`CachePair`]: which output is the new value of which input) are fed back
//! by the session itself between steps, so that a device backend keeps the cache on the
//! device.
//!
//! ```
//! use blockfuse_ir::backend::{Backend, BackendError, Capabilities, HostSession, Registry, Session};
//! use blockfuse_ir::{Builder, DType, Graph, HostTensor, TensorType};
//!
//! /// A toy backend that only runs `y = x`.
//! struct Identity;
//! impl Backend for Identity {
//!     fn name(&self) -> String {
//!         "identity".into()
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities {
//!             devices: vec!["cpu".into()],
//!             dtypes: DType::ALL.to_vec(),
//!             native_blocks: vec![],
//!             horizontal_fusion: false,
//!         }
//!     }
//!     fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Session + 'a>, BackendError> {
//!         Ok(Box::new(HostSession::new(move |inputs: &[HostTensor]| {
//!             let _ = g;
//!             Ok(inputs.to_vec())
//!         })))
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register("identity", "returns its inputs", || Ok(Box::new(Identity)));
//! let backend = registry.create("identity").unwrap();
//! let mut g = Graph::new();
//! let x = Builder::new(&mut g).input("x", TensorType::known(DType::F32, &[1]));
//! g.add_output("y", x);
//! let mut s = backend.prepare(&g).unwrap();
//! let y = s.run(&[HostTensor::from_f32(vec![1], &[3.0])]).unwrap();
//! assert_eq!(y[0].get_f64(0), 3.0);
//! assert!(registry.create("nope").is_err());
//! ```

use crate::{Bindings, DType, Graph, HostTensor};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a backend could not be made, prepare a graph or run it. The message names the node
/// or input where the backend's own error did.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    /// The backend's name.
    pub backend: String,
    /// What went wrong, phrased by the backend.
    pub message: String,
}

impl BackendError {
    /// An error of backend `backend`.
    pub fn new(backend: impl Into<String>, message: impl std::fmt::Display) -> Self {
        BackendError { backend: backend.into(), message: message.to_string() }
    }
}

/// What a backend can do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The devices it runs on (`cpu`, `gpu`, ...).
    pub devices: Vec<String>,
    /// The element types it runs.
    pub dtypes: Vec<DType>,
    /// The block types it lowers natively (Rust type names such as `RmsNorm`; others run
    /// their fallback subgraphs). A native
    /// lowering may still decline one call (a dtype, shape or attribute), per call.
    pub native_blocks: Vec<String>,
    /// The backend gains from one wide matmul in place of several reading the same
    /// activation (q/k/v, gate/up), followed by a split: the optimizer's horizontal fusion of
    /// projections runs for it (`blockfuse_patterns::OptimizeOptions::for_backend`).
    pub horizontal_fusion: bool,
}

/// Which graph output is the next value of which graph input: a KV cache's `present` for
/// its `past`. Indices are positions in [`Graph::inputs`] and [`Graph::outputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CachePair {
    /// The input (past) index.
    pub input: usize,
    /// The output (present) index.
    pub output: usize,
}

/// What a session did so far (for tests and the CLI's timing columns).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SessionStats {
    /// Runs (and steps) so far.
    pub runs: usize,
    /// How many times the graph was lowered for a new input-shape signature (0 for
    /// backends that interpret the graph directly).
    pub lowerings: usize,
    /// Seconds spent copying inputs to the device and outputs back (0 for host backends).
    pub host_copy_s: f64,
}

/// One graph prepared by a [`Backend`] for repeated runs.
///
/// Sessions are not required to be `Send`: device arrays often are not. Make one session
/// per thread.
pub trait Session {
    /// Runs the graph: `inputs` in graph-input order, outputs in graph-output order.
    fn run(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError>;

    /// Runs one step of a KV-cache graph. `inputs` holds one tensor per graph input that
    /// is not the input of a pair in `pairs`, in graph-input order. The cache inputs are
    /// the session's own: on the first step (or after [`reset_cache`](Self::reset_cache))
    /// zeros of the input's type, symbols bound from the other inputs and unbound ones
    /// (the past length of a concat-form cache) 0; afterwards the paired outputs of the
    /// previous step. Returns the outputs in graph-output order, `None` for the paired
    /// (cache) outputs, which stay in the session; [`cache`](Self::cache) reads them.
    fn step(
        &mut self,
        inputs: &[HostTensor],
        pairs: &[CachePair],
    ) -> Result<Vec<Option<HostTensor>>, BackendError>;

    /// Forgets the cache: the next [`step`](Self::step) starts from zeros.
    fn reset_cache(&mut self);

    /// The current cache values (copies on the host), in the order of the pairs of the
    /// last step; empty before the first.
    fn cache(&self) -> Result<Vec<HostTensor>, BackendError>;

    /// What the session did so far.
    fn stats(&self) -> SessionStats {
        SessionStats::default()
    }
}

/// A backend: a name, capabilities, and sessions for graphs.
pub trait Backend: Send + Sync {
    /// The name it is registered under (`fallback`, `mlx:gpu`, ...).
    fn name(&self) -> String;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Prepares `g` for repeated runs (uploads weights, etc.). Errors name the node.
    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Session + 'a>, BackendError>;

    /// Runs `g` once: `self.prepare(g)?.run(inputs)`.
    fn run(&self, g: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        self.prepare(g)?.run(inputs)
    }
}

/// The initial (zero) cache values of `pairs`' inputs of `g`: symbols bound from the
/// other inputs' dims (`given`, in graph-input order without the cache inputs), unbound
/// symbols 0.
pub fn zero_cache(g: &Graph, given: &[HostTensor], pairs: &[CachePair]) -> Result<Vec<HostTensor>, String> {
    let is_cache = |i: usize| pairs.iter().any(|p| p.input == i);
    let mut bindings = Bindings::new();
    let mut others = given.iter();
    for (i, &id) in g.inputs().iter().enumerate() {
        if is_cache(i) {
            continue;
        }
        let t = others.next().ok_or_else(|| format!("input {i} was not given"))?;
        for (d, &n) in g.node(id).types[0].shape.iter().zip(t.dims()) {
            if let crate::Dim::Sym(_) = d {
                let syms: Vec<_> = d.symbols().cloned().collect();
                if syms.len() == 1 {
                    bindings.entry(syms[0].clone()).or_insert(n);
                }
            }
        }
    }
    pairs
        .iter()
        .map(|p| {
            let id = *g.inputs().get(p.input).ok_or_else(|| format!("no graph input {}", p.input))?;
            let ty = &g.node(id).types[0];
            let dims: Vec<usize> = ty.shape.iter().map(|d| d.eval(&bindings).unwrap_or(0)).collect();
            let bytes = vec![0u8; dims.iter().product::<usize>() * ty.dtype.size_bytes()];
            HostTensor::from_bytes(ty.dtype, dims, bytes).map_err(|e| e.to_string())
        })
        .collect()
}

/// Puts the cache values into the full input list: `given` (the non-cache inputs in order)
/// and `cache` (one per pair) merged in graph-input order.
pub fn merge_inputs<T: Clone>(n_inputs: usize, given: &[T], cache: &[T], pairs: &[CachePair]) -> Vec<T> {
    let mut given = given.iter();
    (0..n_inputs)
        .filter_map(|i| match pairs.iter().position(|p| p.input == i) {
            Some(k) => cache.get(k).cloned(),
            None => given.next().cloned(),
        })
        .collect()
}

/// A function that runs a graph on host tensors.
type RunFn<'a> = dyn FnMut(&[HostTensor]) -> Result<Vec<HostTensor>, BackendError> + 'a;

/// A [`Session`] over a function that runs the graph on host tensors; it keeps the cache
/// on the host. What host-memory backends (the fallback evaluator, a wrapper) need.
pub struct HostSession<'a> {
    run: Box<RunFn<'a>>,
    graph: Option<&'a Graph>,
    cache: Vec<HostTensor>,
    stats: SessionStats,
}

impl<'a> HostSession<'a> {
    /// A session that runs `run`. Without a graph ([`for_graph`](Self::for_graph)) it cannot
    /// [`step`](Session::step).
    pub fn new(run: impl FnMut(&[HostTensor]) -> Result<Vec<HostTensor>, BackendError> + 'a) -> Self {
        HostSession { run: Box::new(run), graph: None, cache: Vec::new(), stats: SessionStats::default() }
    }

    /// A session of `g` that runs `run`.
    pub fn for_graph(
        g: &'a Graph,
        run: impl FnMut(&[HostTensor]) -> Result<Vec<HostTensor>, BackendError> + 'a,
    ) -> Self {
        HostSession { graph: Some(g), ..Self::new(run) }
    }
}

impl Session for HostSession<'_> {
    fn run(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        self.stats.runs += 1;
        (self.run)(inputs)
    }

    fn step(
        &mut self,
        inputs: &[HostTensor],
        pairs: &[CachePair],
    ) -> Result<Vec<Option<HostTensor>>, BackendError> {
        let g = self.graph.ok_or_else(|| BackendError::new("host", "this session has no graph to step"))?;
        if self.cache.len() != pairs.len() {
            self.cache = zero_cache(g, inputs, pairs).map_err(|e| BackendError::new("host", e))?;
        }
        let all = merge_inputs(g.inputs().len(), inputs, &self.cache, pairs);
        let outs = self.run(&all)?;
        let mut outs: Vec<Option<HostTensor>> = outs.into_iter().map(Some).collect();
        for (k, p) in pairs.iter().enumerate() {
            let out = outs.get_mut(p.output).and_then(Option::take);
            self.cache[k] =
                out.ok_or_else(|| BackendError::new("host", format!("no output {}", p.output)))?;
        }
        Ok(outs)
    }

    fn reset_cache(&mut self) {
        self.cache.clear();
    }

    fn cache(&self) -> Result<Vec<HostTensor>, BackendError> {
        Ok(self.cache.clone())
    }

    fn stats(&self) -> SessionStats {
        self.stats
    }
}

/// Makes a backend (it may fail: a device that is not there).
pub type BackendFactory = Arc<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>;

/// Backends by name. A binary registers the backends it links (one line each) and picks
/// one by name (`--backend NAME`); backends are made only when picked.
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, (String, BackendFactory)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) `name`, described by `about`, made by `make`.
    pub fn register(
        &mut self,
        name: &str,
        about: &str,
        make: impl Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync + 'static,
    ) {
        self.entries.insert(name.to_string(), (about.to_string(), Arc::new(make)));
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The description of `name`.
    pub fn about(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|(a, _)| a.as_str())
    }

    /// Makes the backend `name`; an error lists the registered names when there is none.
    pub fn create(&self, name: &str) -> Result<Box<dyn Backend>, BackendError> {
        match self.entries.get(name) {
            Some((_, make)) => make(),
            None => Err(BackendError::new(
                name,
                format!("no such backend (registered: {})", self.names().join(", ")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Builder, Dim, TensorType};

    fn cache_graph() -> Graph {
        // y = x + past; present = past + x (a "cache" that accumulates x).
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2)]));
        let past = b.input("past", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2)]));
        let s = b.add2(x, past).unwrap();
        g.add_output("y", s);
        g.add_output("present", s);
        g
    }

    #[test]
    fn host_sessions_feed_the_cache_back() {
        let g = cache_graph();
        let add = |i: &[HostTensor]| {
            let v: Vec<f64> = (0..i[0].len()).map(|k| i[0].get_f64(k) + i[1].get_f64(k)).collect();
            Ok(vec![HostTensor::from_f64(DType::F32, i[0].dims().to_vec(), &v); 2])
        };
        let mut s = HostSession::for_graph(&g, add);
        let pairs = [CachePair { input: 1, output: 1 }];
        let x = HostTensor::from_f32(vec![1, 2], &[1.0, 2.0]);
        for step in 1..=3 {
            let out = s.step(std::slice::from_ref(&x), &pairs).unwrap();
            assert!(out[1].is_none());
            assert_eq!(out[0].as_ref().unwrap().get_f64(1), 2.0 * step as f64);
        }
        assert_eq!(s.cache().unwrap()[0].get_f64(0), 3.0);
        s.reset_cache();
        let out = s.step(&[x], &pairs).unwrap();
        assert_eq!(out[0].as_ref().unwrap().get_f64(0), 1.0);
        assert_eq!(s.stats().runs, 4);
    }

    #[test]
    fn zero_caches_bind_symbols_from_the_other_inputs() {
        let g = cache_graph();
        let x = HostTensor::from_f32(vec![3, 2], &[0.0; 6]);
        let z = zero_cache(&g, &[x], &[CachePair { input: 1, output: 1 }]).unwrap();
        assert_eq!(z[0].dims(), &[3, 2]);
        assert_eq!(merge_inputs(3, &[1, 2], &[9], &[CachePair { input: 1, output: 0 }]), vec![1, 9, 2]);
    }

    #[test]
    fn unknown_backends_name_the_registered_ones() {
        let mut r = Registry::new();
        r.register("a", "first", || Err(BackendError::new("a", "device missing")));
        assert_eq!(r.names(), vec!["a"]);
        assert_eq!(r.about("a"), Some("first"));
        let e = r.create("b").err().unwrap();
        assert!(e.to_string().contains("registered: a"), "{e}");
        assert!(r.create("a").err().unwrap().to_string().contains("device missing"));
    }
}
