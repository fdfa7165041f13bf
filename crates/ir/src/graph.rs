//! The graph: a stable petgraph of nodes with typed outputs; edges run from producer to
//! consumer and carry the operand position, so consumers are indexed for free.

use crate::error::{IrError, NodeLabel};
use crate::infer::infer_op;
use crate::op::Op;
use crate::shape::TensorType;
use petgraph::stable_graph::{EdgeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A node's id; stable across rewrites of other nodes.
pub type NodeId = petgraph::stable_graph::NodeIndex<u32>;

/// A value: output `output` of node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// The producing node.
    pub node: NodeId,
    /// Which of its outputs.
    pub output: u16,
}

impl Value {
    /// The first (often only) output of `node`.
    pub fn first(node: NodeId) -> Value {
        Value { node, output: 0 }
    }
}

/// One operation with its operands and the types of its outputs.
#[derive(Debug, Clone)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Its operands, in order.
    pub operands: SmallVec<[Value; 4]>,
    /// The type of each output.
    pub types: SmallVec<[TensorType; 1]>,
    /// A name from the frontend, kept for messages (`model.layers.0/Mul_3`).
    pub name: Option<String>,
}

/// Edge weight: which output of the producer feeds which operand of the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Use {
    /// Output position on the producer.
    pub output: u16,
    /// Operand position on the consumer.
    pub operand: u16,
}

/// A directed acyclic tensor graph with named inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    g: StableDiGraph<Node, Use>,
    inputs: Vec<NodeId>,
    outputs: Vec<(String, Value)>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named graph input of type `ty`.
    pub fn add_input(&mut self, name: &str, ty: TensorType) -> Value {
        let id = self.g.add_node(Node {
            op: Op::Input,
            operands: SmallVec::new(),
            types: smallvec::smallvec![ty],
            name: Some(name.to_string()),
        });
        self.inputs.push(id);
        Value::first(id)
    }

    /// Adds a node, checking its operands and inferring its output types.
    pub fn add_node(&mut self, op: Op, operands: &[Value], name: Option<String>) -> Result<NodeId, IrError> {
        for (i, v) in operands.iter().enumerate() {
            if !self.value_exists(*v) {
                let label = NodeLabel { id: NodeId::new(self.g.node_bound()), name };
                return Err(IrError::DanglingValue { node: label, operand: i, target: format!("{v}") });
            }
        }
        let types = {
            let operand_types: Vec<&TensorType> = operands.iter().map(|v| self.value_type(*v)).collect();
            infer_checked(&op, &operand_types)
        };
        let node = Node { op, operands: operands.into(), types: SmallVec::new(), name };
        let id = self.g.add_node(node);
        match types {
            Ok(types) => {
                self.g[id].types = types.into();
                for (i, v) in operands.iter().enumerate() {
                    self.g.add_edge(v.node, id, Use { output: v.output, operand: i as u16 });
                }
                Ok(id)
            }
            Err(reason) => {
                let node = self.g.remove_node(id).expect("just added");
                Err(reason.into_error(NodeLabel { id, name: node.name }, &node.op))
            }
        }
    }

    /// True when `v` names an existing node's existing output.
    pub fn value_exists(&self, v: Value) -> bool {
        self.g.node_weight(v.node).is_some_and(|n| (v.output as usize) < n.types.len())
    }

    /// The node `id` (panics if it was removed; use [`Graph::contains`] first when unsure).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// True when node `id` exists.
    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    /// Renames a node.
    pub fn set_name(&mut self, id: NodeId, name: Option<String>) {
        self.g[id].name = name;
    }

    /// The type of value `v`.
    pub fn value_type(&self, v: Value) -> &TensorType {
        &self.g[v.node].types[v.output as usize]
    }

    /// How the node is named in messages.
    pub fn label(&self, id: NodeId) -> NodeLabel {
        NodeLabel { id, name: self.g.node_weight(id).and_then(|n| n.name.clone()) }
    }

    /// The graph inputs, in order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// The graph outputs: name and value, in order.
    pub fn outputs(&self) -> &[(String, Value)] {
        &self.outputs
    }

    /// Appends a named graph output.
    pub fn add_output(&mut self, name: &str, v: Value) {
        self.outputs.push((name.to_string(), v));
    }

    /// True when `v` is one of the graph outputs.
    pub fn is_output(&self, v: Value) -> bool {
        self.outputs.iter().any(|(_, o)| *o == v)
    }

    /// Number of nodes (inputs and constants included).
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// One more than the largest node index ever used (for dense side tables).
    pub fn node_bound(&self) -> usize {
        self.g.node_bound()
    }

    /// All node ids, in index order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// The consumers of value `v`: (consumer node, operand position).
    pub fn consumers(&self, v: Value) -> impl Iterator<Item = (NodeId, usize)> + '_ {
        self.g
            .edges_directed(v.node, Direction::Outgoing)
            .filter(move |e| e.weight().output == v.output)
            .map(|e| (e.target(), e.weight().operand as usize))
    }

    /// Number of operand slots reading `v`, plus one per graph output naming it.
    pub fn use_count(&self, v: Value) -> usize {
        self.consumers(v).count() + self.outputs.iter().filter(|(_, o)| *o == v).count()
    }

    /// The distinct nodes reading any output of `id`.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        users.sort();
        users.dedup();
        users
    }

    /// Makes every reader of `old` (consumers and graph outputs) read `new` instead.
    pub fn replace_all_uses(&mut self, old: Value, new: Value) {
        if old == new {
            return;
        }
        let uses: Vec<(EdgeIndex, NodeId, u16)> = self
            .g
            .edges_directed(old.node, Direction::Outgoing)
            .filter(|e| e.weight().output == old.output)
            .map(|e| (e.id(), e.target(), e.weight().operand))
            .collect();
        for (edge, consumer, operand) in uses {
            self.g.remove_edge(edge);
            self.g[consumer].operands[operand as usize] = new;
            self.g.add_edge(new.node, consumer, Use { output: new.output, operand });
        }
        for (_, o) in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Replaces operand `operand` of `node` by `new` (types are not re-checked: callers
    /// keep them equal or run [`Graph::validate`]).
    pub fn set_operand(&mut self, node: NodeId, operand: usize, new: Value) {
        let edge = self
            .g
            .edges_directed(node, Direction::Incoming)
            .find(|e| e.weight().operand as usize == operand)
            .map(|e| e.id());
        if let Some(edge) = edge {
            self.g.remove_edge(edge);
        }
        self.g[node].operands[operand] = new;
        self.g.add_edge(new.node, node, Use { output: new.output, operand: operand as u16 });
    }

    /// Removes a node and its edges. Readers of its outputs are left dangling, so callers
    /// remove only dead nodes (see [`Graph::remove_dead`]).
    pub fn remove_node(&mut self, id: NodeId) {
        self.g.remove_node(id);
        self.inputs.retain(|&i| i != id);
    }

    /// Removes every node that no graph output depends on (inputs stay). Returns how many.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeId> = self.outputs.iter().map(|(_, v)| v.node).collect();
        stack.extend(self.inputs.iter().copied());
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut live[id.index()], true) {
                continue;
            }
            stack.extend(self.g[id].operands.iter().map(|v| v.node));
        }
        let dead: Vec<NodeId> = self.g.node_indices().filter(|id| !live[id.index()]).collect();
        for &id in &dead {
            self.g.remove_node(id);
        }
        dead.len()
    }

    /// Nodes in a deterministic topological order (smallest id first among ready nodes).
    /// `Err` names a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        let mut indegree = vec![0usize; self.g.node_bound()];
        for id in self.g.node_indices() {
            indegree[id.index()] = self.g.edges_directed(id, Direction::Incoming).count();
        }
        let mut ready: BinaryHeap<Reverse<NodeId>> =
            self.g.node_indices().filter(|id| indegree[id.index()] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for e in self.g.edges_directed(id, Direction::Outgoing) {
                let t = e.target();
                indegree[t.index()] -= 1;
                if indegree[t.index()] == 0 {
                    ready.push(Reverse(t));
                }
            }
        }
        if order.len() != self.g.node_count() {
            let stuck = self.g.node_indices().find(|id| indegree[id.index()] > 0).expect("a node is stuck");
            return Err(IrError::Cycle { node: self.label(stuck) });
        }
        Ok(order)
    }

    /// Checks the whole graph: operands exist, operand counts, output types agree with
    /// inference, no cycles, graph outputs exist.
    pub fn validate(&self) -> Result<(), IrError> {
        for id in self.g.node_indices() {
            let node = &self.g[id];
            for (i, v) in node.operands.iter().enumerate() {
                if !self.value_exists(*v) {
                    return Err(IrError::DanglingValue {
                        node: self.label(id),
                        operand: i,
                        target: v.to_string(),
                    });
                }
            }
            if matches!(node.op, Op::Input) {
                continue;
            }
            let operand_types: Vec<&TensorType> = node.operands.iter().map(|v| self.value_type(*v)).collect();
            let inferred = infer_checked(&node.op, &operand_types)
                .map_err(|r| r.into_error(self.label(id), &node.op))?;
            if inferred.len() != node.types.len() {
                return Err(IrError::Graph(format!(
                    "node {}: has {} outputs, its op gives {}",
                    self.label(id),
                    node.types.len(),
                    inferred.len()
                )));
            }
            for (i, (declared, inferred)) in node.types.iter().zip(&inferred).enumerate() {
                if declared != inferred {
                    return Err(IrError::TypeDisagrees {
                        node: self.label(id),
                        op: node.op.name(),
                        output: i,
                        declared: declared.to_string(),
                        inferred: inferred.to_string(),
                    });
                }
            }
        }
        for (name, v) in &self.outputs {
            if !self.value_exists(*v) {
                return Err(IrError::DanglingOutput { name: name.clone(), target: v.to_string() });
            }
        }
        self.topo_order().map(|_| ())
    }

    /// Checks that every operand and graph output names an existing value (what the writers
    /// need; cheaper than [`Graph::validate`], which also re-infers types).
    pub(crate) fn check_references(&self) -> Result<(), IrError> {
        for id in self.g.node_indices() {
            for (i, v) in self.g[id].operands.iter().enumerate() {
                if !self.value_exists(*v) {
                    return Err(IrError::DanglingValue {
                        node: self.label(id),
                        operand: i,
                        target: v.to_string(),
                    });
                }
            }
        }
        for (name, v) in &self.outputs {
            if !self.value_exists(*v) {
                return Err(IrError::DanglingOutput { name: name.clone(), target: v.to_string() });
            }
        }
        Ok(())
    }

    /// Counts of nodes per op name (`block.rms_norm`, `mul`, ...), sorted by name.
    pub fn op_histogram(&self) -> std::collections::BTreeMap<String, usize> {
        let mut h = std::collections::BTreeMap::new();
        for id in self.g.node_indices() {
            *h.entry(self.g[id].op.name()).or_insert(0) += 1;
        }
        h
    }

    /// The same graph with node `id` moved to index `new_index(id)` (a reader keeping the
    /// ids its document gave). `None` when `new_index` maps two nodes to one index or names
    /// an index at or above `bound`; indices no node takes are left vacant, and later
    /// [`Graph::add_node`] calls may fill them.
    pub fn renumbered(&self, bound: usize, new_index: impl Fn(NodeId) -> usize) -> Option<Graph> {
        let mut slots: Vec<Option<NodeId>> = vec![None; bound];
        for id in self.g.node_indices() {
            let slot = slots.get_mut(new_index(id))?;
            if slot.replace(id).is_some() {
                return None;
            }
        }
        let moved = |id: NodeId| NodeId::new(new_index(id));
        let moved_value = |v: &Value| Value { node: moved(v.node), output: v.output };
        let mut g = StableDiGraph::with_capacity(bound, self.g.edge_count());
        for slot in &slots {
            let node = match slot {
                Some(old) => {
                    let node = &self.g[*old];
                    Node { operands: node.operands.iter().map(moved_value).collect(), ..node.clone() }
                }
                None => Node { op: Op::Input, operands: SmallVec::new(), types: SmallVec::new(), name: None },
            };
            g.add_node(node);
        }
        for e in petgraph::visit::IntoEdgeReferences::edge_references(&self.g) {
            g.add_edge(moved(e.source()), moved(e.target()), *e.weight());
        }
        for (index, slot) in slots.iter().enumerate() {
            if slot.is_none() {
                g.remove_node(NodeId::new(index));
            }
        }
        Some(Graph {
            g,
            inputs: self.inputs.iter().map(|&id| moved(id)).collect(),
            outputs: self.outputs.iter().map(|(name, v)| (name.clone(), moved_value(v))).collect(),
        })
    }

    /// The underlying petgraph (read-only), e.g. for DOT output or custom traversals.
    pub fn petgraph(&self) -> &StableDiGraph<Node, Use> {
        &self.g
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.output == 0 {
            write!(f, "%{}", self.node.index())
        } else {
            write!(f, "%{}:{}", self.node.index(), self.output)
        }
    }
}

/// Why inference failed: a type rule (the reason) or an operand count.
pub(crate) enum InferFailure {
    Count { expected: String, found: usize },
    Type(String),
    Block(String),
}

impl InferFailure {
    pub(crate) fn into_error(self, node: NodeLabel, op: &Op) -> IrError {
        match self {
            InferFailure::Count { expected, found } => {
                IrError::OperandCount { node, op: op.name(), expected, found }
            }
            InferFailure::Type(reason) => IrError::Type { node, op: op.name(), reason },
            InferFailure::Block(reason) => IrError::Block { node, reason },
        }
    }
}

pub(crate) fn infer_checked(op: &Op, operands: &[&TensorType]) -> Result<Vec<TensorType>, InferFailure> {
    match op.arity() {
        Some(n) if n != operands.len() => {
            return Err(InferFailure::Count { expected: n.to_string(), found: operands.len() })
        }
        None if operands.is_empty() && !matches!(op, Op::Block(_)) => {
            return Err(InferFailure::Count { expected: "at least 1".into(), found: 0 })
        }
        _ => {}
    }
    match op {
        Op::Block(b) => {
            let owned: Vec<TensorType> = operands.iter().map(|t| (*t).clone()).collect();
            b.infer(&owned).map_err(InferFailure::Block)
        }
        _ => infer_op(op, operands).map_err(InferFailure::Type),
    }
}
