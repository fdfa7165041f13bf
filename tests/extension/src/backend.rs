//! A third backend, registered from outside blockfuse: [`KernelBackend`] runs graphs on the
//! fallback evaluator with this crate's own kernels ([`ClampedGelu`]'s and an `RmsNorm`
//! kernel for f32 rows of a multiple of 8, declining otherwise), counts what its kernels
//! took and declined, and logs one line per session to stderr when the session ends.
//!
//! A binary that links it registers it in one line ([`register_backend`]), after which
//! `--backend kernels`, `bench --backend kernels` and `optimize --verify --against kernels`
//! use it like the built-in ones (see `src/bin/blockfuse-ext.rs`).

use crate::{clamped_gelu_lowering, register_rms_norm_kernel, ClampedGelu, KernelStats};
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::{
    Backend, BackendError, CachePair, Capabilities, HostSession, Registry, Session, SessionStats,
};
use blockfuse_ir::{DType, Graph, HostTensor};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The fallback evaluator with this crate's kernels, counting their calls.
pub struct KernelBackend {
    inner: FallbackBackend,
    stats: Arc<KernelStats>,
}

impl Default for KernelBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelBackend {
    /// The backend with its kernels registered.
    pub fn new() -> Self {
        let stats = Arc::new(KernelStats::default());
        let mut inner = FallbackBackend::new();
        inner.register::<ClampedGelu>(clamped_gelu_lowering);
        register_rms_norm_kernel(&mut inner, 8, stats.clone());
        KernelBackend { inner, stats }
    }

    /// Calls its kernels handled and declined so far (over all sessions).
    pub fn counts(&self) -> (usize, usize) {
        (self.stats.fused.load(Ordering::SeqCst), self.stats.declined.load(Ordering::SeqCst))
    }
}

/// Registers [`KernelBackend`] as `kernels`.
pub fn register_backend(r: &mut Registry) {
    r.register(
        "kernels",
        "fallback evaluator + the extension crate's ClampedGelu and RmsNorm kernels",
        || Ok(Box::new(KernelBackend::new())),
    );
}

/// A session that logs the kernel counts when it ends.
struct Logged<'a> {
    inner: HostSession<'a>,
    backend: &'a KernelBackend,
    at_start: (usize, usize),
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        let (f, d) = self.backend.counts();
        eprintln!(
            "kernels: {} run(s), rms_norm kernel {} call(s), declined {}",
            self.inner.stats().runs,
            f - self.at_start.0,
            d - self.at_start.1
        );
    }
}

impl Session for Logged<'_> {
    fn run(&mut self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, BackendError> {
        self.inner.run(inputs)
    }
    fn step(
        &mut self,
        inputs: &[HostTensor],
        pairs: &[CachePair],
    ) -> Result<Vec<Option<HostTensor>>, BackendError> {
        self.inner.step(inputs, pairs)
    }
    fn reset_cache(&mut self) {
        self.inner.reset_cache()
    }
    fn cache(&self) -> Result<Vec<HostTensor>, BackendError> {
        self.inner.cache()
    }
    fn stats(&self) -> SessionStats {
        self.inner.stats()
    }
}

impl Backend for KernelBackend {
    fn name(&self) -> String {
        "kernels".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            devices: vec!["cpu".into()],
            dtypes: DType::ALL.to_vec(),
            native_blocks: self.inner.lowerings().type_names().into_iter().map(String::from).collect(),
            horizontal_fusion: false,
        }
    }

    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Session + 'a>, BackendError> {
        let inner = HostSession::for_graph(g, move |inputs| {
            self.inner.run(g, inputs).map_err(|e| BackendError::new("kernels", e))
        });
        Ok(Box::new(Logged { inner, backend: self, at_start: self.counts() }))
    }
}
