//! Limits on what a model may make the importer, or a backend running the imported graph,
//! allocate: checked before allocating, with an error naming the node
//! ([`OnnxError::ResourceLimit`](crate::OnnxError::ResourceLimit)).

/// Options of [`import_model_with`](super::import_model_with) and
/// [`import_file_with`](super::import_file_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The most bytes one tensor may take: an initializer or `Constant`, and every value of
    /// the graph whose dims are all known at import time (a `ConstantOfShape`, `Expand` or
    /// `Tile` output, a graph input, ...). Default: half the machine's memory.
    pub max_tensor_bytes: u64,
    /// The most bytes that all constants the importer holds in memory may take together
    /// (decoded initializers and `Constant` values, and the results of casts folded at
    /// import). Memory-mapped external data is not counted: it is not copied. Default: three
    /// quarters of the machine's memory.
    pub max_constant_bytes: u64,
}

pub use blockfuse_ir::limits::machine_memory;

impl Default for ImportOptions {
    fn default() -> Self {
        blockfuse_ir::limits::Limits::default().into()
    }
}

impl ImportOptions {
    /// No limits (for trusted models).
    pub fn unlimited() -> Self {
        blockfuse_ir::limits::Limits::unlimited().into()
    }
}

/// The same two limits as the JSON reader's (what the CLI's flags set).
impl From<blockfuse_ir::limits::Limits> for ImportOptions {
    fn from(l: blockfuse_ir::limits::Limits) -> Self {
        ImportOptions { max_tensor_bytes: l.max_tensor_bytes, max_constant_bytes: l.max_constant_bytes }
    }
}

pub(crate) use blockfuse_ir::limits::bytes_of;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fractions_of_memory() {
        let o = ImportOptions::default();
        assert!(o.max_tensor_bytes > 0 && o.max_tensor_bytes < o.max_constant_bytes);
        assert_eq!(o.max_tensor_bytes, machine_memory() / 2);
        assert_eq!(ImportOptions::unlimited().max_constant_bytes, u64::MAX);
    }
}
