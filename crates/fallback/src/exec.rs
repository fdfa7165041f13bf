//! The executor: binds symbols from the inputs, runs the nodes the outputs need in
//! topological order, frees each value after its last reader, and dispatches blocks to a
//! lowering or to their fallback subgraph.

use crate::error::EvalError;
use crate::ops;
use crate::tensor::Tensor;
use blockfuse_ir::dispatch::{fallback_graph, Call, Fallback, LowerResult, Lowerings};
use blockfuse_ir::{Bindings, Block, DType, Dim, Graph, HostTensor, NodeId, Op, TensorType, Value};
use smallvec::SmallVec;
use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Fallback graphs are cached per block type, attributes and concrete operand types.
type FallbackKey = (TypeId, String, Vec<(DType, Vec<usize>)>);

/// One run of the backend (the fallback-graph cache lives as long as the run).
pub(crate) struct Exec<'a> {
    pub lowerings: &'a Lowerings<HostTensor>,
    pub cache: RefCell<HashMap<FallbackKey, Arc<Graph>>>,
}

fn input_name(g: &Graph, id: NodeId) -> String {
    g.node(id).name.clone().unwrap_or_else(|| format!("%{}", id.index()))
}

/// Binds the graph's symbols from the actual input dims and checks dtypes and known dims.
pub(crate) fn bind_inputs(g: &Graph, inputs: &[Tensor]) -> Result<Bindings, EvalError> {
    if inputs.len() != g.inputs().len() {
        return Err(EvalError::InputCount { expected: g.inputs().len(), found: inputs.len() });
    }
    let mut b = Bindings::new();
    let mut source: HashMap<Arc<str>, String> = HashMap::new();
    let err = |id: NodeId, reason: String| EvalError::Input { name: input_name(g, id), reason };
    // Types, ranks, known dims and plain symbols.
    for (&id, t) in g.inputs().iter().zip(inputs) {
        let ty = &g.node(id).types[0];
        if t.dtype != ty.dtype || t.dims.len() != ty.rank() {
            return Err(err(id, format!("expected {ty}, got {}", show(t))));
        }
        for (axis, (d, &n)) in ty.shape.iter().zip(&t.dims).enumerate() {
            match d {
                Dim::Known(k) if *k != n => {
                    return Err(err(id, format!("expected {ty}, got {}: axis {axis} is {n}", show(t))))
                }
                Dim::Sym(_) => {
                    let syms: Vec<&Arc<str>> = d.symbols().collect();
                    if syms.len() == 1 && d.is_symbol(syms[0]) {
                        let s = syms[0];
                        match b.get(s) {
                            Some(&v) if v != n => {
                                return Err(err(
                                    id,
                                    format!(
                                        "symbol '{s}' is {n} on axis {axis}, but {v} from input \"{}\"",
                                        source[s]
                                    ),
                                ))
                            }
                            Some(_) => {}
                            None => {
                                b.insert(s.clone(), n);
                                source.insert(s.clone(), input_name(g, id));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Products with one unbound symbol (`batch*seq` once `batch` is known) solve for it.
    loop {
        let mut progress = false;
        for (&id, t) in g.inputs().iter().zip(inputs) {
            for (d, &n) in g.node(id).types[0].shape.iter().zip(&t.dims) {
                if d.eval(&b).is_some() {
                    continue;
                }
                let unbound: Vec<&Arc<str>> = d.symbols().filter(|s| !b.contains_key(*s)).collect();
                if unbound.len() != 1 {
                    continue;
                }
                let s = unbound[0].clone();
                let mut probe = b.clone();
                probe.insert(s.clone(), 1);
                let c = d.eval(&probe).expect("all bound");
                if c > 0 && n % c == 0 {
                    b.insert(s.clone(), n / c);
                    source.insert(s, input_name(g, id));
                    progress = true;
                }
            }
        }
        if !progress {
            break;
        }
    }
    for (&id, t) in g.inputs().iter().zip(inputs) {
        let ty = &g.node(id).types[0];
        for (axis, (d, &n)) in ty.shape.iter().zip(&t.dims).enumerate() {
            match d.eval(&b) {
                Some(v) if v == n => {}
                Some(v) => {
                    return Err(err(id, format!("axis {axis} is {n}, but {d} = {v} from the other inputs")))
                }
                None => return Err(err(id, format!("cannot bind the symbols of {d} (axis {axis} is {n})"))),
            }
        }
    }
    Ok(b)
}

/// `f32[2, 3]`, as types print.
fn show(t: &Tensor) -> String {
    TensorType::known(t.dtype, &t.dims).to_string()
}

/// Concrete types of tensors.
fn types_of(args: &[Tensor]) -> Vec<TensorType> {
    args.iter().map(|t| TensorType::known(t.dtype, &t.dims)).collect()
}

impl Exec<'_> {
    /// Evaluates `g` on `inputs` (graph-input order); outputs in graph-output order.
    pub(crate) fn run_graph(&self, g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EvalError> {
        let bindings = bind_inputs(g, &inputs)?;
        let order = g.topo_order().map_err(|e| EvalError::Graph(e.to_string()))?;
        let bound = g.node_bound();

        // Only the nodes the outputs depend on run.
        // (A graph edited without validation may name values that no longer exist.)
        let mut live = vec![false; bound];
        let mut stack: Vec<(Option<NodeId>, Value)> = g.outputs().iter().map(|(_, v)| (None, *v)).collect();
        while let Some((reader, v)) = stack.pop() {
            if !g.value_exists(v) {
                let reader = match reader {
                    Some(id) => format!("node {}", g.label(id)),
                    None => "a graph output".to_string(),
                };
                return Err(EvalError::Graph(format!("{reader} reads {v}, which does not exist")));
            }
            if !std::mem::replace(&mut live[v.node.index()], true) {
                stack.extend(g.node(v.node).operands.iter().map(|o| (Some(v.node), *o)));
            }
        }

        // Remaining reads of every value; graph outputs hold one extra read until the end.
        let mut uses: Vec<SmallVec<[u32; 1]>> = vec![SmallVec::new(); bound];
        for &id in &order {
            uses[id.index()] = smallvec::smallvec![0; g.node(id).types.len()];
        }
        for &id in order.iter().filter(|id| live[id.index()]) {
            for v in &g.node(id).operands {
                uses[v.node.index()][v.output as usize] += 1;
            }
        }
        for (_, v) in g.outputs() {
            uses[v.node.index()][v.output as usize] += 1;
        }

        let mut values: Vec<SmallVec<[Option<Tensor>; 1]>> = vec![SmallVec::new(); bound];
        for (&id, t) in g.inputs().iter().zip(inputs) {
            if live[id.index()] {
                values[id.index()] = smallvec::smallvec![Some(t)];
            }
        }

        for &id in &order {
            let node = g.node(id);
            if !live[id.index()] || matches!(node.op, Op::Input) {
                continue;
            }
            let mut args = Vec::with_capacity(node.operands.len());
            for v in &node.operands {
                let left = &mut uses[v.node.index()][v.output as usize];
                *left -= 1;
                let slot = &mut values[v.node.index()][v.output as usize];
                let t = if *left == 0 { slot.take() } else { slot.clone() };
                args.push(
                    t.ok_or_else(|| EvalError::Graph(format!("value {v} is read before it is computed")))?,
                );
            }
            let outs = match &node.op {
                Op::Block(blk) => self.eval_block(g, id, blk, args)?,
                op => ops::eval(op, args, &bindings).map_err(|reason| EvalError::Node {
                    node: g.label(id),
                    op: op.name(),
                    reason,
                })?,
            };
            check_outputs(g, id, &outs, &bindings)?;
            // Outputs nobody reads (an unused part of a split) are dropped at once.
            let reads = &uses[id.index()];
            values[id.index()] =
                outs.into_iter().enumerate().map(|(i, t)| (reads[i] > 0).then_some(t)).collect();
        }

        g.outputs()
            .iter()
            .map(|(name, v)| {
                values[v.node.index()][v.output as usize]
                    .clone()
                    .ok_or_else(|| EvalError::Graph(format!("output \"{name}\" was not computed")))
            })
            .collect()
    }

    fn eval_block(
        &self,
        g: &Graph,
        id: NodeId,
        blk: &Arc<dyn Block>,
        args: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, EvalError> {
        let node = g.node(id);
        let blk: &dyn Block = &**blk;
        // The block checks its concrete operands (symbolic dims are only known now).
        blk.infer(&types_of(&args)).map_err(|reason| EvalError::Node {
            node: g.label(id),
            op: node.op.name(),
            reason,
        })?;
        let wrap =
            |e: EvalError| EvalError::InBlock { node: g.label(id), op: node.op.name(), source: Box::new(e) };
        if !self.lowerings.has(blk) {
            return self.run_fallback(blk, args).map_err(wrap);
        }
        let host: Vec<HostTensor> = args.iter().map(Tensor::to_host).collect();
        drop(args);
        let call = Call { outputs: &node.types, args: &host };
        let mut handle = Handle { exec: self, block: blk };
        let outs = self.lowerings.lower(blk, &call, &mut handle).expect("a lowering is registered");
        let outs = outs.map_err(|e| wrap(EvalError::from(e)))?;
        Ok(outs.iter().map(Tensor::from_host).collect())
    }

    /// Runs the fallback subgraph of `blk` on `args`.
    fn run_fallback(&self, blk: &dyn Block, args: Vec<Tensor>) -> Result<Vec<Tensor>, EvalError> {
        let types = types_of(&args);
        let key: FallbackKey = (
            blk.as_any().type_id(),
            format!("{}{}", blk.kind(), blk.attrs()),
            types.iter().map(|t| (t.dtype, t.known_dims().expect("concrete"))).collect(),
        );
        let cached = self.cache.borrow().get(&key).cloned();
        let graph = match cached {
            Some(g) => g,
            None => {
                let g = fallback_graph(blk, &types).map_err(|e| {
                    EvalError::Graph(format!("cannot build the fallback of {}: {e}", blk.kind()))
                })?;
                let g = Arc::new(g);
                self.cache.borrow_mut().insert(key, g.clone());
                g
            }
        };
        self.run_graph(&graph, args)
    }
}

/// Checks that a node produced what the graph declares.
fn check_outputs(g: &Graph, id: NodeId, outs: &[Tensor], bindings: &Bindings) -> Result<(), EvalError> {
    let node = g.node(id);
    let fail = |reason: String| EvalError::Node { node: g.label(id), op: node.op.name(), reason };
    if outs.len() != node.types.len() {
        return Err(fail(format!(
            "produced {} output(s), the graph declares {}",
            outs.len(),
            node.types.len()
        )));
    }
    for (i, (t, ty)) in outs.iter().zip(&node.types).enumerate() {
        let dims_ok = t.dims.len() == ty.rank()
            && ty.shape.iter().zip(&t.dims).all(|(d, &n)| d.eval(bindings).is_none_or(|v| v == n));
        if t.dtype != ty.dtype || !dims_ok {
            return Err(fail(format!("output {i} is {}, the graph declares {ty}", show(t))));
        }
    }
    Ok(())
}

/// The fallback handle given to lowerings.
struct Handle<'e, 'a> {
    exec: &'e Exec<'a>,
    block: &'e dyn Block,
}

impl Fallback<HostTensor> for Handle<'_, '_> {
    fn run(&mut self, args: &[HostTensor]) -> LowerResult<HostTensor> {
        let args = args.iter().map(Tensor::from_host).collect();
        let outs = self.exec.run_fallback(self.block, args)?;
        Ok(outs.iter().map(Tensor::to_host).collect())
    }
}
