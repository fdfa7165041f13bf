//! Evaluation of the primitive ops, one module per family.

pub(crate) mod create;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod reduce;

use crate::tensor::Tensor;
use blockfuse_ir::{Bindings, Bound, Op};
use create::{eval_dim, eval_dims};

fn bound(b: &Bound, bindings: &Bindings) -> Result<i64, String> {
    match b {
        Bound::Const(v) => Ok(*v),
        Bound::Dim(d) => Ok(eval_dim(d, bindings)? as i64),
    }
}

/// Evaluates a primitive op (not an input or a block) on its operands.
pub(crate) fn eval(op: &Op, mut args: Vec<Tensor>, bindings: &Bindings) -> Result<Vec<Tensor>, String> {
    if let Some(n) = op.arity() {
        if args.len() != n {
            return Err(format!("expects {n} operand(s), got {}", args.len()));
        }
    } else if args.is_empty() {
        return Err("expects at least 1 operand, got 0".into());
    }
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Input | Op::Block(_) => Err("inputs and blocks are not primitive ops".into()),
        Op::Constant(t) => one(Tensor::from_host(t)),
        Op::SymConst(dims) => one(create::sym_const(dims, bindings)?),
        Op::Unary(u) => one(elementwise::unary(*u, args.pop().expect("1 operand"))?),
        Op::Binary(b) => {
            let y = args.pop().expect("2 operands");
            let x = args.pop().expect("2 operands");
            one(elementwise::binary(*b, x, &y)?)
        }
        Op::Where => one(elementwise::where_(&args[0], &args[1], &args[2])?),
        Op::Cast(d) => one(elementwise::cast(args.pop().expect("1 operand"), *d)),
        Op::Reduce { op, axes, keepdims } => one(reduce::reduce(*op, &args[0], axes, *keepdims)?),
        Op::Softmax { axis } => one(reduce::softmax(args.pop().expect("1 operand"), *axis)?),
        Op::MatMul => one(matmul::matmul(&args[0], &args[1])?),
        Op::Transpose { perm } => one(layout::transpose(&args[0], perm)?),
        Op::Reshape { shape } => one(layout::reshape(&args[0], eval_dims(shape, bindings)?)?),
        Op::Expand { shape } => one(layout::expand(&args[0], &eval_dims(shape, bindings)?)?),
        Op::Slice(spec) => {
            let k = spec.axes.len();
            if spec.starts.len() != k || spec.ends.len() != k || spec.steps.len() != k {
                return Err("slice axes, starts, ends and steps differ in length".into());
            }
            let starts = spec.starts.iter().map(|b| bound(b, bindings)).collect::<Result<Vec<_>, _>>()?;
            let ends = spec.ends.iter().map(|b| bound(b, bindings)).collect::<Result<Vec<_>, _>>()?;
            one(layout::slice(&args[0], &spec.axes, &starts, &ends, &spec.steps)?)
        }
        Op::Concat { axis } => {
            let parts: Vec<&Tensor> = args.iter().collect();
            one(layout::concat(&parts, *axis)?)
        }
        Op::Split { axis, sizes } => layout::split(&args[0], *axis, &eval_dims(sizes, bindings)?),
        Op::Gather { axis } => one(layout::gather(&args[0], &args[1], *axis)?),
        Op::SliceUpdate { axis } => one(layout::slice_update(&args[0], &args[1], &args[2], *axis)?),
        Op::Range { start, step, len, dtype } => {
            one(create::range(*start, *step, eval_dim(len, bindings)?, *dtype)?)
        }
        Op::Full { shape, value, dtype } => one(create::full(eval_dims(shape, bindings)?, *value, *dtype)),
        Op::Trilu { upper, k } => one(layout::trilu(args.pop().expect("1 operand"), *upper, *k)?),
    }
}
