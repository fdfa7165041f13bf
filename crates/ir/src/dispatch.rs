//! The block dispatch protocol shared by every backend (the EMLX.Block idea in Rust).
//!
//! A backend keeps a [`Lowerings`] table from block type to a fused lowering. When it meets a
//! block node it looks the block up; with no lowering — or when the lowering declines by
//! calling the fallback handle it is given — the block's fallback subgraph runs. Any crate
//! may register lowerings for any block type, its own or ours.
//!
//! Every lowering, on every backend, returns one error type, [`LowerError`]: a backend's own
//! error converts into it with `?` (each backend implements `From<ItsError> for LowerError`)
//! and back out of it unchanged (see [`LowerError::downcast`]), so a lowering generic over the
//! tensor type serves any backend.

use crate::block::Block;
use crate::builder::Builder;
use crate::error::IrError;
use crate::graph::Graph;
use crate::shape::TensorType;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

/// What a lowering is called with.
pub struct Call<'a, T> {
    /// The types of the block node's outputs (symbolic dims possible).
    pub outputs: &'a [TensorType],
    /// The evaluated operands.
    pub args: &'a [T],
}

/// Why a lowering failed — the one error type lowerings return on every backend.
///
/// It holds either a backend's own error (an MLX exception, an evaluator error from the
/// fallback subgraph), which the backend gets back intact through [`LowerError::downcast`],
/// or a lowering's own reason ([`LowerError::new`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct LowerError(Box<dyn std::error::Error + Send + Sync + 'static>);

/// What a lowering returns: the block's outputs, or why it failed.
pub type LowerResult<T> = Result<Vec<T>, LowerError>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reason(String);

impl LowerError {
    /// A lowering's own reason for failing (an operand it cannot handle, say).
    pub fn new(reason: impl std::fmt::Display) -> Self {
        LowerError(Box::new(Reason(reason.to_string())))
    }

    /// Wraps a backend's error; backends call this in their `From<ItsError> for LowerError`.
    pub fn from_backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        LowerError(Box::new(e))
    }

    /// The backend error inside, when it is an `E`; otherwise the error itself, unchanged.
    pub fn downcast<E: std::error::Error + 'static>(self) -> Result<E, LowerError> {
        match self.0.downcast::<E>() {
            Ok(e) => Ok(*e),
            Err(other) => Err(LowerError(other)),
        }
    }
}

/// A handle that runs the block's fallback subgraph on some arguments (usually the call's).
pub trait Fallback<T> {
    /// Runs the fallback subgraph of the block being lowered.
    fn run(&mut self, args: &[T]) -> LowerResult<T>;
}

type Erased<T> = dyn Fn(&dyn Block, &Call<'_, T>, &mut dyn Fallback<T>) -> LowerResult<T> + Send + Sync;

/// A table of lowerings keyed by block type, over a backend's tensor type `T`.
pub struct Lowerings<T> {
    /// By block type: its Rust type name and its lowering.
    by_type: HashMap<TypeId, Entry<T>>,
}

type Entry<T> = (&'static str, Arc<Erased<T>>);

impl<T> Default for Lowerings<T> {
    fn default() -> Self {
        Lowerings { by_type: HashMap::new() }
    }
}

impl<T> Clone for Lowerings<T> {
    fn clone(&self) -> Self {
        Lowerings { by_type: self.by_type.clone() }
    }
}

impl<T: 'static> Lowerings<T> {
    /// An empty table: every block runs its fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the lowering of block type `B`. The lowering receives the
    /// block as `B`, the call, and a fallback handle it may use to decline.
    pub fn register<B: Block>(
        &mut self,
        lowering: impl Fn(&B, &Call<'_, T>, &mut dyn Fallback<T>) -> LowerResult<T> + Send + Sync + 'static,
    ) {
        let erased = move |b: &dyn Block, call: &Call<'_, T>, fb: &mut dyn Fallback<T>| {
            let b = b.downcast_ref::<B>().expect("registered under B's TypeId");
            lowering(b, call, fb)
        };
        self.by_type.insert(TypeId::of::<B>(), (std::any::type_name::<B>(), Arc::new(erased)));
    }

    /// Removes the lowering of `B`, so that it runs its fallback again.
    pub fn unregister<B: Block>(&mut self) {
        self.by_type.remove(&TypeId::of::<B>());
    }

    /// True when block `b`'s type has a lowering.
    pub fn has(&self, b: &dyn Block) -> bool {
        self.by_type.contains_key(&b.as_any().type_id())
    }

    /// The block types with a lowering (their Rust type names without the path, e.g.
    /// `RmsNorm`), sorted: what a backend's capabilities list as native.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> =
            self.by_type.values().map(|(n, _)| n.rsplit("::").next().unwrap_or(n)).collect();
        names.sort_unstable();
        names
    }

    /// Runs `b`'s lowering if one is registered; `None` means "no lowering: run the fallback".
    pub fn lower(
        &self,
        b: &dyn Block,
        call: &Call<'_, T>,
        fallback: &mut dyn Fallback<T>,
    ) -> Option<LowerResult<T>> {
        let (_, f) = self.by_type.get(&b.as_any().type_id())?;
        Some(f(b, call, fallback))
    }
}

/// The fallback of `block` as a standalone graph whose inputs (`arg0`, `arg1`, ...) have the
/// given types and whose outputs (`out0`, ...) are the block's outputs.
pub fn fallback_graph(block: &dyn Block, input_types: &[TensorType]) -> Result<Graph, IrError> {
    let mut g = Graph::new();
    let args: Vec<_> =
        input_types.iter().enumerate().map(|(i, t)| g.add_input(&format!("arg{i}"), t.clone())).collect();
    let outs = {
        let mut b = Builder::new(&mut g);
        b.set_scope(Some(format!("{}.fallback", block.kind())));
        block.fallback(&mut b, &args)?
    };
    let expected =
        block.infer(input_types).map_err(|r| IrError::Graph(format!("fallback of {}: {r}", block.kind())))?;
    if outs.len() != expected.len() {
        return Err(IrError::Graph(format!(
            "fallback of {} returns {} values, the block has {} outputs",
            block.kind(),
            outs.len(),
            expected.len()
        )));
    }
    for (i, (v, t)) in outs.iter().zip(&expected).enumerate() {
        if g.value_type(*v) != t {
            return Err(IrError::Graph(format!(
                "fallback of {}: output {i} has type {}, the block infers {t}",
                block.kind(),
                g.value_type(*v)
            )));
        }
        g.add_output(&format!("out{i}"), *v);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, thiserror::Error)]
    #[error("backend says {0}")]
    struct BackendSays(u32);

    #[test]
    fn a_backend_error_comes_back_out_unchanged() {
        let e = LowerError::from_backend(BackendSays(7));
        assert_eq!(e.to_string(), "backend says 7");
        assert_eq!(e.downcast::<BackendSays>().ok(), Some(BackendSays(7)));
    }

    #[test]
    fn a_lowering_reason_is_not_a_backend_error() {
        let e = LowerError::new("rank 3 operands only");
        let e = e.downcast::<BackendSays>().expect_err("a reason, not a backend error");
        assert_eq!(e.to_string(), "rank 3 operands only");
    }
}
