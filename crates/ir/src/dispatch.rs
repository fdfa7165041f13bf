//! The block dispatch protocol shared by every backend (the EMLX.Block idea in Rust).
//!
//! A backend keeps a [`Lowerings`] table from block type to a fused lowering. When it meets a
//! block node it looks the block up; with no lowering — or when the lowering declines by
//! calling the fallback handle it is given — the block's fallback subgraph runs. Any crate
//! may register lowerings for any block type, its own or ours.

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

/// A handle that runs the block's fallback subgraph on some arguments (usually the call's).
pub trait Fallback<T, E> {
    /// Runs the fallback subgraph of the block being lowered.
    fn run(&mut self, args: &[T]) -> Result<Vec<T>, E>;
}

type Erased<T, E> =
    dyn Fn(&dyn Block, &Call<'_, T>, &mut dyn Fallback<T, E>) -> Result<Vec<T>, E> + Send + Sync;

/// A table of lowerings keyed by block type, over a backend's tensor type `T` and error `E`.
pub struct Lowerings<T, E> {
    /// By block type: its Rust type name and its lowering.
    by_type: HashMap<TypeId, Entry<T, E>>,
}

type Entry<T, E> = (&'static str, Arc<Erased<T, E>>);

impl<T, E> Default for Lowerings<T, E> {
    fn default() -> Self {
        Lowerings { by_type: HashMap::new() }
    }
}

impl<T, E> Clone for Lowerings<T, E> {
    fn clone(&self) -> Self {
        Lowerings { by_type: self.by_type.clone() }
    }
}

impl<T: 'static, E: 'static> Lowerings<T, E> {
    /// An empty table: every block runs its fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the lowering of block type `B`. The lowering receives the
    /// block as `B`, the call, and a fallback handle it may use to decline.
    pub fn register<B: Block>(
        &mut self,
        lowering: impl Fn(&B, &Call<'_, T>, &mut dyn Fallback<T, E>) -> Result<Vec<T>, E> + Send + Sync + 'static,
    ) {
        let erased = move |b: &dyn Block, call: &Call<'_, T>, fb: &mut dyn Fallback<T, E>| {
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
        fallback: &mut dyn Fallback<T, E>,
    ) -> Option<Result<Vec<T>, E>> {
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
