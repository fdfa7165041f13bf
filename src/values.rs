//! Values in and out of the CLI: `.npy` files (NumPy's format, through `npyz`) named after
//! graph inputs and outputs, or the inputs of an ONNX test-data directory (`input_*.pb`).
//!
//! Reading casts each array to its graph input's dtype when they differ (a bf16 graph takes
//! f32 `.npy` files: NumPy has no bf16). Writing keeps the dtype, except bf16, written as f32.
//! A file name is the value's name with every character outside `[A-Za-z0-9._-]` replaced by
//! `_` (`past_key_values.0.key.npy`, `a_b.npy` for `a/b`).

use crate::Error;
use blockfuse_ir::{DType, Graph, HostTensor};
use std::path::Path;

/// The file name (without `.npy`) of value `name`.
pub fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{}: {e}", path.display()))
}

/// Reads one `.npy` file as a tensor of its own dtype.
pub fn read_npy(path: &Path) -> Result<HostTensor, Error> {
    let bytes =
        std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| io_err(path, e))?;
    let dims: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(io_err(path, "structured arrays are not supported"));
    };
    let (kind, size) = (ts.type_char(), ts.size_field());
    // A header may declare any shape: refuse one the file cannot hold before allocating it.
    let need = blockfuse_ir::limits::bytes_of(dims.iter().copied(), size as usize);
    if need > bytes.len() as u64 {
        return Err(io_err(path, format!("shape {dims:?} needs {need} bytes, the file has {}", bytes.len())));
    }
    let bad = |e: std::io::Error| io_err(path, e);
    use npyz::TypeChar as T;
    let t = match (kind, size) {
        (T::Float, 2) => {
            let v: Vec<f64> =
                npy.into_vec::<npyz::half::f16>().map_err(bad)?.into_iter().map(f64::from).collect();
            HostTensor::from_f64(DType::F16, dims, &v)
        }
        (T::Float, 4) => {
            let v: Vec<f32> = npy.into_vec().map_err(bad)?;
            HostTensor::from_f32(dims, &v)
        }
        (T::Float, 8) => HostTensor::from_f64(DType::F64, dims, &npy.into_vec::<f64>().map_err(bad)?),
        (T::Int, 8) => HostTensor::from_i64(dims, &npy.into_vec::<i64>().map_err(bad)?),
        (T::Int, 4) => {
            let v: Vec<f64> = npy.into_vec::<i32>().map_err(bad)?.into_iter().map(f64::from).collect();
            HostTensor::from_f64(DType::I32, dims, &v)
        }
        (T::Int, 1) => {
            let v: Vec<f64> = npy.into_vec::<i8>().map_err(bad)?.into_iter().map(f64::from).collect();
            HostTensor::from_f64(DType::I8, dims, &v)
        }
        (T::Uint, 1) => {
            let v: Vec<f64> = npy.into_vec::<u8>().map_err(bad)?.into_iter().map(f64::from).collect();
            HostTensor::from_f64(DType::U8, dims, &v)
        }
        (T::Bool, 1) => {
            let v: Vec<f64> =
                npy.into_vec::<bool>().map_err(bad)?.into_iter().map(|b| b as u8 as f64).collect();
            HostTensor::from_f64(DType::Bool, dims, &v)
        }
        _ => return Err(io_err(path, format!("dtype {ts} is not supported"))),
    };
    Ok(t)
}

/// Writes `t` as a `.npy` file (bf16 as f32).
pub fn write_npy(path: &Path, t: &HostTensor) -> Result<(), Error> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    let e = |e: std::io::Error| io_err(path, e);
    macro_rules! write_as {
        ($ty:ty, $conv:expr) => {{
            let mut w = npyz::WriteOptions::<$ty>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()
                .map_err(e)?;
            let f = $conv;
            w.extend((0..t.len()).map(|i| f(t.get_f64(i)))).map_err(e)?;
            w.finish().map_err(e)?;
        }};
    }
    match t.dtype() {
        DType::F32 | DType::BF16 => write_as!(f32, |v: f64| v as f32),
        DType::F64 => write_as!(f64, |v: f64| v),
        DType::F16 => write_as!(npyz::half::f16, npyz::half::f16::from_f64),
        DType::I64 => {
            let v = t.to_i64_vec();
            let mut w = npyz::WriteOptions::<i64>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()
                .map_err(e)?;
            w.extend(v).map_err(e)?;
            w.finish().map_err(e)?;
        }
        DType::I32 => write_as!(i32, |v: f64| v as i32),
        DType::I8 => write_as!(i8, |v: f64| v as i8),
        DType::U8 => write_as!(u8, |v: f64| v as u8),
        DType::Bool => write_as!(bool, |v: f64| v != 0.0),
    }
    std::fs::write(path, buf).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// The inputs of `g` from `dir`: `NAME.npy` per graph input (see [`file_stem`]), or, when
/// the directory has no `.npy` file, the `input_*.pb` files of an ONNX test-data directory
/// (matched by name, else by position). Arrays are cast to the inputs' dtypes.
pub fn read_inputs(g: &Graph, dir: &Path) -> Result<Vec<HostTensor>, Error> {
    let names: Vec<(String, Option<DType>)> = g
        .inputs()
        .iter()
        .map(|&id| (g.node(id).name.clone().unwrap_or_default(), Some(g.node(id).types[0].dtype)))
        .collect();
    Ok(read_named(&names, dir)?.into_iter().map(|(_, t)| t).collect())
}

/// The values of the inputs `names` (name and dtype, `None`: keep the file's) from `dir`,
/// as [`read_inputs`] reads them, with their names: what
/// [`Model::import_with_values`](crate::onnx::specialize::Model::import_with_values) takes.
pub fn read_named(names: &[(String, Option<DType>)], dir: &Path) -> Result<Vec<(String, HostTensor)>, Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    let has_npy = entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "npy"));
    let tensors = if has_npy {
        names
            .iter()
            .map(|(n, _)| {
                let p = dir.join(format!("{}.npy", file_stem(n)));
                if !p.exists() {
                    return Err(Error::Other(format!(
                        "{}: no {} for graph input \"{n}\"",
                        dir.display(),
                        p.display()
                    )));
                }
                read_npy(&p)
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let data_err = |e| Error::Data { path: dir.display().to_string(), source: Box::new(e) };
        let given = crate::onnx::TestDataSet::open(dir).map_err(data_err)?.read_inputs().map_err(data_err)?;
        if given.len() != names.len() {
            let why = format!("{} input files for {} graph inputs", given.len(), names.len());
            return Err(Error::Other(format!("{}: {why}", dir.display())));
        }
        let by_name = names.iter().all(|(n, _)| given.iter().any(|(m, _)| m == n));
        if by_name {
            names
                .iter()
                .filter_map(|(n, _)| given.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone()))
                .collect()
        } else {
            given.into_iter().map(|(_, t)| t).collect()
        }
    };
    Ok(tensors
        .into_iter()
        .zip(names)
        .map(|(t, (name, want))| match want {
            Some(want) if t.dtype() != *want => (name.clone(), t.cast(*want)),
            _ => (name.clone(), t),
        })
        .collect())
}

/// Writes each output of `g` to `dir/NAME.npy` (creating `dir`).
pub fn write_outputs(g: &Graph, outs: &[HostTensor], dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    for ((name, _), t) in g.outputs().iter().zip(outs) {
        write_npy(&dir.join(format!("{}.npy", file_stem(name))), t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_declaring_more_than_the_file_holds_is_refused_before_allocating() {
        let dir = std::env::temp_dir().join(format!("blockfuse-npy-huge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend((header.len() as u16).to_le_bytes());
        file.extend(header.as_bytes());
        file.extend([0u8; 16]);
        let p = dir.join("huge.npy");
        std::fs::write(&p, file).unwrap();
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("shape [1000000, 1000000] needs 4000000000000 bytes, the file has"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn npy_round_trips_every_dtype() {
        let dir = std::env::temp_dir().join(format!("blockfuse-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vals = [0.0f64, 1.0, -2.0, 3.0, 1.0, 0.0];
        for d in DType::ALL {
            let vals: Vec<f64> = vals
                .iter()
                .map(|v| if d == DType::U8 || d == DType::Bool { v.abs().min(1.0) } else { *v })
                .collect();
            let t = HostTensor::from_f64(d, vec![2, 3], &vals);
            let p = dir.join(format!("{}.npy", d.name()));
            write_npy(&p, &t).unwrap();
            let back = read_npy(&p).unwrap();
            let want = if d == DType::BF16 { DType::F32 } else { d };
            assert_eq!((back.dtype(), back.dims()), (want, &[2usize, 3][..]), "{d}");
            assert_eq!(back.to_f64_vec(), t.to_f64_vec(), "{d}");
        }
        assert_eq!(file_stem("past_key_values.0.key"), "past_key_values.0.key");
        assert_eq!(file_stem("a/b:c"), "a_b_c");
        std::fs::write(dir.join("junk.npy"), b"not npy").unwrap();
        assert!(read_npy(&dir.join("junk.npy")).is_err());
    }
}
