//! Host tensors: dtype, concrete dims and little-endian bytes shared behind an `Arc`: an
//! owned buffer, or a range of a shared read-only buffer such as a memory-mapped weights
//! file ([`HostTensor::from_shared`]), which the tensor keeps alive and never copies.
//!
//! Constants in a graph, inputs given to a backend and the outputs it returns all use this one
//! type, so that data moves between frontends, backends and tests without conversions.

use crate::dtype::DType;
use half::{bf16, f16};
use std::sync::Arc;

/// A dense, row-major tensor in host memory. Cloning is cheap: the bytes are shared.
#[derive(Clone)]
pub struct HostTensor {
    dtype: DType,
    dims: Vec<usize>,
    bytes: Storage,
}

/// A read-only byte buffer that tensors may borrow ranges of (a memory map, a decoded file).
pub type SharedBuffer = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Where a tensor's bytes live.
#[derive(Clone)]
enum Storage {
    /// An owned buffer.
    Heap(Arc<[u8]>),
    /// `len` bytes from `start` of a shared buffer.
    Shared { owner: SharedBuffer, start: usize, len: usize },
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match self {
            Storage::Heap(b) => b,
            Storage::Shared { owner, start, len } => {
                let all: &[u8] = (**owner).as_ref();
                all.get(*start..*start + *len).unwrap_or(&[])
            }
        }
    }
}

impl PartialEq for HostTensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype && self.dims == other.dims && self.bytes() == other.bytes()
    }
}

/// Why bytes could not become a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tensor of {dtype}{dims:?} needs {expected} bytes, got {actual}")]
pub struct TensorSizeError {
    /// The element type asked for.
    pub dtype: DType,
    /// The dims asked for.
    pub dims: Vec<usize>,
    /// Bytes that dtype and dims need.
    pub expected: usize,
    /// Bytes given.
    pub actual: usize,
}

impl std::fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostTensor({}{:?}", self.dtype, self.dims)?;
        if self.len() <= 8 {
            write!(f, " = {:?}", self.to_f64_vec())?;
        }
        write!(f, ")")
    }
}

impl HostTensor {
    /// Wraps little-endian bytes; errors when their length does not match dtype and dims.
    pub fn from_bytes(
        dtype: DType,
        dims: Vec<usize>,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<Self, TensorSizeError> {
        let bytes = bytes.into();
        let expected = dims.iter().product::<usize>() * dtype.size_bytes();
        if bytes.len() != expected {
            return Err(TensorSizeError { dtype, dims, expected, actual: bytes.len() });
        }
        Ok(HostTensor { dtype, dims, bytes: Storage::Heap(bytes) })
    }

    /// A tensor over `expected` bytes of `owner` from `offset`, without copying them (the
    /// tensor keeps `owner` alive); errors when `owner` has fewer bytes there than dtype and
    /// dims need.
    pub fn from_shared(
        dtype: DType,
        dims: Vec<usize>,
        owner: SharedBuffer,
        offset: usize,
    ) -> Result<Self, TensorSizeError> {
        let expected =
            dims.iter().try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        let have = (*owner).as_ref().len().saturating_sub(offset);
        if have < expected {
            return Err(TensorSizeError { dtype, dims, expected, actual: have });
        }
        Ok(HostTensor { dtype, dims, bytes: Storage::Shared { owner, start: offset, len: expected } })
    }

    /// True when the bytes are borrowed from a shared buffer ([`HostTensor::from_shared`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.bytes, Storage::Shared { .. })
    }

    /// Converts f64 values to `dtype` (rounding to nearest; integers truncate toward zero,
    /// bool is `v != 0`). Panics if `values.len()` is not the product of `dims`.
    pub fn from_f64(dtype: DType, dims: Vec<usize>, values: &[f64]) -> Self {
        assert_eq!(values.len(), dims.iter().product::<usize>(), "values do not fill dims");
        let mut bytes = Vec::with_capacity(values.len() * dtype.size_bytes());
        for &v in values {
            push_le(&mut bytes, dtype, v);
        }
        HostTensor { dtype, dims, bytes: Storage::Heap(bytes.into()) }
    }

    /// An f32 tensor.
    pub fn from_f32(dims: Vec<usize>, values: &[f32]) -> Self {
        assert_eq!(values.len(), dims.iter().product::<usize>(), "values do not fill dims");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor { dtype: DType::F32, dims, bytes: Storage::Heap(bytes.into()) }
    }

    /// An i64 tensor.
    pub fn from_i64(dims: Vec<usize>, values: &[i64]) -> Self {
        assert_eq!(values.len(), dims.iter().product::<usize>(), "values do not fill dims");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor { dtype: DType::I64, dims, bytes: Storage::Heap(bytes.into()) }
    }

    /// A rank-0 tensor holding `value` converted to `dtype`.
    pub fn scalar(dtype: DType, value: f64) -> Self {
        Self::from_f64(dtype, vec![], &[value])
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Concrete dims (row-major).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Element `i` widened to f64 (bool as 0/1).
    pub fn get_f64(&self, i: usize) -> f64 {
        let s = self.dtype.size_bytes();
        read_le(self.dtype, &self.bytes()[i * s..(i + 1) * s])
    }

    /// All elements widened to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get_f64(i)).collect()
    }

    /// All elements as i64 (floats truncated).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|i| self.get_f64_exact_i64(i)).collect()
    }

    fn get_f64_exact_i64(&self, i: usize) -> i64 {
        if self.dtype == DType::I64 {
            let b = &self.bytes()[i * 8..i * 8 + 8];
            i64::from_le_bytes(b.try_into().expect("8 bytes"))
        } else {
            self.get_f64(i) as i64
        }
    }

    /// The tensor with the same bytes and other dims of the same element count.
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Self, TensorSizeError> {
        let expected = dims.iter().try_fold(self.dtype.size_bytes(), |a, &d| a.checked_mul(d));
        let (expected, actual) = (expected.unwrap_or(usize::MAX), self.bytes().len());
        if expected != actual {
            return Err(TensorSizeError { dtype: self.dtype, dims, expected, actual });
        }
        Ok(HostTensor { dtype: self.dtype, dims, bytes: self.bytes.clone() })
    }

    /// The tensor converted to another dtype (through f64; i64 values beyond 2^53 round).
    pub fn cast(&self, dtype: DType) -> Self {
        if dtype == self.dtype {
            return self.clone();
        }
        if self.dtype == DType::I64 && dtype.is_int() {
            let mut bytes = Vec::with_capacity(self.len() * dtype.size_bytes());
            for v in self.to_i64_vec() {
                push_le_int(&mut bytes, dtype, v);
            }
            return HostTensor { dtype, dims: self.dims.clone(), bytes: Storage::Heap(bytes.into()) };
        }
        Self::from_f64(dtype, self.dims.clone(), &self.to_f64_vec())
    }
}

fn push_le_int(out: &mut Vec<u8>, dtype: DType, v: i64) {
    match dtype {
        DType::I64 => out.extend_from_slice(&v.to_le_bytes()),
        DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
        DType::I8 => out.push(v as i8 as u8),
        DType::U8 => out.push(v as u8),
        _ => push_le(out, dtype, v as f64),
    }
}

/// Appends `v` converted to `dtype` as little-endian bytes.
pub fn push_le(out: &mut Vec<u8>, dtype: DType, v: f64) {
    match dtype {
        DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f16::from_f64(v).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&bf16::from_f64(v).to_le_bytes()),
        DType::I64 => out.extend_from_slice(&(v as i64).to_le_bytes()),
        DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
        DType::I8 => out.push(v as i8 as u8),
        DType::U8 => out.push(v as u8),
        DType::Bool => out.push((v != 0.0) as u8),
    }
}

/// Reads one little-endian element of `dtype` from `b` (exactly its size) as f64.
pub fn read_le(dtype: DType, b: &[u8]) -> f64 {
    match dtype {
        DType::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
        DType::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
        DType::F16 => f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f64(),
        DType::BF16 => bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f64(),
        DType::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
        DType::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
        DType::I8 => b[0] as i8 as f64,
        DType::U8 => b[0] as f64,
        DType::Bool => (b[0] != 0) as u8 as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_tensors_borrow_their_range() {
        let owner: SharedBuffer = Arc::new((0u8..16).collect::<Vec<u8>>());
        let t = HostTensor::from_shared(DType::U8, vec![2, 2], owner.clone(), 4).unwrap();
        assert!(t.is_shared());
        assert_eq!(t.bytes(), &[4, 5, 6, 7]);
        assert_eq!(t, HostTensor::from_bytes(DType::U8, vec![2, 2], vec![4u8, 5, 6, 7]).unwrap());
        let r = t.reshaped(vec![4]).unwrap();
        assert!(r.is_shared() && r.bytes() == t.bytes());
        let e = HostTensor::from_shared(DType::F32, vec![4], owner.clone(), 4).unwrap_err();
        assert_eq!((e.expected, e.actual), (16, 12));
        assert!(HostTensor::from_shared(DType::F32, vec![usize::MAX, 2], owner, 0).is_err());
    }
}
