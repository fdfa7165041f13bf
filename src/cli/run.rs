//! `blockfuse run MODEL`: run once on a backend, random inputs (symbols bound by `--bind`)
//! or the inputs of a test-data directory checked against its outputs.

use super::{bindings, load, parse_bindings, BackendArgs, Failure};
use crate::compare::{compare, Tolerance};
use crate::{Error, Registry};
use blockfuse_ir::{Graph, HostTensor};
use blockfuse_patterns::{default_rules, optimize};
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
    let mut g = load(&a.model)?;
    if a.optimize {
        optimize(&mut g, &default_rules())?;
    }
    let mut session = backend.prepare(&g)?;
    match &a.check {
        Some(dir) => {
            let (inputs, expected) = read_check_dir(&g, dir)?;
            let outs = session.run(&inputs)?;
            if let Some(out_dir) = &a.outputs {
                crate::values::write_outputs(&g, &outs, out_dir)?;
            }
            check_outputs(&g, &outs, &expected, dir, a.rtol, a.atol)
        }
        None => {
            let inputs = match &a.inputs {
                Some(dir) => crate::values::read_inputs(&g, dir)?,
                None => {
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
