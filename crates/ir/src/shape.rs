//! Dimensions (known sizes or symbolic polynomials such as `batch*seq` or `past_seq+seq`),
//! shapes and tensor types.

use crate::dtype::DType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One dimension: a known size, or a symbolic polynomial over named symbols bound at run
/// time: a sum of terms `coeff * s1 * s2 ...` with positive coefficients (`batch`, `2*seq`,
/// `batch*seq`, `past_seq+seq`, `seq+1`).
///
/// Symbolic dims compare by their canonical form: the factors of each term sorted by name,
/// the terms sorted by their factors (the constant term first) with equal terms merged,
/// coefficients ≥ 1. Equality and hashing are therefore structural: `seq+past_seq` and
/// `past_seq+seq` are the same dim, `seq` and `batch` are different dims.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A size known when the graph is built.
    Known(usize),
    /// A sum of products of named symbols (at least one term mentions a symbol).
    Sym(SymDim),
}

/// The symbolic part of a [`Dim`]: `terms[0] + terms[1] + ...`, in canonical order.
///
/// A monomial (one term, the common case) is stored inline without allocating.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymDim {
    terms: SmallVec<[Term; 1]>,
}

/// One term of a [`SymDim`]: `coeff * factors[0] * factors[1] ...`; no factors for the
/// constant term. Fields in this order so that terms sort by their factors.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Term {
    factors: SmallVec<[Arc<str>; 2]>,
    coeff: usize,
}

/// Symbol values bound from actual inputs, used to turn symbolic dims into sizes.
pub type Bindings = HashMap<Arc<str>, usize>;

/// Why an operation on dims has no dim as its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DimError {
    /// `lhs - rhs` does not cancel to a polynomial with non-negative coefficients.
    #[error(
        "{lhs} - {rhs} is not a dim: the terms of {rhs} are not all part of {lhs} (the difference \
         could be negative for some symbol values)"
    )]
    Difference {
        /// The minuend.
        lhs: Box<Dim>,
        /// The subtrahend.
        rhs: Box<Dim>,
    },
    /// A coefficient or size does not fit in `usize`.
    #[error("{lhs} {op} {rhs} overflows")]
    Overflow {
        /// The left operand.
        lhs: Box<Dim>,
        /// `+`, `-` or `*`.
        op: char,
        /// The right operand.
        rhs: Box<Dim>,
    },
}

impl Term {
    fn constant(coeff: usize) -> Term {
        Term { factors: SmallVec::new(), coeff }
    }

    /// The product of two terms (factor lists merged in order); `None` on overflow.
    fn mul(&self, other: &Term) -> Option<Term> {
        let mut factors = SmallVec::with_capacity(self.factors.len() + other.factors.len());
        let (mut i, mut j) = (0, 0);
        while i < self.factors.len() || j < other.factors.len() {
            let take_left =
                j == other.factors.len() || (i < self.factors.len() && self.factors[i] <= other.factors[j]);
            if take_left {
                factors.push(self.factors[i].clone());
                i += 1;
            } else {
                factors.push(other.factors[j].clone());
                j += 1;
            }
        }
        Some(Term { factors, coeff: self.coeff.checked_mul(other.coeff)? })
    }

    /// `self / other` when it is again a term (coefficient divisible, factors contained).
    fn div(&self, other: &Term) -> Option<Term> {
        if other.coeff == 0 || !self.coeff.is_multiple_of(other.coeff) {
            return None;
        }
        let mut rest = self.factors.clone();
        for f in &other.factors {
            let pos = rest.iter().position(|r| r == f)?;
            rest.remove(pos);
        }
        Some(Term { factors: rest, coeff: self.coeff / other.coeff })
    }

    /// The value under `bindings`; `None` when a factor is unbound or it overflows.
    fn eval(&self, bindings: &Bindings) -> Option<usize> {
        self.factors.iter().try_fold(self.coeff, |acc, f| acc.checked_mul(*bindings.get(f)?))
    }
}

/// The terms of a dim (a known size is one constant term; 0 has none).
fn terms_of(d: &Dim) -> SmallVec<[Term; 1]> {
    match d {
        Dim::Known(0) => SmallVec::new(),
        Dim::Known(n) => smallvec::smallvec![Term::constant(*n)],
        Dim::Sym(s) => s.terms.clone(),
    }
}

/// The canonical dim of a sum of terms: sorted, equal factors merged, zero terms dropped;
/// `None` when a merged coefficient overflows.
fn from_terms(mut terms: SmallVec<[Term; 1]>) -> Option<Dim> {
    terms.sort_unstable_by(|a, b| a.factors.cmp(&b.factors));
    let mut out: SmallVec<[Term; 1]> = SmallVec::with_capacity(terms.len());
    for t in terms {
        match out.last_mut() {
            Some(last) if last.factors == t.factors => last.coeff = last.coeff.checked_add(t.coeff)?,
            _ => out.push(t),
        }
    }
    out.retain(|t| t.coeff != 0);
    Some(match out.iter().all(|t| t.factors.is_empty()) {
        true => Dim::Known(out.first().map_or(0, |t| t.coeff)),
        false => Dim::Sym(SymDim { terms: out }),
    })
}

impl Dim {
    /// A single named symbol.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(SymDim {
            terms: smallvec::smallvec![Term { factors: smallvec::smallvec![Arc::from(name)], coeff: 1 }],
        })
    }

    /// The size, when known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// True when this dim is exactly the single symbol `name` (coefficient 1).
    pub fn is_symbol(&self, name: &str) -> bool {
        matches!(self, Dim::Sym(s) if s.terms.len() == 1
            && s.terms[0].coeff == 1
            && s.terms[0].factors.len() == 1
            && &*s.terms[0].factors[0] == name)
    }

    /// True for a symbolic dim of one term (`seq`, `2*seq`, `batch*seq`), false for known
    /// sizes and sums.
    pub fn is_monomial(&self) -> bool {
        matches!(self, Dim::Sym(s) if s.terms.len() == 1)
    }

    /// The names of the symbols this dim mentions, each once, sorted.
    pub fn symbols(&self) -> impl Iterator<Item = &Arc<str>> {
        let mut names: SmallVec<[&Arc<str>; 4]> = SmallVec::new();
        if let Dim::Sym(s) = self {
            names.extend(s.terms.iter().flat_map(|t| t.factors.iter()));
            names.sort_unstable();
            names.dedup();
        }
        names.into_iter()
    }

    /// The terms of this dim, each as its coefficient and its product of symbols with
    /// coefficient 1 (`Dim::Known(1)` for the constant term): `2*past+seq+3` gives
    /// `(2, past)`, `(1, seq)`, `(3, 1)`; a known size `n > 0` gives `(n, 1)`, 0 nothing.
    /// Analyses that reason about sums of dims term by term start here.
    pub fn terms(&self) -> impl Iterator<Item = (usize, Dim)> + '_ {
        let known = match self {
            Dim::Known(n) if *n > 0 => Some((*n, Dim::Known(1))),
            _ => None,
        };
        let sym = match self {
            Dim::Sym(s) => &s.terms[..],
            Dim::Known(_) => &[],
        };
        known.into_iter().chain(sym.iter().map(|t| {
            let unit = Term { factors: t.factors.clone(), coeff: 1 };
            let monomial = if t.factors.is_empty() {
                Dim::Known(1)
            } else {
                Dim::Sym(SymDim { terms: smallvec::smallvec![unit] })
            };
            (t.coeff, monomial)
        }))
    }

    /// The product of two dims, kept symbolic where needed (`(past+seq)*2 = 2*past+2*seq`).
    /// A coefficient or size past `usize::MAX` saturates there: no tensor has that many
    /// elements, so size checks refuse it (use [`Dim::checked_mul`] to see the overflow).
    pub fn mul(&self, other: &Dim) -> Dim {
        self.checked_mul(other).unwrap_or(Dim::Known(usize::MAX))
    }

    /// The product of two dims, or an error when a coefficient overflows.
    pub fn checked_mul(&self, other: &Dim) -> Result<Dim, DimError> {
        let overflow =
            || DimError::Overflow { lhs: Box::new(self.clone()), op: '*', rhs: Box::new(other.clone()) };
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_mul(*b).map(Dim::Known).ok_or_else(overflow),
            (Dim::Known(0), _) | (_, Dim::Known(0)) => Ok(Dim::Known(0)),
            (Dim::Known(1), d) | (d, Dim::Known(1)) => Ok(d.clone()),
            _ => {
                let (a, b) = (terms_of(self), terms_of(other));
                let mut terms = SmallVec::with_capacity(a.len() * b.len());
                for x in &a {
                    for y in &b {
                        terms.push(x.mul(y).ok_or_else(overflow)?);
                    }
                }
                from_terms(terms).ok_or_else(overflow)
            }
        }
    }

    /// The sum of two dims (`seq + seq = 2*seq`, `past_seq + seq`, `3 + 4 = 7`, `seq + 1`);
    /// `None` only when a coefficient overflows.
    pub fn add(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_add(*b).map(Dim::Known),
            (Dim::Known(0), d) | (d, Dim::Known(0)) => Some(d.clone()),
            _ => from_terms(terms_of(self).into_iter().chain(terms_of(other)).collect()),
        }
    }

    /// The difference `self - other`, when it cancels exactly to a dim: every term of
    /// `other` is part of `self` with at least its coefficient (`(past_seq+seq) - seq =
    /// past_seq`, `(seq+2) - 1 = seq+1`). Otherwise [`DimError::Difference`]: `seq - 1` or
    /// `seq - batch` could be negative, so they are not dims.
    pub fn sub(&self, other: &Dim) -> Result<Dim, DimError> {
        let fail = || DimError::Difference { lhs: Box::new(self.clone()), rhs: Box::new(other.clone()) };
        if let (Dim::Known(a), Dim::Known(b)) = (self, other) {
            return a.checked_sub(*b).map(Dim::Known).ok_or_else(fail);
        }
        let mut terms = terms_of(self);
        for t in terms_of(other) {
            let i = terms.binary_search_by(|x| x.factors.cmp(&t.factors)).map_err(|_| fail())?;
            terms[i].coeff = terms[i].coeff.checked_sub(t.coeff).ok_or_else(fail)?;
        }
        from_terms(terms).ok_or_else(fail)
    }

    /// Exact division, when the result is again a dim (`batch*seq / seq = batch`,
    /// `2*seq / 2 = seq`, `(2*past+2*seq) / 2 = past+seq`, `(batch*past+batch*seq) /
    /// (past+seq) = batch`); `None` when it is not expressible. A sum divided by a sum
    /// finds a one-term quotient only (a monomial or a size).
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (_, Dim::Known(0)) => None,
            (Dim::Known(a), Dim::Known(b)) => (a % b == 0).then(|| Dim::Known(a / b)),
            (Dim::Known(0), _) => Some(Dim::Known(0)),
            (Dim::Known(_), Dim::Sym(_)) => None,
            (Dim::Sym(s), Dim::Known(k)) => {
                let k = Term::constant(*k);
                from_terms(s.terms.iter().map(|t| t.div(&k)).collect::<Option<_>>()?)
            }
            (Dim::Sym(a), Dim::Sym(b)) if b.terms.len() == 1 => {
                from_terms(a.terms.iter().map(|t| t.div(&b.terms[0])).collect::<Option<_>>()?)
            }
            (Dim::Sym(a), Dim::Sym(b)) => {
                let lead = &b.terms[0];
                a.terms.iter().filter_map(|t| t.div(lead)).find_map(|q| {
                    let q = from_terms(smallvec::smallvec![q])?;
                    (q.checked_mul(other).ok()? == *self).then_some(q)
                })
            }
        }
    }

    /// The size under `bindings`; `None` when a symbol is unbound (or the size overflows).
    pub fn eval(&self, bindings: &Bindings) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(s) => s.terms.iter().try_fold(0usize, |acc, t| acc.checked_add(t.eval(bindings)?)),
        }
    }

    /// The value of the one symbol of this dim that `bindings` leaves unbound, such that the
    /// dim evaluates to `size`: `batch*seq` of size 12 with `batch = 3` gives `seq = 4`,
    /// `past_seq+seq` of size 9 with `seq = 2` gives `past_seq = 7`. `None` when no symbol or
    /// several are unbound, the unbound one appears squared, or no non-negative integer
    /// solves it.
    pub fn solve(&self, bindings: &Bindings, size: usize) -> Option<(Arc<str>, usize)> {
        let Dim::Sym(s) = self else { return None };
        let mut unbound = self.symbols().filter(|n| !bindings.contains_key(*n));
        let name = unbound.next()?.clone();
        if unbound.next().is_some() {
            return None;
        }
        // self = slope * name + offset, with slope and offset evaluated under `bindings`.
        let (mut slope, mut offset) = (0usize, 0usize);
        for t in &s.terms {
            match t.factors.iter().filter(|f| **f == name).count() {
                0 => offset = offset.checked_add(t.eval(bindings)?)?,
                1 => {
                    let rest = t.factors.iter().filter(|f| **f != name);
                    let v =
                        rest.into_iter().try_fold(t.coeff, |acc, f| acc.checked_mul(*bindings.get(f)?))?;
                    slope = slope.checked_add(v)?;
                }
                _ => return None,
            }
        }
        let rest = size.checked_sub(offset)?;
        (slope > 0 && rest % slope == 0).then(|| (name, rest / slope))
    }

    /// Parses `64`, `seq`, `batch*seq`, `2*seq`, or sums of them: `past_seq+seq`,
    /// `past_seq + seq + 1`.
    pub fn parse(text: &str) -> Result<Dim, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<usize>() {
            return Ok(Dim::Known(n));
        }
        let bad = || format!("'{text}' is not a dim (a size, a symbol, or sums of products of them)");
        let mut sum = Dim::Known(0);
        for term in text.split('+') {
            let mut d = Dim::Known(1);
            for part in term.split('*') {
                let part = part.trim();
                let factor = if let Ok(n) = part.parse::<usize>() {
                    Dim::Known(n)
                } else if is_symbol_name(part) {
                    Dim::sym(part)
                } else {
                    return Err(bad());
                };
                d = d.checked_mul(&factor).map_err(|e| e.to_string())?;
            }
            sum = sum.add(&d).ok_or_else(bad)?;
        }
        Ok(sum)
    }
}

fn is_symbol_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.factors.is_empty() {
            return write!(f, "{}", self.coeff);
        }
        if self.coeff != 1 {
            write!(f, "{}*", self.coeff)?;
        }
        for (i, name) in self.factors.iter().enumerate() {
            if i > 0 {
                f.write_str("*")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Display for Dim {
    /// `64`, `2*seq`, `batch*seq`; sums in term order with the constant last:
    /// `past_seq+seq`, `seq+1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => {
                let symbolic = s.terms.iter().filter(|t| !t.factors.is_empty());
                let constant = s.terms.iter().filter(|t| t.factors.is_empty());
                for (i, t) in symbolic.chain(constant).enumerate() {
                    if i > 0 {
                        f.write_str("+")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Known(n) => s.serialize_u64(*n as u64),
            Dim::Sym(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dim, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dim::Known(n as usize)),
            Raw::S(s) => Dim::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A shape: one [`Dim`] per axis.
pub type Shape = SmallVec<[Dim; 6]>;

/// The type of a value: element type and (possibly symbolic) shape.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dims, outermost first.
    pub shape: Shape,
}

impl TensorType {
    /// A type from a dtype and anything that converts into dims.
    pub fn new(dtype: DType, shape: impl IntoIterator<Item = Dim>) -> Self {
        TensorType { dtype, shape: shape.into_iter().collect() }
    }

    /// A type whose dims are all known.
    pub fn known(dtype: DType, dims: &[usize]) -> Self {
        TensorType { dtype, shape: dims.iter().map(|&n| Dim::Known(n)).collect() }
    }

    /// A rank-0 type.
    pub fn scalar(dtype: DType) -> Self {
        TensorType { dtype, shape: Shape::new() }
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The concrete dims, when every dim is known.
    pub fn known_dims(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(Dim::known).collect()
    }

    /// The number of elements, kept symbolic where needed.
    pub fn numel(&self) -> Dim {
        self.shape.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
    }

    /// The same shape with another dtype.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType { dtype, shape: self.shape.clone() }
    }

    /// The dim of `axis` (negative counts from the end), when in range.
    pub fn dim(&self, axis: i64) -> Option<&Dim> {
        normalize_axis(axis, self.rank()).map(|a| &self.shape[a])
    }

    /// Concrete dims under `bindings`.
    pub fn eval_dims(&self, bindings: &Bindings) -> Option<Vec<usize>> {
        self.shape.iter().map(|d| d.eval(bindings)).collect()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Maps a possibly negative axis into `0..rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Numpy broadcasting of two shapes; `Err` names the first axis that disagrees.
pub fn broadcast_shapes(a: &[Dim], b: &[Dim]) -> Result<Shape, String> {
    let rank = a.len().max(b.len());
    let mut out = Shape::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.len()).checked_sub(rank).map(|j| &a[j]);
        let db = (i + b.len()).checked_sub(rank).map(|j| &b[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Known(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Known(1))) => x.clone(),
            (Some(x), Some(y)) => {
                return Err(format!(
                    "cannot broadcast [{}] with [{}]: axis {i} has {x} vs {y}",
                    join_dims(a),
                    join_dims(b)
                ))
            }
            (None, None) => unreachable!("i < rank"),
        };
        out.push(d);
    }
    Ok(out)
}

/// Dims joined by ", " (for messages).
pub fn join_dims(dims: &[Dim]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Dim {
        Dim::parse(s).unwrap()
    }

    fn bind(pairs: &[(&str, usize)]) -> Bindings {
        pairs.iter().map(|&(k, v)| (Arc::from(k), v)).collect()
    }

    #[test]
    fn sums_are_canonical_and_print_constant_last() {
        let total = Dim::sym("seq").add(&Dim::sym("past_seq")).unwrap();
        assert_eq!(total, d("past_seq+seq"));
        assert_eq!(total.to_string(), "past_seq+seq");
        assert_eq!(d("seq+3+past_seq+seq").to_string(), "past_seq+2*seq+3");
        assert_eq!(d("2*seq*batch + seq*batch").to_string(), "3*batch*seq");
        assert!(!total.is_monomial() && d("2*seq").is_monomial() && !d("7").is_monomial());
        let sum = d("batch*past+batch*seq");
        let names: Vec<&str> = sum.symbols().map(|s| &**s).collect();
        assert_eq!(names, ["batch", "past", "seq"]);
        // A monomial keeps its one term inline.
        let Dim::Sym(s) = d("2*batch*seq") else { panic!() };
        assert!(!s.terms.spilled());
    }

    #[test]
    fn terms_split_sums_into_monomials() {
        let terms: Vec<(usize, Dim)> = d("seq+3+2*past").terms().collect();
        assert_eq!(terms, [(3, Dim::Known(1)), (2, d("past")), (1, d("seq"))]);
        assert_eq!(Dim::Known(5).terms().collect::<Vec<_>>(), [(5, Dim::Known(1))]);
        assert_eq!(Dim::Known(0).terms().count(), 0);
        let back = terms.iter().fold(Dim::Known(0), |acc, (c, m)| acc.add(&m.mul(&Dim::Known(*c))).unwrap());
        assert_eq!(back, d("2*past+seq+3"));
    }

    #[test]
    fn sub_cancels_exactly_or_says_why() {
        assert_eq!(d("past_seq+seq").sub(&d("seq")), Ok(d("past_seq")));
        assert_eq!(d("past_seq+seq").sub(&d("past_seq+seq")), Ok(Dim::Known(0)));
        assert_eq!(d("seq+2").sub(&Dim::Known(1)), Ok(d("seq+1")));
        assert_eq!(d("3*seq").sub(&d("seq")), Ok(d("2*seq")));
        assert_eq!(Dim::Known(7).sub(&Dim::Known(3)), Ok(Dim::Known(4)));
        for (a, b) in [("seq", "1"), ("seq", "batch"), ("seq", "2*seq"), ("3", "4"), ("3", "seq")] {
            let e = d(a).sub(&d(b)).unwrap_err();
            assert_eq!(e, DimError::Difference { lhs: Box::new(d(a)), rhs: Box::new(d(b)) });
            assert!(e.to_string().starts_with(&format!("{a} - {b} is not a dim")), "{e}");
        }
    }

    #[test]
    fn mul_distributes_and_div_finds_one_term_quotients() {
        assert_eq!(d("past+seq").mul(&Dim::Known(2)), d("2*past+2*seq"));
        assert_eq!(d("past+seq").mul(&d("batch")), d("batch*past+batch*seq"));
        assert_eq!(d("seq+1").mul(&d("seq+1")), d("seq*seq+2*seq+1"));
        assert_eq!(d("2*past+2*seq").div_exact(&Dim::Known(2)), Some(d("past+seq")));
        assert_eq!(d("batch*past+batch*seq").div_exact(&d("past+seq")), Some(d("batch")));
        assert_eq!(d("batch*past+batch*seq").div_exact(&d("batch")), Some(d("past+seq")));
        assert_eq!(d("2*past+2*seq").div_exact(&d("past+seq")), Some(Dim::Known(2)));
        assert_eq!(d("past+seq").div_exact(&d("seq")), None);
        assert_eq!(d("2*past+seq").div_exact(&Dim::Known(2)), None);
        assert_eq!(
            Dim::Known(usize::MAX).checked_mul(&Dim::Known(2)).unwrap_err().to_string(),
            format!("{} * 2 overflows", usize::MAX)
        );
        assert_eq!(Dim::Known(usize::MAX).mul(&Dim::Known(2)), Dim::Known(usize::MAX));
    }

    #[test]
    fn solve_finds_the_one_unbound_symbol() {
        let b = bind(&[("seq", 2), ("batch", 3)]);
        assert_eq!(d("past_seq+seq").solve(&b, 9), Some((Arc::from("past_seq"), 7)));
        assert_eq!(d("batch*seq*heads").solve(&b, 24), Some((Arc::from("heads"), 4)));
        assert_eq!(d("batch*past+batch*seq+1").solve(&b, 16), Some((Arc::from("past"), 3)));
        assert_eq!(d("past_seq+seq").solve(&b, 1), None, "past_seq would be negative");
        assert_eq!(d("batch*heads").solve(&b, 7), None, "not a multiple of 3");
        assert_eq!(d("heads*heads").solve(&b, 4), None, "not linear");
        assert_eq!(d("heads+past").solve(&b, 4), None, "two unbound");
        assert_eq!(d("batch+seq").solve(&b, 5), None, "nothing unbound");
    }

    #[test]
    fn json_keeps_monomials_and_writes_sums_as_strings() {
        for (dim, json) in [
            ("64", "64"),
            ("seq", "\"seq\""),
            ("2*batch*seq", "\"2*batch*seq\""),
            ("seq + past", "\"past+seq\""),
        ] {
            let dim = d(dim);
            assert_eq!(serde_json::to_string(&dim).unwrap(), json);
            assert_eq!(serde_json::from_str::<Dim>(json).unwrap(), dim);
        }
        assert!(serde_json::from_str::<Dim>("\"seq+\"").is_err());
    }

    /// A random dim expression over three symbols, evaluated both ways.
    #[derive(Debug, Clone)]
    enum Expr {
        Const(usize),
        Sym(usize),
        Add(Box<Expr>, Box<Expr>),
        Mul(Box<Expr>, Box<Expr>),
    }

    const NAMES: [&str; 3] = ["batch", "past_seq", "seq"];

    impl Expr {
        fn dim(&self) -> Dim {
            match self {
                Expr::Const(n) => Dim::Known(*n),
                Expr::Sym(i) => Dim::sym(NAMES[*i]),
                Expr::Add(a, b) => a.dim().add(&b.dim()).unwrap(),
                Expr::Mul(a, b) => a.dim().mul(&b.dim()),
            }
        }

        fn value(&self, vals: &[usize; 3]) -> usize {
            match self {
                Expr::Const(n) => *n,
                Expr::Sym(i) => vals[*i],
                Expr::Add(a, b) => a.value(vals) + b.value(vals),
                Expr::Mul(a, b) => a.value(vals) * b.value(vals),
            }
        }
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![(0usize..4).prop_map(Expr::Const), (0usize..3).prop_map(Expr::Sym)];
        leaf.prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Add(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Expr::Mul(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #[test]
        fn add_mul_sub_agree_with_integers(x in expr(), y in expr(), vals in [0usize..50, 0usize..50, 0usize..50]) {
            let b: Bindings = NAMES.iter().zip(vals).map(|(n, v)| (Arc::from(*n), v)).collect();
            let (dx, dy) = (x.dim(), y.dim());
            prop_assert_eq!(dx.eval(&b), Some(x.value(&vals)));
            let sum = dx.add(&dy).unwrap();
            prop_assert_eq!(sum.eval(&b), Some(x.value(&vals) + y.value(&vals)));
            prop_assert_eq!(dx.mul(&dy).eval(&b), Some(x.value(&vals) * y.value(&vals)));
            // Canonical: the same polynomial built in another order is the same dim.
            prop_assert_eq!(&dy.add(&dx).unwrap(), &sum);
            prop_assert_eq!(dy.mul(&dx), dx.mul(&dy));
            prop_assert_eq!(sum.sub(&dy), Ok(dx.clone()));
            // The text form reads back to the same dim.
            prop_assert_eq!(Dim::parse(&sum.to_string()), Ok(sum.clone()));
            if let Some(q) = dx.mul(&dy).div_exact(&dy) {
                if y.value(&vals) != 0 {
                    prop_assert_eq!(q.eval(&b), Some(x.value(&vals)));
                }
                prop_assert_eq!(q.mul(&dy), dx.mul(&dy));
            }
            if let Ok(diff) = dx.sub(&dy) {
                prop_assert_eq!(diff.eval(&b), Some(x.value(&vals) - y.value(&vals)));
            }
        }
    }
}
