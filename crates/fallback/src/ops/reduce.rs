//! Reductions and softmax.
//!
//! Float reductions accumulate in f64 (so a sum over thousands of f32 or f16 values keeps
//! full f32 accuracy) and round once to the dtype. Integer sums and products wrap; integer
//! means truncate toward zero. The max (min) of an empty axis is −∞ (+∞) for floats and the
//! dtype's lowest (highest) value for integers; the mean of an empty axis is NaN for floats
//! and an error for integers.

use crate::ops::elementwise::Fl;
use crate::strided::walk;
use crate::tensor::{round_f64_to, wrap_int, Buf, Tensor};
use blockfuse_ir::infer::reduced_axes;
use blockfuse_ir::{DType, ReduceOp};

/// Output dims (reduced axes as 1) and the strides with which each input position lands in
/// the output.
fn plan(dims: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<isize>) {
    let kept: Vec<usize> =
        dims.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let own = crate::strided::contiguous_strides(&kept);
    let strides = (0..dims.len()).map(|i| if axes.contains(&i) { 0 } else { own[i] }).collect();
    (kept, strides)
}

/// Folds every input element into its output slot; `last_only` takes the fast path for a
/// reduction of the last axis alone.
fn fold<T: Copy, A: Copy>(
    x: &[T],
    dims: &[usize],
    axes: &[usize],
    init: A,
    f: impl Fn(A, T) -> A,
) -> (Vec<usize>, Vec<A>) {
    let (kept, strides) = plan(dims, axes);
    let n_out: usize = kept.iter().product();
    let r = dims.len();
    if r > 0 && axes == [r - 1] && dims[r - 1] > 0 {
        let acc = x.chunks_exact(dims[r - 1]).map(|row| row.iter().fold(init, |a, &v| f(a, v))).collect();
        return (kept, acc);
    }
    let mut acc = vec![init; n_out];
    let own = crate::strided::contiguous_strides(dims);
    walk(dims, [&own, &strides], [0, 0], |[i, o]| acc[o] = f(acc[o], x[i]));
    (kept, acc)
}

fn float_reduce<T: Fl>(op: ReduceOp, x: &[T], dims: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    match op {
        ReduceOp::Sum => fold(x, dims, axes, 0.0f64, |a, v| a + v.to_f64()),
        ReduceOp::Mean => {
            let (k, mut v) = fold(x, dims, axes, 0.0f64, |a, v| a + v.to_f64());
            v.iter_mut().for_each(|s| *s /= count as f64);
            (k, v)
        }
        ReduceOp::Prod => fold(x, dims, axes, 1.0f64, |a, v| a * v.to_f64()),
        ReduceOp::Max => fold(x, dims, axes, f64::NEG_INFINITY, |a, v| {
            let v = v.to_f64();
            if a.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                a.max(v)
            }
        }),
        ReduceOp::Min => fold(x, dims, axes, f64::INFINITY, |a, v| {
            let v = v.to_f64();
            if a.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                a.min(v)
            }
        }),
    }
}

fn int_limits(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// A reduction over `axes` (empty = all axes).
pub(crate) fn reduce(op: ReduceOp, x: &Tensor, axes: &[i64], keepdims: bool) -> Result<Tensor, String> {
    let axes = reduced_axes(axes, x.dims.len())?;
    let dtype = x.dtype;
    let (kept, buf) = match &*x.buf {
        Buf::F32(v) => {
            let (k, acc) = float_reduce(op, v, &x.dims, &axes);
            (k, Buf::F32(acc.into_iter().map(|a| round_f64_to(dtype, a)).collect()))
        }
        Buf::F64(v) => {
            let (k, acc) = float_reduce(op, v, &x.dims, &axes);
            (k, Buf::F64(acc))
        }
        Buf::I64(v) => {
            let (lo, hi) = int_limits(dtype);
            let count: usize = axes.iter().map(|&a| x.dims[a]).product();
            let (k, mut acc) = match op {
                ReduceOp::Sum | ReduceOp::Mean => fold(v, &x.dims, &axes, 0i64, i64::wrapping_add),
                ReduceOp::Prod => fold(v, &x.dims, &axes, 1i64, i64::wrapping_mul),
                ReduceOp::Max => fold(v, &x.dims, &axes, lo, i64::max),
                ReduceOp::Min => fold(v, &x.dims, &axes, hi, i64::min),
            };
            if op == ReduceOp::Mean {
                if count == 0 {
                    return Err("integer mean over an empty axis".into());
                }
                acc.iter_mut().for_each(|s| *s /= count as i64);
            }
            acc.iter_mut().for_each(|s| *s = wrap_int(dtype, *s));
            (k, Buf::I64(acc))
        }
        Buf::Bool(_) => return Err(format!("{} needs numbers, got bool", op.name())),
    };
    let dims = if keepdims {
        kept
    } else {
        x.dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
    };
    Ok(Tensor::new(dtype, dims, buf))
}

fn softmax_rows<T: Fl>(v: &mut [T], outer: usize, n: usize, inner: usize) {
    if n == 0 {
        return;
    }
    let mut col = vec![T::ZERO; n];
    for o in 0..outer {
        let block = &mut v[o * n * inner..(o + 1) * n * inner];
        for j in 0..inner {
            let mut m = T::NEG_INFINITY;
            let mut nan = false;
            for (i, c) in col.iter_mut().enumerate() {
                *c = block[i * inner + j];
                nan |= c.is_nan();
                if *c > m {
                    m = *c;
                }
            }
            if nan {
                m = T::NAN;
            }
            let mut sum = 0.0f64;
            for c in col.iter_mut() {
                *c = (*c - m).exp();
                sum += c.to_f64();
            }
            for (i, c) in col.iter().enumerate() {
                block[i * inner + j] = T::from_f64(c.to_f64() / sum);
            }
        }
    }
}

/// Softmax along `axis`, computed in f32 (f64 for f64) with a max shift and an f64 sum, and
/// rounded once to the dtype. A row of −∞ gives NaN, as in numpy and PyTorch.
pub(crate) fn softmax(x: Tensor, axis: i64) -> Result<Tensor, String> {
    let r = x.dims.len();
    let a = blockfuse_ir::shape::normalize_axis(axis, r)
        .ok_or_else(|| format!("axis {axis} is out of range for rank {r}"))?;
    let outer: usize = x.dims[..a].iter().product();
    let n = x.dims[a];
    let inner: usize = x.dims[a + 1..].iter().product();
    let (dtype, dims) = (x.dtype, x.dims.clone());
    let buf = match x.into_buf() {
        Buf::F32(mut v) => {
            softmax_rows(&mut v, outer, n, inner);
            crate::tensor::round_slice(dtype, &mut v);
            Buf::F32(v)
        }
        Buf::F64(mut v) => {
            softmax_rows(&mut v, outer, n, inner);
            Buf::F64(v)
        }
        _ => return Err(format!("softmax needs a float type, got {dtype}")),
    };
    Ok(Tensor::new(dtype, dims, buf))
}
