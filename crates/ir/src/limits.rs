//! Limits on what an untrusted model may make a loader, or a run of the loaded graph,
//! allocate. The JSON reader ([`crate::json::from_json_limited`]) and the ONNX importer
//! (`blockfuse_onnx::ImportOptions`, the same two fields) check them before allocating; the
//! CLI's `--max-tensor-bytes` / `--max-constant-bytes` override the defaults.

use crate::shape::{Bindings, TensorType};

/// Byte limits, checked before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes one tensor may take: a constant, and every value whose dims are all
    /// known when the graph is read (or, for a run, once the symbols are bound). Default: half
    /// the machine's memory.
    pub max_tensor_bytes: u64,
    /// The most bytes all constants may take together (memory-mapped bytes are not counted:
    /// they are not copied). Default: three quarters of the machine's memory.
    pub max_constant_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let mem = machine_memory();
        Limits { max_tensor_bytes: mem / 2, max_constant_bytes: mem / 4 * 3 }
    }
}

impl Limits {
    /// No limits (for trusted models).
    pub fn unlimited() -> Self {
        Limits { max_tensor_bytes: u64::MAX, max_constant_bytes: u64::MAX }
    }
}

/// The machine's memory when it cannot be read (`/proc/meminfo` is Linux only).
const FALLBACK_MEMORY: u64 = 16 << 30;

/// Physical memory in bytes (`MemTotal` of `/proc/meminfo`), or 16 GiB when unknown.
pub fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| parse_meminfo(&s)).unwrap_or(FALLBACK_MEMORY)
}

fn parse_meminfo(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of `dims` elements of `elem` bytes each, in checked arithmetic (`u64::MAX` when the
/// product overflows).
pub fn bytes_of(dims: impl IntoIterator<Item = usize>, elem: usize) -> u64 {
    dims.into_iter().try_fold(elem as u64, |acc, d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX)
}

/// Bytes of a value of type `ty` under `bindings`: `None` while a symbol is unbound,
/// `u64::MAX` when the size overflows.
pub fn type_bytes(ty: &TensorType, bindings: &Bindings) -> Option<u64> {
    let dims: Option<Vec<usize>> = ty.shape.iter().map(|d| d.eval(bindings)).collect();
    match dims {
        Some(d) => Some(bytes_of(d, ty.dtype.size_bytes())),
        // An overflowing product of bound symbols is as over the limit as it gets.
        None if ty.shape.iter().all(|d| d.symbols().all(|s| bindings.contains_key(s))) => Some(u64::MAX),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Dim};

    #[test]
    fn meminfo_is_parsed() {
        assert_eq!(parse_meminfo("MemTotal:       16318372 kB\nMemFree: 1 kB\n"), Some(16318372 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn defaults_are_fractions_of_memory() {
        let l = Limits::default();
        assert!(l.max_tensor_bytes > 0 && l.max_tensor_bytes < l.max_constant_bytes);
        assert_eq!(bytes_of([1_000_000, 1_000_000], 4), 4_000_000_000_000);
        assert_eq!(bytes_of([usize::MAX, 3], 4), u64::MAX);
        assert_eq!(bytes_of([], 2), 2);
    }

    #[test]
    fn type_bytes_bind_symbols_and_saturate() {
        let ty = TensorType::new(DType::F32, [Dim::sym("seq"), Dim::Known(4)]);
        let mut b = Bindings::new();
        assert_eq!(type_bytes(&ty, &b), None);
        b.insert("seq".into(), 3);
        assert_eq!(type_bytes(&ty, &b), Some(48));
        b.insert("seq".into(), usize::MAX);
        assert_eq!(type_bytes(&ty, &b), Some(u64::MAX));
    }
}
