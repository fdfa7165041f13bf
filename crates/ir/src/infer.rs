//! Shape and dtype inference for every primitive op.

use crate::dtype::DType;
use crate::op::{BinaryOp, Bound, Op, ReduceOp, SliceSpec, UnaryOp};
use crate::shape::{broadcast_shapes, join_dims, normalize_axis, Dim, Shape, TensorType};

type R = Result<Vec<TensorType>, String>;

/// Output types of a primitive op given its operand types (operand count already checked).
pub(crate) fn infer_op(op: &Op, x: &[&TensorType]) -> R {
    let one = |t: TensorType| Ok(vec![t]);
    match op {
        Op::Input => Err("an input takes its type from the graph, not from inference".into()),
        Op::Constant(t) => one(TensorType::known(t.dtype(), t.dims())),
        Op::SymConst(v) => one(TensorType::known(DType::I64, &[v.len()])),
        Op::Unary(u) => {
            check_unary(*u, x[0].dtype)?;
            let dtype = if *u == UnaryOp::IsNan { DType::Bool } else { x[0].dtype };
            one(x[0].with_dtype(dtype))
        }
        Op::Binary(b) => binary(*b, x[0], x[1]),
        Op::Where => {
            if x[0].dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", x[0].dtype));
            }
            same_dtype(x[1], x[2])?;
            let s = broadcast_shapes(&x[0].shape, &x[1].shape)?;
            one(TensorType { dtype: x[1].dtype, shape: broadcast_shapes(&s, &x[2].shape)? })
        }
        Op::Cast(d) => one(x[0].with_dtype(*d)),
        Op::Reduce { op, axes, keepdims } => reduce(*op, axes, *keepdims, x[0]),
        Op::Softmax { axis } => {
            float_only("softmax", x[0].dtype)?;
            axis_of(*axis, x[0].rank())?;
            one(x[0].clone())
        }
        Op::MatMul => matmul(x[0], x[1]),
        Op::Transpose { perm } => {
            let mut seen = vec![false; x[0].rank()];
            if perm.len() != x[0].rank()
                || perm.iter().any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!("perm {perm:?} is not a permutation of {} axes", x[0].rank()));
            }
            one(TensorType::new(x[0].dtype, perm.iter().map(|&p| x[0].shape[p].clone())))
        }
        Op::Reshape { shape } => {
            let target = TensorType::new(x[0].dtype, shape.iter().cloned());
            if target.numel() != x[0].numel() {
                return Err(format!(
                    "cannot reshape [{}] ({} elements) to [{}] ({} elements)",
                    join_dims(&x[0].shape),
                    x[0].numel(),
                    join_dims(shape),
                    target.numel()
                ));
            }
            one(target)
        }
        Op::Expand { shape } => {
            one(TensorType { dtype: x[0].dtype, shape: broadcast_shapes(&x[0].shape, shape)? })
        }
        Op::Slice(spec) => slice(spec, x[0]),
        Op::Concat { axis } => concat(*axis, x),
        Op::Split { axis, sizes } => {
            let a = axis_of(*axis, x[0].rank())?;
            let total = sizes.iter().try_fold(Dim::Known(0), |acc, s| acc.add(s));
            if total.as_ref() != Some(&x[0].shape[a]) {
                return Err(format!(
                    "split sizes [{}] do not add up to axis {a} of size {}",
                    join_dims(sizes),
                    x[0].shape[a]
                ));
            }
            Ok(sizes
                .iter()
                .map(|s| {
                    let mut t = x[0].clone();
                    t.shape[a] = s.clone();
                    t
                })
                .collect())
        }
        Op::Gather { axis } => {
            let a = axis_of(*axis, x[0].rank())?;
            if !x[1].dtype.is_int() {
                return Err(format!("indices must be integers, got {}", x[1].dtype));
            }
            let mut shape: Shape = x[0].shape[..a].iter().cloned().collect();
            shape.extend(x[1].shape.iter().cloned());
            shape.extend(x[0].shape[a + 1..].iter().cloned());
            one(TensorType { dtype: x[0].dtype, shape })
        }
        Op::SliceUpdate { axis } => slice_update(*axis, x),
        Op::Range { step, len, dtype, .. } => {
            if *step == 0.0 {
                return Err("range step is 0".into());
            }
            one(TensorType::new(*dtype, [len.clone()]))
        }
        Op::Full { shape, dtype, .. } => one(TensorType::new(*dtype, shape.iter().cloned())),
        Op::Trilu { .. } => {
            if x[0].rank() < 2 {
                return Err(format!("needs at least 2 axes, got {}", x[0].rank()));
            }
            one(x[0].clone())
        }
        Op::Block(_) => unreachable!("blocks infer through the Block trait"),
    }
}

/// `slice_update(data, update, start)`: the data's type, when the update fits along `axis`.
fn slice_update(axis: i64, x: &[&TensorType]) -> R {
    let (data, update, start) = (x[0], x[1], x[2]);
    same_dtype(data, update)?;
    let a = axis_of(axis, data.rank())?;
    if update.rank() != data.rank() {
        return Err(format!("the update has rank {}, the data {}", update.rank(), data.rank()));
    }
    for (i, (u, d)) in update.shape.iter().zip(&data.shape).enumerate() {
        let fits = match (u.known(), d.known()) {
            (Some(u), Some(d)) if i == a => u <= d,
            _ if i == a => true,
            _ => u == d,
        };
        if !fits {
            let rel = if i == a { "longer than" } else { "different from" };
            return Err(format!("update axis {i} ({u}) is {rel} the data's ({d})"));
        }
    }
    if !start.dtype.is_int() || start.numel().known().is_some_and(|n| n != 1) || start.rank() > 1 {
        return Err(format!("the start must be one integer, got {start}"));
    }
    Ok(vec![data.clone()])
}

fn check_unary(u: UnaryOp, d: DType) -> Result<(), String> {
    use UnaryOp::*;
    match u {
        Not if d != DType::Bool => Err(format!("not needs bool, got {d}")),
        Not => Ok(()),
        Neg | Abs | Square | Relu if d == DType::Bool => Err(format!("{} needs numbers, got bool", u.name())),
        Neg | Abs | Square | Relu => Ok(()),
        _ => float_only(u.name(), d),
    }
}

fn float_only(what: &str, d: DType) -> Result<(), String> {
    if d.is_float() {
        Ok(())
    } else {
        Err(format!("{what} needs a float type, got {d}"))
    }
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype))
    }
}

fn axis_of(axis: i64, rank: usize) -> Result<usize, String> {
    normalize_axis(axis, rank).ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))
}

fn binary(b: BinaryOp, x: &TensorType, y: &TensorType) -> R {
    same_dtype(x, y)?;
    if b.is_logical() && x.dtype != DType::Bool {
        return Err(format!("{} needs bool operands, got {}", b.name(), x.dtype));
    }
    if !b.is_logical() && !b.is_comparison() && x.dtype == DType::Bool {
        return Err(format!("{} needs numbers, got bool", b.name()));
    }
    let dtype = if b.is_comparison() { DType::Bool } else { x.dtype };
    Ok(vec![TensorType { dtype, shape: broadcast_shapes(&x.shape, &y.shape)? }])
}

/// The reduced axes of a rank-`rank` tensor, sorted and normalized (empty `axes` = all).
pub fn reduced_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = axes.iter().map(|&a| axis_of(a, rank)).collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(out)
}

fn reduce(op: ReduceOp, axes: &[i64], keepdims: bool, x: &TensorType) -> R {
    if x.dtype == DType::Bool {
        return Err(format!("{} needs numbers, got bool", op.name()));
    }
    let axes = reduced_axes(axes, x.rank())?;
    let mut shape = Shape::new();
    for (i, d) in x.shape.iter().enumerate() {
        if !axes.contains(&i) {
            shape.push(d.clone());
        } else if keepdims {
            shape.push(Dim::Known(1));
        }
    }
    Ok(vec![TensorType { dtype: x.dtype, shape }])
}

fn matmul(a: &TensorType, b: &TensorType) -> R {
    same_dtype(a, b)?;
    if a.dtype == DType::Bool {
        return Err("matmul needs numbers, got bool".into());
    }
    if a.rank() == 0 || b.rank() == 0 {
        return Err("matmul operands need at least 1 axis".into());
    }
    let (ak, bk) = (&a.shape[a.rank() - 1], &b.shape[b.rank().saturating_sub(2)]);
    if ak != bk {
        return Err(format!(
            "contracted dims differ: [{}] @ [{}] ({ak} vs {bk})",
            join_dims(&a.shape),
            join_dims(&b.shape)
        ));
    }
    let a_batch = &a.shape[..a.rank().saturating_sub(2)];
    let b_batch = &b.shape[..b.rank().saturating_sub(2)];
    let mut shape = broadcast_shapes(a_batch, b_batch)?;
    if a.rank() >= 2 {
        shape.push(a.shape[a.rank() - 2].clone());
    }
    if b.rank() >= 2 {
        shape.push(b.shape[b.rank() - 1].clone());
    }
    Ok(vec![TensorType { dtype: a.dtype, shape }])
}

/// The length of `start:end:step` over an axis of size `dim`, when expressible.
pub fn slice_len(dim: &Dim, start: &Bound, end: &Bound, step: i64) -> Result<Dim, String> {
    if step == 0 {
        return Err("slice step is 0".into());
    }
    if let Some(n) = dim.known() {
        let (Bound::Const(s), Bound::Const(e)) = (start, end) else {
            return Err(format!("symbolic slice bound on an axis of known size {n}"));
        };
        return Ok(Dim::Known(const_slice_len(n, *s, *e, step)));
    }
    match (start, end, step) {
        (Bound::Const(0), Bound::Const(e), 1) if *e >= i64::MAX / 2 => Ok(dim.clone()),
        (Bound::Const(0), Bound::Dim(e), 1) if e == dim => Ok(dim.clone()),
        (Bound::Const(0), Bound::Dim(e), 1) => Ok(e.clone()),
        _ => Err(format!("slice {start:?}:{end:?}:{step} of a symbolic axis ({dim}) has no symbolic length")),
    }
}

/// Numpy slice length for a known axis size (bounds clamped, negatives from the end).
pub fn const_slice_len(n: usize, start: i64, end: i64, step: i64) -> usize {
    let (s, e) = clamp_slice(n, start, end, step);
    if step > 0 {
        ((e - s).max(0) as usize).div_ceil(step as usize)
    } else {
        ((s - e).max(0) as usize).div_ceil((-step) as usize)
    }
}

/// Clamped `(start, end)` of a slice over `n` elements, numpy/ONNX rules.
pub fn clamp_slice(n: usize, start: i64, end: i64, step: i64) -> (i64, i64) {
    let n = n as i64;
    let fix = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v.saturating_add(n) } else { v };
        v.clamp(lo, hi)
    };
    if step > 0 {
        (fix(start, 0, n), fix(end, 0, n))
    } else if n == 0 {
        // An empty axis walked backward is empty (`clamp(0, -1)` would panic).
        (-1, -1)
    } else {
        (fix(start, 0, n - 1), fix(end, -1, n - 1))
    }
}

fn slice(spec: &SliceSpec, x: &TensorType) -> R {
    let k = spec.axes.len();
    if spec.starts.len() != k || spec.ends.len() != k || spec.steps.len() != k {
        return Err("slice axes, starts, ends and steps differ in length".into());
    }
    let mut t = x.clone();
    for i in 0..k {
        let a = axis_of(spec.axes[i], x.rank())?;
        t.shape[a] = slice_len(&x.shape[a], &spec.starts[i], &spec.ends[i], spec.steps[i])?;
    }
    Ok(vec![t])
}

fn concat(axis: i64, x: &[&TensorType]) -> R {
    let first = x[0];
    let a = axis_of(axis, first.rank())?;
    let mut total = Dim::Known(0);
    for (i, t) in x.iter().enumerate() {
        same_dtype(first, t)?;
        if t.rank() != first.rank() {
            return Err(format!("operand {i} has rank {}, operand 0 has {}", t.rank(), first.rank()));
        }
        for (j, (d, e)) in t.shape.iter().zip(&first.shape).enumerate() {
            if j != a && d != e {
                return Err(format!("operand {i} has {d} on axis {j}, operand 0 has {e}"));
            }
        }
        total = total
            .add(&t.shape[a])
            .ok_or_else(|| format!("the concatenated axis {a} is longer than usize::MAX"))?;
    }
    let mut out = first.clone();
    out.shape[a] = total;
    Ok(vec![out])
}
