//! Sign facts for canonicalization: values that are provably NaN or at least +0.
//!
//! `pow(x, 0.5)` is `sqrt(x)` and `pow(x, −0.5)` is `rsqrt(x)` except at x = −∞ (the power
//! is +∞ / +0, the root NaN) and at x = −0 (`pow(−0, −0.5)` is +∞, `rsqrt(−0)` −∞), so the
//! rewrite needs a base that can be neither: every norm's `mean(x²) + ε` is one.

use super::uniform_scalar;
use blockfuse_ir::{BinaryOp, Graph, Op, ReduceOp, UnaryOp, Value};

/// How many producers deep the proof looks.
const MAX_DEPTH: usize = 8;

/// True when every element of `v` is provably NaN or ≥ +0 (+∞ included; never −0, −∞ or any
/// negative number): constants of such elements, squares (`x²`, also as `pow(x, 2)`),
/// absolute values, exponentials, sigmoids and softmaxes of anything, and square roots, sums,
/// means, maxima and products of such values.
pub fn nonnegative(g: &Graph, v: Value) -> bool {
    nonnegative_at(g, v, MAX_DEPTH)
}

fn nonnegative_at(g: &Graph, v: Value, depth: usize) -> bool {
    let n = g.node(v.node);
    if let Some(t) = n.op.as_constant() {
        return (0..t.len()).all(|i| {
            let x = t.get_f64(i);
            x.is_nan() || (x >= 0.0 && x.is_sign_positive())
        });
    }
    let Some(depth) = depth.checked_sub(1) else { return false };
    let operands = || n.operands.iter().all(|&o| nonnegative_at(g, o, depth));
    match &n.op {
        Op::Unary(UnaryOp::Square | UnaryOp::Abs | UnaryOp::Exp | UnaryOp::Sigmoid) | Op::Softmax { .. } => {
            true
        }
        Op::Unary(UnaryOp::Sqrt)
        | Op::Reduce { op: ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max, .. }
        | Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max) => operands(),
        // x² spelled as a power, before its own rewrite to a square.
        Op::Binary(BinaryOp::Pow) => n.operands.get(1).is_some_and(|&e| uniform_scalar(g, e) == Some(2.0)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, DType, TensorType};

    fn check(f: impl FnOnce(&mut Builder<'_>, Value) -> Value) -> bool {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::known(DType::F32, &[2, 8]));
        let y = f(&mut b, x);
        nonnegative(&g, y)
    }

    #[test]
    fn a_norms_mean_of_squares_plus_eps_is_nonnegative() {
        assert!(check(|b, x| {
            let sq = b.unary(UnaryOp::Square, x).unwrap();
            let m = b.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
            let eps = b.scalar(DType::F32, 1e-6);
            b.binary(BinaryOp::Add, m, eps).unwrap()
        }));
        assert!(check(|b, x| {
            let two = b.scalar(DType::F32, 2.0);
            let p = b.binary(BinaryOp::Pow, x, two).unwrap();
            b.unary(UnaryOp::Sqrt, p).unwrap()
        }));
    }

    #[test]
    fn inputs_differences_and_negative_zero_are_not() {
        assert!(!check(|_, x| x));
        assert!(!check(|b, x| {
            let e = b.unary(UnaryOp::Exp, x).unwrap();
            b.binary(BinaryOp::Sub, e, x).unwrap()
        }));
        // x² · (−0) is −0.
        assert!(!check(|b, x| {
            let sq = b.unary(UnaryOp::Square, x).unwrap();
            let neg_zero = b.scalar(DType::F32, -0.0);
            b.binary(BinaryOp::Mul, sq, neg_zero).unwrap()
        }));
        assert!(!check(|b, x| {
            let sq = b.unary(UnaryOp::Square, x).unwrap();
            b.binary(BinaryOp::Mul, sq, x).unwrap()
        }));
    }
}
