//! A fusion rule is three parts: a pattern, a check that returns a reason when it fails,
//! and a rewrite that builds the replacement through the IR builder.

use crate::matcher::Match;
use crate::pattern::{OpPred, Pat};
use blockfuse_ir::{Builder, Graph, IrError, NodeId, Op, Value};
use std::any::Any;
use std::sync::Arc;

/// What a check established about a match (the frequency table, the angle source, ...),
/// handed to the rewrite so that no analysis runs twice.
pub type Facts = Box<dyn Any + Send>;
/// The check of a rule: `Err(reason)` rejects the match and is reported as a near-miss;
/// `Ok(facts)` accepts it with what the check found.
pub type Check = Arc<dyn Fn(&Graph, &Match) -> Result<Facts, String> + Send + Sync>;
/// The rewrite of a rule: builds the replacement of the match's root value from the match
/// and the facts its check returned.
pub type Rewrite = Arc<dyn Fn(&mut Builder<'_>, &Match, Facts) -> Result<Value, IrError> + Send + Sync>;

/// Explains a candidate node still in the graph after fusion (a softmax, a mean of squares)
/// that no near-miss explains yet: `Some(reason)` becomes a near-miss of the rule. The third
/// argument says whether some rule already left a near-miss at a node.
pub type Diagnose = Arc<dyn Fn(&Graph, NodeId, &dyn Fn(NodeId) -> bool) -> Option<String> + Send + Sync>;

/// A named fusion rule.
#[derive(Clone)]
pub struct Rule {
    /// The rule's name (what `--report` shows and `disable` takes).
    pub name: &'static str,
    /// What it matches, rooted at the value it replaces.
    pub pattern: Pat,
    /// Extra conditions on a structural match.
    pub check: Check,
    /// Builds the replacement.
    pub rewrite: Rewrite,
    /// When false, interior values may have outside readers (the rule keeps them alive).
    pub exclusive: bool,
    /// Candidates the rule explains when they did not fuse: which ops, and why not.
    pub diagnose: Option<(OpPred, Diagnose)>,
}

impl Rule {
    /// A rule with `pattern`, no extra check and a rewrite still to set.
    pub fn new(name: &'static str, pattern: Pat) -> Rule {
        Rule {
            name,
            pattern,
            check: Arc::new(|_, _| Ok(Box::new(()))),
            rewrite: Arc::new(move |_, _, _| Err(IrError::Graph(format!("rule {name} has no rewrite")))),
            exclusive: true,
            diagnose: None,
        }
    }

    /// Sets the diagnosis of candidates (nodes whose op satisfies `anchor`) left unfused.
    pub fn diagnose(
        mut self,
        anchor: impl Fn(&Op) -> bool + Send + Sync + 'static,
        f: impl Fn(&Graph, NodeId, &dyn Fn(NodeId) -> bool) -> Option<String> + Send + Sync + 'static,
    ) -> Rule {
        self.diagnose = Some((Arc::new(anchor), Arc::new(f)));
        self
    }

    /// Sets the check (one that establishes nothing the rewrite needs).
    pub fn check(mut self, f: impl Fn(&Graph, &Match) -> Result<(), String> + Send + Sync + 'static) -> Rule {
        self.check = Arc::new(move |g, m| f(g, m).map(|()| Box::new(()) as Facts));
        self
    }

    /// Sets the rewrite (one that needs no facts from the check).
    pub fn rewrite(
        mut self,
        f: impl Fn(&mut Builder<'_>, &Match) -> Result<Value, IrError> + Send + Sync + 'static,
    ) -> Rule {
        self.rewrite = Arc::new(move |b, m, _| f(b, m));
        self
    }

    /// Sets a check that returns what it found (`T`) and the rewrite that builds from it:
    /// the rewrite receives the check's result instead of running the analysis again.
    pub fn fuse<T: Send + 'static>(
        mut self,
        check: impl Fn(&Graph, &Match) -> Result<T, String> + Send + Sync + 'static,
        rewrite: impl Fn(&mut Builder<'_>, &Match, T) -> Result<Value, IrError> + Send + Sync + 'static,
    ) -> Rule {
        let name = self.name;
        self.check = Arc::new(move |g, m| check(g, m).map(|t| Box::new(t) as Facts));
        self.rewrite = Arc::new(move |b, m, facts| match facts.downcast::<T>() {
            Ok(t) => rewrite(b, m, *t),
            Err(_) => Err(IrError::Graph(format!("rule {name}: its check and rewrite were set apart"))),
        });
        self
    }
}

impl Rule {
    /// A rule whose check returns the facts it established (a scale, a mask class, a band)
    /// and whose rewrite receives them: `Rule::new(name, pattern).fuse(check, rewrite)`.
    pub fn planned<F: Send + 'static>(
        name: &'static str,
        pattern: Pat,
        check: impl Fn(&Graph, &Match) -> Result<F, String> + Send + Sync + 'static,
        rewrite: impl Fn(&mut Builder<'_>, &Match, F) -> Result<Value, IrError> + Send + Sync + 'static,
    ) -> Rule {
        Rule::new(name, pattern).fuse(check, rewrite)
    }
}

/// An ordered set of rules that callers compose: ours, an extension crate's, minus any the
/// user disabled by name.
#[derive(Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a rule (rules run in insertion order).
    pub fn push(&mut self, rule: Rule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Appends a rule, builder style.
    pub fn with(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Removes the rule called `name`; `false` when there is none.
    pub fn disable(&mut self, name: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.name != name);
        self.rules.len() != before
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The names of the rules, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name).collect()
    }
}

/// A helper for checks: `Err(reason)` unless `cond`.
pub fn require(cond: bool, reason: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(reason.into())
    }
}
