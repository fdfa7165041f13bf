//! The optimizer driver: canonicalize, then run the fusion rules in order to a fixpoint
//! (bounded), re-canonicalizing only around what each rewrite touched.

use crate::canonicalize::{canonicalize_tracked, restore_divisions};
use crate::matcher::{interior_escapes, match_at, Match};
use crate::projections::{self, fuse_projections, ProjectionOptions};
use crate::rule::{Rule, RuleSet};
use blockfuse_ir::backend::Capabilities;
use blockfuse_ir::{Builder, Graph, IrError, NodeId, Op, Value};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// Upper bound on fusion rounds (each round runs every rule once).
pub const MAX_ROUNDS: usize = 8;

/// A rule whose anchor matched but whose check failed: why a candidate did not fuse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearMiss {
    /// The rule's name.
    pub rule: String,
    /// The anchor node (`%12 "name"`).
    pub node: String,
    /// Why it did not fuse.
    pub reason: String,
}

/// What an optimization did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Op nodes before (inputs and constants not counted).
    pub nodes_before: usize,
    /// Op nodes after.
    pub nodes_after: usize,
    /// Wall time of the optimization in milliseconds.
    pub elapsed_ms: f64,
    /// Block nodes in the result, by kind.
    pub blocks: BTreeMap<String, usize>,
    /// Rewrites per rule.
    pub rules: BTreeMap<String, usize>,
    /// Candidates that did not fuse, with reasons.
    pub near_misses: Vec<NearMiss>,
    /// Fusion rounds run.
    pub rounds: usize,
    /// Canonicalization rewrites and CSE merges.
    pub canonicalized: usize,
}

/// Counts op nodes (not inputs, not constants).
pub fn op_node_count(g: &Graph) -> usize {
    g.node_ids().filter(|&id| !matches!(g.node(id).op, Op::Input | Op::Constant(_))).count()
}

/// Counts block nodes by kind.
pub fn block_counts(g: &Graph) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in g.node_ids() {
        if let Op::Block(b) = &g.node(id).op {
            *counts.entry(b.kind().to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The graph-level passes [`optimize_with`] runs besides the rules. The default runs none:
/// they pay only on backends with the kernels for them, which opt in through their
/// [`Capabilities`] ([`OptimizeOptions::for_backend`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptimizeOptions {
    /// Horizontal fusion of projections ([`crate::projections`]), after the rules; `None`: off.
    pub fuse_projections: Option<ProjectionOptions>,
}

impl OptimizeOptions {
    /// The passes `caps` asks for: the horizontal fusion of projections (default limits) when
    /// the backend sets [`Capabilities::horizontal_fusion`].
    pub fn for_backend(caps: &Capabilities) -> Self {
        OptimizeOptions { fuse_projections: caps.horizontal_fusion.then(ProjectionOptions::default) }
    }
}

/// Optimizes `g` in place with `rules` (no graph-level passes: [`OptimizeOptions::default`]).
pub fn optimize(g: &mut Graph, rules: &RuleSet) -> Result<Report, IrError> {
    optimize_with(g, rules, OptimizeOptions::default())
}

/// Optimizes `g` in place with `rules`, then runs the passes `opts` turns on (their rewrites
/// are counted in `rules` under the pass's name, their near-misses reported like a rule's).
pub fn optimize_with(g: &mut Graph, rules: &RuleSet, opts: OptimizeOptions) -> Result<Report, IrError> {
    let start = Instant::now();
    let mut report = Report { nodes_before: op_node_count(g), ..Report::default() };
    for r in rules.rules() {
        report.rules.insert(r.name.to_string(), 0);
    }
    // The multiplications made of divisions, restored after the rules (see restore_divisions).
    let mut divisions = HashSet::new();
    let stats = canonicalize_tracked(g, g.topo_order()?, &mut divisions)?;
    report.canonicalized += stats.rewrites + stats.merged;
    g.remove_dead();
    let mut misses: BTreeMap<(String, NodeId), String> = BTreeMap::new();
    for round in 0..MAX_ROUNDS {
        report.rounds = round + 1;
        let mut changed = false;
        for rule in rules.rules() {
            let mut existed = vec![false; g.node_bound()];
            g.node_ids().for_each(|id| existed[id.index()] = true);
            let fired = apply_rule(g, rule, &mut misses)?;
            if fired > 0 {
                changed = true;
                *report.rules.get_mut(rule.name).expect("inserted") += fired;
                // The replaced nodes go first, so that a folded weight (`reshape(w)`) is
                // its constant's only reader and keeps its name (see canonicalize).
                g.remove_dead();
                let mut seeds: Vec<NodeId> =
                    g.node_ids().filter(|id| !existed.get(id.index()).copied().unwrap_or(false)).collect();
                let users: Vec<NodeId> = seeds.iter().flat_map(|&id| g.users(id)).collect();
                seeds.extend(users);
                let stats = canonicalize_tracked(g, seeds, &mut divisions)?;
                report.canonicalized += stats.rewrites + stats.merged;
            }
        }
        g.remove_dead();
        if !changed {
            break;
        }
    }
    report.canonicalized += restore_divisions(g, &divisions)?;
    // After the rules, so that the blocks reading projections (rope, sdpa, swiglu) formed.
    let mut pass_misses = Vec::new();
    if let Some(p) = opts.fuse_projections {
        let r = fuse_projections(g, p)?;
        report.rules.insert(projections::NAME.to_string(), r.fused);
        pass_misses = r.near_misses;
    }
    diagnose(g, rules, &mut misses);
    report.near_misses = misses
        .into_iter()
        .filter(|((_, id), _)| g.contains(*id))
        .map(|((rule, id), reason)| NearMiss { rule, node: g.label(id).to_string(), reason })
        .collect();
    report.near_misses.extend(pass_misses);
    report.nodes_after = op_node_count(g);
    report.blocks = block_counts(g);
    report.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

/// Adds the rules' diagnoses of candidates left in the graph that no near-miss explains.
fn diagnose(g: &Graph, rules: &RuleSet, misses: &mut BTreeMap<(String, NodeId), String>) {
    for rule in rules.rules() {
        let Some((anchor, explain)) = &rule.diagnose else { continue };
        let found: Vec<(NodeId, String)> = {
            let explained = |id: NodeId| misses.keys().any(|(_, n)| *n == id);
            g.node_ids()
                .filter(|&id| anchor(&g.node(id).op) && !explained(id))
                .filter_map(|id| explain(g, id, &explained).map(|r| (id, r)))
                .collect()
        };
        for (id, reason) in found {
            misses.insert((rule.name.to_string(), id), reason);
        }
    }
}

/// Runs one rule over every anchor in the graph; returns how many rewrites it made.
/// Dead nodes are left in place until the round ends, so new node ids never reuse old ones.
fn apply_rule(
    g: &mut Graph,
    rule: &Rule,
    misses: &mut BTreeMap<(String, NodeId), String>,
) -> Result<usize, IrError> {
    let Some(anchor) = rule.pattern.anchor() else {
        return Ok(0);
    };
    // Consumers first: the largest match (a norm with its weight) wins over its core.
    let mut candidates: Vec<NodeId> = g.topo_order()?;
    candidates.retain(|&id| anchor(&g.node(id).op) && g.node(id).types.len() == 1);
    candidates.reverse();
    let mut fired = 0;
    let mut dead = vec![false; g.node_bound()];
    for id in candidates {
        let root = Value::first(id);
        if dead[id.index()] || g.use_count(root) == 0 {
            continue;
        }
        let Some(m) = match_at(g, &rule.pattern, root) else {
            continue;
        };
        let key = (rule.name.to_string(), id);
        let verdict: Result<crate::rule::Facts, String> = match m.failed {
            Some(reason) => Err(reason.to_string()),
            None => match interior_escapes(g, &m).filter(|_| rule.exclusive) {
                Some(reason) => Err(reason),
                None => (rule.check)(g, &m),
            },
        };
        unknown_capture(rule, &m)?;
        let facts = match verdict {
            Ok(facts) => facts,
            Err(reason) => {
                misses.insert(key, reason);
                continue;
            }
        };
        let name = g.node(id).name.clone();
        let want = g.value_type(root).clone();
        let new = {
            let mut b = Builder::new(g);
            b.set_scope(name.or_else(|| Some(rule.name.to_string())));
            let new = (rule.rewrite)(&mut b, &m, facts);
            unknown_capture(rule, &m)?;
            new?
        };
        if *g.value_type(new) != want {
            return Err(IrError::Graph(format!(
                "rule {} replaced {} ({want}) by a value of type {}",
                rule.name,
                g.label(id),
                g.value_type(new)
            )));
        }
        misses.remove(&key);
        g.replace_all_uses(root, new);
        mark_dead(g, id, &mut dead);
        fired += 1;
    }
    Ok(fired)
}

/// An error when the rule's check or rewrite asked for a capture its match does not have.
fn unknown_capture(rule: &Rule, m: &Match) -> Result<(), IrError> {
    match m.missing_capture() {
        Some(name) => Err(IrError::Graph(format!(
            "rule {}: no capture named '{name}' in its match (captures: {})",
            rule.name,
            m.capture_names().join(", ")
        ))),
        None => Ok(()),
    }
}

/// Marks `start` and every producer that only dead nodes read as dead, so later anchors
/// in the same pass never match work that a rewrite already replaced.
fn mark_dead(g: &Graph, start: NodeId, dead: &mut Vec<bool>) {
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if dead.len() <= id.index() {
            dead.resize(id.index() + 1, false);
        }
        let n = g.node(id);
        let is_output = (0..n.types.len()).any(|o| g.is_output(Value { node: id, output: o as u16 }));
        if dead[id.index()] || is_output || matches!(n.op, Op::Input) {
            continue;
        }
        if g.users(id).iter().all(|u| dead.get(u.index()).copied().unwrap_or(false)) {
            dead[id.index()] = true;
            stack.extend(n.operands.iter().map(|v| v.node));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{any, unary};
    use blockfuse_ir::{DType, TensorType, UnaryOp};

    fn neg_graph() -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::known(DType::F32, &[4]));
        let n = g.add_node(Op::Unary(UnaryOp::Neg), &[x], None).unwrap();
        let y = g.add_node(Op::Unary(UnaryOp::Neg), &[Value::first(n)], None).unwrap();
        g.add_output("y", Value::first(y));
        g
    }

    fn double_neg(rewrite_capture: &'static str) -> RuleSet {
        let rule = Rule::new("double_neg", unary(UnaryOp::Neg, unary(UnaryOp::Neg, any("x"))))
            .rewrite(move |_, m| Ok(m.value(rewrite_capture)));
        let mut rules = RuleSet::default();
        rules.push(rule);
        rules
    }

    #[test]
    fn a_misspelt_capture_is_an_error_naming_it_and_the_rule() {
        let mut g = neg_graph();
        let e = optimize(&mut g, &double_neg("xs")).unwrap_err().to_string();
        assert_eq!(e, "rule double_neg: no capture named 'xs' in its match (captures: x)");
        // The same rule spelt right fires.
        let mut g = neg_graph();
        let report = optimize(&mut g, &double_neg("x")).unwrap();
        assert_eq!(report.rules["double_neg"], 1);
        assert_eq!(g.outputs()[0].1, Value::first(g.inputs()[0]));
    }
}
