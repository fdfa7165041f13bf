//! Every primitive [`Op`] as MLX ops, with blockfuse's semantics where MLX's differ:
//!
//! - integer `Div` truncates toward zero (MLX's `floor_divide` floors) and integer `Mod` is
//!   floored; a zero divisor is a run-time [`Check`](crate::lower::Checks) error (never the
//!   CPU's division trap: the divisor is replaced by 1 before MLX sees it), and so is an
//!   integer `Pow` with a negative exponent (MLX would loop forever);
//! - casts from float to integer truncate and saturate, NaN giving 0 (MLX's `astype` is a
//!   C++ cast, undefined out of range);
//! - reductions over no listed axes reduce every axis; f16/bf16 sums, products and means
//!   accumulate in f32 and round once; integer results keep their dtype (MLX widens small
//!   integers) and integer means truncate;
//! - integer `MatMul` (MLX's `matmul` takes floats only) is a broadcast product and a sum;
//! - `Gather` indices below zero count from the end; indices out of range are a run-time
//!   check error (they are clamped before MLX reads memory with them);
//! - `SliceUpdate` starts outside `0 ..= len − n` are a run-time check error (clamped before
//!   MLX's dynamic `slice_update` writes with them);
//! - `Slice` bounds clamp like [`clamp_slice`]; `Range`, `Full` and `SymConst` are built on
//!   the host exactly as the reference evaluator converts values.

use crate::array::{Array, BinaryOp as B, ReduceOp as R, UnaryOp as U};
use crate::bind::{eval_dim, eval_dims};
use crate::error::{MlxError, Result};
use crate::lower::Checks;
use blockfuse_ir::infer::{clamp_slice, reduced_axes};
use blockfuse_ir::shape::normalize_axis;
use blockfuse_ir::{
    BinaryOp, Bindings, Bound, DType, Dim, HostTensor, Op, ReduceOp, SliceSpec, TensorType, UnaryOp,
};

/// Lowers the primitive `op` on `args`; `types` are the node's output types.
pub(crate) fn lower(
    op: &Op,
    args: &[Array],
    types: &[TensorType],
    bindings: &Bindings,
    checks: &mut Checks,
) -> Result<Vec<Array>> {
    let a = args.first();
    let x = || a.ok_or_else(|| MlxError::Graph(format!("{} has no operand", op.name())));
    let one = |r: Result<Array>| r.map(|a| vec![a]);
    match op {
        Op::Input | Op::Block(_) => Err(MlxError::Graph(format!("{} is not a primitive op", op.name()))),
        Op::Constant(t) => one(Array::from_host(t)),
        Op::SymConst(dims) => {
            let v = dims.iter().map(|d| Ok(eval_dim(d, bindings)? as i64)).collect::<Result<Vec<i64>>>()?;
            one(Array::from_host(&HostTensor::from_i64(vec![v.len()], &v)))
        }
        Op::Unary(u) => one(unary(*u, x()?)),
        Op::Binary(b) => one(binary(*b, &args[0], &args[1], checks)),
        Op::Where => one(Array::where_(&args[0], &args[1], &args[2])),
        Op::Cast(d) => one(cast(x()?, *d)),
        Op::Reduce { op, axes, keepdims } => one(reduce(*op, axes, *keepdims, x()?)),
        Op::Softmax { axis } => {
            let x = x()?;
            let axis = axis_of(*axis, x.ndim())?;
            one(x.softmax(&[axis], true))
        }
        Op::MatMul => one(matmul(&args[0], &args[1])),
        Op::Transpose { perm } => {
            let perm: Vec<i32> = perm.iter().map(|&p| p as i32).collect();
            one(x()?.transpose(&perm))
        }
        Op::Reshape { .. } => one(x()?.reshape(&eval_dims(&types[0].shape, bindings)?)),
        Op::Expand { .. } => one(x()?.broadcast_to(&eval_dims(&types[0].shape, bindings)?)),
        Op::Slice(spec) => one(slice(x()?, spec, bindings)),
        Op::Concat { axis } => {
            let refs: Vec<&Array> = args.iter().collect();
            let axis = axis_of(*axis, args[0].ndim())?;
            one(Array::concatenate(&refs, axis))
        }
        Op::Split { axis, sizes } => split(x()?, *axis, sizes, bindings),
        Op::Gather { axis } => one(gather(&args[0], &args[1], *axis, checks)),
        Op::SliceUpdate { axis } => one(slice_update(&args[0], &args[1], &args[2], *axis, checks)),
        Op::Range { start, step, len, dtype } => {
            one(range(*start, *step, eval_dim(len, bindings)? as usize, *dtype))
        }
        Op::Full { shape, value, dtype } => {
            let dims = eval_dims(shape, bindings)?;
            one(Array::from_host(&HostTensor::scalar(*dtype, *value))?.broadcast_to(&dims))
        }
        Op::Trilu { upper, k } => {
            let x = x()?;
            let k = (*k).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            one(if *upper { x.triu(k) } else { x.tril(k) })
        }
    }
}

/// `axis` normalized into `0..rank`, as MLX's `i32`.
fn axis_of(axis: i64, rank: usize) -> Result<i32> {
    normalize_axis(axis, rank)
        .map(|a| a as i32)
        .ok_or_else(|| MlxError::Mismatch(format!("axis {axis} is out of range for rank {rank}")))
}

/// An integer scalar of `dtype` holding exactly `v` (wrapped into the dtype).
pub(crate) fn int_scalar(v: i64, dtype: DType) -> Result<Array> {
    Array::from_host(&HostTensor::from_i64(vec![], &[v]))?.astype(dtype)
}

/// `(min, max)` of an integer dtype.
fn int_range(d: DType) -> (i64, i64) {
    match d {
        DType::I64 => (i64::MIN, i64::MAX),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        _ => (0, 0),
    }
}

fn is_signed_int(d: DType) -> bool {
    matches!(d, DType::I64 | DType::I32 | DType::I8)
}

fn unary(op: UnaryOp, x: &Array) -> Result<Array> {
    use UnaryOp::*;
    let u = match op {
        Neg => U::Neg,
        Abs => U::Abs,
        Sqrt => U::Sqrt,
        Rsqrt => U::Rsqrt,
        Reciprocal => U::Reciprocal,
        Square => U::Square,
        Exp => U::Exp,
        Log => U::Log,
        Erf => U::Erf,
        Tanh => U::Tanh,
        Sigmoid => U::Sigmoid,
        Sin => U::Sin,
        Cos => U::Cos,
        Floor => U::Floor,
        Ceil => U::Ceil,
        Not => U::LogicalNot,
        IsNan => U::IsNan,
        Relu => return x.binary(B::Maximum, &Array::scalar(0.0, x.dtype()?)?),
    };
    x.unary(u)
}

fn binary(op: BinaryOp, a: &Array, b: &Array, checks: &mut Checks) -> Result<Array> {
    use BinaryOp::*;
    let d = a.dtype()?;
    let op = match op {
        Add => B::Add,
        Sub => B::Sub,
        Mul => B::Mul,
        Div if d.is_int() => return int_div_mod(true, a, b, checks),
        Div => B::Div,
        Mod if d.is_int() => return int_div_mod(false, a, b, checks),
        Mod => B::Remainder,
        Pow if is_signed_int(d) => {
            let zero = int_scalar(0, d)?;
            let negative = b.binary(B::Less, &zero)?;
            checks.any(&negative, "integer power with a negative exponent")?;
            return a.binary(B::Pow, &b.binary(B::Maximum, &zero)?);
        }
        Pow => B::Pow,
        Max => B::Maximum,
        Min => B::Minimum,
        Equal => B::Equal,
        Less => B::Less,
        LessEqual => B::LessEqual,
        Greater => B::Greater,
        GreaterEqual => B::GreaterEqual,
        And => B::LogicalAnd,
        Or => B::LogicalOr,
        Xor => B::LogicalXor,
    };
    a.binary(op, b)
}

/// Integer `a / b` truncated toward zero (`div`) or `a mod b` floored, wrapping like Rust's
/// `wrapping_div`/`wrapping_rem`.
pub(crate) fn int_div_mod(div: bool, a: &Array, b: &Array, checks: &mut Checks) -> Result<Array> {
    let d = a.dtype()?;
    let zero = int_scalar(0, d)?;
    let one = int_scalar(1, d)?;
    let b_zero = b.binary(B::Equal, &zero)?;
    checks.any(&b_zero, if div { "integer division by zero" } else { "integer modulo by zero" })?;
    let mut sb = Array::where_(&b_zero, &one, b)?;
    if !is_signed_int(d) {
        let op = if div { B::FloorDivide } else { B::Remainder };
        return a.binary(op, &sb);
    }
    // MIN / −1 traps on x86; its wrapped result equals MIN / 1 (and MIN mod 1 = 0).
    let min = int_scalar(int_range(d).0, d)?;
    let overflow =
        a.binary(B::Equal, &min)?.binary(B::LogicalAnd, &b.binary(B::Equal, &int_scalar(-1, d)?)?)?;
    sb = Array::where_(&overflow, &one, &sb)?;
    let r = a.binary(B::Remainder, &sb)?;
    if !div {
        return Ok(r);
    }
    // floor(a / b) + 1 when the quotient is negative and inexact.
    let q = a.binary(B::FloorDivide, &sb)?;
    let inexact = r.binary(B::NotEqual, &zero)?;
    let negative = a.binary(B::Less, &zero)?.binary(B::NotEqual, &sb.binary(B::Less, &zero)?)?;
    let fix = inexact.binary(B::LogicalAnd, &negative)?.astype(d)?;
    q.binary(B::Add, &fix)
}

/// Conversion to `to`; floats to integers truncate and saturate (NaN → 0).
pub(crate) fn cast(x: &Array, to: DType) -> Result<Array> {
    let from = x.dtype()?;
    if from == to {
        return Ok(x.clone());
    }
    if !(from.is_float() && to.is_int()) {
        return x.astype(to);
    }
    let (lo, hi) = int_range(to);
    // Compare in f32 (exact for f16/bf16) or f64; the bounds are powers of two or round to
    // the integer bound itself, so the comparisons are exact where it matters.
    let xf = if from == DType::F64 { x.clone() } else { x.astype(DType::F32)? };
    let fd = xf.dtype()?;
    let too_big = xf.binary(B::GreaterEqual, &Array::scalar(hi as f64 + 1.0, fd)?)?;
    let too_small = xf.binary(B::LessEqual, &Array::scalar(lo as f64 - 1.0, fd)?)?;
    let nan = xf.unary(U::IsNan)?;
    let r = x.astype(to)?;
    let r = Array::where_(&too_big, &int_scalar(hi, to)?, &r)?;
    let r = Array::where_(&too_small, &int_scalar(lo, to)?, &r)?;
    Array::where_(&nan, &int_scalar(0, to)?, &r)
}

fn reduce(op: ReduceOp, axes: &[i64], keepdims: bool, x: &Array) -> Result<Array> {
    let axes: Vec<i32> =
        reduced_axes(axes, x.ndim()).map_err(MlxError::Mismatch)?.into_iter().map(|a| a as i32).collect();
    let d = x.dtype()?;
    let half = matches!(d, DType::F16 | DType::BF16);
    let r = match op {
        ReduceOp::Max => return x.reduce(R::Max, &axes, keepdims),
        ReduceOp::Min => return x.reduce(R::Min, &axes, keepdims),
        ReduceOp::Sum => R::Sum,
        ReduceOp::Prod => R::Prod,
        ReduceOp::Mean if d.is_int() => {
            let shape = x.shape();
            let count: usize = axes.iter().map(|&a| shape[a as usize]).product();
            if count == 0 {
                return Err(MlxError::Check("integer mean over an empty axis".into()));
            }
            let sum = x.astype(DType::I64)?.reduce(R::Sum, &axes, keepdims)?;
            let mut none = Checks::default();
            let mean = int_div_mod(true, &sum, &int_scalar(count as i64, DType::I64)?, &mut none)?;
            return mean.astype(d);
        }
        ReduceOp::Mean => R::Mean,
    };
    if half {
        x.astype(DType::F32)?.reduce(r, &axes, keepdims)?.astype(d)
    } else {
        // Small integers come back widened (i8 → i32, u8 → u32); wrapping back is exact.
        x.reduce(r, &axes, keepdims)?.astype(d)
    }
}

fn matmul(a: &Array, b: &Array) -> Result<Array> {
    let d = a.dtype()?;
    if !d.is_int() {
        return a.matmul(b);
    }
    // [.., M, K, 1] · [.., 1, K, N] summed over K, with NumPy's promotion of 1-D operands.
    let (a2, drop_m) = if a.ndim() == 1 { (a.expand_dims(&[0])?, true) } else { (a.clone(), false) };
    let (b2, drop_n) = if b.ndim() == 1 { (b.expand_dims(&[1])?, true) } else { (b.clone(), false) };
    let p = a2.expand_dims(&[-1])?.binary(B::Mul, &b2.expand_dims(&[-3])?)?;
    let mut r = p.reduce(R::Sum, &[-2], false)?;
    if drop_m {
        r = r.squeeze(&[-2])?;
    }
    if drop_n {
        r = r.squeeze(&[-1])?;
    }
    r.astype(d)
}

fn slice(x: &Array, spec: &SliceSpec, bindings: &Bindings) -> Result<Array> {
    let shape = x.shape();
    let rank = shape.len();
    let mut start = vec![0i32; rank];
    let mut stop: Vec<i32> = shape
        .iter()
        .map(|&n| i32::try_from(n).map_err(|_| MlxError::Binding(format!("dim {n} exceeds i32"))))
        .collect::<Result<_>>()?;
    let mut strides = vec![1i32; rank];
    let bound = |b: &Bound| -> Result<i64> {
        match b {
            Bound::Const(v) => Ok(*v),
            Bound::Dim(d) => Ok(eval_dim(d, bindings)? as i64),
        }
    };
    for i in 0..spec.axes.len() {
        let a = axis_of(spec.axes[i], rank)? as usize;
        let n = shape[a];
        let step = spec.steps[i];
        if step == 0 {
            return Err(MlxError::Mismatch("slice step is 0".into()));
        }
        let (s, e) = clamp_slice(n, bound(&spec.starts[i])?, bound(&spec.ends[i])?, step);
        start[a] = s as i32;
        // MLX reads a negative stop as counted from the end: "before index 0" is −n−1.
        stop[a] = if step < 0 && e < 0 { -(n as i32) - 1 } else { e as i32 };
        // A step longer than the axis takes one element, as does the axis' length.
        let m = n.max(1) as i64;
        strides[a] = step.clamp(-m, m) as i32;
    }
    x.slice(&start, &stop, &strides)
}

fn split(x: &Array, axis: i64, sizes: &[Dim], bindings: &Bindings) -> Result<Vec<Array>> {
    let axis = axis_of(axis, x.ndim())?;
    let sizes = eval_dims(sizes, bindings)?;
    let mut at = 0i32;
    let mut indices = Vec::with_capacity(sizes.len().saturating_sub(1));
    for s in &sizes[..sizes.len().saturating_sub(1)] {
        at += s;
        indices.push(at);
    }
    let parts = x.split(&indices, axis)?;
    // `split` into zero parts is not an op; one size gives the whole axis.
    Ok(parts.into_iter().take(sizes.len()).collect())
}

fn gather(data: &Array, idx: &Array, axis: i64, checks: &mut Checks) -> Result<Array> {
    let a = axis_of(axis, data.ndim())?;
    let n = data.shape()[a as usize];
    if n == 0 && idx.size() > 0 {
        return Err(MlxError::Check(format!("gather: indices into axis {a} of size 0")));
    }
    let n64 = int_scalar(n as i64, DType::I64)?;
    let zero = int_scalar(0, DType::I64)?;
    let i = idx.astype(DType::I64)?;
    let i = Array::where_(&i.binary(B::Less, &zero)?, &i.binary(B::Add, &n64)?, &i)?;
    let bad = i.binary(B::Less, &zero)?.binary(B::LogicalOr, &i.binary(B::GreaterEqual, &n64)?)?;
    checks.any(&bad, format!("gather: an index is out of range for axis {a} of size {n}"))?;
    let last = int_scalar(n.saturating_sub(1) as i64, DType::I64)?;
    let i = i.binary(B::Maximum, &zero)?.binary(B::Minimum, &last)?.astype(DType::I32)?;
    data.take(&i, a)
}

fn slice_update(
    data: &Array,
    update: &Array,
    start: &Array,
    axis: i64,
    checks: &mut Checks,
) -> Result<Array> {
    let a = axis_of(axis, data.ndim())?;
    let (len, n) = (data.shape()[a as usize], update.shape()[a as usize]);
    if start.size() != 1 || n > len {
        return Err(MlxError::Mismatch(format!(
            "slice_update: {} start value(s), an update of {n} into {len} along axis {a}",
            start.size()
        )));
    }
    let s = start.astype(DType::I64)?;
    let (zero, last) = (int_scalar(0, DType::I64)?, int_scalar((len - n) as i64, DType::I64)?);
    let bad = s.binary(B::Less, &zero)?.binary(B::LogicalOr, &s.binary(B::Greater, &last)?)?;
    checks.any(
        &bad,
        format!("slice_update: the start leaves no room for {n} of {len} entries along axis {a}"),
    )?;
    let s = s.binary(B::Maximum, &zero)?.binary(B::Minimum, &last)?;
    data.slice_update(update, &s, a)
}

fn range(start: f64, step: f64, len: usize, dtype: DType) -> Result<Array> {
    if step == 0.0 {
        return Err(MlxError::Mismatch("range step is 0".into()));
    }
    if dtype.is_int() && start.fract() == 0.0 && step.fract() == 0.0 {
        let (s, d) = (start as i64, step as i64);
        let v: Vec<i64> = (0..len as i64).map(|i| s.wrapping_add(d.wrapping_mul(i))).collect();
        return Array::from_host(&HostTensor::from_i64(vec![len], &v))?.astype(dtype);
    }
    let v: Vec<f64> = (0..len).map(|i| start + step * i as f64).collect();
    Array::from_host(&HostTensor::from_f64(dtype, vec![len], &v))
}
