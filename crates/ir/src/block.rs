//! The `Block` trait: a fused operation that always carries its fallback in primitive ops,
//! and the registry through which JSON names blocks by kind.

use crate::builder::Builder;
use crate::error::IrError;
use crate::graph::Value;
use crate::shape::TensorType;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Upcasting to `Any`, implemented for every `'static` type so blocks need not write it.
pub trait AsAny: Any {
    /// `self` as `&dyn Any`, for downcasting.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A block's attributes: a JSON object whose keys are the attribute names.
pub type Attrs = serde_json::Value;

/// A block's attributes as its serde serialization (what [`block_identity!`](crate::block_identity)
/// writes as [`Block::attrs`]).
pub fn serde_attrs<B: serde::Serialize + ?Sized>(block: &B) -> Attrs {
    // Blocks are plain structs of numbers, strings and enums, so this cannot fail; a type
    // serde cannot represent as JSON (a map with non-string keys) is a programming error.
    serde_json::to_value(block).expect("a block's attributes serialize to JSON")
}

/// Writes the two identity methods of a [`Block`] impl: `kind()` returns the type's inherent
/// `KIND` constant and `attrs()` its serde serialization ([`serde_attrs`]). Equality and
/// hashing ([`Block::dyn_eq`], [`Block::dyn_hash`]) follow from those two.
///
/// ```
/// use blockfuse_ir::{Block, Builder, IrError, TensorType, Value};
///
/// #[derive(Debug, serde::Serialize)]
/// struct Twice;
///
/// impl Twice {
///     const KIND: &'static str = "twice";
/// }
///
/// impl Block for Twice {
///     blockfuse_ir::block_identity!();
///
///     fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
///         Ok(vec![inputs[0].clone()])
///     }
///
///     fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
///         Ok(vec![b.add2(inputs[0], inputs[0])?])
///     }
/// }
/// assert_eq!(Twice.kind(), "twice");
/// assert!(Twice.dyn_eq(&Twice));
/// ```
#[macro_export]
macro_rules! block_identity {
    () => {
        fn kind(&self) -> &'static str {
            Self::KIND
        }

        fn attrs(&self) -> $crate::block::Attrs {
            $crate::block::serde_attrs(self)
        }
    };
}

/// A fused operation. Object-safe: graphs hold blocks as `Arc<dyn Block>`.
///
/// A block states its math once, as [`Block::fallback`]: the primitive ops it stands for.
/// Backends may register a faster lowering per block type; where they have none, or the
/// lowering declines, the fallback runs — so a block is always executable.
pub trait Block: AsAny + Debug + Send + Sync {
    /// The kind, e.g. `"rms_norm"`: the JSON tag and the text dump's `block.<kind>`.
    fn kind(&self) -> &'static str;

    /// The attributes as a JSON object (what the registry deserializes back).
    fn attrs(&self) -> Attrs;

    /// Output types from operand types; `Err` gives the rule broken, prefixed by the kind
    /// ("rms_norm: weight has 63 elements, the last axis has 64").
    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String>;

    /// Emits the block's math as primitive ops on `inputs` and returns its outputs.
    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError>;

    /// The block type's parity table: cases (block, operand types, value scale, tolerance)
    /// that the parity tests of every backend run against the f64 reference and against
    /// each other (`crates/fallback/tests/parity.rs`, `crates/mlx-backend/tests/parity.rs`).
    /// A new block adds rows here, not test files. None by default.
    fn parity_cases() -> Vec<ParityCase>
    where
        Self: Sized,
    {
        Vec::new()
    }

    /// Block identity, for CSE and for the backends' caches of fallback graphs: the same
    /// Rust type, the same kind and the same attributes.
    fn dyn_eq(&self, other: &dyn Block) -> bool {
        self.as_any().type_id() == other.as_any().type_id()
            && self.kind() == other.kind()
            && self.attrs() == other.attrs()
    }

    /// A hash consistent with [`Block::dyn_eq`].
    fn dyn_hash(&self, state: &mut dyn Hasher) {
        let mut bytes = self.kind().as_bytes().to_vec();
        bytes.extend(self.attrs().to_string().bytes());
        state.write(&bytes);
    }
}

/// One row of a block's parity table ([`Block::parity_cases`]): random operands of these
/// types (values `scale · noise`, float operands only), compared per element within
/// `tol · max(1, |want|)` (absolute up to 1, relative above) or one ulp.
#[derive(Debug, Clone)]
pub struct ParityCase {
    /// The block under test.
    pub block: Arc<dyn Block>,
    /// Its operands' types (known dims).
    pub operands: Vec<TensorType>,
    /// The magnitude of the random operand values.
    pub scale: f64,
    /// The tolerance.
    pub tol: f64,
}

impl ParityCase {
    /// A case of `block` on operands of `dtype` and these dims.
    pub fn new(block: impl Block, dtype: crate::DType, dims: &[&[usize]], scale: f64, tol: f64) -> Self {
        let operands = dims.iter().map(|d| TensorType::known(dtype, d)).collect();
        ParityCase { block: Arc::new(block), operands, scale, tol }
    }

    /// A graph of one node of the case's block over inputs `arg0..` of `types` (the case's
    /// operand types, or the same widened to f64), outputs `out0..`.
    pub fn graph(&self, types: &[TensorType]) -> Result<crate::Graph, IrError> {
        block_graph(self.block.clone(), types)
    }

    /// The case in words for messages: `block.gelu{approximation=tanh}(f16[2, 7, 33])`.
    pub fn what(&self) -> String {
        let types: Vec<String> = self.operands.iter().map(|t| t.to_string()).collect();
        format!("{:?}({})", crate::op::Op::Block(self.block.clone()), types.join(", "))
    }
}

/// A graph of one node of `block` over inputs `arg0`, `arg1`, ... of `types`, whose outputs
/// `out0`, ... are the block's: the unit that parity tests, backend tests and benches run to
/// exercise one block. Errors when the block rejects the operand types.
pub fn block_graph(block: Arc<dyn Block>, types: &[TensorType]) -> Result<crate::Graph, IrError> {
    let mut g = crate::Graph::new();
    let mut b = Builder::new(&mut g);
    let args: Vec<Value> =
        types.iter().enumerate().map(|(i, t)| b.input(&format!("arg{i}"), t.clone())).collect();
    let outs = b.add_multi(crate::op::Op::Block(block), &args)?;
    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), v);
    }
    Ok(g)
}

impl dyn Block {
    /// The block as its concrete type, if it is one.
    pub fn downcast_ref<T: Block>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }

    /// True when the block is of type `T`.
    pub fn is<T: Block>(&self) -> bool {
        self.as_any().is::<T>()
    }
}

impl PartialEq for dyn Block {
    fn eq(&self, other: &dyn Block) -> bool {
        self.dyn_eq(other)
    }
}

impl Eq for dyn Block {}

impl Hash for dyn Block {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dyn_hash(state);
    }
}

/// Turns a block's JSON attributes back into the block.
pub type BlockDecoder = fn(serde_json::Value) -> Result<Arc<dyn Block>, String>;

/// Maps block kinds to decoders. A process-wide instance
/// ([`global_registry`](crate::blocks::global_registry), seeded by the block library) serves
/// JSON reading; extension crates add their kinds with
/// [`register_block`](crate::blocks::register_block).
#[derive(Default, Clone)]
pub struct BlockRegistry {
    decoders: BTreeMap<String, BlockDecoder>,
}

impl BlockRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a block type deserialized from its attributes with serde.
    pub fn register<B>(&mut self, kind: &str)
    where
        B: Block + serde::de::DeserializeOwned,
    {
        self.decoders.insert(kind.to_string(), decode_with_serde::<B>);
    }

    /// Registers a custom decoder.
    pub fn register_decoder(&mut self, kind: &str, decoder: BlockDecoder) {
        self.decoders.insert(kind.to_string(), decoder);
    }

    /// Decodes a block; `Err` says why (unknown kinds list the known ones).
    pub fn decode(&self, kind: &str, attrs: serde_json::Value) -> Result<Arc<dyn Block>, DecodeError> {
        let decoder = self
            .decoders
            .get(kind)
            .ok_or_else(|| DecodeError::UnknownKind { known: self.kinds().collect::<Vec<_>>().join(", ") })?;
        decoder(attrs).map_err(DecodeError::BadAttrs)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.decoders.keys().map(String::as_str)
    }
}

/// Why a block could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// No decoder for the kind; the known kinds are listed.
    UnknownKind {
        /// Comma-separated registered kinds.
        known: String,
    },
    /// The attributes did not decode.
    BadAttrs(String),
}

fn decode_with_serde<B: Block + serde::de::DeserializeOwned>(
    attrs: serde_json::Value,
) -> Result<Arc<dyn Block>, String> {
    let block: B = serde_json::from_value(attrs).map_err(|e| e.to_string())?;
    Ok(Arc::new(block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{Gelu, GeluKind, RmsNorm};
    use crate::op::Op;
    use std::collections::hash_map::DefaultHasher;

    /// Another type under RmsNorm's kind and attributes: not the same block.
    #[derive(Debug, serde::Serialize)]
    struct Impostor {
        eps: f32,
        weight_offset: f32,
    }

    impl Impostor {
        const KIND: &'static str = RmsNorm::KIND;
    }

    impl Block for Impostor {
        crate::block_identity!();

        fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
            Ok(inputs.to_vec())
        }

        fn fallback(&self, _: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
            Ok(inputs.to_vec())
        }
    }

    fn hash(op: &Op) -> u64 {
        let mut h = DefaultHasher::new();
        op.computation_hash(&mut h);
        h.finish()
    }

    #[test]
    fn identity_is_type_kind_and_attributes() {
        let a: Arc<dyn Block> = Arc::new(RmsNorm::new(1e-6));
        let same: Arc<dyn Block> = Arc::new(RmsNorm::new(1e-6));
        let other_eps: Arc<dyn Block> = Arc::new(RmsNorm::new(1e-5));
        let impostor: Arc<dyn Block> = Arc::new(Impostor { eps: 1e-6, weight_offset: 0.0 });
        assert_eq!(impostor.attrs(), a.attrs());
        assert!(*a == *same && *a != *other_eps && *a != *impostor);
        let (op, op2) = (Op::Block(a), Op::Block(same));
        assert!(op.same_computation(&op2) && !op.same_computation(&Op::Block(other_eps)));
        assert_eq!(hash(&op), hash(&op2));
        // Equal blocks share one entry of a map keyed by block.
        let mut map = std::collections::HashMap::new();
        map.insert(Arc::new(Gelu::new(GeluKind::Tanh)) as Arc<dyn Block>, 1);
        assert_eq!(map.get(&(Arc::new(Gelu::new(GeluKind::Tanh)) as Arc<dyn Block>)), Some(&1));
        assert_eq!(map.get(&(Arc::new(Gelu::new(GeluKind::Exact)) as Arc<dyn Block>)), None);
    }
}
