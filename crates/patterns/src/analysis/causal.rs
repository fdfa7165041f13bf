//! Causal-mask recognition for the `sdpa` rule: proves that an attention mask operand equals
//! the [`Sdpa`](blockfuse_ir::blocks::Sdpa) block's own causal mask (query `q` sees key `k`
//! iff `k ≤ q + (Tk − Tq)`) for **every** sequence length, so that the rule can emit
//! `MaskKind::Causal` with no mask operand.
//!
//! Recognized spellings (each through optional reshapes/expands/casts to `{1, 1, Tq, Tk}`):
//!
//! - index comparisons: `cols ≤ rows`, `rows ≥ cols`, `cols < rows + 1`, `not(cols > rows)`,
//!   ONNX's `LessOrEqual(range, range + offset)`, the block's own `k + Tq ≤ q + Tk` …, where
//!   rows/cols are `Range(start, step)` (or a folded arithmetic-progression constant) laid
//!   along the query or key axis, plus integer or `sym_const` offsets;
//! - `Trilu` of an all-ones (or all-true) tensor, cast to bool;
//! - additive masks `where(keep, 0, ≤ −1e4)`, `where(drop, ≤ −1e4, 0)`, and
//!   `triu(full(≤ −1e4), 1)`;
//! - constant masks with known `Tq, Tk`, checked element by element.
//!
//! The analysis is symbolic: a value is an affine function `a·q + b·k + c` of the query and
//! key coordinates, where `c` may contain dims (`seq`, `past`), and a boolean is a band
//! `k − q ≤ c` or `k − q ≥ c`. Anything else (padding masks, `and`, sliding windows, masks
//! that depend on the batch) is not causal and stays an operand.

use blockfuse_ir::blocks::MaskKind;
use blockfuse_ir::{BinaryOp, DType, Dim, Graph, Op, UnaryOp, Value};
use std::collections::BTreeMap;

/// The largest value an additive mask may hold at a masked position (the same threshold the
/// rule uses for boolean masks): `exp(−1e4)` is 0 in every float type.
pub const DROP_AT_MOST: f64 = -1e4;

/// How deep the analysis follows producers before giving up.
const MAX_DEPTH: usize = 24;

/// An integer plus a sum of monomial dims with integer coefficients: `c + Σ nᵢ·dᵢ`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Offset {
    c: i64,
    dims: BTreeMap<Dim, i64>,
}

impl Offset {
    fn int(c: i64) -> Self {
        Offset { c, dims: BTreeMap::new() }
    }

    /// A dim, split into its terms so that sums cancel (`(past+seq) − seq = past`).
    fn dim(d: &Dim) -> Self {
        let mut o = Offset::default();
        for (coeff, monomial) in d.terms() {
            let coeff = i64::try_from(coeff).unwrap_or(i64::MAX);
            match monomial.known() {
                Some(_) => o.c = o.c.saturating_add(coeff),
                None => *o.dims.entry(monomial).or_insert(0) += coeff,
            }
        }
        o
    }

    fn plus(mut self, o: &Offset, sign: i64) -> Self {
        self.c += sign * o.c;
        for (d, n) in &o.dims {
            *self.dims.entry(d.clone()).or_insert(0) += sign * n;
        }
        self.dims.retain(|_, n| *n != 0);
        self
    }

    fn scaled(mut self, s: i64) -> Self {
        self.c *= s;
        self.dims.values_mut().for_each(|n| *n *= s);
        self.dims.retain(|_, n| *n != 0);
        self
    }
}

/// The value at coordinates `(…, q, k)` of the last two axes is `qc·q + kc·k + off`; it does
/// not depend on the leading axes.
#[derive(Debug, Clone, PartialEq)]
struct Affine {
    qc: i64,
    kc: i64,
    off: Offset,
}

/// A boolean that is true exactly where `k − q ≤ bound` (`upper: false`) or `k − q ≥ bound`
/// (`upper: true`), the convention of `Trilu`.
#[derive(Debug, Clone, PartialEq)]
struct Band {
    upper: bool,
    bound: Offset,
}

impl Band {
    /// The complement (indices are integers).
    fn not(self) -> Band {
        let step = if self.upper { -1 } else { 1 };
        Band { upper: !self.upper, bound: self.bound.plus(&Offset::int(step), 1) }
    }
}

fn is_one(d: &Dim) -> bool {
    *d == Dim::Known(1)
}

/// Positions from the end (1 = key axis, 2 = query axis) and sizes of the non-1 axes of a
/// shape; `None` when one lies before the last two axes.
fn varying_axes(shape: &[Dim]) -> Option<Vec<(usize, Dim)>> {
    let r = shape.len();
    let v: Vec<(usize, Dim)> =
        shape.iter().enumerate().filter(|(_, d)| !is_one(d)).map(|(i, d)| (r - i, d.clone())).collect();
    v.iter().all(|(p, _)| *p <= 2).then_some(v)
}

/// Zeroes the coefficients of the last two axes that have size 1 in `v`'s type (broadcasting
/// reads coordinate 0 there).
fn normalized(g: &Graph, v: Value, mut a: Affine) -> Affine {
    let s = &g.value_type(v).shape;
    let r = s.len();
    if r < 1 || is_one(&s[r - 1]) {
        a.kc = 0;
    }
    if r < 2 || is_one(&s[r - 2]) {
        a.qc = 0;
    }
    a
}

fn integral(x: f64) -> Option<i64> {
    (x.is_finite() && x.fract() == 0.0 && x.abs() < (1u64 << 53) as f64).then_some(x as i64)
}

/// Moves the coefficients of a reshape whose input and output vary along the same sizes,
/// all within the last two axes (`[T] → [T, 1]`, `[T, T] → [1, 1, T, T]`, …).
fn reshaped(a: &Affine, from: &[Dim], to: &[Dim]) -> Option<Affine> {
    let (f, t) = (varying_axes(from)?, varying_axes(to)?);
    if f.len() != t.len() || f.iter().zip(&t).any(|(x, y)| x.1 != y.1) {
        return None;
    }
    let coef = |p: usize| if p == 1 { a.kc } else { a.qc };
    let mut out = Affine { qc: 0, kc: 0, off: a.off.clone() };
    for ((pf, _), (pt, _)) in f.iter().zip(&t) {
        if *pt == 1 {
            out.kc = coef(*pf);
        } else {
            out.qc = coef(*pf);
        }
    }
    Some(out)
}

/// `v` as an affine function of the query/key coordinates, when it provably is one.
fn affine(g: &Graph, v: Value, depth: usize) -> Option<Affine> {
    if depth > MAX_DEPTH {
        return None;
    }
    let n = g.node(v.node);
    let arg = |i: usize| affine(g, n.operands[i], depth + 1);
    let a = match &n.op {
        Op::Constant(t) if t.len() == 1 => Affine { qc: 0, kc: 0, off: Offset::int(integral(t.get_f64(0))?) },
        // A folded range: an integer arithmetic progression along one of the last two axes.
        Op::Constant(t) => {
            let axes = varying_axes(&g.value_type(v).shape)?;
            let [(pos, _)] = axes.as_slice() else { return None };
            let start = integral(t.get_f64(0))?;
            let step = integral(t.get_f64(1))? - start;
            if (0..t.len()).any(|i| t.get_f64(i) != (start + step * i as i64) as f64) {
                return None;
            }
            let (qc, kc) = if *pos == 1 { (0, step) } else { (step, 0) };
            Affine { qc, kc, off: Offset::int(start) }
        }
        Op::SymConst(dims) if dims.len() == 1 => Affine { qc: 0, kc: 0, off: Offset::dim(&dims[0]) },
        Op::Range { start, step, .. } => {
            Affine { qc: 0, kc: integral(*step)?, off: Offset::int(integral(*start)?) }
        }
        Op::Cast(d) if *d != DType::Bool => arg(0)?,
        Op::Expand { .. } => arg(0)?,
        Op::Reshape { .. } => {
            let src = n.operands[0];
            reshaped(&arg(0)?, &g.value_type(src).shape, &g.value_type(v).shape)?
        }
        Op::Transpose { perm } => {
            let r = perm.len();
            let lead_same = perm[..r.saturating_sub(2)].iter().enumerate().all(|(i, &p)| i == p);
            let a = arg(0)?;
            match (r, lead_same) {
                (r, true) if r >= 2 && perm[r - 2] == r - 1 && perm[r - 1] == r - 2 => {
                    Affine { qc: a.kc, kc: a.qc, off: a.off }
                }
                (_, true) => a,
                _ => return None,
            }
        }
        Op::Unary(UnaryOp::Neg) => {
            let a = arg(0)?;
            Affine { qc: -a.qc, kc: -a.kc, off: a.off.scaled(-1) }
        }
        Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub)) => {
            let (x, y) = (arg(0)?, arg(1)?);
            let s = if *op == BinaryOp::Add { 1 } else { -1 };
            Affine { qc: x.qc + s * y.qc, kc: x.kc + s * y.kc, off: x.off.plus(&y.off, s) }
        }
        Op::Binary(BinaryOp::Mul) => {
            let (x, y) = (arg(0)?, arg(1)?);
            let (x, c) = if y.qc == 0 && y.kc == 0 && y.off.dims.is_empty() {
                (x, y.off.c)
            } else if x.qc == 0 && x.kc == 0 && x.off.dims.is_empty() {
                (y, x.off.c)
            } else {
                return None;
            };
            Affine { qc: x.qc * c, kc: x.kc * c, off: x.off.scaled(c) }
        }
        _ => return None,
    };
    Some(normalized(g, v, a))
}

/// A tensor whose every element is the same number: a constant, a `full`, or either expanded.
fn uniform(g: &Graph, v: Value) -> Option<f64> {
    let n = g.node(v.node);
    match &n.op {
        Op::Constant(t) if !t.is_empty() => {
            let first = t.get_f64(0);
            (0..t.len()).all(|i| t.get_f64(i) == first).then_some(first)
        }
        Op::Full { value, .. } => Some(*value),
        Op::Expand { .. } | Op::Reshape { .. } | Op::Cast(_) => {
            let x = uniform(g, n.operands[0])?;
            Some(match &n.op {
                Op::Cast(DType::Bool) => (x != 0.0) as u8 as f64,
                _ => x,
            })
        }
        _ => None,
    }
}

/// `v` (bool, true = the condition holds) as a band, when it provably is one.
fn band(g: &Graph, v: Value, depth: usize) -> Option<Band> {
    if depth > MAX_DEPTH {
        return None;
    }
    let n = g.node(v.node);
    match &n.op {
        Op::Binary(
            op @ (BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual),
        ) => {
            // Bring every comparison to `x − y ≤ 0` (strict: `≤ −1`, indices are integers).
            let (l, r) = (affine(g, n.operands[0], depth + 1)?, affine(g, n.operands[1], depth + 1)?);
            let (x, y) = if matches!(op, BinaryOp::Less | BinaryOp::LessEqual) { (l, r) } else { (r, l) };
            let strict = matches!(op, BinaryOp::Less | BinaryOp::Greater);
            let d = Affine { qc: x.qc - y.qc, kc: x.kc - y.kc, off: x.off.plus(&y.off, -1) };
            let d_off = d.off.plus(&Offset::int(strict as i64), 1);
            // d = s·(k − q) + d_off ≤ 0.
            match (d.qc, d.kc) {
                (-1, 1) => Some(Band { upper: false, bound: d_off.scaled(-1) }),
                (1, -1) => Some(Band { upper: true, bound: d_off }),
                _ => None,
            }
        }
        Op::Unary(UnaryOp::Not) => band(g, n.operands[0], depth + 1).map(Band::not),
        Op::Reshape { .. } | Op::Expand { .. } => {
            let src = n.operands[0];
            same_last_two(g, src, v).then(|| band(g, src, depth + 1)).flatten()
        }
        Op::Cast(DType::Bool) | Op::Trilu { .. } => {
            let src = n.operands[0];
            match (&n.op, &g.node(src.node).op) {
                (Op::Cast(_), Op::Trilu { .. }) | (Op::Trilu { .. }, _)
                    if g.value_type(v).dtype == DType::Bool =>
                {
                    let tri = if matches!(n.op, Op::Trilu { .. }) { v } else { src };
                    trilu_band(g, tri, |x| x != 0.0)
                }
                (Op::Cast(_), _) if g.value_type(src).dtype == DType::Bool => band(g, src, depth + 1),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `trilu(full(c))` whose kept value satisfies `kept` (and whose zeroed one does not): the
/// band it keeps.
fn trilu_band(g: &Graph, v: Value, kept: impl Fn(f64) -> bool) -> Option<Band> {
    let n = g.node(v.node);
    let Op::Trilu { upper, k } = n.op else { return None };
    let c = uniform(g, n.operands[0])?;
    (kept(c) && !kept(0.0)).then(|| Band { upper, bound: Offset::int(k) })
}

/// The last two axes of `a` and `b` are the same sizes and the other axes of `a` are all 1.
fn same_last_two(g: &Graph, a: Value, b: Value) -> bool {
    let (sa, sb) = (&g.value_type(a).shape, &g.value_type(b).shape);
    let (ra, rb) = (sa.len(), sb.len());
    ra >= 2 && rb >= 2 && sa[ra - 2..] == sb[rb - 2..] && sa[..ra - 2].iter().all(is_one)
}

/// Where an additive mask keeps the scores (value 0 vs ≤ −1e4), as a band.
fn additive_keep(g: &Graph, v: Value, depth: usize) -> Option<Band> {
    if depth > MAX_DEPTH {
        return None;
    }
    let n = g.node(v.node);
    let dropped = |x: f64| x <= DROP_AT_MOST;
    match &n.op {
        Op::Reshape { .. } | Op::Expand { .. } => {
            let src = n.operands[0];
            same_last_two(g, src, v).then(|| additive_keep(g, src, depth + 1)).flatten()
        }
        Op::Cast(d) if d.is_float() && g.value_type(n.operands[0]).dtype.is_float() => {
            additive_keep(g, n.operands[0], depth + 1)
        }
        Op::Where => {
            let (a, b) = (uniform(g, n.operands[1])?, uniform(g, n.operands[2])?);
            let cond = band(g, n.operands[0], depth + 1)?;
            match (a, b) {
                (a, b) if a == 0.0 && dropped(b) => Some(cond),
                (a, b) if dropped(a) && b == 0.0 => Some(cond.not()),
                _ => None,
            }
        }
        // triu(full(min), 1): the masked band is what the trilu keeps.
        Op::Trilu { .. } => trilu_band(g, v, dropped).map(Band::not),
        _ => None,
    }
}

/// A constant mask with known sizes checked element by element against the causal band
/// `k − q ≤ offset`; `keep` says whether an element keeps the score, `None` for a value that
/// is neither kept nor dropped.
fn constant_is_causal(g: &Graph, v: Value, offset: i64, keep: impl Fn(f64) -> Option<bool>) -> bool {
    let Some(t) = g.node(v.node).op.as_constant() else { return false };
    let dims = t.dims();
    let r = dims.len();
    if r < 2 || dims[..r - 2].iter().any(|&d| d != 1) {
        return false;
    }
    let (tq, tk) = (dims[r - 2], dims[r - 1]);
    (0..tq).all(|q| (0..tk).all(|k| keep(t.get_f64(q * tk + k)) == Some(k as i64 - q as i64 <= offset)))
}

/// `c + Σ nᵢ·dᵢ ≥ 0` for every assignment of dims ≥ 1.
fn nonnegative(o: &Offset) -> bool {
    o.dims.values().all(|&n| n > 0) && o.c + o.dims.values().sum::<i64>() >= 0
}

/// True when `mask` — an additive mask added to scores `{…, Tq, Tk}`, or a boolean keep-mask
/// (`true` = attend) — provably equals the block's causal mask for every `Tq`, `Tk` the
/// graph admits. Only masks where every query sees at least one key (`Tk ≥ Tq`) qualify, so
/// that no fully masked row (uniform in the block, NaN or 0 in the graph) can arise.
pub fn is_causal(g: &Graph, mask: Value, kind: MaskKind, tq: &Dim, tk: &Dim) -> bool {
    let shape = &g.value_type(mask).shape;
    let r = shape.len();
    if r < 2 || shape[r - 2] != *tq || shape[r - 1] != *tk {
        return false;
    }
    // The causal band: k − q ≤ Tk − Tq, with Tk − Tq ≥ 0 provable: `c + Σ nᵢ·dᵢ` with every
    // nᵢ > 0 and `c + Σ nᵢ ≥ 0` (a dim is at least 1 wherever there is a key to attend; with
    // no keys at all, both sides compute an empty softmax). E.g. `Tq = 1` against any `Tk`.
    let offset = Offset::dim(tk).plus(&Offset::dim(tq), -1);
    if !nonnegative(&offset) {
        return false;
    }
    let want = Band { upper: false, bound: offset.clone() };
    let found = match kind {
        MaskKind::Boolean => band(g, mask, 0),
        MaskKind::Additive => additive_keep(g, mask, 0),
        _ => None,
    };
    if found.as_ref() == Some(&want) {
        return true;
    }
    // Known sizes: everything may have been folded into one constant.
    let mut src = mask;
    while let Op::Reshape { .. } | Op::Expand { .. } | Op::Cast(_) = g.node(src.node).op {
        let inner = g.node(src.node).operands[0];
        if !same_last_two(g, inner, src)
            || g.value_type(inner).dtype.is_float() != g.value_type(src).dtype.is_float()
        {
            break;
        }
        src = inner;
    }
    match kind {
        MaskKind::Boolean => constant_is_causal(g, src, offset.c, |x| Some(x != 0.0)),
        MaskKind::Additive => constant_is_causal(g, src, offset.c, |x| {
            if x == 0.0 {
                Some(true)
            } else if x <= DROP_AT_MOST {
                Some(false)
            } else {
                None
            }
        }),
        _ => false,
    }
}
