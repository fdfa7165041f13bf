//! Constant folding of small tensors (scalars, shape vectors, eps constants): evaluated in
//! f64 and rounded to the result dtype, which is exact for the +, ·, /, √ of f32/f16/bf16.

use blockfuse_ir::{BinaryOp, DType, HostTensor, Op, ReduceOp, TensorType, UnaryOp};

/// Folding is for small constants only; weights are never rewritten.
pub const MAX_FOLD_ELEMENTS: usize = 4096;

/// Evaluates `op` on constant operands, when it is a foldable op and the result is small.
pub fn fold(op: &Op, args: &[&HostTensor], out: &TensorType) -> Option<HostTensor> {
    let dims = out.known_dims()?;
    let n: usize = dims.iter().product();
    if n > MAX_FOLD_ELEMENTS {
        return None;
    }
    let values: Vec<f64> = match op {
        Op::Unary(u) => {
            let a = broadcast(args[0], &dims)?;
            a.iter().map(|&x| unary(*u, x)).collect::<Option<_>>()?
        }
        Op::Binary(b) => {
            let int = args[0].dtype().is_int();
            let (a, c) = (broadcast(args[0], &dims)?, broadcast(args[1], &dims)?);
            a.iter().zip(&c).map(|(&x, &y)| binary(*b, x, y, int)).collect::<Option<_>>()?
        }
        Op::Where => {
            let (c, a, b) =
                (broadcast(args[0], &dims)?, broadcast(args[1], &dims)?, broadcast(args[2], &dims)?);
            c.iter().zip(a.iter().zip(&b)).map(|(&c, (&a, &b))| if c != 0.0 { a } else { b }).collect()
        }
        Op::Cast(_) | Op::Reshape { .. } | Op::Expand { .. } => {
            if matches!(op, Op::Cast(_)) && args[0].dtype() == DType::I64 && out.dtype.is_int() {
                return args[0].cast(out.dtype).reshaped(dims).ok();
            }
            let src = if matches!(op, Op::Expand { .. }) {
                broadcast(args[0], &dims)?
            } else {
                args[0].to_f64_vec()
            };
            if matches!(op, Op::Cast(_)) && out.dtype.is_int() {
                src.iter().map(|v| v.trunc()).collect()
            } else {
                src
            }
        }
        Op::Reduce { op: r @ (ReduceOp::Max | ReduceOp::Min), axes, .. } => {
            reduce_extremum(*r, args[0], axes)?
        }
        Op::Range { start, step, .. } => (0..n).map(|i| start + step * i as f64).collect(),
        Op::Full { value, .. } => vec![*value; n],
        _ => return None,
    };
    if values.len() != n {
        return None;
    }
    Some(HostTensor::from_f64(out.dtype, dims, &values))
}

/// `reduce_max`/`reduce_min` of a constant (exact in every dtype), in the row-major order of
/// the result (kept axes are size 1, so keepdims does not change it); not when a NaN is
/// reduced (max/min propagation of NaN is the backend's choice).
fn reduce_extremum(r: ReduceOp, t: &HostTensor, axes: &[i64]) -> Option<Vec<f64>> {
    let dims = t.dims();
    let reduced = blockfuse_ir::infer::reduced_axes(axes, dims.len()).ok()?;
    let src = t.to_f64_vec();
    if src.is_empty() || src.iter().any(|v| v.is_nan()) {
        return None;
    }
    let out_dims: Vec<usize> =
        dims.iter().enumerate().map(|(i, &d)| if reduced.contains(&i) { 1 } else { d }).collect();
    let n: usize = out_dims.iter().product();
    let init = if r == ReduceOp::Max { f64::NEG_INFINITY } else { f64::INFINITY };
    let mut out = vec![init; n];
    let mut idx = vec![0usize; dims.len()];
    for &v in &src {
        let o = idx.iter().zip(&out_dims).fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i });
        out[o] = if r == ReduceOp::Max { out[o].max(v) } else { out[o].min(v) };
        for ax in (0..dims.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < dims[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Some(out)
}

/// The values of `t` broadcast (numpy rules) to `dims`.
fn broadcast(t: &HostTensor, dims: &[usize]) -> Option<Vec<f64>> {
    let src = t.to_f64_vec();
    let (rank, sr) = (dims.len(), t.dims().len());
    if sr > rank {
        return None;
    }
    let sd: Vec<usize> = std::iter::repeat_n(1, rank - sr).chain(t.dims().iter().copied()).collect();
    let mut strides = vec![0usize; rank];
    let mut acc = 1;
    for i in (0..rank).rev() {
        if sd[i] != 1 && sd[i] != dims[i] {
            return None;
        }
        strides[i] = if sd[i] == 1 { 0 } else { acc };
        acc *= sd[i];
    }
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        out.push(src[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < dims[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Some(out)
}

fn unary(u: UnaryOp, x: f64) -> Option<f64> {
    use UnaryOp::*;
    Some(match u {
        Neg => -x,
        Abs => x.abs(),
        Sqrt => x.sqrt(),
        Rsqrt => 1.0 / x.sqrt(),
        Reciprocal => 1.0 / x,
        Square => x * x,
        Exp => x.exp(),
        Log => x.ln(),
        Tanh => x.tanh(),
        Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Sin => x.sin(),
        Cos => x.cos(),
        Relu => x.max(0.0),
        Floor => x.floor(),
        Ceil => x.ceil(),
        Not => (x == 0.0) as u8 as f64,
        IsNan => x.is_nan() as u8 as f64,
        Erf => return None,
    })
}

fn binary(b: BinaryOp, x: f64, y: f64, int: bool) -> Option<f64> {
    use BinaryOp::*;
    let t = |c: bool| c as u8 as f64;
    Some(match b {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div if int => {
            if y == 0.0 {
                return None;
            }
            (x / y).trunc()
        }
        Div => x / y,
        Pow => x.powf(y),
        Max => x.max(y),
        Min => x.min(y),
        Mod => {
            if int && y == 0.0 {
                return None;
            }
            x - y * (x / y).floor()
        }
        Equal => t(x == y),
        Less => t(x < y),
        LessEqual => t(x <= y),
        Greater => t(x > y),
        GreaterEqual => t(x >= y),
        And => t(x != 0.0 && y != 0.0),
        Or => t(x != 0.0 || y != 0.0),
        Xor => t((x != 0.0) != (y != 0.0)),
    })
}
