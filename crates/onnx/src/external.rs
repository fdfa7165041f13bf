//! External data: tensors whose bytes live in another file (`data_location = EXTERNAL`, with
//! `location`, `offset` and `length` entries in `external_data`), as ONNX writes every model
//! over 2 GB.
//!
//! Files are memory-mapped (one map per file, shared by all its tensors) and the tensors
//! borrow their range of the map ([`HostTensor::from_shared`]): nothing is copied until a
//! backend reads the bytes, so importing costs O(graph) memory, not O(weights).
//!
//! Locations are resolved inside the model's directory only: an absolute path, a `..`
//! component, or a path that leaves the directory through a symlink is refused with
//! [`OnnxError::ExternalDataLocation`] (a model must not read `/etc/passwd`).
//!
//! A mapped file must not be modified while the graph is alive (as with any memory map);
//! blockfuse never writes to it.

use crate::error::OnnxError;
use crate::proto::tensor_proto::DataLocation;
use crate::proto::TensorProto;
use crate::tensor::dtype_from_onnx;
use blockfuse_ir::tensor::SharedBuffer;
use blockfuse_ir::{DType, HostTensor};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Whether a tensor's data is stored in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location() == DataLocation::External || !t.external_data.is_empty()
}

/// Reads external tensor data relative to one model directory, mapping each file once.
pub struct ExternalData {
    dir: PathBuf,
    canonical_dir: PathBuf,
    maps: HashMap<PathBuf, SharedBuffer>,
}

/// The `location`, `offset` and `length` entries of a tensor.
struct Entries {
    location: String,
    offset: Option<String>,
    length: Option<String>,
}

fn entries(t: &TensorProto) -> Entries {
    let get = |k: &str| t.external_data.iter().find(|e| e.key() == k).map(|e| e.value().to_string());
    Entries { location: get("location").unwrap_or_default(), offset: get("offset"), length: get("length") }
}

impl ExternalData {
    /// A reader for the models of directory `dir`.
    pub fn new(dir: &Path) -> Result<Self, OnnxError> {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let canonical_dir = dir.canonicalize().map_err(|e| OnnxError::io(dir, e))?;
        Ok(ExternalData { dir: dir.to_path_buf(), canonical_dir, maps: HashMap::new() })
    }

    /// Bytes mapped so far (the sum of the mapped files' sizes).
    pub fn mapped_bytes(&self) -> u64 {
        self.maps.values().map(|m| (**m).as_ref().len() as u64).sum()
    }

    /// The tensor, borrowing its bytes from the mapped file (bool data is copied, to
    /// normalize it to 0/1).
    pub fn tensor(&mut self, t: &TensorProto) -> Result<HostTensor, OnnxError> {
        let name = t.name();
        let e = entries(t);
        let bad = |reason: String| OnnxError::ExternalDataLocation {
            tensor: name.to_string(),
            location: e.location.clone(),
            reason,
        };
        let dtype = dtype_from_onnx(t.data_type())
            .ok_or(OnnxError::UnsupportedDtype { tensor: name.to_string(), data_type: t.data_type() })?;
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| OnnxError::malformed(name, format!("negative dim in {:?}", t.dims)))?;
        let need = dims
            .iter()
            .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d))
            .ok_or_else(|| OnnxError::malformed(name, format!("dims {dims:?} are too large")))?;
        let number = |what: &str, v: &Option<String>| -> Result<Option<usize>, OnnxError> {
            v.as_ref()
                .map(|s| {
                    s.trim().parse::<usize>().map_err(|_| bad(format!("{what} '{s}' is not a byte count")))
                })
                .transpose()
        };
        let offset = number("offset", &e.offset)?.unwrap_or(0);
        if let Some(length) = number("length", &e.length)? {
            if length != need {
                return Err(bad(format!("length {length}, but {dtype}{dims:?} needs {need} bytes")));
            }
        }
        let path = self.resolve(&e.location).map_err(bad)?;
        let map = self.map(&path).map_err(bad)?;
        let have = (*map).as_ref().len();
        if offset.checked_add(need).is_none_or(|end| end > have) {
            return Err(bad(format!(
                "bytes {offset}..{} are past the end of the file ({have} bytes)",
                offset + need
            )));
        }
        if dtype == DType::Bool {
            // (In range: checked just above.)
            let data =
                (*map).as_ref().get(offset..offset + need).ok_or_else(|| bad("bytes past the end".into()))?;
            let bytes: Vec<u8> = data.iter().map(|&b| u8::from(b != 0)).collect();
            return HostTensor::from_bytes(dtype, dims, bytes)
                .map_err(|e| OnnxError::malformed(name, e.to_string()));
        }
        HostTensor::from_shared(dtype, dims, map, offset)
            .map_err(|e| OnnxError::malformed(name, e.to_string()))
    }

    /// The file of a location: relative, without `..`, and inside the model's directory
    /// once symlinks are resolved.
    fn resolve(&self, location: &str) -> Result<PathBuf, String> {
        if location.is_empty() {
            return Err("no location".into());
        }
        let rel = Path::new(location);
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err("'..' would leave the model's directory; refused".into()),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(
                        "absolute locations are refused (locations are relative to the model's directory)"
                            .into(),
                    )
                }
            }
        }
        let full = self.dir.join(rel);
        let canonical = full.canonicalize().map_err(|e| format!("cannot open {}: {e}", full.display()))?;
        if !canonical.starts_with(&self.canonical_dir) {
            return Err(format!(
                "resolves to {}, outside the model's directory {} (through a symlink); refused",
                canonical.display(),
                self.canonical_dir.display()
            ));
        }
        if !canonical.is_file() {
            return Err(format!("{} is not a regular file", canonical.display()));
        }
        Ok(canonical)
    }

    fn map(&mut self, path: &Path) -> Result<SharedBuffer, String> {
        if let Some(m) = self.maps.get(path) {
            return Ok(m.clone());
        }
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: the map is read-only and blockfuse never writes the file; as documented
        // above, the file must not be modified by others while the graph is alive.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        let map: SharedBuffer = Arc::new(map);
        self.maps.insert(path.to_path_buf(), map.clone());
        Ok(map)
    }
}
