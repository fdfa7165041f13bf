//! The fallback evaluator as a [`Backend`]: name `fallback`, every dtype, on the CPU.

use crate::FallbackBackend;
use blockfuse_ir::backend::{Backend, BackendError, Capabilities, HostSession, Session};
use blockfuse_ir::{DType, Graph};

impl Backend for FallbackBackend {
    fn name(&self) -> String {
        "fallback".into()
    }

    /// Every dtype on the CPU; the blocks with a registered lowering are native (none by
    /// default: every block runs its fallback subgraph).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            devices: vec!["cpu".into()],
            dtypes: DType::ALL.to_vec(),
            native_blocks: self.lowerings().type_names().into_iter().map(String::from).collect(),
            // The reference evaluator runs graphs as written: one wide matmul and a split
            // gain it nothing (docs/performance.md).
            horizontal_fusion: false,
        }
    }

    /// Nothing to upload: the session evaluates the graph on every run.
    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Session + 'a>, BackendError> {
        Ok(Box::new(HostSession::for_graph(g, move |inputs| {
            FallbackBackend::run(self, g, inputs).map_err(|e| BackendError::new("fallback", e))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, HostTensor, TensorType};

    #[test]
    fn runs_through_the_trait_and_reports_errors() {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::known(DType::F32, &[2]));
        let y = b.mul(x, x).unwrap();
        g.add_output("y", y);
        let backend: &dyn Backend = &FallbackBackend::new();
        assert_eq!(backend.name(), "fallback");
        assert!(backend.capabilities().dtypes.contains(&DType::BF16));
        let mut s = backend.prepare(&g).unwrap();
        let y = s.run(&[HostTensor::from_f32(vec![2], &[3.0, -2.0])]).unwrap();
        assert_eq!(y[0].to_f64_vec(), vec![9.0, 4.0]);
        let e = s.run(&[HostTensor::from_f32(vec![3], &[0.0; 3])]).unwrap_err();
        assert!(e.to_string().starts_with("fallback: input \"x\""), "{e}");
    }
}
