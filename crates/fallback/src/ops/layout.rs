//! Ops that move data without arithmetic: transpose, reshape, expand, slice, concat, split,
//! gather and trilu.

use crate::strided::{broadcast_dims, broadcast_strides, contiguous_strides, gather_strided};
use crate::tensor::{dispatch, Elem, Tensor};
use blockfuse_ir::infer::{clamp_slice, const_slice_len};
use blockfuse_ir::shape::normalize_axis;
use std::sync::Arc;

fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    normalize_axis(axis, rank).ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))
}

/// A strided read of `x` as a new contiguous tensor.
fn strided(x: &Tensor, dims: Vec<usize>, strides: &[isize], base: isize) -> Tensor {
    let buf = dispatch!(&*x.buf, T => T::wrap(gather_strided(x.data::<T>(), &dims, strides, base)));
    Tensor::new(x.dtype, dims, buf)
}

/// Axis permutation: `out.dims[i] = x.dims[perm[i]]`.
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let r = x.dims.len();
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
        return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    let own = contiguous_strides(&x.dims);
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| own[p]).collect();
    Ok(strided(x, dims, &strides, 0))
}

/// The same data with other dims (no copy).
pub(crate) fn reshape(x: &Tensor, dims: Vec<usize>) -> Result<Tensor, String> {
    let n: usize = dims.iter().product();
    if n != x.len() {
        return Err(format!("cannot reshape {:?} ({} elements) to {dims:?} ({n} elements)", x.dims, x.len()));
    }
    Ok(Tensor { dtype: x.dtype, dims, buf: Arc::clone(&x.buf) })
}

/// Numpy broadcast of `x` with `shape`.
pub(crate) fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let out = broadcast_dims(&x.dims, shape)?;
    if out == x.dims {
        return Ok(x.clone());
    }
    let s = broadcast_strides(&x.dims, &out);
    Ok(strided(x, out, &s, 0))
}

/// `x[start:end:step]` along each listed axis (bounds already evaluated; clamped like numpy).
pub(crate) fn slice(
    x: &Tensor,
    axes: &[i64],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> Result<Tensor, String> {
    let r = x.dims.len();
    let mut dims = x.dims.clone();
    let mut strides = contiguous_strides(&x.dims);
    let mut base = 0isize;
    let mut done = vec![false; r];
    for i in 0..axes.len() {
        let a = axis(axes[i], r)?;
        if std::mem::replace(&mut done[a], true) {
            return Err(format!("slice names axis {a} twice"));
        }
        let step = steps[i];
        if step == 0 {
            return Err("slice step is 0".into());
        }
        let n = x.dims[a];
        let len = const_slice_len(n, starts[i], ends[i], step);
        let (s, _) = clamp_slice(n, starts[i], ends[i], step);
        if len > 0 {
            base += s as isize * strides[a];
        }
        strides[a] *= step as isize;
        dims[a] = len;
    }
    if dims == x.dims && base == 0 && steps.iter().all(|&s| s == 1) {
        return Ok(x.clone());
    }
    Ok(strided(x, dims, &strides, base))
}

fn concat_typed<T: Elem>(parts: &[&Tensor], outer: usize) -> Vec<T> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for p in parts {
            let chunk = p.len() / outer.max(1);
            out.extend_from_slice(&p.data::<T>()[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// Joins tensors along `axis`.
pub(crate) fn concat(parts: &[&Tensor], ax: i64) -> Result<Tensor, String> {
    let first = parts[0];
    let r = first.dims.len();
    let a = axis(ax, r)?;
    let mut dims = first.dims.clone();
    dims[a] = 0;
    for (i, p) in parts.iter().enumerate() {
        if p.dtype != first.dtype {
            return Err(format!("operand dtypes differ: {} vs {}", first.dtype, p.dtype));
        }
        if p.dims.len() != r || p.dims.iter().zip(&first.dims).enumerate().any(|(j, (d, e))| j != a && d != e)
        {
            return Err(format!(
                "operand {i} has dims {:?}, operand 0 has {:?} (concat axis {a})",
                p.dims, first.dims
            ));
        }
        dims[a] += p.dims[a];
    }
    let outer: usize = first.dims[..a].iter().product();
    let buf = dispatch!(&*first.buf, T => T::wrap(concat_typed::<T>(parts, outer)));
    Ok(Tensor::new(first.dtype, dims, buf))
}

/// Splits along `axis` into parts of the given sizes.
pub(crate) fn split(x: &Tensor, ax: i64, sizes: &[usize]) -> Result<Vec<Tensor>, String> {
    let a = axis(ax, x.dims.len())?;
    if sizes.iter().sum::<usize>() != x.dims[a] {
        return Err(format!("split sizes {sizes:?} do not add up to axis {a} of size {}", x.dims[a]));
    }
    let own = contiguous_strides(&x.dims);
    let mut start = 0usize;
    let mut out = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let mut dims = x.dims.clone();
        dims[a] = s;
        out.push(strided(x, dims, &own, start as isize * own[a]));
        start += s;
    }
    Ok(out)
}

fn slice_update_typed<T: Elem>(data: &[T], update: &[T], outer: usize, n: usize, start: usize) -> Vec<T> {
    let mut out = data.to_vec();
    // Per outer index, the update's `n·inner` block lands at offset `start·inner` of the
    // data's `len·inner` block (`row` and `urow` are those block sizes).
    let urow = update.len() / outer.max(1);
    let row = data.len() / outer.max(1);
    let off = start * urow.checked_div(n).unwrap_or(0);
    for o in 0..outer {
        out[o * row + off..o * row + off + urow].copy_from_slice(&update[o * urow..(o + 1) * urow]);
    }
    out
}

/// `data` with `update` written along `axis` from the run-time index `start` (one integer);
/// a start outside `0 ..= len − n` fails.
pub(crate) fn slice_update(
    data: &Tensor,
    update: &Tensor,
    start: &Tensor,
    ax: i64,
) -> Result<Tensor, String> {
    let r = data.dims.len();
    let a = axis(ax, r)?;
    if update.dtype != data.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", data.dtype, update.dtype));
    }
    if update.dims.len() != r
        || update.dims.iter().zip(&data.dims).enumerate().any(|(i, (u, d))| i != a && u != d)
    {
        return Err(format!(
            "update dims {:?} do not fit data dims {:?} along axis {a}",
            update.dims, data.dims
        ));
    }
    let crate::tensor::Buf::I64(s) = &*start.buf else {
        return Err(format!("the start must be an integer, got {}", start.dtype));
    };
    let [s] = s[..] else {
        return Err(format!("the start must be one integer, got {} values", s.len()));
    };
    let (len, n) = (data.dims[a], update.dims[a]);
    if n > len || s < 0 || s as u64 > (len - n) as u64 {
        return Err(format!("start {s} does not leave room for {n} of {len} entries along axis {a}"));
    }
    let outer: usize = data.dims[..a].iter().product();
    let buf = dispatch!(&*data.buf, T => T::wrap(slice_update_typed::<T>(data.data(), update.data(), outer, n, s as usize)));
    Ok(Tensor::new(data.dtype, data.dims.clone(), buf))
}

fn gather_typed<T: Elem>(data: &[T], idx: &[usize], outer: usize, n: usize, inner: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = (o * n + i) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    out
}

/// `take(data, indices, axis)`; negative indices count from the end, others out of range
/// fail.
pub(crate) fn gather(data: &Tensor, indices: &Tensor, ax: i64) -> Result<Tensor, String> {
    let a = axis(ax, data.dims.len())?;
    let crate::tensor::Buf::I64(raw) = &*indices.buf else {
        return Err(format!("indices must be integers, got {}", indices.dtype));
    };
    let n = data.dims[a];
    let idx = raw
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if (0..n as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!("index {i} is out of range for axis {a} of size {n}"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outer: usize = data.dims[..a].iter().product();
    let inner: usize = data.dims[a + 1..].iter().product();
    let mut dims = data.dims[..a].to_vec();
    dims.extend_from_slice(&indices.dims);
    dims.extend_from_slice(&data.dims[a + 1..]);
    let buf = dispatch!(&*data.buf, T => T::wrap(gather_typed::<T>(data.data::<T>(), &idx, outer, n, inner)));
    Ok(Tensor::new(data.dtype, dims, buf))
}

fn trilu_typed<T: Elem>(v: &mut [T], rows: usize, cols: usize, upper: bool, k: i64) {
    if rows == 0 || cols == 0 {
        return;
    }
    for m in v.chunks_exact_mut(rows * cols) {
        for i in 0..rows {
            for j in 0..cols {
                let d = j as i64 - i as i64;
                let keep = if upper { d >= k } else { d <= k };
                if !keep {
                    m[i * cols + j] = T::default();
                }
            }
        }
    }
}

/// Keeps the lower (`j − i ≤ k`) or upper (`j − i ≥ k`) triangle of the last two axes.
pub(crate) fn trilu(x: Tensor, upper: bool, k: i64) -> Result<Tensor, String> {
    let r = x.dims.len();
    if r < 2 {
        return Err(format!("needs at least 2 axes, got {r}"));
    }
    let (rows, cols) = (x.dims[r - 2], x.dims[r - 1]);
    let (dtype, dims) = (x.dtype, x.dims.clone());
    let mut buf = x.into_buf();
    {
        use crate::tensor::Buf::*;
        match &mut buf {
            F32(v) => trilu_typed(v, rows, cols, upper, k),
            F64(v) => trilu_typed(v, rows, cols, upper, k),
            I64(v) => trilu_typed(v, rows, cols, upper, k),
            Bool(v) => trilu_typed(v, rows, cols, upper, k),
        }
    }
    Ok(Tensor::new(dtype, dims, buf))
}
