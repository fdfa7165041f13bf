//! The closed set of primitive ops, plus `Op::Block` for fused blocks.

use crate::block::Block;
use crate::dtype::DType;
use crate::shape::Dim;
use crate::tensor::HostTensor;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Elementwise ops of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `√x`
    Sqrt,
    /// `1/√x`
    Rsqrt,
    /// `1/x`
    Reciprocal,
    /// `x·x` (the canonical square; `pow(x, 2)` and `mul(x, x)` become this)
    Square,
    /// `eˣ`
    Exp,
    /// natural logarithm
    Log,
    /// error function
    Erf,
    /// hyperbolic tangent
    Tanh,
    /// `1/(1+e⁻ˣ)`
    Sigmoid,
    /// sine
    Sin,
    /// cosine
    Cos,
    /// `max(x, 0)`
    Relu,
    /// round toward −∞
    Floor,
    /// round toward +∞
    Ceil,
    /// logical not (bool only)
    Not,
    /// `x != x` → bool (true for NaN)
    IsNan,
}

/// Elementwise ops of two operands, with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a − b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b` (integer division truncates toward zero)
    Div,
    /// `aᵇ`
    Pow,
    /// elementwise maximum
    Max,
    /// elementwise minimum
    Min,
    /// floored remainder (sign of the divisor, like Python's `%`)
    Mod,
    /// `a == b` → bool
    Equal,
    /// `a < b` → bool
    Less,
    /// `a ≤ b` → bool
    LessEqual,
    /// `a > b` → bool
    Greater,
    /// `a ≥ b` → bool
    GreaterEqual,
    /// logical and (bool)
    And,
    /// logical or (bool)
    Or,
    /// logical exclusive or (bool)
    Xor,
}

/// Reductions over a set of axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// arithmetic mean
    Mean,
    /// maximum
    Max,
    /// minimum
    Min,
    /// product
    Prod,
}

/// A slice bound: a constant (negative counts from the end, clamped like numpy) or a
/// symbolic dim known only at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bound {
    /// A constant index; `i64::MAX` means "to the end".
    Const(i64),
    /// A non-negative symbolic index, e.g. `seq`.
    Dim(Dim),
}

/// Slicing along some axes: `x[start:end:step]` per listed axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SliceSpec {
    /// The axis of each range (negative counts from the end).
    pub axes: Vec<i64>,
    /// Start of each range.
    pub starts: Vec<Bound>,
    /// End (exclusive) of each range.
    pub ends: Vec<Bound>,
    /// Step of each range (non-zero; negative walks backward).
    pub steps: Vec<i64>,
}

/// One node's operation.
#[derive(Clone)]
pub enum Op {
    /// A graph input (its name and type live on the node).
    Input,
    /// A constant tensor (shared bytes; a rewrite never copies them).
    Constant(HostTensor),
    /// An i64 vector whose entries are dims, evaluated from the symbol bindings at run time
    /// (what `Shape`-derived computations become when the dims are symbolic).
    SymConst(Vec<Dim>),
    /// Elementwise op of one operand.
    Unary(UnaryOp),
    /// Elementwise op of two broadcast operands.
    Binary(BinaryOp),
    /// `where(cond, a, b)` with broadcasting.
    Where,
    /// Convert to another dtype (floats to ints truncate toward zero).
    Cast(DType),
    /// Reduce over `axes` (negative count from the end; empty = all axes).
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Reduced axes.
        axes: Vec<i64>,
        /// Keep reduced axes as size 1.
        keepdims: bool,
    },
    /// Softmax along one axis.
    Softmax {
        /// The axis normalized over.
        axis: i64,
    },
    /// Batched matrix product with broadcasting of the leading axes (numpy `matmul`).
    MatMul,
    /// Permute axes.
    Transpose {
        /// `out.axis[i] = in.axis[perm[i]]`.
        perm: Vec<usize>,
    },
    /// View the data with another shape of the same element count.
    Reshape {
        /// The target shape (symbolic dims allowed).
        shape: Vec<Dim>,
    },
    /// Broadcast to a shape (numpy broadcasting of input and target).
    Expand {
        /// The target shape.
        shape: Vec<Dim>,
    },
    /// Strided slicing.
    Slice(SliceSpec),
    /// Join operands along an axis.
    Concat {
        /// The joined axis.
        axis: i64,
    },
    /// Split along an axis into parts of the given sizes (one output each).
    Split {
        /// The split axis.
        axis: i64,
        /// Size of each part.
        sizes: Vec<Dim>,
    },
    /// `slice_update(data, update, start)`: `data` with `update` written along `axis` from
    /// index `start`, a run-time integer scalar (rank 0 or one element): `out[.., start + i,
    /// ..] = update[.., i, ..]`, every other element from `data`. The update has the data's
    /// dtype, rank and dims except along `axis`, where it fits (`≤`). A start outside
    /// `0 ..= len − n` (`n` the update's length along `axis`) is a run-time error. What a
    /// static KV-cache write is: one contiguous block at a position known only at run time.
    SliceUpdate {
        /// The written axis (negative counts from the end).
        axis: i64,
    },
    /// `take(data, indices, axis)`: negative indices count from the end.
    Gather {
        /// The indexed axis of the data.
        axis: i64,
    },
    /// `start + step·i` for `i` in `0..len`.
    Range {
        /// First value.
        start: f64,
        /// Increment.
        step: f64,
        /// Number of values.
        len: Dim,
        /// Element type.
        dtype: DType,
    },
    /// A tensor of one repeated value.
    Full {
        /// Its shape.
        shape: Vec<Dim>,
        /// The value.
        value: f64,
        /// Element type.
        dtype: DType,
    },
    /// Keep the lower (or upper) triangle of the last two axes, zeroing the rest.
    Trilu {
        /// Keep the upper triangle (`j − i ≥ k`) instead of the lower (`j − i ≤ k`).
        upper: bool,
        /// Diagonal offset.
        k: i64,
    },
    /// A fused block; backends run a lowering for it or its fallback subgraph.
    Block(Arc<dyn Block>),
}

impl Op {
    /// The op's name in the text dump and JSON (`mul`, `reduce_mean`, `block.rms_norm`).
    pub fn name(&self) -> String {
        match self {
            Op::Block(b) => format!("block.{}", b.kind()),
            _ => self.prim_name().to_string(),
        }
    }

    /// The name of a primitive op (for a block: `"block"`).
    pub fn prim_name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Constant(_) => "constant",
            Op::SymConst(_) => "sym_const",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => "where",
            Op::Cast(_) => "cast",
            Op::Reduce { op, .. } => op.name(),
            Op::Softmax { .. } => "softmax",
            Op::MatMul => "matmul",
            Op::Transpose { .. } => "transpose",
            Op::Reshape { .. } => "reshape",
            Op::Expand { .. } => "expand",
            Op::Slice(_) => "slice",
            Op::Concat { .. } => "concat",
            Op::Split { .. } => "split",
            Op::Gather { .. } => "gather",
            Op::SliceUpdate { .. } => "slice_update",
            Op::Range { .. } => "range",
            Op::Full { .. } => "full",
            Op::Trilu { .. } => "trilu",
            Op::Block(_) => "block",
        }
    }

    /// The number of operands the op takes, or `None` when any number ≥ 1 is allowed.
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Input | Op::Constant(_) | Op::SymConst(_) | Op::Range { .. } | Op::Full { .. } => Some(0),
            Op::Unary(_)
            | Op::Cast(_)
            | Op::Reduce { .. }
            | Op::Softmax { .. }
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Slice(_)
            | Op::Split { .. }
            | Op::Trilu { .. } => Some(1),
            Op::Binary(_) | Op::MatMul | Op::Gather { .. } => Some(2),
            Op::Where | Op::SliceUpdate { .. } => Some(3),
            Op::Concat { .. } | Op::Block(_) => None,
        }
    }

    /// True for ops whose value does not depend on operands: inputs, constants, ranges, fills.
    pub fn is_leaf(&self) -> bool {
        self.arity() == Some(0)
    }

    /// The block, if this is a block node.
    pub fn as_block(&self) -> Option<&Arc<dyn Block>> {
        match self {
            Op::Block(b) => Some(b),
            _ => None,
        }
    }

    /// The constant, if this is a constant node.
    pub fn as_constant(&self) -> Option<&HostTensor> {
        match self {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }
}

impl Op {
    /// True when two nodes with this op and the same operands compute the same value, so
    /// common-subexpression elimination may merge them (inputs never merge).
    pub fn same_computation(&self, other: &Op) -> bool {
        use Op::*;
        match (self, other) {
            (Where, Where) | (MatMul, MatMul) => true,
            (Constant(a), Constant(b)) => a == b,
            (SymConst(a), SymConst(b)) => a == b,
            (Unary(a), Unary(b)) => a == b,
            (Binary(a), Binary(b)) => a == b,
            (Cast(a), Cast(b)) => a == b,
            (Reduce { op: a, axes: x, keepdims: k }, Reduce { op: b, axes: y, keepdims: l }) => {
                a == b && x == y && k == l
            }
            (Softmax { axis: a }, Softmax { axis: b }) => a == b,
            (Transpose { perm: a }, Transpose { perm: b }) => a == b,
            (Reshape { shape: a }, Reshape { shape: b }) => a == b,
            (Expand { shape: a }, Expand { shape: b }) => a == b,
            (Slice(a), Slice(b)) => a == b,
            (Concat { axis: a }, Concat { axis: b }) => a == b,
            (Split { axis: a, sizes: x }, Split { axis: b, sizes: y }) => a == b && x == y,
            (Gather { axis: a }, Gather { axis: b }) => a == b,
            (SliceUpdate { axis: a }, SliceUpdate { axis: b }) => a == b,
            (
                Range { start: a, step: s, len: l, dtype: d },
                Range { start: b, step: t, len: m, dtype: e },
            ) => a.to_bits() == b.to_bits() && s.to_bits() == t.to_bits() && l == m && d == e,
            (Full { shape: a, value: v, dtype: d }, Full { shape: b, value: w, dtype: e }) => {
                a == b && v.to_bits() == w.to_bits() && d == e
            }
            (Trilu { upper: a, k: x }, Trilu { upper: b, k: y }) => a == b && x == y,
            (Block(a), Block(b)) => a.dyn_eq(&**b),
            _ => false,
        }
    }
}

impl Op {
    /// A hash consistent with [`Op::same_computation`]: ops that compute the same value hash
    /// alike (a block through [`Block::dyn_hash`]), so CSE can bucket nodes by it.
    pub fn computation_hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Op::Input | Op::Where | Op::MatMul => {}
            Op::Constant(t) => (t.dtype(), t.dims(), t.bytes()).hash(h),
            Op::SymConst(dims) => dims.hash(h),
            Op::Unary(u) => u.hash(h),
            Op::Binary(b) => b.hash(h),
            Op::Cast(d) => d.hash(h),
            Op::Reduce { op, axes, keepdims } => (op, axes, keepdims).hash(h),
            Op::Softmax { axis } | Op::Concat { axis } | Op::Gather { axis } | Op::SliceUpdate { axis } => {
                axis.hash(h)
            }
            Op::Transpose { perm } => perm.hash(h),
            Op::Reshape { shape } | Op::Expand { shape } => shape.hash(h),
            Op::Slice(s) => s.hash(h),
            Op::Split { axis, sizes } => (axis, sizes).hash(h),
            Op::Range { start, step, len, dtype } => (start.to_bits(), step.to_bits(), len, dtype).hash(h),
            Op::Full { shape, value, dtype } => (shape, value.to_bits(), dtype).hash(h),
            Op::Trilu { upper, k } => (upper, k).hash(h),
            Op::Block(b) => b.hash(h),
        }
    }
}

macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every variant.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];
            /// The name in the text dump and JSON.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
            /// Parses a name produced by `name`.
            pub fn from_name(name: &str) -> Option<$ty> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }
        }
    };
}

names!(UnaryOp {
    Neg => "neg", Abs => "abs", Sqrt => "sqrt", Rsqrt => "rsqrt", Reciprocal => "reciprocal",
    Square => "square", Exp => "exp", Log => "log", Erf => "erf", Tanh => "tanh",
    Sigmoid => "sigmoid", Sin => "sin", Cos => "cos", Relu => "relu", Floor => "floor",
    Ceil => "ceil", Not => "not", IsNan => "is_nan",
});

names!(BinaryOp {
    Add => "add", Sub => "sub", Mul => "mul", Div => "div", Pow => "pow", Max => "max",
    Min => "min", Mod => "mod", Equal => "equal", Less => "less", LessEqual => "less_equal",
    Greater => "greater", GreaterEqual => "greater_equal", And => "and", Or => "or", Xor => "xor",
});

names!(ReduceOp {
    Sum => "reduce_sum", Mean => "reduce_mean", Max => "reduce_max", Min => "reduce_min",
    Prod => "reduce_prod",
});

impl BinaryOp {
    /// True when `a op b == b op a`.
    pub fn is_commutative(self) -> bool {
        use BinaryOp::*;
        matches!(self, Add | Mul | Max | Min | Equal | And | Or | Xor)
    }

    /// True when the result is bool whatever the operand type.
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | Less | LessEqual | Greater | GreaterEqual)
    }

    /// True for the logical ops, which need bool operands.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}
