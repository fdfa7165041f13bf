//! Safe wrapper over MLX arrays and ops (through the C++ shim in `cpp/`).
//!
//! MLX is lazy: ops only record a graph; [`Array::eval`], [`eval`] and [`Array::to_host`] run
//! it. Every fallible call returns [`MlxError`] carrying MLX's exception message; nothing
//! aborts the process.
//!
//! # Threads
//! [`Array`] is neither `Send` nor `Sync`. MLX 0.32 binds the graph of an unevaluated array to
//! the stream of the thread that built it (evaluating it elsewhere fails with "There is no
//! Stream(cpu, 0) in current thread"), and clones of one graph node share mutable state.
//! Move data between threads as [`HostTensor`]s.
//!
//! # Devices
//! Ops run on the thread's device chosen with [`with_device`], else on MLX's process-wide
//! default device ([`set_default_device`]; MLX picks the GPU when its build has one).

use crate::ffi::{self, RawArray};
use blockfuse_ir::{DType, HostTensor};
use std::cell::Cell;
use std::ffi::{c_int, CStr};
use std::fmt;
use std::ptr::{self, NonNull};

/// The `mlx/lib` directory this crate was linked against (as found by its build script).
pub const BUILD_LIBDIR: &str = env!("BLOCKFUSE_MLX_LIBDIR");

pub use crate::error::{MlxError, Result};

pub(crate) fn check(rc: c_int) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message.
    let msg = unsafe { CStr::from_ptr(ffi::bfm_last_error()) };
    Err(MlxError::Mlx(msg.to_string_lossy().into_owned()))
}

pub(crate) fn make(f: impl FnOnce(*mut *mut RawArray) -> c_int) -> Result<Array> {
    let mut out = ptr::null_mut();
    check(f(&mut out))?;
    NonNull::new(out)
        .map(|raw| Array { raw })
        .ok_or_else(|| MlxError::Binding("the shim returned a null array".into()))
}

fn to_i32(values: impl IntoIterator<Item = usize>, what: &str) -> Result<Vec<i32>> {
    values
        .into_iter()
        .map(|v| i32::try_from(v).map_err(|_| MlxError::Binding(format!("{what} {v} exceeds i32"))))
        .collect()
}

pub(crate) fn dtype_code(d: DType) -> c_int {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::F64 => 3,
        DType::I64 => 4,
        DType::I32 => 5,
        DType::I8 => 6,
        DType::U8 => 7,
        DType::Bool => 8,
    }
}

fn dtype_from_code(code: c_int) -> Result<DType> {
    const OTHERS: [&str; 5] = ["uint16", "uint32", "uint64", "int16", "complex64"];
    match code {
        0..=8 => Ok(DType::ALL[code as usize]),
        9..=13 => Err(MlxError::Binding(format!(
            "MLX dtype {} has no blockfuse DType",
            OTHERS[(code - 9) as usize]
        ))),
        _ => Err(MlxError::Binding(format!("unknown MLX dtype code {code}"))),
    }
}

/// An MLX device kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The GPU (Metal or CUDA); absent from the `mlx-cpu` build.
    Gpu,
}

impl Device {
    fn code(self) -> c_int {
        match self {
            Device::Cpu => 0,
            Device::Gpu => 1,
        }
    }

    /// Whether the linked `libmlx.so` can run on this device.
    pub fn is_available(self) -> bool {
        let mut out = 0;
        // SAFETY: `out` is a valid out-param.
        check(unsafe { ffi::bfm_device_available(self.code(), &mut out) }).is_ok() && out != 0
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        })
    }
}

/// Sets MLX's process-wide default device; errors (with MLX's message) when unavailable.
pub fn set_default_device(device: Device) -> Result<()> {
    // SAFETY: plain call.
    check(unsafe { ffi::bfm_set_default_device(device.code()) })
}

/// MLX's process-wide default device.
pub fn default_device() -> Result<Device> {
    let mut out = 0;
    // SAFETY: `out` is a valid out-param.
    check(unsafe { ffi::bfm_default_device(&mut out) })?;
    Ok(if out == 1 { Device::Gpu } else { Device::Cpu })
}

thread_local! {
    static THREAD_DEVICE: Cell<c_int> = const { Cell::new(-1) };
}

/// The device [`with_device`] set for this thread, if any.
pub fn thread_device() -> Option<Device> {
    match THREAD_DEVICE.with(Cell::get) {
        0 => Some(Device::Cpu),
        1 => Some(Device::Gpu),
        _ => None,
    }
}

fn set_thread_device(code: c_int) -> Result<()> {
    // SAFETY: plain call; the shim validates the code.
    check(unsafe { ffi::bfm_set_thread_device(code) })?;
    THREAD_DEVICE.with(|c| c.set(code));
    Ok(())
}

/// Runs `f` with every op built on this thread placed on `device` (the thread's default
/// stream of it), then restores the previous choice (also on panic). Errors without running
/// `f` when the device is unavailable (e.g. [`Device::Gpu`] with the `mlx-cpu` library).
pub fn with_device<R>(device: Device, f: impl FnOnce() -> R) -> Result<R> {
    struct Restore(c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = set_thread_device(self.0);
        }
    }
    let previous = THREAD_DEVICE.with(Cell::get);
    set_thread_device(device.code())?;
    let _restore = Restore(previous);
    Ok(f())
}

/// Waits for the work queued on this thread's stream of its current device.
pub fn synchronize() -> Result<()> {
    // SAFETY: plain call.
    check(unsafe { ffi::bfm_synchronize() })
}

/// The version string of the MLX library loaded at run time (e.g. `0.32.4`).
pub fn version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::bfm_version()) }.to_string_lossy().into_owned()
}

/// Evaluates several arrays together (sharing their common subgraphs).
pub fn eval(arrays: &[&Array]) -> Result<()> {
    let ptrs: Vec<*const RawArray> = arrays.iter().map(|a| a.ptr()).collect();
    // SAFETY: `ptrs` holds `arrays.len()` live handles.
    check(unsafe { ffi::bfm_eval(ptrs.as_ptr(), ptrs.len()) })
}

/// Elementwise ops of one array ([`Array::unary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `√x`.
    Sqrt,
    /// `1/√x`.
    Rsqrt,
    /// `1/x`.
    Reciprocal,
    /// `eˣ`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// `1/(1+e⁻ˣ)`.
    Sigmoid,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round half to even (as MLX and NumPy).
    Round,
    /// −1, 0 or 1.
    Sign,
    /// Logical not (bool result).
    LogicalNot,
    /// `x²`.
    Square,
    /// `ln(1+x)`.
    Log1p,
    /// `eˣ−1`.
    Expm1,
    /// NaN test (bool result).
    IsNan,
    /// ±∞ test (bool result).
    IsInf,
}

/// Elementwise ops of two broadcast arrays, plus matmul ([`Array::binary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b` (true division; integer inputs give floats as in MLX).
    Div,
    /// `aᵇ`.
    Pow,
    /// Elementwise maximum.
    Maximum,
    /// Elementwise minimum.
    Minimum,
    /// `a == b` (bool).
    Equal,
    /// `a != b` (bool; on bools this is xor).
    NotEqual,
    /// `a < b` (bool).
    Less,
    /// `a <= b` (bool).
    LessEqual,
    /// `a > b` (bool).
    Greater,
    /// `a >= b` (bool).
    GreaterEqual,
    /// Logical and (bool).
    LogicalAnd,
    /// Logical or (bool).
    LogicalOr,
    /// Logical xor (bool).
    LogicalXor,
    /// Remainder with the sign of the divisor (Python `%`).
    Remainder,
    /// `floor(a / b)`.
    FloorDivide,
    /// Matrix product with broadcast batch dims (as [`Array::matmul`]).
    Matmul,
}

/// Reductions over axes ([`Array::reduce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
    /// All true (bool).
    All,
    /// Any true (bool).
    Any,
    /// Index of the maximum along exactly one axis, as i64 (first one on ties).
    ArgMax,
    /// Index of the minimum along exactly one axis, as i64 (first one on ties).
    ArgMin,
}

#[repr(i32)]
enum ShapeOp {
    Reshape,
    Transpose,
    BroadcastTo,
    ExpandDims,
    Squeeze,
}

/// An MLX array (a node of MLX's lazy graph). Cloning is cheap and shares the node.
///
/// Not `Send` (see the [module docs](self)):
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<blockfuse_mlx::Array>();
/// ```
pub struct Array {
    raw: NonNull<RawArray>,
}

impl Drop for Array {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the shim and is freed exactly once.
        unsafe { ffi::bfm_free(self.raw.as_ptr()) }
    }
}

impl Clone for Array {
    fn clone(&self) -> Self {
        // SAFETY: valid handle; only fails on out-of-memory.
        make(|o| unsafe { ffi::bfm_clone(self.ptr(), o) }).expect("cloning an MLX array handle")
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dtype() {
            Ok(d) => write!(f, "Array({d}{:?})", self.shape()),
            Err(_) => write!(f, "Array(?{:?})", self.shape()),
        }
    }
}

impl Array {
    pub(crate) fn ptr(&self) -> *const RawArray {
        self.raw.as_ptr()
    }

    fn info(&self) -> (c_int, usize) {
        let (mut dtype, mut ndim) = (-1, 0usize);
        // SAFETY: valid handle and out-params; cannot fail for a valid handle.
        let _ = check(unsafe { ffi::bfm_info(self.ptr(), &mut dtype, &mut ndim) });
        (dtype, ndim)
    }

    /// Copies a host tensor into a new (evaluated) MLX array.
    pub fn from_host(t: &HostTensor) -> Result<Array> {
        let shape = to_i32(t.dims().iter().copied(), "dimension")?;
        let bytes = t.bytes();
        // SAFETY: pointers and lengths describe live slices.
        make(|o| unsafe {
            ffi::bfm_from_bytes(
                bytes.as_ptr(),
                bytes.len(),
                shape.as_ptr(),
                shape.len(),
                dtype_code(t.dtype()),
                o,
            )
        })
    }

    /// Evaluates the array and copies it out as a row-major host tensor.
    pub fn to_host(&self) -> Result<HostTensor> {
        let dtype = self.dtype()?;
        let dims = self.shape();
        let mut bytes = vec![0u8; dims.iter().product::<usize>() * dtype.size_bytes()];
        // SAFETY: `bytes` has exactly the length passed.
        check(unsafe { ffi::bfm_to_bytes(self.ptr(), bytes.as_mut_ptr(), bytes.len()) })?;
        HostTensor::from_bytes(dtype, dims, bytes).map_err(|e| MlxError::Binding(e.to_string()))
    }

    /// A rank-0 array holding `value` converted to `dtype`.
    pub fn scalar(value: f64, dtype: DType) -> Result<Array> {
        Array::full(&[], value, dtype)
    }

    /// An array of `shape` filled with `value` converted to `dtype`.
    pub fn full(shape: &[i32], value: f64, dtype: DType) -> Result<Array> {
        // SAFETY: `shape` is a live slice.
        make(|o| unsafe { ffi::bfm_full(shape.as_ptr(), shape.len(), value, dtype_code(dtype), o) })
    }

    /// `[start, start+step, …)` below `stop` (above it for a negative step), as `dtype`.
    pub fn arange(start: f64, stop: f64, step: f64, dtype: DType) -> Result<Array> {
        // SAFETY: plain values.
        make(|o| unsafe { ffi::bfm_arange(start, stop, step, dtype_code(dtype), o) })
    }

    /// Element type; errors for MLX dtypes blockfuse has no [`DType`] for (u16, u32, u64,
    /// i16, complex64).
    pub fn dtype(&self) -> Result<DType> {
        dtype_from_code(self.info().0)
    }

    /// Dims (known without evaluating).
    pub fn shape(&self) -> Vec<usize> {
        let mut shape = vec![0i32; self.ndim()];
        // SAFETY: `shape` has `ndim` entries.
        let _ = check(unsafe { ffi::bfm_shape(self.ptr(), shape.as_mut_ptr()) });
        shape.into_iter().map(|d| d as usize).collect()
    }

    /// Rank.
    pub fn ndim(&self) -> usize {
        self.info().1
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        self.shape().iter().product()
    }

    /// Evaluates the array's graph.
    pub fn eval(&self) -> Result<()> {
        eval(&[self])
    }

    /// An elementwise op of this array.
    pub fn unary(&self, op: UnaryOp) -> Result<Array> {
        // SAFETY: valid handle.
        make(|o| unsafe { ffi::bfm_unary(op as c_int, self.ptr(), o) })
    }

    /// An elementwise op of this array and `rhs` (NumPy broadcasting, MLX type promotion).
    pub fn binary(&self, op: BinaryOp, rhs: &Array) -> Result<Array> {
        // SAFETY: valid handles.
        make(|o| unsafe { ffi::bfm_binary(op as c_int, self.ptr(), rhs.ptr(), o) })
    }

    /// Matrix product (`@`): 1-D operands are promoted as in NumPy, batch dims broadcast.
    pub fn matmul(&self, rhs: &Array) -> Result<Array> {
        self.binary(BinaryOp::Matmul, rhs)
    }

    /// `cond ? on_true : on_false`, elementwise with broadcasting.
    pub fn where_(cond: &Array, on_true: &Array, on_false: &Array) -> Result<Array> {
        // SAFETY: valid handles.
        make(|o| unsafe { ffi::bfm_where(cond.ptr(), on_true.ptr(), on_false.ptr(), o) })
    }

    /// Converts to `dtype`.
    pub fn astype(&self, dtype: DType) -> Result<Array> {
        // SAFETY: valid handle.
        make(|o| unsafe { ffi::bfm_astype(self.ptr(), dtype_code(dtype), o) })
    }

    /// Reduces over `axes` (negative counts from the end; empty reduces nothing), keeping them
    /// as size-1 dims when `keepdims`. [`ReduceOp::ArgMax`]/[`ReduceOp::ArgMin`] need one axis.
    pub fn reduce(&self, op: ReduceOp, axes: &[i32], keepdims: bool) -> Result<Array> {
        // SAFETY: valid handle and slice.
        make(|o| unsafe {
            ffi::bfm_reduce(op as c_int, self.ptr(), axes.as_ptr(), axes.len(), keepdims as c_int, o)
        })
    }

    /// Softmax over `axes`; `precise` accumulates in f32 for half-precision inputs.
    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        // SAFETY: valid handle and slice.
        make(|o| unsafe { ffi::bfm_softmax(self.ptr(), axes.as_ptr(), axes.len(), precise as c_int, o) })
    }

    fn shape_op(&self, op: ShapeOp, v: &[i32]) -> Result<Array> {
        // SAFETY: valid handle and slice.
        make(|o| unsafe { ffi::bfm_shape_op(op as c_int, self.ptr(), v.as_ptr(), v.len(), o) })
    }

    /// Same elements in a new shape (one dim may be −1).
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        self.shape_op(ShapeOp::Reshape, shape)
    }

    /// Permutes the axes: output axis `i` is input axis `perm[i]`; empty `perm` reverses them.
    pub fn transpose(&self, perm: &[i32]) -> Result<Array> {
        self.shape_op(ShapeOp::Transpose, perm)
    }

    /// Broadcasts to `shape` (NumPy rules).
    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        self.shape_op(ShapeOp::BroadcastTo, shape)
    }

    /// Inserts size-1 axes at `axes` (positions in the output).
    pub fn expand_dims(&self, axes: &[i32]) -> Result<Array> {
        self.shape_op(ShapeOp::ExpandDims, axes)
    }

    /// Removes the size-1 axes `axes`; empty `axes` removes all size-1 axes.
    pub fn squeeze(&self, axes: &[i32]) -> Result<Array> {
        self.shape_op(ShapeOp::Squeeze, axes)
    }

    /// Strided slice, one `start`/`stop`/`stride` per axis (NumPy `a[start:stop:stride]`;
    /// negative starts and stops count from the end, out-of-range bounds clamp).
    pub fn slice(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        if start.len() != stop.len() || start.len() != strides.len() {
            return Err(MlxError::Binding(format!(
                "slice needs equal-length start/stop/strides, got {}/{}/{}",
                start.len(),
                stop.len(),
                strides.len()
            )));
        }
        // SAFETY: valid handle; the three slices have `start.len()` entries.
        make(|o| unsafe {
            ffi::bfm_slice(self.ptr(), start.as_ptr(), stop.as_ptr(), strides.as_ptr(), start.len(), o)
        })
    }

    /// Joins arrays along `axis`.
    pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
        let ptrs: Vec<*const RawArray> = arrays.iter().map(|a| a.ptr()).collect();
        // SAFETY: `ptrs` holds live handles.
        make(|o| unsafe { ffi::bfm_concatenate(ptrs.as_ptr(), ptrs.len(), axis, o) })
    }

    /// Splits along `axis` at the (ascending) `indices`, giving `indices.len() + 1` parts.
    pub fn split(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        let mut outs: Vec<*mut RawArray> = vec![ptr::null_mut(); indices.len() + 1];
        // SAFETY: `outs` has room for the `indices.len() + 1` handles written on success.
        check(unsafe {
            ffi::bfm_split(self.ptr(), indices.as_ptr(), indices.len(), axis, outs.as_mut_ptr())
        })?;
        outs.into_iter()
            .map(|p| {
                NonNull::new(p)
                    .map(|raw| Array { raw })
                    .ok_or_else(|| MlxError::Binding("the shim returned a null array".into()))
            })
            .collect()
    }

    /// Gathers slices along `axis` at integer `indices` (output shape: this shape with `axis`
    /// replaced by `indices`' shape; negative indices count from the end).
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        // SAFETY: valid handles.
        make(|o| unsafe { ffi::bfm_take(self.ptr(), indices.ptr(), axis, o) })
    }

    /// This array with `update` written along `axis` from `start`, an integer array of one
    /// element read at run time (MLX's dynamic `slice_update`). MLX does not check the bounds:
    /// clamp `start` into `0 ..= len − n` first.
    pub fn slice_update(&self, update: &Array, start: &Array, axis: i32) -> Result<Array> {
        // SAFETY: valid handles.
        make(|o| unsafe { ffi::bfm_slice_update(self.ptr(), update.ptr(), start.ptr(), axis, o) })
    }

    /// Zeroes the elements above the `k`-th diagonal of the last two axes.
    pub fn tril(&self, k: i32) -> Result<Array> {
        // SAFETY: valid handle.
        make(|o| unsafe { ffi::bfm_tri(0, self.ptr(), k, o) })
    }

    /// Zeroes the elements below the `k`-th diagonal of the last two axes.
    pub fn triu(&self, k: i32) -> Result<Array> {
        // SAFETY: valid handle.
        make(|o| unsafe { ffi::bfm_tri(1, self.ptr(), k, o) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_codes_follow_dtype_all() {
        for (i, d) in DType::ALL.into_iter().enumerate() {
            assert_eq!(dtype_code(d), i as c_int);
            assert_eq!(dtype_from_code(i as c_int), Ok(d));
        }
        assert!(matches!(dtype_from_code(10), Err(MlxError::Binding(m)) if m.contains("uint32")));
    }
}
