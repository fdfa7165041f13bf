//! Scale extraction: a value written as `c₁ · c₂ · … · x` (or `x / c`) with scalar constants
//! `cᵢ` is `x` times one factor. Attention exporters put the softmax scale after the score
//! product, on q, on k (before or after its transpose), split as `√scale` on both, or divide
//! by `√D`; the `sdpa` rule multiplies the factors it peels off each side into one scale.

use blockfuse_ir::{BinaryOp, Graph, NodeId, Op, UnaryOp, Value};

/// How many scalings the analysis follows before it stops.
const MAX_STEPS: usize = 8;

/// `value = factor · base`, where the multiplications `nodes` were peeled off.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaled {
    /// The unscaled value.
    pub base: Value,
    /// The product of the scalar factors (1 when there was none).
    pub factor: f64,
    /// The `mul`/`div` nodes between `base` and the value, outermost first.
    pub nodes: Vec<NodeId>,
}

/// The single finite element of a constant (`c`, `[c]`, `[[c]]`, …), or of the reciprocal
/// of one.
fn scalar_constant(g: &Graph, v: Value) -> Option<f64> {
    let n = g.node(v.node);
    match &n.op {
        Op::Constant(t) if t.len() == 1 => Some(t.get_f64(0)).filter(|c| c.is_finite()),
        Op::Unary(UnaryOp::Reciprocal) => {
            let c = scalar_constant(g, n.operands[0])?;
            (c != 0.0).then(|| 1.0 / c).filter(|r| r.is_finite())
        }
        _ => None,
    }
}

/// One step: `v = c · x`, `x · c` or `x / c` with a scalar constant `c` that does not change
/// x's type (no broadcasting to a larger shape, no dtype change).
fn peel_once(g: &Graph, v: Value) -> Option<(Value, f64)> {
    let n = g.node(v.node);
    let (x, c) = match &n.op {
        Op::Binary(BinaryOp::Mul) => {
            let (a, b) = (n.operands[0], n.operands[1]);
            match (scalar_constant(g, a), scalar_constant(g, b)) {
                (_, Some(c)) => (a, c),
                (Some(c), None) => (b, c),
                _ => return None,
            }
        }
        Op::Binary(BinaryOp::Div) => {
            let c = scalar_constant(g, n.operands[1])?;
            (n.operands[0], (c != 0.0).then(|| 1.0 / c)?)
        }
        _ => return None,
    };
    (g.value_type(x) == g.value_type(v)).then_some((x, c))
}

/// Peels every scalar scaling off `v`.
pub fn peel(g: &Graph, v: Value) -> Scaled {
    let mut s = Scaled { base: v, factor: 1.0, nodes: vec![] };
    for _ in 0..MAX_STEPS {
        let Some((x, c)) = peel_once(g, s.base) else { break };
        s.nodes.push(s.base.node);
        s.factor *= c;
        s.base = x;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, DType, TensorType};

    fn graph(f: impl FnOnce(&mut Builder<'_>, Value) -> Value) -> (Graph, Value, Value) {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::known(DType::F32, &[2, 3]));
        let y = f(&mut b, x);
        g.add_output("y", y);
        (g, x, y)
    }

    #[test]
    fn peels_muls_and_divs_in_any_order() {
        let (g, x, y) = graph(|b, x| {
            let c = b.scalar(DType::F32, 0.5);
            let y = b.mul(c, x).unwrap();
            let d = b.scalar(DType::F32, 4.0);
            b.div(y, d).unwrap()
        });
        let s = peel(&g, y);
        assert_eq!(s.base, x);
        assert_eq!(s.factor, 0.125);
        assert_eq!(s.nodes.len(), 2);
    }

    #[test]
    fn reciprocal_of_a_constant_is_a_factor() {
        let (g, x, y) = graph(|b, x| {
            let c = b.scalar(DType::F32, 8.0);
            let r = b.unary(UnaryOp::Reciprocal, c).unwrap();
            b.mul(x, r).unwrap()
        });
        let s = peel(&g, y);
        assert_eq!((s.base, s.factor), (x, 0.125));
    }

    #[test]
    fn stops_at_non_scalar_and_broadcasting_factors() {
        let (g, _, y) = graph(|b, x| {
            let w = b.constant(blockfuse_ir::HostTensor::from_f64(DType::F32, vec![3], &[1.0, 2.0, 3.0]));
            b.mul(x, w).unwrap()
        });
        let s = peel(&g, y);
        assert_eq!((s.base, s.factor), (y, 1.0));
        // A scalar that broadcasts x up to a larger shape is not a scaling of x.
        let (g, _, y) = graph(|b, x| {
            let c = b.constant(blockfuse_ir::HostTensor::from_f64(DType::F32, vec![1, 1, 1], &[2.0]));
            b.mul(x, c).unwrap()
        });
        assert_eq!(peel(&g, y).base, y);
    }

    #[test]
    fn no_factor_is_scale_one() {
        let (g, x, _) = graph(|b, x| b.unary(UnaryOp::Neg, x).unwrap());
        let s = peel(&g, x);
        assert_eq!((s.base, s.factor, s.nodes.len()), (x, 1.0, 0));
    }
}
