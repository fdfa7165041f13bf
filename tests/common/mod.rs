//! Shared by the facade's tests over exported models (tests/corpus.rs, tests/corpus_kv.rs):
//! where a corpus is, its index, its models' data sets and the block counts they are held to.
#![allow(dead_code)]

use blockfuse::ir::{Graph, HostTensor};
use blockfuse::patterns::Report;
use std::path::{Path, PathBuf};

/// The two data sets every corpus model has.
pub const DATA_SETS: [&str; 2] = ["test_data_set_0", "test_data_set_1"];

/// `../shared/<name>` beside the workspace, when it holds its `index.json`; else `None`
/// after a loud `SKIPPED` line (the tests then pass without running).
pub fn corpus_dir(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(name);
    if dir.join("index.json").exists() {
        Some(dir)
    } else {
        eprintln!("!!! SKIPPED: ../shared/{name} not found; the {name} tests did not run !!!");
        None
    }
}

/// The corpus's `index.json`.
pub fn index(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("index.json")).unwrap()).unwrap()
}

/// One data set of model `name` (in `dir`), read for graph `g`.
pub struct DataSet {
    /// The given inputs, by name.
    pub given: Vec<(String, HostTensor)>,
    /// The reference outputs, by name.
    pub want: Vec<(String, HostTensor)>,
    /// The given inputs in `g`'s input order, to run `g` on.
    pub inputs: Vec<HostTensor>,
}

impl DataSet {
    /// Reads `dir/set`; panics naming the model when `g` has an input the set does not give.
    pub fn read(name: &str, dir: &Path, set: &str, g: &Graph) -> DataSet {
        let data = blockfuse::onnx::TestDataSet::open(dir.join(set)).unwrap();
        let given = data.read_inputs().unwrap();
        let want = data.read_outputs().unwrap();
        let input = |n: &str| given.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone());
        let inputs = g
            .inputs()
            .iter()
            .map(|&id| {
                let n = g.node(id).name.clone().unwrap_or_default();
                input(&n).unwrap_or_else(|| panic!("{name}: no input {n}"))
            })
            .collect();
        DataSet { given, want, inputs }
    }

    /// The given input called `n`, if any.
    pub fn input(&self, n: &str) -> Option<&HostTensor> {
        self.given.iter().find(|(m, _)| m == n).map(|(_, t)| t)
    }

    /// The reference output called `n` (which the set must have).
    pub fn reference(&self, n: &str) -> &HostTensor {
        &self.want.iter().find(|(m, _)| m == n).unwrap().1
    }
}

/// How many `kind` blocks the optimizer made, counting a `residual_rms_norm` (a norm of a
/// residual sum, the norm and its add) as an `rms_norm`, as the ground truths count them.
pub fn blocks_of(report: &Report, kind: &str) -> u64 {
    let count = |k: &str| report.blocks.get(k).copied().unwrap_or(0) as u64;
    count(kind) + if kind == "rms_norm" { count("residual_rms_norm") } else { 0 }
}
