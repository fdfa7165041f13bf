//! Output comparison: `|a − b| ≤ atol + rtol·|b|` per element, NaN only where expected,
//! infinities only where expected (same sign). NaN and ∞ mismatches are counted apart and the
//! first bad element is named, because `max_abs` over finite elements cannot show them.

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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    /// Largest |a − b| over the elements where both are finite (see `skipped_non_finite`).
    pub max_abs: f64,
    /// Largest |a − b| / |b| (over finite pairs with non-zero b).
    pub max_rel: f64,
    /// Elements outside the tolerance (NaN and ∞ mismatches included).
    pub bad: usize,
    /// Why the tensors cannot be compared at all (shape or dtype), if so.
    pub incompatible: Option<String>,
    /// Elements where exactly one side is NaN.
    pub nan_mismatches: usize,
    /// Elements where a side is ±∞ and the other is not the same infinity (NaN aside).
    pub inf_mismatches: usize,
    /// Elements left out of `max_abs` / `max_rel` because a side is NaN or ±∞ (equal
    /// non-finite pairs included).
    pub skipped_non_finite: usize,
    /// The flat index of the first bad element.
    pub first_bad: Option<usize>,
}

impl Comparison {
    /// True when every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.bad == 0 && self.incompatible.is_none()
    }

    /// One line for reports: `max_abs 1.2e-7 max_rel 3.0e-6`, then what `max_abs` cannot show
    /// (`; 4 non-finite elements skipped by max_abs; 2 NaN mismatches; 1 ∞ mismatch; first bad
    /// element at index 17`).
    pub fn summary(&self) -> String {
        let mut s = format!("max_abs {:.3e} max_rel {:.3e}", self.max_abs, self.max_rel);
        if let Some(why) = &self.incompatible {
            s.push_str(&format!("; {why}"));
            return s;
        }
        let plural = |n: usize| if n == 1 { "" } else { "es" };
        if self.skipped_non_finite > 0 {
            s.push_str(&format!("; {} non-finite elements skipped by max_abs", self.skipped_non_finite));
        }
        if self.nan_mismatches > 0 {
            s.push_str(&format!("; {} NaN mismatch{}", self.nan_mismatches, plural(self.nan_mismatches)));
        }
        if self.inf_mismatches > 0 {
            s.push_str(&format!("; {} ∞ mismatch{}", self.inf_mismatches, plural(self.inf_mismatches)));
        }
        if let Some(i) = self.first_bad {
            s.push_str(&format!("; {} bad, first at index {i}", self.bad));
        }
        s
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
            ..Comparison::default()
        };
    }
    let mut c = Comparison::default();
    for i in 0..expected.len() {
        let (a, b) = (actual.get_f64(i), expected.get_f64(i));
        let bad = if !a.is_finite() || !b.is_finite() {
            c.skipped_non_finite += 1;
            let nan = a.is_nan() != b.is_nan();
            let inf = !a.is_nan() && !b.is_nan() && a != b;
            c.nan_mismatches += nan as usize;
            c.inf_mismatches += inf as usize;
            nan || inf
        } else {
            let d = (a - b).abs();
            c.max_abs = c.max_abs.max(d);
            if b != 0.0 {
                c.max_rel = c.max_rel.max(d / b.abs());
            }
            d > tol.atol + tol.rtol * b.abs()
        };
        if bad {
            c.bad += 1;
            c.first_bad.get_or_insert(i);
        }
    }
    c
}

/// The spacing of `dtype`'s values at `|w|` (one ulp); 0 for integer and bool dtypes.
pub fn ulp(dtype: DType, w: f64) -> f64 {
    let (mantissa, min_exp) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        DType::F32 => (23, -126),
        DType::F64 => (52, -1022),
        _ => return 0.0,
    };
    let e = if w == 0.0 { min_exp } else { (w.abs().log2().floor() as i32).max(min_exp) };
    2f64.powi(e - mantissa)
}

/// The largest error of `got` against `want` in units of a `tol`-scaled allowance (the
/// backend parity tests' measure): an element passes when `|got − want| ≤ tol · max(1, |want|)`
/// (absolute where values are at most 1, relative above) or when the two are at most one ulp
/// of the dtype apart (two backends round once from nearly equal f32 values, and a rounding
/// boundary between them puts them one ulp apart). Returns the worst
/// `|got − want| / max(1, |want|)` among failing elements, 0 when all pass, NaN where exactly
/// one of them is NaN.
pub fn max_abs_diff(got: &HostTensor, want: &HostTensor, tol: f64) -> f64 {
    let d = want.dtype();
    (0..want.len().min(got.len()))
        .map(|i| {
            let (g, w) = (got.get_f64(i), want.get_f64(i));
            if g.is_nan() && w.is_nan() || g == w {
                0.0
            } else if g.is_nan() || w.is_nan() {
                f64::NAN
            } else {
                let err = (g - w).abs();
                let rel = err / w.abs().max(1.0);
                if rel <= tol || err <= ulp(d, w) {
                    0.0
                } else {
                    rel
                }
            }
        })
        .fold(0.0, |acc: f64, d| if d.is_nan() || acc.is_nan() { f64::NAN } else { acc.max(d) })
}

/// Asserts the same dtype and dims, and values within `tol` as [`max_abs_diff`] measures;
/// the message names `what`, the worst error and the first bad index.
#[track_caller]
pub fn assert_close(got: &HostTensor, want: &HostTensor, tol: f64, what: &str) {
    assert_eq!((got.dtype(), got.dims()), (want.dtype(), want.dims()), "{what}: type");
    let d = max_abs_diff(got, want, tol);
    if d != 0.0 {
        let first = (0..want.len())
            .find(|&i| max_abs_diff(&one(got, i), &one(want, i), tol) != 0.0)
            .unwrap_or_default();
        panic!(
            "{what}: max error {d:e} > {tol:e} (and more than one ulp), first at index {first}: \
             got {} want {}\n got {got:?}\nwant {want:?}",
            got.get_f64(first),
            want.get_f64(first)
        );
    }
}

/// Element `i` of `t` as a one-element tensor of its dtype.
fn one(t: &HostTensor, i: usize) -> HostTensor {
    HostTensor::from_f64(t.dtype(), vec![1], &[t.get_f64(i)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> HostTensor {
        HostTensor::from_f64(DType::F32, vec![v.len()], v)
    }

    #[test]
    fn nan_and_inf_mismatches_are_counted_and_located() {
        let tol = Tolerance::for_dtype(DType::F32);
        let c = compare(
            &t(&[1.0, 0.5, f64::NAN, f64::INFINITY, 2.0]),
            &t(&[1.0, f64::NAN, f64::NAN, 3.0, 2.0]),
            tol,
        );
        assert_eq!((c.nan_mismatches, c.inf_mismatches, c.bad, c.first_bad), (1, 1, 2, Some(1)));
        assert_eq!(c.skipped_non_finite, 3);
        assert_eq!(c.max_abs, 0.0, "max_abs is over finite pairs only");
        assert!(!c.passed());
        let s = c.summary();
        assert!(s.contains("3 non-finite elements skipped") && s.contains("1 NaN mismatch;"), "{s}");
        assert!(s.contains("1 ∞ mismatch") && s.contains("first at index 1"), "{s}");
    }

    #[test]
    fn equal_non_finite_values_pass() {
        let v = [f64::NAN, f64::NEG_INFINITY, 1.0];
        let c = compare(&t(&v), &t(&v), Tolerance::for_dtype(DType::F32));
        assert!(c.passed(), "{c:?}");
        assert_eq!((c.skipped_non_finite, c.first_bad), (2, None));
        let c = compare(&t(&[f64::INFINITY]), &t(&[f64::NEG_INFINITY]), Tolerance::for_dtype(DType::F32));
        assert_eq!((c.inf_mismatches, c.bad), (1, 1));
    }

    #[test]
    fn scaled_error_is_absolute_below_one_relative_above_with_one_ulp_slack() {
        let want = t(&[0.5, 100.0, 1.0]);
        assert_eq!(max_abs_diff(&t(&[0.5 + 1e-4, 100.0 + 1e-2, 1.0]), &want, 2e-4), 0.0);
        let d = max_abs_diff(&t(&[0.5 + 1e-3, 100.0, 1.0]), &want, 2e-4);
        assert!((d - 1e-3).abs() < 1e-6, "{d}");
        assert!(max_abs_diff(&t(&[0.5, 100.0, f64::NAN]), &want, 1.0).is_nan());
        // one f32 ulp at 1.0 passes even at zero tolerance
        assert_eq!(max_abs_diff(&t(&[1.0 + ulp(DType::F32, 1.0)]), &t(&[1.0]), 0.0), 0.0);
        assert_eq!(ulp(DType::BF16, 1.0), 2f64.powi(-7));
        assert_eq!(ulp(DType::I32, 1.0), 0.0);
    }

    #[test]
    #[should_panic(expected = "first at index 1")]
    fn assert_close_names_the_first_bad_index() {
        assert_close(&t(&[1.0, 2.0, 3.0]), &t(&[1.0, 2.5, 3.5]), 1e-3, "case");
    }
}
