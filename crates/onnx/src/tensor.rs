//! Conversions between ONNX `TensorProto` and [`HostTensor`].
//!
//! Decoding accepts both storage forms ONNX allows for embedded data:
//! - `raw_data`: little-endian bytes of the elements;
//! - the typed fields: `float_data` (f32), `double_data` (f64), `int64_data` (i64) and
//!   `int32_data`, which ONNX also uses for int8, uint8 and bool values and for the bit
//!   patterns of float16 and bfloat16.
//!
//! Element types without a blockfuse [`DType`] (int16, uint16, uint32, uint64, string,
//! complex, the float8/float4/int4 families, ...) give [`OnnxError::UnsupportedDtype`];
//! data in an external file gives [`OnnxError::ExternalData`].

use crate::error::OnnxError;
use crate::proto::tensor_proto::{DataLocation, DataType};
use crate::proto::TensorProto;
use blockfuse_ir::{DType, HostTensor};

/// The blockfuse dtype of an ONNX `TensorProto.DataType` value, if it has one.
pub fn dtype_from_onnx(data_type: i32) -> Option<DType> {
    Some(match DataType::try_from(data_type).ok()? {
        DataType::Float => DType::F32,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Double => DType::F64,
        DataType::Int64 => DType::I64,
        DataType::Int32 => DType::I32,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Bool => DType::Bool,
        _ => return None,
    })
}

/// The ONNX `TensorProto.DataType` value of a blockfuse dtype.
pub fn dtype_to_onnx(dtype: DType) -> i32 {
    let data_type = match dtype {
        DType::F32 => DataType::Float,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::F64 => DataType::Double,
        DType::I64 => DataType::Int64,
        DType::I32 => DataType::Int32,
        DType::I8 => DataType::Int8,
        DType::U8 => DataType::Uint8,
        DType::Bool => DataType::Bool,
    };
    data_type as i32
}

/// The ONNX name of a `TensorProto.DataType` value (`FLOAT`, `UINT16`, ...), or `unknown`.
pub fn data_type_name(data_type: i32) -> &'static str {
    DataType::try_from(data_type).map_or("unknown", |d| d.as_str_name())
}

/// A short element-type name for messages: the blockfuse name (`f32`, `bf16`, ...) when
/// there is a dtype, else the lowercased ONNX name (`uint16`, `string`, ...).
pub fn elem_type_short(data_type: i32) -> String {
    match dtype_from_onnx(data_type) {
        Some(dtype) => dtype.name().to_string(),
        None => data_type_name(data_type).to_lowercase(),
    }
}

/// Decodes a tensor with embedded data. `raw_data` is borrowed, not copied (except bool
/// data, normalized to 0/1).
///
/// Errors name the tensor: unsupported element type, external data, a segmented tensor,
/// negative dims, or data whose length does not match the dims.
pub fn tensor_from_proto(t: &TensorProto) -> Result<HostTensor, OnnxError> {
    let name = t.name();
    if t.data_location() == DataLocation::External || !t.external_data.is_empty() {
        let location = t
            .external_data
            .iter()
            .find(|e| e.key() == "location")
            .map_or_else(String::new, |e| e.value().to_string());
        return Err(OnnxError::ExternalData { tensor: name.to_string(), location });
    }
    if t.segment.is_some() {
        return Err(OnnxError::malformed(name, "segmented tensors are not supported"));
    }
    let dtype = dtype_from_onnx(t.data_type())
        .ok_or(OnnxError::UnsupportedDtype { tensor: name.to_string(), data_type: t.data_type() })?;
    let dims = dims_from_proto(name, &t.dims)?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|n| n.checked_mul(dtype.size_bytes()).is_some())
        .ok_or_else(|| OnnxError::malformed(name, format!("dims {dims:?} are too large")))?;

    let bytes = match &t.raw_data {
        Some(raw) => {
            let expected = count * dtype.size_bytes();
            if raw.len() != expected {
                return Err(OnnxError::malformed(
                    name,
                    format!("raw_data has {} bytes, but {dtype}{dims:?} needs {expected}", raw.len()),
                ));
            }
            if dtype != DType::Bool {
                // Borrow the bytes (from the decoded buffer, or the memory-mapped model file
                // when the model was loaded by `load_model`): no copy.
                let owner: blockfuse_ir::tensor::SharedBuffer = std::sync::Arc::new(raw.clone());
                return HostTensor::from_shared(dtype, dims, owner, 0)
                    .map_err(|e| OnnxError::malformed(name, e.to_string()));
            }
            raw.iter().map(|&b| u8::from(b != 0)).collect()
        }
        None => typed_bytes(t, dtype, count)?,
    };
    HostTensor::from_bytes(dtype, dims, bytes).map_err(|e| OnnxError::malformed(name, e.to_string()))
}

fn dims_from_proto(name: &str, dims: &[i64]) -> Result<Vec<usize>, OnnxError> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| OnnxError::malformed(name, format!("negative dim {d} in {dims:?}")))
        })
        .collect()
}

/// The little-endian bytes of the elements stored in the typed field that ONNX uses for
/// `dtype`.
fn typed_bytes(t: &TensorProto, dtype: DType, count: usize) -> Result<Vec<u8>, OnnxError> {
    let name = t.name();
    let (field, len) = match dtype {
        DType::F32 => ("float_data", t.float_data.len()),
        DType::F64 => ("double_data", t.double_data.len()),
        DType::I64 => ("int64_data", t.int64_data.len()),
        DType::F16 | DType::BF16 | DType::I32 | DType::I8 | DType::U8 | DType::Bool => {
            ("int32_data", t.int32_data.len())
        }
    };
    if len != count {
        let reason = if len == 0 {
            format!("{count} elements of {dtype} but no data (neither raw_data nor {field})")
        } else {
            format!("{field} has {len} elements, but dims {:?} need {count}", t.dims)
        };
        return Err(OnnxError::malformed(name, reason));
    }
    let mut out = Vec::with_capacity(count * dtype.size_bytes());
    match dtype {
        DType::F32 => t.float_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F64 => t.double_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I64 => t.int64_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I32 => t.int32_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        // float16 and bfloat16 bit patterns occupy the low 16 bits of each int32.
        DType::F16 | DType::BF16 => {
            t.int32_data.iter().for_each(|&v| out.extend_from_slice(&((v & 0xffff) as u16).to_le_bytes()))
        }
        DType::I8 => {
            for &v in &t.int32_data {
                let v = i8::try_from(v).map_err(|_| out_of_range(name, v, dtype))?;
                out.push(v as u8);
            }
        }
        DType::U8 => {
            for &v in &t.int32_data {
                out.push(u8::try_from(v).map_err(|_| out_of_range(name, v, dtype))?);
            }
        }
        DType::Bool => t.int32_data.iter().for_each(|&v| out.push(u8::from(v != 0))),
    }
    Ok(out)
}

fn out_of_range(name: &str, v: i32, dtype: DType) -> OnnxError {
    OnnxError::malformed(name, format!("int32_data value {v} is out of range for {dtype}"))
}

/// How [`tensor_to_proto_with`] stores the elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TensorEncoding {
    /// Little-endian bytes in `raw_data` (what `onnx.numpy_helper.from_array` writes).
    #[default]
    RawData,
    /// The typed fields: `float_data`, `double_data`, `int64_data` or `int32_data` (for
    /// i32, i8, u8, bool, and the bit patterns of f16 and bf16).
    TypedFields,
}

/// Encodes a tensor as a `TensorProto` called `name`, with its data in `raw_data`.
pub fn tensor_to_proto(name: &str, t: &HostTensor) -> TensorProto {
    tensor_to_proto_with(name, t, TensorEncoding::RawData)
}

/// Encodes a tensor as a `TensorProto` called `name`, storing the data as `encoding` says.
pub fn tensor_to_proto_with(name: &str, t: &HostTensor, encoding: TensorEncoding) -> TensorProto {
    let mut p = TensorProto {
        name: Some(name.to_string()),
        data_type: Some(dtype_to_onnx(t.dtype())),
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        ..TensorProto::default()
    };
    let bytes = t.bytes();
    match encoding {
        TensorEncoding::RawData => p.raw_data = Some(prost::bytes::Bytes::copy_from_slice(bytes)),
        TensorEncoding::TypedFields => match t.dtype() {
            DType::F32 => p.float_data = le_chunks(bytes).map(f32::from_le_bytes).collect(),
            DType::F64 => p.double_data = le_chunks(bytes).map(f64::from_le_bytes).collect(),
            DType::I64 => p.int64_data = le_chunks(bytes).map(i64::from_le_bytes).collect(),
            DType::I32 => p.int32_data = le_chunks(bytes).map(i32::from_le_bytes).collect(),
            DType::F16 | DType::BF16 => {
                p.int32_data = le_chunks(bytes).map(|b| i32::from(u16::from_le_bytes(b))).collect()
            }
            DType::I8 => p.int32_data = bytes.iter().map(|&b| i32::from(b as i8)).collect(),
            DType::U8 | DType::Bool => p.int32_data = bytes.iter().map(|&b| i32::from(b)).collect(),
        },
    }
    p
}

fn le_chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    // `chunks_exact(N)` yields slices of exactly N bytes, so every conversion succeeds.
    bytes.chunks_exact(N).filter_map(|c| <[u8; N]>::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StringStringEntryProto;
    use prost::Message;

    /// A tensor of every dtype with a few awkward values (negatives, halves, NaN-free).
    fn samples() -> Vec<HostTensor> {
        let values: [f64; 8] = [0.0, 1.0, -2.5, 3.25, 100.0, -128.0, 127.0, 0.5];
        let mut out: Vec<HostTensor> = DType::ALL
            .iter()
            .map(|&d| {
                let v: Vec<f64> = values
                    .iter()
                    .map(|&v| match d {
                        DType::U8 => v.abs(),
                        DType::Bool => f64::from(v > 0.0),
                        _ => v,
                    })
                    .collect();
                HostTensor::from_f64(d, vec![2, 4], &v)
            })
            .collect();
        // Extremes that only survive an exact path.
        out.push(HostTensor::from_i64(vec![3], &[i64::MIN, i64::MAX, -1]));
        out.push(HostTensor::from_f64(DType::I32, vec![2], &[i32::MIN as f64, i32::MAX as f64]));
        out.push(
            HostTensor::from_bytes(DType::F16, vec![3], vec![0x00, 0x7c, 0x00, 0xfc, 0x01, 0x80]).unwrap(),
        );
        out.push(HostTensor::from_bytes(DType::BF16, vec![2], vec![0x80, 0xff, 0x7f, 0x7f]).unwrap());
        // Scalars and empty tensors.
        out.push(HostTensor::scalar(DType::F32, 1.5));
        out.push(HostTensor::from_f64(DType::I64, vec![0, 3], &[]));
        out
    }

    #[test]
    fn round_trip_every_dtype_and_encoding() {
        for t in samples() {
            for enc in [TensorEncoding::RawData, TensorEncoding::TypedFields] {
                let p = tensor_to_proto_with("x", &t, enc);
                assert_eq!(p.raw_data.is_some(), enc == TensorEncoding::RawData);
                // Through the wire format too.
                let p = TensorProto::decode(&p.encode_to_vec()[..]).unwrap();
                let back = tensor_from_proto(&p).unwrap();
                assert_eq!(back.dtype(), t.dtype(), "{enc:?}");
                assert_eq!(back.dims(), t.dims(), "{enc:?}");
                assert_eq!(back.bytes(), t.bytes(), "{:?} {enc:?}", t.dtype());
            }
        }
    }

    #[test]
    fn dtype_codes_match_onnx() {
        let codes: Vec<i32> = DType::ALL.iter().map(|&d| dtype_to_onnx(d)).collect();
        // FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, INT32, INT8, UINT8, BOOL
        assert_eq!(codes, [1, 10, 16, 11, 7, 6, 3, 2, 9]);
        for d in DType::ALL {
            assert_eq!(dtype_from_onnx(dtype_to_onnx(d)), Some(d));
        }
        for code in [0, 4, 5, 8, 12, 13, 14, 15, 17, 21, 22, 23, 26, 99] {
            assert_eq!(dtype_from_onnx(code), None, "{code}");
        }
        assert_eq!(data_type_name(4), "UINT16");
        assert_eq!(data_type_name(-3), "unknown");
        assert_eq!(elem_type_short(16), "bf16");
        assert_eq!(elem_type_short(5), "int16");
    }

    fn proto(data_type: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: Some("w".into()),
            data_type: Some(data_type as i32),
            dims: dims.to_vec(),
            ..TensorProto::default()
        }
    }

    #[test]
    fn typed_fields_as_onnx_writes_them() {
        // float16 1.0 = 0x3c00 and -2.0 = 0xc000, as numpy_helper stores them (uint16 bits).
        let mut p = proto(DataType::Float16, &[2]);
        p.int32_data = vec![0x3c00, 0xc000];
        assert_eq!(tensor_from_proto(&p).unwrap().to_f64_vec(), [1.0, -2.0]);
        // Also when a writer sign-extended the bit pattern.
        p.int32_data = vec![0x3c00, 0xc000u16 as i16 as i32];
        assert_eq!(tensor_from_proto(&p).unwrap().to_f64_vec(), [1.0, -2.0]);

        let mut p = proto(DataType::Int8, &[3]);
        p.int32_data = vec![-128, 0, 127];
        assert_eq!(tensor_from_proto(&p).unwrap().to_f64_vec(), [-128.0, 0.0, 127.0]);

        let mut p = proto(DataType::Bool, &[3]);
        p.int32_data = vec![0, 1, 5];
        assert_eq!(tensor_from_proto(&p).unwrap().bytes(), [0, 1, 1]);
        let mut p = proto(DataType::Bool, &[2]);
        p.raw_data = Some(vec![0, 7].into());
        assert_eq!(tensor_from_proto(&p).unwrap().bytes(), [0, 1]);

        let mut p = proto(DataType::Double, &[]);
        p.double_data = vec![0.25];
        let t = tensor_from_proto(&p).unwrap();
        assert_eq!((t.dims(), t.to_f64_vec()), (&[][..], vec![0.25]));

        // raw_data wins over the typed fields when both are present.
        let mut p = proto(DataType::Float, &[1]);
        p.raw_data = Some(2.0f32.to_le_bytes().to_vec().into());
        p.float_data = vec![3.0];
        assert_eq!(tensor_from_proto(&p).unwrap().to_f64_vec(), [2.0]);

        // An empty tensor needs no data.
        assert!(tensor_from_proto(&proto(DataType::Int64, &[2, 0])).unwrap().is_empty());
    }

    fn err(p: &TensorProto) -> String {
        tensor_from_proto(p).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_tensor_and_the_reason() {
        let mut p = proto(DataType::Int16, &[1]);
        p.int32_data = vec![1];
        assert!(matches!(
            tensor_from_proto(&p),
            Err(OnnxError::UnsupportedDtype { ref tensor, data_type: 5 }) if tensor == "w"
        ));
        assert_eq!(err(&p), "tensor 'w': unsupported element type INT16 (5)");
        for dt in
            [DataType::Uint16, DataType::Uint32, DataType::Uint64, DataType::String, DataType::Float8e4m3fn]
        {
            assert!(matches!(tensor_from_proto(&proto(dt, &[0])), Err(OnnxError::UnsupportedDtype { .. })));
        }
        assert!(err(&TensorProto::default()).contains("UNDEFINED"));

        let mut p = proto(DataType::Float, &[4]);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data =
            vec![StringStringEntryProto { key: Some("location".into()), value: Some("weights.bin".into()) }];
        assert!(matches!(tensor_from_proto(&p), Err(OnnxError::ExternalData { .. })));
        assert!(err(&p).starts_with("tensor 'w': data stored in an external file ('weights.bin')"));

        let mut p = proto(DataType::Float, &[2, 3]);
        p.raw_data = Some(vec![0; 20].into());
        assert_eq!(err(&p), "tensor 'w': raw_data has 20 bytes, but f32[2, 3] needs 24");
        p.raw_data = None;
        assert_eq!(err(&p), "tensor 'w': 6 elements of f32 but no data (neither raw_data nor float_data)");
        p.float_data = vec![1.0; 5];
        assert_eq!(err(&p), "tensor 'w': float_data has 5 elements, but dims [2, 3] need 6");
        p.float_data.clear();
        p.int32_data = vec![1; 6];
        assert!(err(&p).contains("no data"));

        let p = proto(DataType::Float, &[2, -1]);
        assert_eq!(err(&p), "tensor 'w': negative dim -1 in [2, -1]");
        let p = proto(DataType::Float, &[i64::MAX, i64::MAX]);
        assert!(err(&p).contains("too large"));

        let mut p = proto(DataType::Uint8, &[1]);
        p.int32_data = vec![256];
        assert_eq!(err(&p), "tensor 'w': int32_data value 256 is out of range for u8");

        let mut p = proto(DataType::Float, &[1]);
        p.segment = Some(crate::proto::tensor_proto::Segment { begin: Some(0), end: Some(1) });
        assert!(err(&p).contains("segmented"));
    }
}
