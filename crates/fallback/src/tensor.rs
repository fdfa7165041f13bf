//! The evaluator's internal tensors: contiguous row-major data in one of four storage
//! classes, shared behind an `Arc` so that reshapes and repeated reads copy nothing.
//!
//! | dtype | storage | rule |
//! |---|---|---|
//! | f32, f16, bf16 | `Vec<f32>` | f16/bf16 values are always exactly representable (rounded after every op) |
//! | f64 | `Vec<f64>` | |
//! | i64, i32, i8, u8 | `Vec<i64>` | values always lie in the dtype's range (wrapped after every op) |
//! | bool | `Vec<bool>` | |

use blockfuse_ir::{DType, HostTensor};
use half::{bf16, f16};
use std::sync::Arc;

/// The data of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Buf {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// An element type of a [`Buf`].
pub(crate) trait Elem: Copy + Default + Send + Sync + 'static {
    /// The data, when the buffer holds this type.
    fn slice(buf: &Buf) -> Option<&[Self]>;
    /// Wraps data into a buffer.
    fn wrap(v: Vec<Self>) -> Buf;
}

macro_rules! elem {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            fn slice(buf: &Buf) -> Option<&[Self]> {
                match buf {
                    Buf::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> Buf {
                Buf::$variant(v)
            }
        }
    };
}
elem!(f32, F32);
elem!(f64, F64);
elem!(i64, I64);
elem!(bool, Bool);

/// Runs `$body` with `$T` bound to the element type of `$buf`.
macro_rules! dispatch {
    ($buf:expr, $T:ident => $body:expr) => {
        match $buf {
            $crate::tensor::Buf::F32(_) => {
                type $T = f32;
                $body
            }
            $crate::tensor::Buf::F64(_) => {
                type $T = f64;
                $body
            }
            $crate::tensor::Buf::I64(_) => {
                type $T = i64;
                $body
            }
            $crate::tensor::Buf::Bool(_) => {
                type $T = bool;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

impl Buf {
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
            Buf::I64(v) => v.len(),
            Buf::Bool(v) => v.len(),
        }
    }
}

/// A dense row-major tensor.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub buf: Arc<Buf>,
}

impl Tensor {
    /// A tensor from data already in storage form (rounded or wrapped to `dtype`).
    pub(crate) fn new(dtype: DType, dims: Vec<usize>, buf: Buf) -> Tensor {
        debug_assert_eq!(buf.len(), dims.iter().product::<usize>());
        debug_assert_eq!(std::mem::discriminant(&buf), std::mem::discriminant(&empty_buf(dtype)));
        Tensor { dtype, dims, buf: Arc::new(buf) }
    }

    pub(crate) fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The data as `T` (the caller has matched the storage class).
    pub(crate) fn data<T: Elem>(&self) -> &[T] {
        T::slice(&self.buf).expect("storage class checked by the caller")
    }

    /// The data, owned: moved out when this is the only reference, copied otherwise.
    pub(crate) fn into_buf(self) -> Buf {
        Arc::try_unwrap(self.buf).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Converts a host tensor (f16/bf16 widen exactly, small ints widen to i64).
    pub(crate) fn from_host(t: &HostTensor) -> Tensor {
        let b = t.bytes();
        let buf = match t.dtype() {
            DType::F32 => Buf::F32(from_le(b, f32::from_le_bytes)),
            DType::F16 => Buf::F32(
                b.chunks_exact(2).map(|c| f16::from_le_bytes(c.try_into().expect("2")).to_f32()).collect(),
            ),
            DType::BF16 => Buf::F32(
                b.chunks_exact(2).map(|c| bf16::from_le_bytes(c.try_into().expect("2")).to_f32()).collect(),
            ),
            DType::F64 => Buf::F64(from_le(b, f64::from_le_bytes)),
            DType::I64 => Buf::I64(from_le(b, i64::from_le_bytes)),
            DType::I32 => Buf::I64(
                b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4")) as i64).collect(),
            ),
            DType::I8 => Buf::I64(b.iter().map(|&v| v as i8 as i64).collect()),
            DType::U8 => Buf::I64(b.iter().map(|&v| v as i64).collect()),
            DType::Bool => Buf::Bool(b.iter().map(|&v| v != 0).collect()),
        };
        Tensor::new(t.dtype(), t.dims().to_vec(), buf)
    }

    /// Converts to a host tensor.
    pub(crate) fn to_host(&self) -> HostTensor {
        let n = self.len() * self.dtype.size_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(n);
        match (&*self.buf, self.dtype) {
            (Buf::F32(v), DType::F32) => to_le(v, &mut out, |x| x.to_le_bytes()),
            (Buf::F32(v), DType::F16) => v.iter().for_each(|x| out.extend(f16::from_f32(*x).to_le_bytes())),
            (Buf::F32(v), DType::BF16) => v.iter().for_each(|x| out.extend(bf16::from_f32(*x).to_le_bytes())),
            (Buf::F64(v), _) => to_le(v, &mut out, |x| x.to_le_bytes()),
            (Buf::I64(v), DType::I64) => to_le(v, &mut out, |x| x.to_le_bytes()),
            (Buf::I64(v), DType::I32) => v.iter().for_each(|x| out.extend((*x as i32).to_le_bytes())),
            (Buf::I64(v), _) => out.extend(v.iter().map(|x| *x as u8)),
            (Buf::Bool(v), _) => out.extend(v.iter().map(|x| *x as u8)),
            (Buf::F32(_), d) => unreachable!("f32 storage for {d}"),
        }
        HostTensor::from_bytes(self.dtype, self.dims.clone(), out).expect("sizes agree")
    }
}

/// Plain numbers whose in-memory bytes on a little-endian machine are their little-endian
/// encoding, so that conversions can copy whole buffers.
trait Pod: Copy + Default {}
impl Pod for f32 {}
impl Pod for f64 {}
impl Pod for i64 {}

/// Decodes little-endian values of `N` bytes (one memcpy on little-endian targets).
fn from_le<T: Pod, const N: usize>(b: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
    debug_assert_eq!(std::mem::size_of::<T>(), N);
    if cfg!(target_endian = "little") {
        let n = b.len() / N;
        let mut v = vec![T::default(); n];
        // SAFETY: `v` owns n·N bytes, `b` holds at least that many, the regions are distinct,
        // and every bit pattern is a valid f32, f64 or i64.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr() as *mut u8, n * N) };
        v
    } else {
        b.chunks_exact(N).map(|c| decode(c.try_into().expect("N bytes"))).collect()
    }
}

/// Appends the little-endian encoding of `v` to `out` (one memcpy on little-endian targets).
fn to_le<T: Pod, const N: usize>(v: &[T], out: &mut Vec<u8>, encode: fn(&T) -> [u8; N]) {
    if cfg!(target_endian = "little") {
        // SAFETY: a slice of plain numbers viewed as its bytes.
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * N) };
        out.extend_from_slice(bytes);
    } else {
        v.iter().for_each(|x| out.extend(encode(x)));
    }
}

/// An empty buffer of the storage class of `dtype`.
pub(crate) fn empty_buf(dtype: DType) -> Buf {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Buf::F32(Vec::new()),
        DType::F64 => Buf::F64(Vec::new()),
        DType::I64 | DType::I32 | DType::I8 | DType::U8 => Buf::I64(Vec::new()),
        DType::Bool => Buf::Bool(Vec::new()),
    }
}

/// Rounds every value to `dtype` (nothing to do for f32).
pub(crate) fn round_slice(dtype: DType, v: &mut [f32]) {
    match dtype {
        DType::F16 => v.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32()),
        DType::BF16 => v.iter_mut().for_each(|x| *x = bf16::from_f32(*x).to_f32()),
        _ => {}
    }
}

/// `v` rounded once from f64 to `dtype` (one of f32, f16, bf16).
#[inline]
pub(crate) fn round_f64_to(dtype: DType, v: f64) -> f32 {
    match dtype {
        DType::F16 => f16::from_f64(v).to_f32(),
        DType::BF16 => bf16::from_f64(v).to_f32(),
        _ => v as f32,
    }
}

/// `v` wrapped (two's complement) into the range of the integer `dtype`.
#[inline]
pub(crate) fn wrap_int(dtype: DType, v: i64) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        _ => v,
    }
}

/// Wraps every value into the range of `dtype` (nothing to do for i64).
pub(crate) fn wrap_slice(dtype: DType, v: &mut [i64]) {
    if dtype != DType::I64 {
        v.iter_mut().for_each(|x| *x = wrap_int(dtype, *x));
    }
}

/// A float truncated toward zero into integer `dtype`, saturating at its range (NaN → 0).
#[inline]
pub(crate) fn float_to_int(dtype: DType, v: f64) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        _ => v as i64,
    }
}

/// A tensor of `dtype` holding `values` given as f64 (converted like a cast).
pub(crate) fn from_f64_values(dtype: DType, dims: Vec<usize>, values: impl Iterator<Item = f64>) -> Tensor {
    let buf = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Buf::F32(values.map(|v| round_f64_to(dtype, v)).collect()),
        DType::F64 => Buf::F64(values.collect()),
        DType::I64 | DType::I32 | DType::I8 | DType::U8 => {
            Buf::I64(values.map(|v| float_to_int(dtype, v)).collect())
        }
        DType::Bool => Buf::Bool(values.map(|v| v != 0.0).collect()),
    };
    Tensor::new(dtype, dims, buf)
}
