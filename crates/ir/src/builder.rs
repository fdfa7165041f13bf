//! The builder: how frontends, rules and block fallbacks add nodes, with inference and
//! errors naming the node.

use crate::block::Block;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::{Graph, NodeId, Value};
use crate::op::{BinaryOp, Bound, Op, ReduceOp, SliceSpec, UnaryOp};
use crate::shape::{Dim, TensorType};
use crate::tensor::HostTensor;
use std::sync::Arc;

/// Adds nodes to a graph. Nodes get names `"<scope>/<op>"` when a scope is set, so errors
/// and dumps say where a node came from.
pub struct Builder<'g> {
    graph: &'g mut Graph,
    scope: Option<String>,
}

impl<'g> Builder<'g> {
    /// A builder over `graph`.
    pub fn new(graph: &'g mut Graph) -> Self {
        Builder { graph, scope: None }
    }

    /// Names new nodes `"<scope>/<op>"` from now on.
    pub fn set_scope(&mut self, scope: Option<String>) {
        self.scope = scope;
    }

    /// The graph being built.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// The graph being built, mutably.
    pub fn graph_mut(&mut self) -> &mut Graph {
        self.graph
    }

    /// The type of `v`.
    pub fn ty(&self, v: Value) -> &TensorType {
        self.graph.value_type(v)
    }

    /// Adds a graph input.
    pub fn input(&mut self, name: &str, ty: TensorType) -> Value {
        self.graph.add_input(name, ty)
    }

    /// Adds a node with a single output.
    pub fn add(&mut self, op: Op, args: &[Value]) -> Result<Value, IrError> {
        Ok(Value::first(self.add_node(op, args)?))
    }

    /// Adds a node and returns all of its outputs.
    pub fn add_multi(&mut self, op: Op, args: &[Value]) -> Result<Vec<Value>, IrError> {
        let id = self.add_node(op, args)?;
        let n = self.graph.node(id).types.len();
        Ok((0..n).map(|i| Value { node: id, output: i as u16 }).collect())
    }

    fn add_node(&mut self, op: Op, args: &[Value]) -> Result<NodeId, IrError> {
        let name = self.scope.as_ref().map(|s| format!("{s}/{}", op.name()));
        self.graph.add_node(op, args, name)
    }

    /// Adds a block node.
    pub fn block(&mut self, block: impl Block + 'static, args: &[Value]) -> Result<Vec<Value>, IrError> {
        self.add_multi(Op::Block(Arc::new(block)), args)
    }

    /// A constant tensor.
    pub fn constant(&mut self, t: HostTensor) -> Value {
        self.add(Op::Constant(t), &[]).expect("constants always type-check")
    }

    /// A rank-0 constant of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> Value {
        self.constant(HostTensor::scalar(dtype, v))
    }

    /// A rank-0 constant of the dtype of `like`.
    pub fn scalar_like(&mut self, like: Value, v: f64) -> Value {
        let d = self.ty(like).dtype;
        self.scalar(d, v)
    }

    /// An elementwise op of one operand.
    pub fn unary(&mut self, op: UnaryOp, x: Value) -> Result<Value, IrError> {
        self.add(Op::Unary(op), &[x])
    }

    /// An elementwise op of two operands.
    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Result<Value, IrError> {
        self.add(Op::Binary(op), &[a, b])
    }

    /// `a + b`
    pub fn add2(&mut self, a: Value, b: Value) -> Result<Value, IrError> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a − b`
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value, IrError> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a · b`
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value, IrError> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b`
    pub fn div(&mut self, a: Value, b: Value) -> Result<Value, IrError> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `x` converted to `dtype` (no node when it already is).
    pub fn cast(&mut self, x: Value, dtype: DType) -> Result<Value, IrError> {
        if self.ty(x).dtype == dtype {
            return Ok(x);
        }
        self.add(Op::Cast(dtype), &[x])
    }

    /// A reduction.
    pub fn reduce(&mut self, op: ReduceOp, x: Value, axes: &[i64], keepdims: bool) -> Result<Value, IrError> {
        self.add(Op::Reduce { op, axes: axes.to_vec(), keepdims }, &[x])
    }

    /// Mean over the last axis, keeping it as size 1.
    pub fn mean_last(&mut self, x: Value) -> Result<Value, IrError> {
        self.reduce(ReduceOp::Mean, x, &[-1], true)
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: Value, axis: i64) -> Result<Value, IrError> {
        self.add(Op::Softmax { axis }, &[x])
    }

    /// Batched matrix product.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value, IrError> {
        self.add(Op::MatMul, &[a, b])
    }

    /// Axis permutation.
    pub fn transpose(&mut self, x: Value, perm: &[usize]) -> Result<Value, IrError> {
        self.add(Op::Transpose { perm: perm.to_vec() }, &[x])
    }

    /// Reshape to `shape`.
    pub fn reshape(&mut self, x: Value, shape: Vec<Dim>) -> Result<Value, IrError> {
        self.add(Op::Reshape { shape }, &[x])
    }

    /// Broadcast to `shape`.
    pub fn expand(&mut self, x: Value, shape: Vec<Dim>) -> Result<Value, IrError> {
        self.add(Op::Expand { shape }, &[x])
    }

    /// `x[..., start:end]` along `axis` with step 1 and constant bounds.
    pub fn slice_axis(&mut self, x: Value, axis: i64, start: i64, end: i64) -> Result<Value, IrError> {
        self.add(
            Op::Slice(SliceSpec {
                axes: vec![axis],
                starts: vec![Bound::Const(start)],
                ends: vec![Bound::Const(end)],
                steps: vec![1],
            }),
            &[x],
        )
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[Value], axis: i64) -> Result<Value, IrError> {
        self.add(Op::Concat { axis }, xs)
    }

    /// `where(cond, a, b)`.
    pub fn select(&mut self, cond: Value, a: Value, b: Value) -> Result<Value, IrError> {
        self.add(Op::Where, &[cond, a, b])
    }
}
