//! Elementwise ops: unary, binary (numpy broadcasting), `where` and casts.
//!
//! Floats compute in their storage type (f32 for f32/f16/bf16, f64 for f64) and f16/bf16
//! results are rounded to their dtype after every op, as ORT and PyTorch do on CPU. Integer
//! results wrap to their dtype; integer `Div` truncates toward zero (ONNX) and `Mod` is
//! floored (the sign of the divisor, like Python's `%`); both fail on a zero divisor.

use crate::strided::{broadcast_dims, broadcast_strides, walk};
use crate::tensor::{float_to_int, round_f64_to, round_slice, wrap_slice, Buf, Tensor};
use blockfuse_ir::{BinaryOp, DType, UnaryOp};
use std::ops::{Add, Div, Mul, Neg, Rem, Sub};
use std::sync::Arc;

/// The float operations the evaluator needs, for f32 and f64.
pub(crate) trait Fl:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Rem<Output = Self>
    + Neg<Output = Self>
    + Default
    + Send
    + Sync
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    const NEG_INFINITY: Self;
    fn is_nan(self) -> bool;
    fn powf(self, e: Self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn abs(self) -> Self;
    fn erf(self) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

macro_rules! fl {
    ($t:ident, $erf:path) => {
        impl Fl for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAN: Self = $t::NAN;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            #[inline]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline]
            fn powf(self, e: Self) -> Self {
                $t::powf(self, e)
            }
            #[inline]
            fn floor(self) -> Self {
                $t::floor(self)
            }
            #[inline]
            fn ceil(self) -> Self {
                $t::ceil(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            #[inline]
            fn sin(self) -> Self {
                $t::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                $t::cos(self)
            }
            #[inline]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
fl!(f32, libm::erff);
fl!(f64, libm::erf);

/// Applies `f` to every pair of broadcast elements.
fn zip_map<A: Copy, B: Copy, O>(
    x: &[A],
    xd: &[usize],
    y: &[B],
    yd: &[usize],
    out: &[usize],
    mut f: impl FnMut(A, B) -> O,
) -> Vec<O> {
    if xd == out && yd == out {
        return x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect();
    }
    if y.len() == 1 && xd == out {
        let b = y[0];
        return x.iter().map(|&a| f(a, b)).collect();
    }
    if x.len() == 1 && yd == out {
        let a = x[0];
        return y.iter().map(|&b| f(a, b)).collect();
    }
    let sa = broadcast_strides(xd, out);
    let sb = broadcast_strides(yd, out);
    let mut v = Vec::with_capacity(out.iter().product());
    walk(out, [&sa, &sb], [0, 0], |[i, j]| v.push(f(x[i], y[j])));
    v
}

#[inline]
fn nan_max<T: Fl>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::NAN
    } else if a >= b {
        a
    } else {
        b
    }
}

#[inline]
fn nan_min<T: Fl>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::NAN
    } else if a <= b {
        a
    } else {
        b
    }
}

#[inline]
fn floored_rem<T: Fl>(a: T, b: T) -> T {
    let r = a % b;
    if r != T::ZERO && ((r < T::ZERO) != (b < T::ZERO)) {
        r + b
    } else {
        r
    }
}

fn compare<T: PartialOrd + Copy>(
    op: BinaryOp,
    x: &[T],
    xd: &[usize],
    y: &[T],
    yd: &[usize],
    out: &[usize],
) -> Buf {
    use BinaryOp::*;
    Buf::Bool(match op {
        Equal => zip_map(x, xd, y, yd, out, |a, b| a == b),
        Less => zip_map(x, xd, y, yd, out, |a, b| a < b),
        LessEqual => zip_map(x, xd, y, yd, out, |a, b| a <= b),
        Greater => zip_map(x, xd, y, yd, out, |a, b| a > b),
        GreaterEqual => zip_map(x, xd, y, yd, out, |a, b| a >= b),
        _ => unreachable!("not a comparison"),
    })
}

/// The left operand of a float op: its data, owned when nothing else reads it (the result
/// is then written over it when the shapes allow).
enum Lhs<'a, T> {
    Owned(Vec<T>),
    Shared(&'a [T]),
}

/// [`zip_map`], in place over an owned left operand that already has the output shape.
fn zip_lhs<T: Copy>(
    x: Lhs<'_, T>,
    xd: &[usize],
    y: &[T],
    yd: &[usize],
    out: &[usize],
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    match x {
        Lhs::Owned(mut v) if xd == out => {
            if yd == out {
                v.iter_mut().zip(y).for_each(|(a, &b)| *a = f(*a, b));
            } else if y.len() == 1 {
                let b = y[0];
                v.iter_mut().for_each(|a| *a = f(*a, b));
            } else {
                let sb = broadcast_strides(yd, out);
                let mut i = 0;
                walk(out, [&sb], [0], |[j]| {
                    v[i] = f(v[i], y[j]);
                    i += 1;
                });
            }
            v
        }
        Lhs::Owned(v) => zip_map(&v, xd, y, yd, out, f),
        Lhs::Shared(v) => zip_map(v, xd, y, yd, out, f),
    }
}

fn float_binary<T: Fl>(
    op: BinaryOp,
    x: Lhs<'_, T>,
    xd: &[usize],
    y: &[T],
    yd: &[usize],
    out: &[usize],
) -> Result<Vec<T>, String> {
    use BinaryOp::*;
    Ok(match op {
        Add => zip_lhs(x, xd, y, yd, out, |a, b| a + b),
        Sub => zip_lhs(x, xd, y, yd, out, |a, b| a - b),
        Mul => zip_lhs(x, xd, y, yd, out, |a, b| a * b),
        Div => zip_lhs(x, xd, y, yd, out, |a, b| a / b),
        Pow => zip_lhs(x, xd, y, yd, out, |a: T, b| a.powf(b)),
        Max => zip_lhs(x, xd, y, yd, out, nan_max),
        Min => zip_lhs(x, xd, y, yd, out, nan_min),
        Mod => zip_lhs(x, xd, y, yd, out, floored_rem),
        _ => return Err(format!("{} needs bool operands", op.name())),
    })
}

fn int_binary(
    op: BinaryOp,
    x: &[i64],
    xd: &[usize],
    y: &[i64],
    yd: &[usize],
    out: &[usize],
) -> Result<Vec<i64>, String> {
    use BinaryOp::*;
    let mut fault: Option<&'static str> = None;
    let v = match op {
        Add => zip_map(x, xd, y, yd, out, i64::wrapping_add),
        Sub => zip_map(x, xd, y, yd, out, i64::wrapping_sub),
        Mul => zip_map(x, xd, y, yd, out, i64::wrapping_mul),
        Max => zip_map(x, xd, y, yd, out, i64::max),
        Min => zip_map(x, xd, y, yd, out, i64::min),
        Div => zip_map(x, xd, y, yd, out, |a, b| {
            if b == 0 {
                fault = Some("integer division by zero");
                0
            } else {
                a.wrapping_div(b)
            }
        }),
        Mod => zip_map(x, xd, y, yd, out, |a, b| {
            if b == 0 {
                fault = Some("integer modulo by zero");
                0
            } else {
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                }
            }
        }),
        Pow => zip_map(x, xd, y, yd, out, |a, b| {
            if b < 0 {
                fault = Some("integer power with a negative exponent");
                0
            } else {
                a.wrapping_pow(b.min(u32::MAX as i64) as u32)
            }
        }),
        _ => return Err(format!("{} needs bool operands", op.name())),
    };
    match fault {
        Some(f) => Err(f.to_string()),
        None => Ok(v),
    }
}

/// `a op b` with numpy broadcasting (float results are written over `a` when nothing else
/// reads it and it has the output shape).
pub(crate) fn binary(op: BinaryOp, a: Tensor, b: &Tensor) -> Result<Tensor, String> {
    if a.dtype != b.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype));
    }
    let out = broadcast_dims(&a.dims, &b.dims)?;
    let (xd, yd) = (&a.dims[..], &b.dims[..]);
    let dtype = a.dtype;
    if op.is_comparison() {
        let buf = match (&*a.buf, &*b.buf) {
            (Buf::F32(x), Buf::F32(y)) => compare(op, x, xd, y, yd, &out),
            (Buf::F64(x), Buf::F64(y)) => compare(op, x, xd, y, yd, &out),
            (Buf::I64(x), Buf::I64(y)) => compare(op, x, xd, y, yd, &out),
            (Buf::Bool(x), Buf::Bool(y)) => compare(op, x, xd, y, yd, &out),
            _ => unreachable!("same dtype, same storage"),
        };
        return Ok(Tensor::new(DType::Bool, out, buf));
    }
    if matches!(&*a.buf, Buf::F32(_) | Buf::F64(_)) {
        let Tensor { dims: xd, buf, .. } = a;
        let buf = match (Arc::try_unwrap(buf), &*b.buf) {
            (Ok(Buf::F32(x)), Buf::F32(y)) => {
                let mut v = float_binary(op, Lhs::Owned(x), &xd, y, yd, &out)?;
                round_slice(dtype, &mut v);
                Buf::F32(v)
            }
            (Ok(Buf::F64(x)), Buf::F64(y)) => Buf::F64(float_binary(op, Lhs::Owned(x), &xd, y, yd, &out)?),
            (Err(shared), y) => match (&*shared, y) {
                (Buf::F32(x), Buf::F32(y)) => {
                    let mut v = float_binary(op, Lhs::Shared(x), &xd, y, yd, &out)?;
                    round_slice(dtype, &mut v);
                    Buf::F32(v)
                }
                (Buf::F64(x), Buf::F64(y)) => Buf::F64(float_binary(op, Lhs::Shared(x), &xd, y, yd, &out)?),
                _ => unreachable!("same dtype, same storage"),
            },
            _ => unreachable!("same dtype, same storage"),
        };
        return Ok(Tensor::new(dtype, out, buf));
    }
    let buf = match (&*a.buf, &*b.buf) {
        (Buf::I64(x), Buf::I64(y)) => {
            let mut v = int_binary(op, x, xd, y, yd, &out)?;
            wrap_slice(dtype, &mut v);
            Buf::I64(v)
        }
        (Buf::Bool(x), Buf::Bool(y)) => Buf::Bool(match op {
            BinaryOp::And => zip_map(x, xd, y, yd, &out, |a, b| a & b),
            BinaryOp::Or => zip_map(x, xd, y, yd, &out, |a, b| a | b),
            BinaryOp::Xor => zip_map(x, xd, y, yd, &out, |a, b| a ^ b),
            _ => return Err(format!("{} needs numbers, got bool", op.name())),
        }),
        _ => unreachable!("same dtype, same storage"),
    };
    if op.is_logical() && dtype != DType::Bool {
        return Err(format!("{} needs bool operands, got {dtype}", op.name()));
    }
    Ok(Tensor::new(dtype, out, buf))
}

#[inline]
fn sigmoid<T: Fl>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

fn float_unary<T: Fl>(op: UnaryOp, v: &mut [T]) -> Result<(), String> {
    use UnaryOp::*;
    let f: fn(T) -> T = match op {
        Neg => |x| -x,
        Abs => |x: T| x.abs(),
        Sqrt => |x: T| x.sqrt(),
        Rsqrt => |x: T| T::ONE / x.sqrt(),
        Reciprocal => |x| T::ONE / x,
        Square => |x| x * x,
        Exp => |x: T| x.exp(),
        Log => |x: T| x.ln(),
        Erf => |x: T| x.erf(),
        Tanh => |x: T| x.tanh(),
        Sigmoid => sigmoid,
        Sin => |x: T| x.sin(),
        Cos => |x: T| x.cos(),
        Relu => |x| if x < T::ZERO { T::ZERO } else { x },
        Floor => |x: T| x.floor(),
        Ceil => |x: T| x.ceil(),
        Not => return Err("not needs bool, got a float".into()),
        IsNan => unreachable!("is_nan changes the dtype; handled by `unary`"),
    };
    v.iter_mut().for_each(|x| *x = f(*x));
    Ok(())
}

/// An elementwise op of one operand (computed in place when `x` is not shared).
pub(crate) fn unary(op: UnaryOp, x: Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype;
    let dims = x.dims.clone();
    if op == UnaryOp::IsNan {
        let buf = match &*x.buf {
            Buf::F32(v) => Buf::Bool(v.iter().map(|x| x.is_nan()).collect()),
            Buf::F64(v) => Buf::Bool(v.iter().map(|x| x.is_nan()).collect()),
            _ => return Err(format!("is_nan needs a float type, got {dtype}")),
        };
        return Ok(Tensor::new(DType::Bool, dims, buf));
    }
    let buf = match x.into_buf() {
        Buf::F32(mut v) => {
            float_unary(op, &mut v)?;
            round_slice(dtype, &mut v);
            Buf::F32(v)
        }
        Buf::F64(mut v) => {
            float_unary(op, &mut v)?;
            Buf::F64(v)
        }
        Buf::I64(mut v) => {
            let f: fn(i64) -> i64 = match op {
                UnaryOp::Neg => i64::wrapping_neg,
                UnaryOp::Abs => i64::wrapping_abs,
                UnaryOp::Square => |x| x.wrapping_mul(x),
                UnaryOp::Relu => |x| x.max(0),
                _ => return Err(format!("{} needs a float type, got {dtype}", op.name())),
            };
            v.iter_mut().for_each(|x| *x = f(*x));
            wrap_slice(dtype, &mut v);
            Buf::I64(v)
        }
        Buf::Bool(mut v) => {
            if op != UnaryOp::Not {
                return Err(format!("{} needs numbers, got bool", op.name()));
            }
            v.iter_mut().for_each(|x| *x = !*x);
            Buf::Bool(v)
        }
    };
    Ok(Tensor::new(dtype, dims, buf))
}

fn select<T: Copy>(
    c: &[bool],
    cd: &[usize],
    x: &[T],
    xd: &[usize],
    y: &[T],
    yd: &[usize],
    out: &[usize],
) -> Vec<T> {
    let sc = broadcast_strides(cd, out);
    let sa = broadcast_strides(xd, out);
    let sb = broadcast_strides(yd, out);
    let mut v = Vec::with_capacity(out.iter().product());
    walk(out, [&sc, &sa, &sb], [0, 0, 0], |[i, j, k]| v.push(if c[i] { x[j] } else { y[k] }));
    v
}

/// `where(cond, a, b)` with broadcasting.
pub(crate) fn where_(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let Buf::Bool(cv) = &*c.buf else {
        return Err(format!("condition must be bool, got {}", c.dtype));
    };
    if a.dtype != b.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype));
    }
    let out = broadcast_dims(&broadcast_dims(&c.dims, &a.dims)?, &b.dims)?;
    let (cd, xd, yd) = (&c.dims[..], &a.dims[..], &b.dims[..]);
    let buf = match (&*a.buf, &*b.buf) {
        (Buf::F32(x), Buf::F32(y)) => Buf::F32(select(cv, cd, x, xd, y, yd, &out)),
        (Buf::F64(x), Buf::F64(y)) => Buf::F64(select(cv, cd, x, xd, y, yd, &out)),
        (Buf::I64(x), Buf::I64(y)) => Buf::I64(select(cv, cd, x, xd, y, yd, &out)),
        (Buf::Bool(x), Buf::Bool(y)) => Buf::Bool(select(cv, cd, x, xd, y, yd, &out)),
        _ => unreachable!("same dtype, same storage"),
    };
    Ok(Tensor::new(a.dtype, out, buf))
}

/// Conversion to `dtype`: floats round to nearest; floats to integers truncate toward zero
/// and saturate at the integer range (NaN → 0); integers to integers wrap; anything to bool
/// is `!= 0`; bool to numbers is 0 or 1.
pub(crate) fn cast(x: Tensor, dtype: DType) -> Tensor {
    if x.dtype == dtype {
        return x;
    }
    let dims = x.dims.clone();
    let buf = match (x.into_buf(), dtype) {
        (Buf::F32(mut v), DType::F32 | DType::F16 | DType::BF16) => {
            round_slice(dtype, &mut v);
            Buf::F32(v)
        }
        (Buf::F32(v), DType::F64) => Buf::F64(v.iter().map(|&x| x as f64).collect()),
        (Buf::F32(v), DType::Bool) => Buf::Bool(v.iter().map(|&x| x != 0.0).collect()),
        (Buf::F32(v), _) => Buf::I64(v.iter().map(|&x| float_to_int(dtype, x as f64)).collect()),
        (Buf::F64(v), DType::F32 | DType::F16 | DType::BF16) => {
            Buf::F32(v.iter().map(|&x| round_f64_to(dtype, x)).collect())
        }
        (Buf::F64(v), DType::Bool) => Buf::Bool(v.iter().map(|&x| x != 0.0).collect()),
        (Buf::F64(v), DType::F64) => Buf::F64(v),
        (Buf::F64(v), _) => Buf::I64(v.iter().map(|&x| float_to_int(dtype, x)).collect()),
        (Buf::I64(v), DType::F32 | DType::F16 | DType::BF16) => {
            Buf::F32(v.iter().map(|&x| round_f64_to(dtype, x as f64)).collect())
        }
        (Buf::I64(v), DType::F64) => Buf::F64(v.iter().map(|&x| x as f64).collect()),
        (Buf::I64(v), DType::Bool) => Buf::Bool(v.iter().map(|&x| x != 0).collect()),
        (Buf::I64(mut v), _) => {
            wrap_slice(dtype, &mut v);
            Buf::I64(v)
        }
        (Buf::Bool(v), DType::F32 | DType::F16 | DType::BF16) => {
            Buf::F32(v.iter().map(|&x| x as u8 as f32).collect())
        }
        (Buf::Bool(v), DType::F64) => Buf::F64(v.iter().map(|&x| x as u8 as f64).collect()),
        (Buf::Bool(v), DType::Bool) => Buf::Bool(v),
        (Buf::Bool(v), _) => Buf::I64(v.iter().map(|&x| x as i64).collect()),
    };
    Tensor::new(dtype, dims, buf)
}
