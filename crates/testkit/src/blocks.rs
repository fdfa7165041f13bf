//! Blocks that exist only for tests of the block dispatch protocol.

use blockfuse_ir::block::Attrs;
use blockfuse_ir::{Block, Builder, IrError, TensorType, Value};

/// A block whose fallback divides its two integer operands (`a / b`), and which no backend
/// lowers: the backends' tests run it with `b` holding a zero to see how an error from
/// inside a fallback subgraph names both the block node and the fallback's `div`
/// (`int_ratio.fallback/div`).
#[derive(Debug, Clone, PartialEq)]
pub struct IntRatio;

impl Block for IntRatio {
    fn kind(&self) -> &'static str {
        "int_ratio"
    }
    fn attrs(&self) -> Attrs {
        // No attributes: `{}`.
        Attrs::Object(Default::default())
    }
    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        Ok(vec![inputs[0].clone()])
    }
    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        Ok(vec![b.div(inputs[0], inputs[1])?])
    }
}
