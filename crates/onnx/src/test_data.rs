//! Test data in the ONNX backend-test layout.
//!
//! ```text
//! <case>/model.onnx
//! <case>/test_data_set_0/input_0.pb, input_1.pb, ..., output_0.pb, ...
//! <case>/test_data_set_1/...
//! ```
//!
//! Each `.pb` file is one serialized `TensorProto`, named after the graph input or output
//! it belongs to (the name may be empty).

use crate::error::OnnxError;
use crate::proto::TensorProto;
use crate::tensor::{tensor_from_proto, tensor_to_proto};
use blockfuse_ir::HostTensor;
use prost::Message;
use std::path::{Path, PathBuf};

/// The project's shared data folder (`shared/`, holding `corpus/` and `onnx-node-tests/`),
/// for tests and examples: `$BLOCKFUSE_SHARED_DIR` when set, else `shared/` beside the
/// workspace root (where CI clones put it), else `shared/` inside it. `None` when none of
/// these is a directory.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BLOCKFUSE_SHARED_DIR") {
        return Some(PathBuf::from(dir)).filter(|d| d.is_dir());
    }
    let root = workspace_root();
    [root.join("../shared"), root.join("shared")].into_iter().find(|d| d.is_dir())
}

/// The workspace root this crate was built in (two levels above its manifest).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Reads a serialized `TensorProto` file: the tensor's name (possibly empty) and data.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<(String, HostTensor), OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| OnnxError::io(path, e))?;
    let mut proto = TensorProto::decode(&bytes[..])
        .map_err(|source| OnnxError::Decode { what: path.display().to_string(), source })?;
    let name = proto.name().to_string();
    if name.is_empty() {
        // Name the file in messages instead.
        proto.name = Some(path.display().to_string());
    }
    Ok((name, tensor_from_proto(&proto)?))
}

/// Writes `tensor` as a serialized `TensorProto` called `name` (data in `raw_data`).
pub fn write_tensor_pb(path: impl AsRef<Path>, name: &str, tensor: &HostTensor) -> Result<(), OnnxError> {
    let path = path.as_ref();
    std::fs::write(path, tensor_to_proto(name, tensor).encode_to_vec()).map_err(|e| OnnxError::io(path, e))
}

/// The files of one `test_data_set_<k>` directory, in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDataSet {
    /// The directory.
    pub dir: PathBuf,
    /// `input_0.pb`, `input_1.pb`, ...
    pub inputs: Vec<PathBuf>,
    /// `output_0.pb`, `output_1.pb`, ...
    pub outputs: Vec<PathBuf>,
}

impl TestDataSet {
    /// Lists the `input_<i>.pb` and `output_<i>.pb` files of `dir`, each sorted by index;
    /// errors when the indices of either kind are not `0..n`. Other files are ignored.
    pub fn open(dir: impl AsRef<Path>) -> Result<TestDataSet, OnnxError> {
        let dir = dir.as_ref();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for entry in read_dir(dir)? {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".pb") else {
                continue;
            };
            if let Some(i) = stem.strip_prefix("input_").and_then(|i| i.parse::<usize>().ok()) {
                inputs.push((i, entry));
            } else if let Some(i) = stem.strip_prefix("output_").and_then(|i| i.parse::<usize>().ok()) {
                outputs.push((i, entry));
            }
        }
        Ok(TestDataSet {
            dir: dir.to_path_buf(),
            inputs: in_index_order(dir, "input", inputs)?,
            outputs: in_index_order(dir, "output", outputs)?,
        })
    }

    /// Reads the inputs: `(name, tensor)` in index order.
    pub fn read_inputs(&self) -> Result<Vec<(String, HostTensor)>, OnnxError> {
        self.inputs.iter().map(read_tensor_pb).collect()
    }

    /// Reads the expected outputs: `(name, tensor)` in index order.
    pub fn read_outputs(&self) -> Result<Vec<(String, HostTensor)>, OnnxError> {
        self.outputs.iter().map(read_tensor_pb).collect()
    }
}

/// The `test_data_set_<k>` directories of a test case (the directory of its `model.onnx`),
/// sorted by `k` (numerically). Empty when there are none.
pub fn list_test_data_sets(case_dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, OnnxError> {
    let mut sets: Vec<(usize, PathBuf)> = read_dir(case_dir.as_ref())?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let k = p.file_name()?.to_str()?.strip_prefix("test_data_set_")?.parse().ok()?;
            Some((k, p))
        })
        .collect();
    sets.sort();
    Ok(sets.into_iter().map(|(_, p)| p).collect())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, OnnxError> {
    let entries = std::fs::read_dir(dir).map_err(|e| OnnxError::io(dir, e))?;
    entries.map(|e| e.map(|e| e.path()).map_err(|e| OnnxError::io(dir, e))).collect()
}

fn in_index_order(
    dir: &Path,
    kind: &str,
    mut files: Vec<(usize, PathBuf)>,
) -> Result<Vec<PathBuf>, OnnxError> {
    files.sort();
    for (expected, (i, path)) in files.iter().enumerate() {
        if *i != expected {
            let reason = if *i < expected {
                format!("two files for {kind} {i} ({})", path.display())
            } else {
                format!("{kind}_{expected}.pb is missing but {kind}_{i}.pb exists")
            };
            return Err(OnnxError::TestData { path: dir.to_path_buf(), reason });
        }
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::DType;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("blockfuse-onnx-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn lists_in_index_order_and_reads() {
        let tmp = TempDir::new("data");
        let case = &tmp.0;
        for k in [0, 1, 2, 10] {
            std::fs::create_dir(case.join(format!("test_data_set_{k}"))).unwrap();
        }
        std::fs::write(case.join("test_data_set_x"), b"").unwrap();
        let sets = list_test_data_sets(case).unwrap();
        let names: Vec<_> = sets.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["test_data_set_0", "test_data_set_1", "test_data_set_2", "test_data_set_10"]);

        let ds = &sets[0];
        for i in 0..12 {
            let t = HostTensor::from_i64(vec![1], &[i]);
            write_tensor_pb(ds.join(format!("input_{i}.pb")), &format!("in{i}"), &t).unwrap();
        }
        write_tensor_pb(ds.join("output_0.pb"), "", &HostTensor::scalar(DType::F16, 0.5)).unwrap();
        std::fs::write(ds.join("notes.txt"), b"ignored").unwrap();
        let set = TestDataSet::open(ds).unwrap();
        assert_eq!(set.inputs.len(), 12);
        assert_eq!(set.outputs, [ds.join("output_0.pb")]);
        let inputs = set.read_inputs().unwrap();
        for (i, (name, t)) in inputs.iter().enumerate() {
            assert_eq!((name.as_str(), t.to_i64_vec()), (format!("in{i}").as_str(), vec![i as i64]));
        }
        let outputs = set.read_outputs().unwrap();
        assert_eq!(outputs[0].0, "");
        assert_eq!(outputs[0].1.to_f64_vec(), [0.5]);

        std::fs::remove_file(ds.join("input_4.pb")).unwrap();
        let e = TestDataSet::open(ds).unwrap_err().to_string();
        assert!(e.ends_with("input_4.pb is missing but input_5.pb exists"), "{e}");
        std::fs::write(ds.join("input_04.pb"), b"").unwrap();
        std::fs::write(ds.join("input_4.pb"), b"").unwrap();
        let e = TestDataSet::open(ds).unwrap_err().to_string();
        assert!(e.contains("two files for input 4"), "{e}");
    }

    #[test]
    fn bad_files_are_named() {
        let tmp = TempDir::new("bad");
        let p = tmp.0.join("input_0.pb");
        std::fs::write(&p, [0xff, 0xff, 0xff]).unwrap();
        let e = read_tensor_pb(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("malformed protobuf in {}", p.display())), "{e}");
        // An unnamed tensor of an unsupported type: the file stands in for the name.
        let t = TensorProto { data_type: Some(4), dims: vec![0], ..TensorProto::default() };
        std::fs::write(&p, t.encode_to_vec()).unwrap();
        let e = read_tensor_pb(&p).unwrap_err().to_string();
        assert_eq!(e, format!("tensor '{}': unsupported element type UINT16 (4)", p.display()));
        assert!(matches!(read_tensor_pb(tmp.0.join("nope.pb")), Err(OnnxError::Io { .. })));
        assert!(list_test_data_sets(tmp.0.join("nope")).is_err());
    }
}
