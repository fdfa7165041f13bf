//! Dimensions (known sizes or symbolic products such as `batch*seq`), shapes and tensor types.

use crate::dtype::DType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One dimension: a known size, or a symbolic monomial `coeff * s1 * s2 ...` over named
/// symbols bound at run time (`batch`, `seq`, `2*seq`, `batch*seq`).
///
/// Symbolic dims compare by their canonical form: factors sorted by name, coefficient ≥ 1.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A size known when the graph is built.
    Known(usize),
    /// A product of named symbols times a positive coefficient.
    Sym(SymDim),
}

/// The symbolic part of a [`Dim`]: `coeff * factors[0] * factors[1] ...`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymDim {
    coeff: usize,
    factors: SmallVec<[Arc<str>; 2]>,
}

/// Symbol values bound from actual inputs, used to turn symbolic dims into sizes.
pub type Bindings = HashMap<Arc<str>, usize>;

impl Dim {
    /// A single named symbol.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(SymDim { coeff: 1, factors: smallvec::smallvec![Arc::from(name)] })
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
        matches!(self, Dim::Sym(s) if s.coeff == 1 && s.factors.len() == 1 && &*s.factors[0] == name)
    }

    /// The names of the symbols this dim mentions.
    pub fn symbols(&self) -> impl Iterator<Item = &Arc<str>> {
        match self {
            Dim::Known(_) => [].iter(),
            Dim::Sym(s) => s.factors.iter(),
        }
    }

    /// The product of two dims, kept symbolic where needed. Known sizes and coefficients
    /// saturate at `usize::MAX` rather than overflow: no tensor has that many elements, and
    /// the byte limits ([`crate::limits`]) refuse it.
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.saturating_mul(*b)),
            (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
            (Dim::Known(k), Dim::Sym(s)) | (Dim::Sym(s), Dim::Known(k)) => {
                Dim::Sym(SymDim { coeff: s.coeff.saturating_mul(*k), factors: s.factors.clone() })
            }
            (Dim::Sym(a), Dim::Sym(b)) => {
                let mut factors: SmallVec<[Arc<str>; 2]> =
                    a.factors.iter().chain(b.factors.iter()).cloned().collect();
                factors.sort();
                Dim::Sym(SymDim { coeff: a.coeff.saturating_mul(b.coeff), factors })
            }
        }
    }

    /// The sum of two dims when it is expressible (`seq + seq = 2*seq`, `3 + 4 = 7`), and
    /// does not overflow.
    pub fn add(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Some(Dim::Known(a.checked_add(*b)?)),
            (Dim::Known(0), d) | (d, Dim::Known(0)) => Some(d.clone()),
            (Dim::Sym(a), Dim::Sym(b)) if a.factors == b.factors => {
                Some(Dim::Sym(SymDim { coeff: a.coeff.checked_add(b.coeff)?, factors: a.factors.clone() }))
            }
            _ => None,
        }
    }

    /// Exact division, when the result is again a dim (`batch*seq / seq = batch`,
    /// `2*seq / 2 = seq`); `None` when it is not expressible.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (_, Dim::Known(0)) => None,
            (Dim::Known(a), Dim::Known(b)) => (a % b == 0).then(|| Dim::Known(a / b)),
            (Dim::Known(0), _) => Some(Dim::Known(0)),
            (Dim::Known(_), Dim::Sym(_)) => None,
            (Dim::Sym(s), Dim::Known(k)) => (s.coeff % k == 0)
                .then(|| SymDim { coeff: s.coeff / k, factors: s.factors.clone() }.into_dim()),
            (Dim::Sym(a), Dim::Sym(b)) => {
                if a.coeff % b.coeff != 0 {
                    return None;
                }
                let mut rest = a.factors.clone();
                for f in &b.factors {
                    let pos = rest.iter().position(|r| r == f)?;
                    rest.remove(pos);
                }
                Some(SymDim { coeff: a.coeff / b.coeff, factors: rest }.into_dim())
            }
        }
    }

    /// The size under `bindings`; `None` when a symbol is unbound or the product overflows.
    pub fn eval(&self, bindings: &Bindings) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(s) => s.factors.iter().try_fold(s.coeff, |acc, f| acc.checked_mul(*bindings.get(f)?)),
        }
    }

    /// Parses `64`, `seq`, `batch*seq` or `2*seq`.
    pub fn parse(text: &str) -> Result<Dim, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<usize>() {
            return Ok(Dim::Known(n));
        }
        let mut d = Dim::Known(1);
        for part in text.split('*') {
            let part = part.trim();
            let factor = if let Ok(n) = part.parse::<usize>() {
                Dim::Known(n)
            } else if is_symbol_name(part) {
                Dim::sym(part)
            } else {
                return Err(format!("'{text}' is not a dim (a size, a symbol or a product of them)"));
            };
            d = d.mul(&factor);
        }
        Ok(d)
    }
}

fn is_symbol_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
}

impl SymDim {
    fn into_dim(self) -> Dim {
        if self.factors.is_empty() {
            Dim::Known(self.coeff)
        } else {
            Dim::Sym(self)
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => {
                if s.coeff != 1 {
                    write!(f, "{}*", s.coeff)?;
                }
                let names: Vec<&str> = s.factors.iter().map(|f| &**f).collect();
                f.write_str(&names.join("*"))
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
