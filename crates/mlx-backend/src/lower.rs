//! Lowering a graph to a lazy MLX graph: nodes in topological order, blocks through the
//! dispatch protocol, and the run-time checks collected on the way.

use crate::array::{Array, ReduceOp};
use crate::error::{MlxError, Result};
use crate::prim;
use blockfuse_ir::dispatch::{fallback_graph, Call, Fallback, LowerResult, Lowerings};
use blockfuse_ir::{Bindings, Block, Graph, NodeId, Op, TensorType};
use std::collections::HashMap;
use std::rc::Rc;

/// A run-time check: a rank-0 bool array that is true when the data broke a rule, and the
/// error to report then (wrapped with the node it belongs to).
pub(crate) struct Check {
    pub(crate) failed: Array,
    pub(crate) error: MlxError,
}

/// Where primitive lowerings register their run-time checks.
#[derive(Default)]
pub(crate) struct Checks {
    pending: Vec<Check>,
}

impl Checks {
    /// Fails the run with `message` when any element of the bool array `bad` is true.
    pub(crate) fn any(&mut self, bad: &Array, message: impl Into<String>) -> Result<()> {
        let all: Vec<i32> = (0..bad.ndim() as i32).collect();
        let failed = bad.reduce(ReduceOp::Any, &all, false)?;
        self.pending.push(Check { failed, error: MlxError::Check(message.into()) });
        Ok(())
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    /// Wraps the errors of the checks added since `from` with the node's label.
    fn tag(&mut self, from: usize, g: &Graph, id: NodeId) {
        for c in &mut self.pending[from..] {
            let e = std::mem::replace(&mut c.error, MlxError::Check(String::new()));
            c.error = e.at(g.label(id), g.node(id).op.name());
        }
    }

    /// The checks collected so far.
    pub(crate) fn into_vec(self) -> Vec<Check> {
        self.pending
    }
}

/// The type of an array (concrete dims).
pub(crate) fn array_type(a: &Array) -> Result<TensorType> {
    Ok(TensorType::known(a.dtype()?, &a.shape()))
}

/// Fallback subgraphs built during a run, by block (kind and attributes) and operand types.
pub(crate) type FallbackCache = HashMap<(String, Vec<TensorType>), Rc<Graph>>;

/// Which nodes (by index) the graph's outputs depend on.
pub(crate) fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.node_bound()];
    let mut stack: Vec<NodeId> = g.outputs().iter().map(|(_, v)| v.node).collect();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id.index()], true) {
            stack.extend(g.node(id).operands.iter().map(|v| v.node));
        }
    }
    live
}

/// Lowers graphs with one lowering table, collecting run-time checks.
pub(crate) struct Lowerer<'a> {
    lowerings: &'a Lowerings<Array>,
    pub(crate) checks: Checks,
    pub(crate) fallbacks: FallbackCache,
}

impl<'a> Lowerer<'a> {
    pub(crate) fn new(lowerings: &'a Lowerings<Array>) -> Self {
        Lowerer { lowerings, checks: Checks::default(), fallbacks: FallbackCache::new() }
    }

    /// Builds the graph's outputs as lazy MLX arrays from its inputs (in graph-input order).
    /// Only the nodes the outputs depend on are lowered; each value's handle is dropped after
    /// its last reader, so MLX can free intermediate buffers while evaluating. `resident`
    /// (indexed by node index) holds arrays already made for some of `g`'s constant nodes.
    pub(crate) fn lower_graph(
        &mut self,
        g: &Graph,
        bindings: &Bindings,
        inputs: Vec<Array>,
        resident: Option<&[Option<Array>]>,
    ) -> Result<Vec<Array>> {
        if inputs.len() != g.inputs().len() {
            return Err(MlxError::Graph(format!(
                "the graph takes {} input(s), {} were given",
                g.inputs().len(),
                inputs.len()
            )));
        }
        let order = g.topo_order().map_err(|e| MlxError::Graph(e.to_string()))?;
        let n = g.node_bound();
        // Live nodes and how many operand slots (plus graph outputs) read each.
        let live = live_nodes(g);
        let mut readers = vec![0usize; n];
        for &id in order.iter().filter(|id| live[id.index()]) {
            for v in &g.node(id).operands {
                readers[v.node.index()] += 1;
            }
        }
        for (_, v) in g.outputs() {
            readers[v.node.index()] += 1;
        }

        let mut inputs: Vec<Option<Array>> = inputs.into_iter().map(Some).collect();
        let mut values: Vec<Option<Vec<Array>>> = (0..n).map(|_| None).collect();
        for id in order {
            if !live[id.index()] {
                continue;
            }
            let node = g.node(id);
            let held = resident.and_then(|r| r.get(id.index())).and_then(Option::as_ref);
            let outs = if let Some(a) = held {
                vec![a.clone()]
            } else if matches!(node.op, Op::Input) {
                let pos = g.inputs().iter().position(|&i| i == id).expect("an input node is a graph input");
                vec![inputs[pos].take().expect("each input is read once")]
            } else {
                let args: Vec<Array> = node
                    .operands
                    .iter()
                    .map(|v| {
                        values[v.node.index()].as_ref().expect("topological order")[v.output as usize].clone()
                    })
                    .collect();
                let before = self.checks.len();
                let outs =
                    self.lower_node(g, id, args, bindings).map_err(|e| e.at(g.label(id), node.op.name()))?;
                self.checks.tag(before, g, id);
                outs
            };
            values[id.index()] = Some(outs);
            for v in &node.operands {
                let r = &mut readers[v.node.index()];
                *r -= 1;
                if *r == 0 {
                    values[v.node.index()] = None;
                }
            }
        }
        Ok(g.outputs()
            .iter()
            .map(|(_, v)| {
                values[v.node.index()].as_ref().expect("outputs are live")[v.output as usize].clone()
            })
            .collect())
    }

    /// Lowers one node and checks its results against the node's types.
    fn lower_node(
        &mut self,
        g: &Graph,
        id: NodeId,
        args: Vec<Array>,
        bindings: &Bindings,
    ) -> Result<Vec<Array>> {
        let node = g.node(id);
        let (outs, expected) = match &node.op {
            Op::Block(block) => {
                let concrete = args.iter().map(array_type).collect::<Result<Vec<_>>>()?;
                let types = block.infer(&concrete).map_err(MlxError::Mismatch)?;
                let outs = self.lower_block(&**block, &types, args)?;
                let expected = types.iter().map(|t| (t.dtype, t.known_dims())).collect::<Vec<_>>();
                (outs, expected)
            }
            op => {
                let outs = prim::lower(op, &args, &node.types, bindings, &mut self.checks)?;
                let expected =
                    node.types.iter().map(|t| (t.dtype, t.eval_dims(bindings))).collect::<Vec<_>>();
                (outs, expected)
            }
        };
        if outs.len() != expected.len() {
            return Err(MlxError::Mismatch(format!(
                "the lowering gave {} result(s), the node has {} output(s)",
                outs.len(),
                expected.len()
            )));
        }
        for (i, (a, (dtype, dims))) in outs.iter().zip(&expected).enumerate() {
            let got = array_type(a)?;
            let shape_ok = match dims {
                Some(d) => *d == a.shape(),
                None => true,
            };
            if got.dtype != *dtype || !shape_ok {
                return Err(MlxError::Mismatch(format!(
                    "output {i} came out {got}, the graph's type is {} (under the input bindings: {})",
                    node.types[i],
                    match dims {
                        Some(d) => TensorType::known(*dtype, d).to_string(),
                        None => "unbound".into(),
                    }
                )));
            }
        }
        Ok(outs)
    }

    /// A block node: its registered lowering, else (or when it declines) its fallback.
    fn lower_block(
        &mut self,
        block: &dyn Block,
        types: &[TensorType],
        args: Vec<Array>,
    ) -> Result<Vec<Array>> {
        let lowerings = self.lowerings;
        let call = Call { outputs: types, args: &args };
        let mut fallback = BlockFallback { lowerer: self, block };
        let outs = match lowerings.lower(block, &call, &mut fallback) {
            Some(r) => r,
            None => fallback.run(&args),
        };
        outs.map_err(MlxError::from)
    }
}

/// The fallback handle given to lowerings: builds the block's fallback subgraph for the
/// concrete types of the arguments (once per block and types in a run) and lowers it op by
/// op (blocks inside it dispatch again).
struct BlockFallback<'l, 'a> {
    lowerer: &'l mut Lowerer<'a>,
    block: &'l dyn Block,
}

impl Fallback<Array> for BlockFallback<'_, '_> {
    fn run(&mut self, args: &[Array]) -> LowerResult<Array> {
        let types = args.iter().map(array_type).collect::<Result<Vec<_>>>()?;
        let key = (format!("{}{}", self.block.kind(), self.block.attrs()), types);
        let g = match self.lowerer.fallbacks.get(&key) {
            Some(g) => g.clone(),
            None => {
                let g = fallback_graph(self.block, &key.1).map_err(|e| {
                    MlxError::Graph(format!("the fallback of {} does not build: {e}", self.block.kind()))
                })?;
                let g = Rc::new(g);
                self.lowerer.fallbacks.insert(key, g.clone());
                g
            }
        };
        Ok(self.lowerer.lower_graph(&g, &Bindings::new(), args.to_vec(), None)?)
    }
}
