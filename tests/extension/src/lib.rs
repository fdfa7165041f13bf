//! Extension crate (filled in by the block-protocol work)
