//! Compile-time values of small integer tensors, with symbolic entries: what the importer
//! propagates through `Shape`/`Gather`/`Concat`/... chains so that shape operands become
//! static IR attributes.

use blockfuse_ir::{DType, Dim, HostTensor};

/// One integer entry of a known tensor: a constant (possibly negative) or a symbolic dim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymInt {
    /// A constant.
    C(i64),
    /// A symbolic, non-negative dim (never `Dim::Known`: those become `C`).
    D(Dim),
}

use SymInt::{C, D};

impl SymInt {
    /// The entry for a dim (known dims become constants).
    pub fn from_dim(d: &Dim) -> SymInt {
        match d {
            Dim::Known(n) => C(*n as i64),
            Dim::Sym(_) => D(d.clone()),
        }
    }

    fn norm(d: Dim) -> SymInt {
        SymInt::from_dim(&d)
    }

    /// The entry as a dim, when it is one (constants must be ≥ 0).
    pub fn to_dim(&self) -> Option<Dim> {
        match self {
            C(c) if *c >= 0 => Some(Dim::Known(*c as usize)),
            C(_) => None,
            D(d) => Some(d.clone()),
        }
    }

    /// The constant, when the entry is one.
    pub fn as_c(&self) -> Option<i64> {
        match self {
            C(c) => Some(*c),
            D(_) => None,
        }
    }
}

impl std::fmt::Display for SymInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            C(c) => write!(f, "{c}"),
            D(d) => write!(f, "{d}"),
        }
    }
}

/// A small integer (or bool) tensor whose entries are known at import time.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// Element type (an integer type or bool).
    pub dtype: DType,
    /// Dims.
    pub dims: Vec<usize>,
    /// Row-major entries.
    pub vals: Vec<SymInt>,
}

/// The most elements a known tensor may have.
pub const MAX_KNOWN: usize = 4096;

impl Known {
    /// A known tensor.
    pub fn new(dtype: DType, dims: Vec<usize>, vals: Vec<SymInt>) -> Known {
        debug_assert_eq!(dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)), Some(vals.len()));
        Known { dtype, dims, vals }
    }

    /// A 1-D i64 vector.
    pub fn vec(vals: Vec<SymInt>) -> Known {
        Known::new(DType::I64, vec![vals.len()], vals)
    }

    /// A small integer or bool host tensor as a known value.
    pub fn from_tensor(t: &HostTensor) -> Option<Known> {
        if !(t.dtype().is_int() || t.dtype() == DType::Bool) || t.len() > MAX_KNOWN {
            return None;
        }
        Some(Known::new(t.dtype(), t.dims().to_vec(), t.to_i64_vec().into_iter().map(C).collect()))
    }

    /// The host tensor, when every entry is a constant.
    pub fn to_tensor(&self) -> Option<HostTensor> {
        let vals: Option<Vec<i64>> = self.vals.iter().map(SymInt::as_c).collect();
        let t = HostTensor::from_i64(self.dims.clone(), &vals?);
        Some(if self.dtype == DType::I64 { t } else { t.cast(self.dtype) })
    }

    /// Every entry as a constant.
    pub fn consts(&self) -> Option<Vec<i64>> {
        self.vals.iter().map(SymInt::as_c).collect()
    }

    /// The single entry of a one-element tensor.
    pub fn scalar(&self) -> Option<&SymInt> {
        self.vals.first().filter(|_| self.vals.len() == 1)
    }

    /// The same entries converted to another integer or bool type.
    pub fn cast(&self, dtype: DType) -> Known {
        let vals = if dtype == DType::Bool {
            self.vals
                .iter()
                .map(|v| match v {
                    C(c) => C((*c != 0) as i64),
                    D(_) => C(1),
                })
                .collect()
        } else {
            self.vals.clone()
        };
        Known::new(dtype, self.dims.clone(), vals)
    }
}

/// Row-major strides of `dims` (the last is 1).
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s: Vec<usize> = dims
        .iter()
        .rev()
        .scan(1usize, |acc, &d| {
            let st = *acc;
            // Saturating: a tensor with a 0 dim may declare others whose product overflows.
            *acc = acc.saturating_mul(d);
            Some(st)
        })
        .collect();
    s.reverse();
    s
}

pub(crate) fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (i, &d) in idx.iter_mut().zip(dims).rev() {
        if d > 0 {
            *i = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Numpy broadcast of concrete dims.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = (i + a.len()).checked_sub(r).map_or(Some(1), |j| a.get(j).copied())?;
            let y = (i + b.len()).checked_sub(r).map_or(Some(1), |j| b.get(j).copied())?;
            match (x, y) {
                _ if x == y => Some(x),
                (1, _) => Some(y),
                (_, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// The flat index into a tensor of `dims` (right-aligned, broadcast) for output index `idx`
/// (`None` when `dims` has more axes than `idx`).
pub(crate) fn bindex(idx: &[usize], dims: &[usize]) -> Option<usize> {
    let st = strides(dims);
    let tail = idx.get(idx.len().checked_sub(dims.len())?..)?;
    Some(dims.iter().zip(&st).zip(tail).map(|((&d, &s), &i)| if d == 1 { 0 } else { i * s }).sum())
}

/// An elementwise map over broadcast operands.
pub fn map_n(xs: &[&Known], dtype: DType, f: impl Fn(&[&SymInt]) -> Option<SymInt>) -> Option<Known> {
    let mut dims: Vec<usize> = vec![];
    for x in xs {
        dims = broadcast(&dims, &x.dims)?;
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_KNOWN {
        return None;
    }
    let mut vals = Vec::with_capacity(n);
    for flat in 0..n {
        let idx = unravel(flat, &dims);
        // (None, no known value, for an operand whose entries do not fill its dims.)
        let args: Option<Vec<&SymInt>> = xs.iter().map(|x| x.vals.get(bindex(&idx, &x.dims)?)).collect();
        vals.push(f(&args?)?);
    }
    Some(Known::new(dtype, dims, vals))
}

/// `a + b`, when expressible (a negative constant must cancel against the dim's constant
/// term: `(seq+2) + (−1) = seq+1`, but `seq + (−1)` is not a dim).
pub fn add(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (C(x), C(y)) => x.checked_add(*y).map(C),
        (D(d), C(c)) | (C(c), D(d)) if *c >= 0 => d.add(&Dim::Known(*c as usize)).map(SymInt::norm),
        (D(d), C(c)) | (C(c), D(d)) => d.sub(&Dim::Known(c.unsigned_abs() as usize)).ok().map(SymInt::norm),
        (D(x), D(y)) => x.add(y).map(SymInt::norm),
    }
}

/// `a − b`, when expressible: the dims must cancel exactly (`(past+seq) − seq = past`,
/// `2*seq − seq = seq`, `seq − seq = 0`); `seq − batch` could be negative and is not.
pub fn sub(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (C(x), C(y)) => x.checked_sub(*y).map(C),
        (D(_), C(c)) => add(a, &C(c.checked_neg()?)),
        (D(x), D(y)) => x.sub(y).ok().map(SymInt::norm),
        (C(_), D(_)) => None,
    }
}

/// `a · b`, when expressible.
pub fn mul(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (C(x), C(y)) => x.checked_mul(*y).map(C),
        (D(d), C(k)) | (C(k), D(d)) if *k >= 0 => Some(SymInt::norm(d.mul(&Dim::Known(*k as usize)))),
        (D(x), D(y)) => Some(SymInt::norm(x.mul(y))),
        _ => None,
    }
}

/// `a / b` (truncating), when expressible.
pub fn div(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (C(_), C(0)) => None,
        (C(x), C(y)) => Some(C(x.wrapping_div(*y))),
        (D(d), C(k)) if *k > 0 => d.div_exact(&Dim::Known(*k as usize)).map(SymInt::norm),
        (D(x), D(y)) => x.div_exact(y).map(SymInt::norm),
        _ => None,
    }
}

/// Floored `a mod b` on constants.
pub fn modulo(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (C(_), C(0)) => None,
        (C(x), C(y)) => {
            let r = x.wrapping_rem(*y);
            Some(C(if r != 0 && ((r < 0) != (*y < 0)) { r + y } else { r }))
        }
        _ => None,
    }
}

/// Three-way comparison when decidable (symbolic dims are ≥ 1 and a dim's symbolic terms
/// are ≥ 0: `past+seq > seq`, `seq+1 > 1`).
pub fn cmp(a: &SymInt, b: &SymInt) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    match (a, b) {
        (C(x), C(y)) => Some(x.cmp(y)),
        (D(x), D(y)) if x == y => Some(Equal),
        (D(x), D(y)) if x.sub(y).is_ok() => Some(Greater),
        (D(x), D(y)) if y.sub(x).is_ok() => Some(Less),
        (D(_), C(c)) if *c <= 0 => Some(Greater),
        (C(c), D(_)) if *c <= 0 => Some(Less),
        (D(x), C(c)) if x.sub(&Dim::Known(*c as usize)).is_ok_and(|r| r != Dim::Known(0)) => Some(Greater),
        (C(c), D(y)) if y.sub(&Dim::Known(*c as usize)).is_ok_and(|r| r != Dim::Known(0)) => Some(Less),
        _ => None,
    }
}

/// `max(a, b)` when decidable (symbolic dims are ≥ 1).
pub fn max(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (D(_), C(c)) | (C(c), D(_)) if *c <= 1 => Some(if let D(_) = a { a.clone() } else { b.clone() }),
        _ => Some(if cmp(a, b)? == std::cmp::Ordering::Less { b.clone() } else { a.clone() }),
    }
}

/// `min(a, b)` when decidable (symbolic dims are ≥ 1).
pub fn min(a: &SymInt, b: &SymInt) -> Option<SymInt> {
    match (a, b) {
        (D(_), C(c)) | (C(c), D(_)) if *c <= 1 => Some(C(*c)),
        (D(d), C(c)) | (C(c), D(d)) if *c >= i64::MAX / 2 => Some(D(d.clone())),
        _ => Some(if cmp(a, b)? == std::cmp::Ordering::Greater { b.clone() } else { a.clone() }),
    }
}

/// Gathers along `axis` with constant indices (negative from the end).
pub fn gather(data: &Known, idx: &Known, axis: usize) -> Option<Known> {
    let idx_c = idx.consts()?;
    let n = *data.dims.get(axis)? as i64;
    let (before, after) = (data.dims.get(..axis)?, data.dims.get(axis + 1..)?);
    let outer: usize = before.iter().product();
    let inner: usize = after.iter().product();
    if outer.checked_mul(idx_c.len())?.checked_mul(inner)? > MAX_KNOWN {
        return None;
    }
    let mut vals = vec![];
    for o in 0..outer {
        for &i in &idx_c {
            let i = if i < 0 { i + n } else { i };
            if !(0..n).contains(&i) {
                return None;
            }
            let base = (o * n as usize + i as usize) * inner;
            vals.extend_from_slice(data.vals.get(base..base + inner)?);
        }
    }
    let mut dims = before.to_vec();
    dims.extend_from_slice(&idx.dims);
    dims.extend_from_slice(after);
    Some(Known::new(data.dtype, dims, vals))
}

/// Concatenation along `axis`.
pub fn concat(xs: &[&Known], axis: usize) -> Option<Known> {
    let first = xs.first()?;
    let outer: usize = first.dims.get(..axis)?.iter().product();
    let mut vals = vec![];
    let mut total = 0;
    for x in xs {
        let same_others = (0..first.dims.len()).all(|j| j == axis || x.dims.get(j) == first.dims.get(j));
        if x.dims.len() != first.dims.len() || !same_others {
            return None;
        }
        total += x.dims.get(axis)?;
    }
    for o in 0..outer {
        for x in xs {
            let chunk: usize = x.dims.get(axis..)?.iter().product();
            vals.extend_from_slice(x.vals.get(o * chunk..(o + 1) * chunk)?);
        }
    }
    let mut dims = first.dims.clone();
    *dims.get_mut(axis)? = total;
    Some(Known::new(first.dtype, dims, vals))
}

/// Slicing with constant bounds along one axis.
pub fn slice_axis(x: &Known, axis: usize, start: i64, end: i64, step: i64) -> Option<Known> {
    let n = *x.dims.get(axis)?;
    let (s, e) = blockfuse_ir::infer::clamp_slice(n, start, end, step);
    let mut picks = vec![];
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        picks.push(C(i));
        i += step;
    }
    let len = picks.len();
    let r = gather(x, &Known::new(DType::I64, vec![len], picks), axis)?;
    Some(r)
}

/// An elementwise map over broadcast constant float tensors (at most [`MAX_KNOWN`]
/// elements), computed in f64 and rounded once to `dtype`: exact for `+ − × ÷ √` of f32/f16/bf16
/// operands (f64 has more than twice their precision).
pub fn map_f64(xs: &[&HostTensor], dtype: DType, f: impl Fn(&[f64]) -> Option<f64>) -> Option<HostTensor> {
    let mut dims: Vec<usize> = vec![];
    for x in xs {
        dims = broadcast(&dims, x.dims())?;
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_KNOWN || xs.iter().any(|x| x.len() > MAX_KNOWN) {
        return None;
    }
    let vals: Vec<Vec<f64>> = xs.iter().map(|x| x.to_f64_vec()).collect();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let idx = unravel(flat, &dims);
        let args: Option<Vec<f64>> =
            xs.iter().zip(&vals).map(|(x, v)| v.get(bindex(&idx, x.dims())?).copied()).collect();
        out.push(f(&args?)?);
    }
    Some(HostTensor::from_f64(dtype, dims, &out))
}
