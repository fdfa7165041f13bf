//! The block library: one file per block (added by the block-library work).

use crate::block::BlockRegistry;

/// A registry holding every block kind of this crate.
pub fn builtin_registry() -> BlockRegistry {
    BlockRegistry::new()
}
