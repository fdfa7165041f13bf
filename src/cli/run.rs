//! `blockfuse run MODEL`: run once on a backend, random inputs (symbols bound by `--bind`)
//! or the inputs of a test-data directory checked against its outputs.

use super::{bindings, load, parse_bindings, BackendArgs, Failure};
use crate::compare::{compare, Tolerance};
use crate::{Error, Registry};
use blockfuse_ir::{Graph, HostTensor};
use blockfuse_patterns::{default_rules, optimize_with, OptimizeOptions};
use std::path::{Path, PathBuf};

/// Arguments of `run`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// A `.json` blockfuse IR or an `.onnx` model.
    model: PathBuf,
    /// Optimize before running.
    #[arg(long)]
    optimize: bool,
    #[command(flatten)]
    backend: BackendArgs,
    /// A directory with input_*.pb and output_*.pb (ONNX TensorProto) to check against.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
    /// Inputs from this directory: `NAME.npy` per graph input, or ONNX `input_*.pb`.
    #[arg(long, value_name = "DIR", conflicts_with = "check")]
    inputs: Option<PathBuf>,
    /// Write every output to DIR/NAME.npy.
    #[arg(long, value_name = "DIR")]
    outputs: Option<PathBuf>,
    /// Sizes of symbolic dims for random inputs (`batch=2,seq=7`); others are 4.
    #[arg(long, value_name = "SYM=N,...", value_parser = parse_bindings)]
    bind: Vec<Vec<(String, usize)>>,
    /// Relative tolerance (default: 1e-4 for f32/f64, 1e-2 for f16/bf16).
    #[arg(long)]
    rtol: Option<f64>,
    /// Absolute tolerance (default as rtol).
    #[arg(long)]
    atol: Option<f64>,
}

pub(super) fn run(a: Args, registry: &Registry) -> Result<(), Failure> {
    let backend = a.backend.create(registry)?;
    let (mut g, given) = load_for_values(&a.model, a.check.as_ref().or(a.inputs.as_ref()))?;
    if a.optimize {
        // The graph-level passes this backend opts into (horizontal fusion on MLX).
        optimize_with(&mut g, &default_rules(), OptimizeOptions::for_backend(&backend.capabilities()))?;
    }
    let mut session = backend.prepare(&g)?;
    match &a.check {
        Some(dir) => {
            let (inputs, expected) = match &given {
                Some(values) => (pick_inputs(&g, values)?, read_expected(dir)?),
                None => read_check_dir(&g, dir)?,
            };
            let outs = session.run(&inputs)?;
            if let Some(out_dir) = &a.outputs {
                crate::values::write_outputs(&g, &outs, out_dir)?;
            }
            check_outputs(&g, &outs, &expected, dir, a.rtol, a.atol)
        }
        None => {
            let inputs = match (&a.inputs, &given) {
                (Some(_), Some(values)) => pick_inputs(&g, values)?,
                (Some(dir), None) => crate::values::read_inputs(&g, dir)?,
                (None, _) => {
                    let max = super::limits().max_tensor_bytes;
                    crate::verify::random_inputs_limited(&g, &bindings(&a.bind), 4, 0, max)?
                }
            };
            let outs = session.run(&inputs)?;
            if let Some(out_dir) = &a.outputs {
                crate::values::write_outputs(&g, &outs, out_dir)?;
            }
            for ((name, _), t) in g.outputs().iter().zip(outs) {
                println!("{name}: {}{:?}", t.dtype(), t.dims());
            }
            Ok(())
        }
    }
}

type Named = Vec<(String, HostTensor)>;

/// Loads the model; an ONNX model whose shapes depend on the values of some inputs (a plain
/// import says a shape operand is not computable at import time) is specialized on their
/// values from `dir` (`--inputs` or `--check`), and the inputs read are returned with it.
/// Without `dir`, the refusal says which inputs need values.
fn load_for_values(model: &Path, dir: Option<&PathBuf>) -> Result<(Graph, Option<Named>), Error> {
    let (path, source) = match load(model) {
        Ok(g) => return Ok((g, None)),
        Err(Error::Onnx { path, source }) if source.uncomputable_operand().is_some() => (path, source),
        Err(e) => return Err(e),
    };
    let onnx_err = |source| Error::Onnx { path: path.clone(), source: Box::new(source) };
    let Some(dir) = dir else {
        return Err(Error::Other(format!(
            "{path}: {source} (its shapes depend on input values: give them with --inputs DIR or --check DIR \
             to specialize the graph on them)"
        )));
    };
    let m = crate::onnx::specialize::Model::open_with(model, &super::limits().into()).map_err(onnx_err)?;
    let values = crate::values::read_named(&m.inputs(), dir)?;
    let s = m.import_with_values(&values).map_err(onnx_err)?;
    eprintln!(
        "blockfuse: specialized the graph on the values of inputs {} (it is valid for these values only)",
        s.bound.join(", ")
    );
    Ok((Graph::clone(&s.graph), Some(values)))
}

/// The values of `g`'s inputs, by name, from the values read for the model's inputs.
fn pick_inputs(g: &Graph, values: &Named) -> Result<Vec<HostTensor>, Error> {
    g.inputs()
        .iter()
        .map(|&id| {
            let name = g.node(id).name.clone().unwrap_or_default();
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::Other(format!("no value for graph input \"{name}\"")))
        })
        .collect()
}

/// The reference outputs of a test-data directory.
fn read_expected(dir: &Path) -> Result<Named, Error> {
    let data_err = |e| Error::Data { path: dir.display().to_string(), source: Box::new(e) };
    crate::onnx::TestDataSet::open(dir).map_err(data_err)?.read_outputs().map_err(data_err)
}

/// The inputs (in graph order: by name when every graph input has a file of its name,
/// else by position) and the reference outputs of a test-data directory.
fn read_check_dir(g: &Graph, dir: &Path) -> Result<(Vec<HostTensor>, Named), Error> {
    let data_err = |e| Error::Data { path: dir.display().to_string(), source: Box::new(e) };
    let data = crate::onnx::TestDataSet::open(dir).map_err(data_err)?;
    let given = data.read_inputs().map_err(data_err)?;
    let expected = data.read_outputs().map_err(data_err)?;
    let names: Vec<String> =
        g.inputs().iter().map(|&id| g.node(id).name.clone().unwrap_or_default()).collect();
    if given.len() != names.len() {
        return Err(Error::Other(format!(
            "{}: {} input files for {} graph inputs",
            dir.display(),
            given.len(),
            names.len()
        )));
    }
    let by_name = names.iter().all(|n| given.iter().any(|(m, _)| m == n));
    let inputs = if by_name {
        names.iter().filter_map(|n| given.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone())).collect()
    } else {
        given.into_iter().map(|(_, t)| t).collect()
    };
    Ok((inputs, expected))
}

fn check_outputs(
    g: &Graph,
    outs: &[HostTensor],
    expected: &Named,
    dir: &Path,
    rtol: Option<f64>,
    atol: Option<f64>,
) -> Result<(), Failure> {
    let mut all_ok = true;
    for (i, (name, _)) in g.outputs().iter().enumerate() {
        let Some(want) = expected.iter().find(|(m, _)| m == name).or(expected.get(i)).map(|(_, t)| t) else {
            return Err(Error::Other(format!("{}: no reference for output \"{name}\"", dir.display())).into());
        };
        let mut tol = Tolerance::for_dtype(want.dtype());
        tol.rtol = rtol.unwrap_or(tol.rtol);
        tol.atol = atol.unwrap_or(tol.atol);
        let Some(got) = outs.get(i) else {
            return Err(Error::Other(format!("the backend returned no output \"{name}\"")).into());
        };
        let c = compare(got, want, tol);
        let verdict = if c.passed() { "ok" } else { "MISMATCH" };
        println!("{name}: {} {verdict}", c.summary());
        all_ok &= c.passed();
    }
    if all_ok {
        Ok(())
    } else {
        Err(Failure::Mismatch("outputs differ from the reference".into()))
    }
}
