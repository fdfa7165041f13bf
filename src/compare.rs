//! Output comparison: `|a − b| ≤ atol + rtol·|b|` per element, NaN only where expected.

use blockfuse_ir::{DType, HostTensor};

/// Tolerances for one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

impl Tolerance {
    /// The defaults by dtype: 1e-4 for f32/f64, 1e-2 for f16/bf16, exact for ints and bools.
    pub fn for_dtype(d: DType) -> Tolerance {
        match d {
            DType::F32 | DType::F64 => Tolerance { rtol: 1e-4, atol: 1e-4 },
            DType::F16 | DType::BF16 => Tolerance { rtol: 1e-2, atol: 1e-2 },
            _ => Tolerance { rtol: 0.0, atol: 0.0 },
        }
    }
}

/// The result of comparing one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Largest |a − b|.
    pub max_abs: f64,
    /// Largest |a − b| / |b| (over non-zero b).
    pub max_rel: f64,
    /// Elements outside the tolerance (NaN mismatches included).
    pub bad: usize,
    /// Why the tensors cannot be compared at all (shape or dtype), if so.
    pub incompatible: Option<String>,
}

impl Comparison {
    /// True when every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.bad == 0 && self.incompatible.is_none()
    }
}

/// Compares `actual` with `expected`.
pub fn compare(actual: &HostTensor, expected: &HostTensor, tol: Tolerance) -> Comparison {
    if actual.dims() != expected.dims() {
        let why = format!("shape {:?} differs from the reference's {:?}", actual.dims(), expected.dims());
        return Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
            bad: actual.len().max(1),
            incompatible: Some(why),
        };
    }
    let (mut max_abs, mut max_rel, mut bad) = (0.0f64, 0.0f64, 0usize);
    for i in 0..expected.len() {
        let (a, b) = (actual.get_f64(i), expected.get_f64(i));
        if a.is_nan() || b.is_nan() {
            bad += (a.is_nan() != b.is_nan()) as usize;
            continue;
        }
        if a == b {
            continue;
        }
        let d = (a - b).abs();
        max_abs = max_abs.max(d);
        if b != 0.0 {
            max_rel = max_rel.max(d / b.abs());
        }
        if d > tol.atol + tol.rtol * b.abs() {
            bad += 1;
        }
    }
    Comparison { max_abs, max_rel, bad, incompatible: None }
}
