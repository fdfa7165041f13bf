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

impl Default for ImportOptions {
    fn default() -> Self {
        let mem = machine_memory();
        ImportOptions { max_tensor_bytes: mem / 2, max_constant_bytes: mem / 4 * 3 }
    }
}

impl ImportOptions {
    /// No limits (for trusted models).
    pub fn unlimited() -> Self {
        ImportOptions { max_tensor_bytes: u64::MAX, max_constant_bytes: u64::MAX }
    }
}

/// Bytes of `count` elements of `elem` bytes each, saturating at `u64::MAX`.
pub(crate) fn bytes_of(dims: impl IntoIterator<Item = usize>, elem: usize) -> u64 {
    dims.into_iter().try_fold(elem as u64, |acc, d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed() {
        assert_eq!(parse_meminfo("MemTotal:       16318372 kB\nMemFree: 1 kB\n"), Some(16318372 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn defaults_are_fractions_of_memory() {
        let o = ImportOptions::default();
        assert!(o.max_tensor_bytes > 0 && o.max_tensor_bytes < o.max_constant_bytes);
        assert_eq!(bytes_of([1_000_000, 1_000_000], 4), 4_000_000_000_000);
        assert_eq!(bytes_of([usize::MAX, 3], 4), u64::MAX);
        assert_eq!(bytes_of([], 2), 2);
    }
}
