//! Declarative patterns over the IR: op patterns with captures, wildcards, alternation,
//! commutative operands, optional casts, flattened products, and "expected" sub-patterns
//! whose failure becomes a near-miss reason instead of a silent non-match.

use blockfuse_ir::{BinaryOp, Op, ReduceOp, UnaryOp};
use std::sync::Arc;

/// A predicate on an op.
pub type OpPred = Arc<dyn Fn(&Op) -> bool + Send + Sync>;

/// A pattern matched against a value of the graph.
#[derive(Clone)]
pub enum Pat {
    /// Any value, captured under a name; a name met twice must be the same value.
    Any(&'static str),
    /// A constant node, captured under a name.
    Const(&'static str),
    /// A node whose op satisfies the predicate, with operand patterns.
    Node {
        /// Shown in debugging output.
        label: &'static str,
        /// Which ops match.
        pred: OpPred,
        /// Operand patterns (all operands, in order).
        args: Vec<Pat>,
        /// Also try the two operands swapped.
        commutative: bool,
        /// Capture the node's value under this name.
        capture: Option<&'static str>,
    },
    /// The first alternative that leads to a full match.
    OneOf(Vec<Pat>),
    /// A product `f1 · f2 · ...` in any association and order of binary `mul` nodes.
    Product(Vec<Pat>),
    /// A sub-pattern that must match; if it does not, the match goes on and ends as a
    /// near-miss with this reason.
    Expect(Box<Pat>, &'static str),
    /// A sub-pattern whose value must also satisfy a predicate.
    Guard(Box<Pat>, ValuePred),
}

/// A predicate on a value of the graph.
pub type ValuePred = Arc<dyn Fn(&blockfuse_ir::Graph, blockfuse_ir::Value) -> bool + Send + Sync>;

/// `pat`, when its value also satisfies `pred`.
pub fn guard(
    pat: Pat,
    pred: impl Fn(&blockfuse_ir::Graph, blockfuse_ir::Value) -> bool + Send + Sync + 'static,
) -> Pat {
    Pat::Guard(Box::new(pat), Arc::new(pred))
}

/// A cast to any dtype.
pub fn cast(x: Pat) -> Pat {
    node("cast", |o| matches!(o, Op::Cast(_)), vec![x])
}

/// Any value, captured as `name`.
pub fn any(name: &'static str) -> Pat {
    Pat::Any(name)
}

/// A constant, captured as `name`.
pub fn constant(name: &'static str) -> Pat {
    Pat::Const(name)
}

/// A node of an op satisfying `pred`.
pub fn node(label: &'static str, pred: impl Fn(&Op) -> bool + Send + Sync + 'static, args: Vec<Pat>) -> Pat {
    Pat::Node { label, pred: Arc::new(pred), args, commutative: false, capture: None }
}

/// An elementwise unary op.
pub fn unary(op: UnaryOp, x: Pat) -> Pat {
    node(op.name(), move |o| matches!(o, Op::Unary(u) if *u == op), vec![x])
}

/// An elementwise binary op, operands in this order.
pub fn binary(op: BinaryOp, a: Pat, b: Pat) -> Pat {
    node(op.name(), move |o| matches!(o, Op::Binary(x) if *x == op), vec![a, b])
}

/// An elementwise binary op in either operand order.
pub fn commutative(op: BinaryOp, a: Pat, b: Pat) -> Pat {
    match binary(op, a, b) {
        Pat::Node { label, pred, args, capture, .. } => {
            Pat::Node { label, pred, args, commutative: true, capture }
        }
        _ => unreachable!(),
    }
}

/// `a + b` in either order.
pub fn add(a: Pat, b: Pat) -> Pat {
    commutative(BinaryOp::Add, a, b)
}

/// `a · b` in either order.
pub fn mul(a: Pat, b: Pat) -> Pat {
    commutative(BinaryOp::Mul, a, b)
}

/// A reduction of any axes (checks inspect the captured node's axes).
pub fn reduce(op: ReduceOp, x: Pat) -> Pat {
    node(op.name(), move |o| matches!(o, Op::Reduce { op: r, .. } if *r == op), vec![x])
}

/// `pat` or `cast(pat)` to any dtype.
pub fn opt_cast(pat: Pat) -> Pat {
    Pat::OneOf(vec![cast(pat.clone()), pat])
}

/// `wrapped` or `bare`: an optional wrapper around a sub-pattern.
pub fn either(wrapped: Pat, bare: Pat) -> Pat {
    Pat::OneOf(vec![wrapped, bare])
}

/// The flattened product of the factors, in any order and association.
pub fn product(factors: Vec<Pat>) -> Pat {
    Pat::Product(factors)
}

/// `pat`, or a near-miss with `reason` when it does not match.
pub fn expect(pat: Pat, reason: &'static str) -> Pat {
    Pat::Expect(Box::new(pat), reason)
}

impl Pat {
    /// Captures the value this pattern matched under `name` (node patterns only).
    pub fn named(self, name: &'static str) -> Pat {
        match self {
            Pat::Node { label, pred, args, commutative, .. } => {
                Pat::Node { label, pred, args, commutative, capture: Some(name) }
            }
            other => other,
        }
    }

    /// The predicate of the root op, used to find anchor nodes quickly.
    pub fn anchor(&self) -> Option<OpPred> {
        match self {
            Pat::Node { pred, .. } => Some(pred.clone()),
            Pat::Product(_) => Some(Arc::new(|o| matches!(o, Op::Binary(BinaryOp::Mul)))),
            Pat::Guard(p, _) | Pat::Expect(p, _) => p.anchor(),
            Pat::OneOf(alts) => {
                let preds: Vec<OpPred> = alts.iter().map(Pat::anchor).collect::<Option<_>>()?;
                Some(Arc::new(move |o| preds.iter().any(|p| p(o))))
            }
            _ => None,
        }
    }
}
