//! `blockfuse._native`: the Rust side of the Python package. It deals in plain values
//! (strings, lists, `bytes`); `blockfuse/__init__.py` turns them into numpy arrays and
//! dicts, so this module needs no numpy headers.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::{json, text, DType, HostTensor};
use blockfuse_patterns::{default_rules, optimize};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;
use std::path::Path;

fn err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A tensor crossing the boundary: (dtype name, dims, little-endian bytes).
type Raw = (String, Vec<usize>, Vec<u8>);

/// An IR graph.
#[pyclass(module = "blockfuse._native")]
#[derive(Clone)]
struct Graph {
    g: blockfuse_ir::Graph,
}

#[pymethods]
impl Graph {
    /// The graph as JSON IR text.
    fn to_json(&self) -> PyResult<String> {
        json::to_json(&self.g).map_err(err)
    }

    /// The stable text dump.
    fn dump(&self) -> PyResult<String> {
        text::dump(&self.g).map_err(err)
    }

    /// Writes the graph as an ONNX model (opset 23; blocks as standard ops or functions).
    fn write_onnx(&self, path: &str) -> PyResult<()> {
        blockfuse_onnx::write_model(&self.g, Path::new(path)).map_err(err)
    }

    /// Fuses in place with the default rules; returns the report as JSON text.
    fn optimize(&mut self) -> PyResult<String> {
        let report = optimize(&mut self.g, &default_rules()).map_err(err)?;
        serde_json::to_string(&report).map_err(err)
    }

    /// Graph inputs: (name, dtype, dims as strings).
    fn inputs(&self) -> Vec<(String, String, Vec<String>)> {
        self.g
            .inputs()
            .iter()
            .map(|&id| {
                let n = self.g.node(id);
                let t = &n.types[0];
                (n.name.clone().unwrap_or_default(), t.dtype.name().into(), t.shape.iter().map(|d| d.to_string()).collect())
            })
            .collect()
    }

    /// Graph output names, in order.
    fn outputs(&self) -> Vec<String> {
        self.g.outputs().iter().map(|(n, _)| n.clone()).collect()
    }

    /// Block nodes by kind.
    fn blocks(&self) -> HashMap<String, usize> {
        blockfuse_patterns::block_counts(&self.g).into_iter().collect()
    }

    /// Runs on a backend (`fallback`, or with MLX `mlx`, `mlx:cpu`, `mlx:gpu`): inputs by
    /// name, outputs in order as (name, raw).
    #[pyo3(signature = (inputs, backend = "fallback"))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: HashMap<String, Raw>,
        backend: &str,
    ) -> PyResult<Vec<(String, String, Vec<usize>, Bound<'py, PyBytes>)>> {
        let mut named = HashMap::new();
        for (name, (dtype, dims, bytes)) in inputs {
            let d = DType::from_name(&dtype).ok_or_else(|| err(format!("input {name}: unknown dtype '{dtype}'")))?;
            let t = HostTensor::from_bytes(d, dims, bytes).map_err(|e| err(format!("input {name}: {e}")))?;
            named.insert(name, t);
        }
        let mut ordered = Vec::with_capacity(self.g.inputs().len());
        for &id in self.g.inputs() {
            let name = self.g.node(id).name.clone().unwrap_or_default();
            let t = named.remove(&name).ok_or_else(|| PyRuntimeError::new_err(format!("no value for graph input \"{name}\"")))?;
            ordered.push(t);
        }
        if let Some(extra) = named.keys().next() {
            return Err(err(format!("\"{extra}\" is not an input of the graph")));
        }
        let be = make_backend(backend)?;
        let outs = py
            .allow_threads(|| be.run(&self.g, &ordered))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(self
            .g
            .outputs()
            .iter()
            .zip(outs)
            .map(|((name, _), t)| (name.clone(), t.dtype().name().to_string(), t.dims().to_vec(), PyBytes::new(py, t.bytes())))
            .collect())
    }
}

/// The backends this build can run on, with what each is.
fn backend_names() -> Vec<(&'static str, &'static str)> {
    let mut names = vec![("fallback", "the pure-Rust reference evaluator")];
    if cfg!(feature = "mlx") {
        names.extend([("mlx", "MLX on the CPU"), ("mlx:cpu", "MLX on the CPU"), ("mlx:gpu", "MLX on the GPU")]);
    }
    names
}

fn make_backend(name: &str) -> PyResult<Box<dyn Backend>> {
    match name {
        "fallback" => Ok(Box::new(FallbackBackend::new())),
        #[cfg(feature = "mlx")]
        "mlx" | "mlx:cpu" | "mlx:gpu" => {
            let device = if name == "mlx:gpu" { blockfuse_mlx::Device::Gpu } else { blockfuse_mlx::Device::Cpu };
            let b = blockfuse_mlx::MlxBackend::with_default_lowerings(device).map_err(|e| PyRuntimeError::new_err(format!("{name}: {e}")))?;
            Ok(Box::new(b))
        }
        _ => {
            let known: Vec<&str> = backend_names().iter().map(|(n, _)| *n).collect();
            Err(err(format!("unknown backend \"{name}\" (this build has: {})", known.join(", "))))
        }
    }
}

/// The backends this build can run on: [(name, description)].
#[pyfunction]
fn backends() -> Vec<(&'static str, &'static str)> {
    backend_names()
}

/// Imports an ONNX model file.
#[pyfunction]
fn load_onnx(path: &str) -> PyResult<Graph> {
    blockfuse_onnx::import_file(Path::new(path)).map(|g| Graph { g }).map_err(err)
}

/// Reads JSON IR text.
#[pyfunction]
fn from_json(text: &str) -> PyResult<Graph> {
    json::from_json(text).map(|g| Graph { g }).map_err(err)
}

/// The JSON Schema of the JSON IR.
#[pyfunction]
fn json_schema() -> String {
    json::json_schema()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Graph>()?;
    m.add_function(wrap_pyfunction!(load_onnx, m)?)?;
    m.add_function(wrap_pyfunction!(from_json, m)?)?;
    m.add_function(wrap_pyfunction!(json_schema, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    Ok(())
}
