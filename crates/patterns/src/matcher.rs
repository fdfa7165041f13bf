//! Backtracking matcher: finds the first assignment of a pattern to a value's producers.

use crate::pattern::Pat;
use blockfuse_ir::{BinaryOp, Graph, HostTensor, NodeId, Op, Value};
use std::collections::HashMap;

/// A successful (or near-miss) match.
#[derive(Debug, Clone)]
pub struct Match {
    /// The value the pattern's root matched.
    pub root: Value,
    /// Captured values by name.
    pub captures: HashMap<&'static str, Value>,
    /// Nodes matched by op patterns (the root's node included): the work a rewrite replaces.
    pub interior: Vec<NodeId>,
    /// Set when an `expect` sub-pattern failed: the near-miss reason.
    pub failed: Option<&'static str>,
    /// The first name [`Match::value`] was asked for that this match did not capture; the
    /// driver turns it into an error naming the capture and the rule.
    missing: std::cell::RefCell<Option<String>>,
}

impl Match {
    /// The captured value `name`. When the match has no such capture (a typo, or a branch
    /// of the pattern that did not match; use [`Match::get`] for optional ones) it returns
    /// the root and records the name: `optimize` then fails with an error naming the
    /// capture and the rule, and the rewrite's result is discarded.
    pub fn value(&self, name: &str) -> Value {
        match self.captures.get(name) {
            Some(v) => *v,
            None => {
                self.missing.borrow_mut().get_or_insert_with(|| name.to_string());
                self.root
            }
        }
    }

    /// The first capture name [`Match::value`] did not find, if any.
    pub fn missing_capture(&self) -> Option<String> {
        self.missing.borrow().clone()
    }

    /// The capture names of this match, sorted (for messages).
    pub fn capture_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.captures.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// The captured value `name`, if that branch of the pattern matched.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.captures.get(name).copied()
    }

    /// The constant captured as `name`, if it is one.
    pub fn constant<'g>(&self, g: &'g Graph, name: &str) -> Option<&'g HostTensor> {
        g.node(self.get(name)?.node).op.as_constant()
    }

    /// The single element of the constant `name`, if it has exactly one.
    pub fn scalar(&self, g: &Graph, name: &str) -> Option<f64> {
        let t = self.constant(g, name)?;
        (t.len() == 1).then(|| t.get_f64(0))
    }
}

#[derive(Clone)]
struct State<'p> {
    goals: Vec<(&'p Pat, Value)>,
    captures: Vec<(&'static str, Value)>,
    interior: Vec<NodeId>,
    failed: Option<&'static str>,
}

/// Matches `pat` rooted at `v`; `None` when it does not match even as a near-miss.
pub fn match_at(g: &Graph, pat: &Pat, v: Value) -> Option<Match> {
    let state = State { goals: vec![(pat, v)], captures: vec![], interior: vec![], failed: None };
    solve(g, state).map(|s| Match {
        root: v,
        captures: s.captures.into_iter().collect(),
        interior: {
            let mut i = s.interior;
            i.sort();
            i.dedup();
            i
        },
        failed: s.failed,
        missing: Default::default(),
    })
}

fn solve<'p>(g: &Graph, mut s: State<'p>) -> Option<State<'p>> {
    let Some((pat, v)) = s.goals.pop() else {
        return Some(s);
    };
    match pat {
        Pat::Any(name) => {
            if let Some((_, bound)) = s.captures.iter().find(|(n, _)| n == name) {
                return (*bound == v).then_some(()).and_then(|_| solve(g, s));
            }
            s.captures.push((name, v));
            solve(g, s)
        }
        Pat::Const(name) => {
            if !matches!(g.node(v.node).op, Op::Constant(_)) {
                return None;
            }
            s.captures.push((name, v));
            solve(g, s)
        }
        Pat::Node { pred, args, commutative, capture, .. } => {
            let n = g.node(v.node);
            if !pred(&n.op) || n.operands.len() != args.len() {
                return None;
            }
            s.interior.push(v.node);
            if let Some(c) = capture {
                s.captures.push((c, v));
            }
            let orders: &[[usize; 2]] =
                if *commutative && args.len() == 2 { &[[0, 1], [1, 0]] } else { &[[0, 1]] };
            for order in orders {
                let mut t = s.clone();
                for (k, a) in args.iter().enumerate() {
                    let operand = if args.len() == 2 { n.operands[order[k]] } else { n.operands[k] };
                    t.goals.push((a, operand));
                }
                if let Some(done) = solve(g, t) {
                    return Some(done);
                }
            }
            None
        }
        Pat::Guard(inner, pred) => {
            if !pred(g, v) {
                return None;
            }
            s.goals.push((inner, v));
            solve(g, s)
        }
        Pat::OneOf(alts) => alts.iter().find_map(|a| {
            let mut t = s.clone();
            t.goals.push((a, v));
            solve(g, t)
        }),
        Pat::Expect(inner, reason) => {
            let mut t = s.clone();
            t.goals.push((inner, v));
            // Solve the inner pattern on its own first, so its failure is attributed to it.
            let mut alone = t.clone();
            alone.goals = vec![(inner, v)];
            if solve(g, alone).is_some() {
                if let Some(done) = solve(g, t) {
                    return Some(done);
                }
            }
            if s.failed.is_none() {
                s.failed = Some(reason);
            }
            solve(g, s)
        }
        Pat::Product(factors) => {
            for (leaves, muls) in factorizations(g, v, factors.len()) {
                for perm in permutations(factors.len()) {
                    let mut t = s.clone();
                    t.interior.extend(&muls);
                    for (k, &p) in perm.iter().enumerate() {
                        t.goals.push((&factors[k], leaves[p]));
                    }
                    if let Some(done) = solve(g, t) {
                        return Some(done);
                    }
                }
            }
            None
        }
    }
}

/// Ways to write `v` as a product of exactly `n` values through `mul` nodes: (leaves, muls).
fn factorizations(g: &Graph, v: Value, n: usize) -> Vec<(Vec<Value>, Vec<NodeId>)> {
    let mut out = Vec::new();
    let mut frontier = vec![(vec![v], Vec::<NodeId>::new())];
    while let Some((leaves, muls)) = frontier.pop() {
        if leaves.len() == n {
            if !muls.is_empty() {
                out.push((leaves.clone(), muls.clone()));
            }
            continue;
        }
        // Expand one mul leaf at a time (the last expandable one keeps enumeration finite).
        for (i, leaf) in leaves.iter().enumerate() {
            let node = g.node(leaf.node);
            if matches!(node.op, Op::Binary(BinaryOp::Mul)) && leaf.output == 0 {
                let mut next = leaves.clone();
                next.splice(i..=i, node.operands.iter().copied());
                let mut m = muls.clone();
                m.push(leaf.node);
                if !frontier.iter().any(|(l, _)| *l == next) {
                    frontier.push((next, m));
                }
            }
        }
    }
    out
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// Why a match may not be rewritten: an interior value is read outside the match or is a
/// graph output (the rewrite would change or duplicate it).
pub fn interior_escapes(g: &Graph, m: &Match) -> Option<String> {
    interior_escapes_except(g, m, &[])
}

/// [`interior_escapes`], except that the values in `kept` may be read outside the match (a
/// non-exclusive rule that leaves them computed beside its replacement).
pub fn interior_escapes_except(g: &Graph, m: &Match, kept: &[Value]) -> Option<String> {
    for &id in &m.interior {
        if id == m.root.node || kept.iter().any(|k| k.node == id) {
            continue;
        }
        let n = g.node(id);
        for out in 0..n.types.len() {
            let v = Value { node: id, output: out as u16 };
            if g.is_output(v) {
                return Some(format!("interior value {} is a graph output", g.label(id)));
            }
            if let Some((user, _)) = g.consumers(v).find(|(u, _)| !m.interior.contains(u)) {
                return Some(format!("interior value {} is also read by {}", g.label(id), g.label(user)));
            }
        }
    }
    None
}
