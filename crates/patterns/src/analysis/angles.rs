//! Angle provenance for RoPE: where the cos and sin of a rotation come from.
//!
//! Most specific first: `positions × base^(−2i/d) × scale` (a base and a position scale),
//! `positions × f` for any constant table `f` (inverse frequencies), each possibly with cos
//! and sin both multiplied by one constant (an attention scaling, `mscale`); anything else is
//! not a table and the rotation keeps cos and sin as operands.

use blockfuse_ir::{BinaryOp, DType, Dim, Graph, HostTensor, Node, Op, UnaryOp, Value};

/// Where the positions of a frequency table come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// `offset + arange(T)`.
    Offset(i64),
    /// `past + arange(T)` with `past` an integer scalar value of the graph.
    Past(Value),
    /// An explicit positions tensor (`position_ids`, `{T}` or `{B, T}`).
    Tensor(Value),
}

/// The frequencies of a table: `inv_i = scale · base^(−2i/dims)`, or any other table.
#[derive(Debug, Clone, PartialEq)]
pub enum Frequencies {
    /// `inv_i = scale · base^(−2i/dims)`.
    Base {
        /// The base.
        base: f64,
        /// The position scale (1 without linear interpolation).
        scale: f64,
    },
    /// Any other constant table of inverse frequencies (llama3, YaRN, rounded to bf16, ...).
    Inverse(Vec<f64>),
}

/// cos/sin of `positions ⊗ inv_freq`, times `mscale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The positions.
    pub positions: Positions,
    /// The frequencies (`dims/2` of them).
    pub freqs: Frequencies,
    /// The factor on both cos and sin (1 when there is none).
    pub mscale: f64,
}

/// Skips casts and reshapes that only add or drop size-1 axes.
pub fn through_views(g: &Graph, mut v: Value) -> Value {
    loop {
        let n = g.node(v.node);
        let squeeze_only = |a: &[Dim], b: &[Dim]| {
            a.iter().filter(|d| **d != Dim::Known(1)).eq(b.iter().filter(|d| **d != Dim::Known(1)))
        };
        match &n.op {
            Op::Cast(_) => v = n.operands[0],
            Op::Reshape { shape } if squeeze_only(&g.value_type(n.operands[0]).shape, shape) => {
                v = n.operands[0]
            }
            _ => return v,
        }
    }
}

/// Skips casts that lose nothing (to a wider float) and reshapes: the frequency table's values
/// are the constant's values.
fn through_widening(g: &Graph, mut v: Value) -> Value {
    loop {
        let n = g.node(v.node);
        match &n.op {
            Op::Cast(to) if to.is_float() && widens(g.value_type(n.operands[0]).dtype, *to) => {
                v = n.operands[0]
            }
            Op::Reshape { .. } => v = n.operands[0],
            _ => return v,
        }
    }
}

fn widens(from: DType, to: DType) -> bool {
    from == to
        || matches!(
            (from, to),
            (DType::F16 | DType::BF16, DType::F32 | DType::F64) | (DType::F32, DType::F64)
        )
}

/// The single value of a constant with one element.
fn scalar_const(g: &Graph, v: Value) -> Option<f64> {
    let t = g.node(through_views(g, v).node).op.as_constant()?;
    (t.len() == 1).then(|| t.get_f64(0))
}

/// `(a, c)` when `v` is `a · c` (either order) with `c` a one-element constant.
fn times_scalar(g: &Graph, v: Value) -> Option<(Value, f64)> {
    let n = g.node(v.node);
    if !matches!(n.op, Op::Binary(BinaryOp::Mul)) {
        return None;
    }
    let (a, b) = (n.operands[0], n.operands[1]);
    match (scalar_const(g, a), scalar_const(g, b)) {
        (None, Some(c)) => Some((a, c)),
        (Some(c), None) => Some((b, c)),
        _ => None,
    }
}

/// cos and sin without a common constant factor, and that factor (1 when neither has one).
pub fn common_scale(g: &Graph, cos: Value, sin: Value) -> Result<(Value, Value, f64), String> {
    let (c, s) = (through_views(g, cos), through_views(g, sin));
    match (times_scalar(g, c), times_scalar(g, s)) {
        (Some((c, a)), Some((s, b))) if a == b => Ok((c, s, a)),
        (Some((_, a)), Some((_, b))) => Err(format!("cos and sin are scaled differently ({a} and {b})")),
        (Some(_), None) | (None, Some(_)) => Err("only one of cos and sin is scaled by a constant".into()),
        (None, None) => Ok((cos, sin, 1.0)),
    }
}

fn is_unary(n: &Node, op: UnaryOp) -> bool {
    matches!(n.op, Op::Unary(u) if u == op)
}

/// The half-width angles `f` when `v` is `op` (cos or sin) of duplicated halves, spelled
/// `op(concat(f, f))` (Hugging Face) or `concat(op(f), op(f))`.
pub fn duplicated_halves(g: &Graph, v: Value, op: UnaryOp) -> Option<Value> {
    let n = g.node(through_views(g, v).node);
    let pair = |n: &Node| {
        (matches!(n.op, Op::Concat { axis: -1 }) && n.operands.len() == 2 && n.operands[0] == n.operands[1])
            .then(|| n.operands[0])
    };
    if is_unary(n, op) {
        return pair(g.node(n.operands[0].node));
    }
    let m = g.node(through_views(g, pair(n)?).node);
    is_unary(m, op).then(|| m.operands[0])
}

/// The angles `f` when `v` is `op(f)` (cos or sin, one entry per rotated pair).
pub fn per_pair(g: &Graph, v: Value, op: UnaryOp) -> Option<Value> {
    let n = g.node(through_views(g, v).node);
    is_unary(n, op).then(|| n.operands[0])
}

/// `(positions, inverse frequencies)` when `f = positions · table` with a constant table
/// that varies along its last axis only.
pub fn positions_times_table(g: &Graph, f: Value) -> Result<(Value, Vec<f64>), String> {
    let n = g.node(f.node);
    if !matches!(n.op, Op::Binary(BinaryOp::Mul)) {
        return Err("the angles are not positions × a frequency table".into());
    }
    let (a, b) = (n.operands[0], n.operands[1]);
    let konst = |v: Value| g.node(through_widening(g, v).node).op.as_constant().cloned();
    let (pos, table) = match (konst(a), konst(b)) {
        (None, Some(t)) => (a, t),
        (Some(t), None) => (b, t),
        _ => return Err("the frequency table is not a constant".into()),
    };
    let dims = table.dims();
    if dims.iter().rev().skip(1).any(|&d| d != 1) {
        return Err(format!("the frequency table has shape {dims:?}, not one row"));
    }
    Ok((through_views(g, pos), table.to_f64_vec()))
}

/// Where `p` (seen through views) comes from: an arange with an offset, `past + arange`, or
/// a positions tensor of rank 1 or 2.
pub fn positions(g: &Graph, p: Value) -> Result<Positions, String> {
    let p = through_views(g, p);
    let n = g.node(p.node);
    match &n.op {
        Op::Range { start, step, .. } if *step == 1.0 && start.fract() == 0.0 => {
            return Ok(Positions::Offset(*start as i64))
        }
        Op::Expand { .. } => return positions(g, n.operands[0]),
        Op::Binary(BinaryOp::Add) => {
            for (r, o) in [(n.operands[0], n.operands[1]), (n.operands[1], n.operands[0])] {
                let Ok(Positions::Offset(start)) = positions(g, r) else { continue };
                if let Some(c) = scalar_const(g, o).filter(|c| c.fract() == 0.0) {
                    return Ok(Positions::Offset(start + c as i64));
                }
                let ot = g.value_type(o);
                if start == 0 && ot.dtype.is_int() && ot.shape.iter().all(|d| *d == Dim::Known(1)) {
                    return Ok(Positions::Past(o));
                }
            }
        }
        _ => {}
    }
    let t = g.value_type(p);
    if !(t.dtype.is_int() || t.dtype.is_float()) || !(1..=2).contains(&t.rank()) {
        return Err(format!("positions {t} are not {{T}} or {{B, T}}"));
    }
    Ok(Positions::Tensor(p))
}

/// `Base` when `inv_i = scale · base^(−2i/dims)` for every i (within f32 rounding), else
/// the table itself.
pub fn frequencies(inv: &[f64]) -> Frequencies {
    let other = Frequencies::Inverse(inv.to_vec());
    let dims = inv.len() as f64 * 2.0;
    let (Some(&f0), Some(&f1)) = (inv.first(), inv.get(1)) else { return other };
    if !(f0 > 0.0 && f1 > 0.0 && f1 < f0) {
        return other;
    }
    let raw = (f1 / f0).powf(-dims / 2.0);
    // The table is stored in f32: snap 9999.999 back to the 10000 it came from.
    let base = if ((raw.round() - raw) / raw).abs() < 1e-5 { raw.round() } else { raw };
    let scale = if (f0 - 1.0).abs() < 1e-7 { 1.0 } else { f0 };
    let fits = inv
        .iter()
        .enumerate()
        .all(|(i, &c)| ((scale * base.powf(-2.0 * i as f64 / dims) - c) / c).abs() < 1e-5);
    if fits {
        Frequencies::Base { base, scale }
    } else {
        other
    }
}

/// `(cache, positions)` when `v` is a row gather of a constant `{P, W}` cache.
fn gathered(g: &Graph, v: Value) -> Option<(HostTensor, Value)> {
    let n = g.node(through_views(g, v).node);
    let Op::Gather { axis: 0 } = n.op else { return None };
    let table = g.node(n.operands[0].node).op.as_constant()?;
    (table.dims().len() == 2).then(|| (table.clone(), n.operands[1]))
}

/// Inverse frequencies of constant cos/sin caches, checked against every row:
/// `cos[t, j] = cos(t·inv_{j mod h})` (halves duplicated when `duplicated`).
fn cached_inv_freq(cos: &HostTensor, sin: &HostTensor, duplicated: bool) -> Result<Vec<f64>, String> {
    let (rows, w) = (cos.dims()[0], cos.dims()[1]);
    if cos.dims() != sin.dims() || rows < 2 || (duplicated && w % 2 != 0) {
        return Err("cos/sin caches differ in shape or are too short".into());
    }
    let h = if duplicated { w / 2 } else { w };
    let inv: Vec<f64> = (0..h).map(|i| sin.get_f64(w + i).atan2(cos.get_f64(w + i))).collect();
    for t in 0..rows {
        for j in 0..w {
            let angle = t as f64 * inv[j % h];
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * (1.0 + t as f64 * 1e-3);
            if !close(cos.get_f64(t * w + j), angle.cos()) || !close(sin.get_f64(t * w + j), angle.sin()) {
                return Err(format!("cos/sin cache row {t} is not cos/sin of t · inverse frequencies"));
            }
        }
    }
    Ok(inv)
}

/// The table behind cos and sin, when they are one: `duplicated` says cos/sin are full
/// width (`concat(f, f)` halves), else one entry per pair. `compute` is the dtype the block
/// would compute the angles in; angles computed in another dtype are not a table.
pub fn table(g: &Graph, cos: Value, sin: Value, duplicated: bool, compute: DType) -> Result<Table, String> {
    let (cos, sin, mscale) = common_scale(g, cos, sin)?;
    if let (Some((cc, pc)), Some((sc, ps))) = (gathered(g, cos), gathered(g, sin)) {
        if pc != ps {
            return Err("cos and sin caches are gathered at different positions".into());
        }
        let inv = cached_inv_freq(&cc, &sc, duplicated)?;
        return Ok(Table { positions: positions(g, pc)?, freqs: frequencies(&inv), mscale });
    }
    let angles = |v, op| if duplicated { duplicated_halves(g, v, op) } else { per_pair(g, v, op) };
    let (Some(fc), Some(fs)) = (angles(cos, UnaryOp::Cos), angles(sin, UnaryOp::Sin)) else {
        return Err("cos/sin are not cos and sin of one angle tensor".into());
    };
    if fc != fs {
        return Err("cos and sin are of different angles".into());
    }
    if g.value_type(fc).dtype != compute {
        return Err(format!("the angles are computed in {}, not {compute}", g.value_type(fc).dtype));
    }
    let (p, inv) = positions_times_table(g, fc)?;
    Ok(Table { positions: positions(g, p)?, freqs: frequencies(&inv), mscale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, TensorType};

    fn inv(base: f64, scale: f64, h: usize) -> Vec<f64> {
        (0..h).map(|i| scale * base.powf(-2.0 * i as f64 / (2 * h) as f64)).collect()
    }

    #[test]
    fn recovers_base_and_scale() {
        let f32_rounded: Vec<f64> = inv(1e4, 1.0, 8).iter().map(|&x| x as f32 as f64).collect();
        assert_eq!(frequencies(&f32_rounded), Frequencies::Base { base: 1e4, scale: 1.0 });
        let scaled = inv(5e5, 0.25, 4);
        match frequencies(&scaled) {
            Frequencies::Base { base, scale } => {
                assert!((base - 5e5).abs() < 1e-3 && (scale - 0.25).abs() < 1e-12, "{base} {scale}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rounded_or_llama3_tables_are_not_a_base() {
        let bf16: Vec<f64> = inv(1e4, 1.0, 8).iter().map(|&x| half::bf16::from_f64(x).to_f64()).collect();
        assert!(matches!(frequencies(&bf16), Frequencies::Inverse(t) if t == bf16));
        let mut llama3 = inv(5e5, 1.0, 8);
        llama3[6] /= 8.0;
        llama3[7] /= 8.0;
        assert!(matches!(frequencies(&llama3), Frequencies::Inverse(_)));
        assert!(matches!(frequencies(&[1.0]), Frequencies::Inverse(_)));
    }

    /// cos/sin = `m · op(concat(p ⊗ inv, p ⊗ inv))` with `p` built by `pos`.
    fn graph(
        mut pos: impl FnMut(&mut Builder<'_>) -> Value,
        mscale: Option<(f64, f64)>,
        angle_dtype: DType,
    ) -> (Graph, Value, Value) {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let p = pos(&mut b);
        let p = b.cast(p, angle_dtype).unwrap();
        let t = b.ty(p).shape.clone();
        let mut col = t.to_vec();
        col.push(Dim::Known(1));
        let p = b.reshape(p, col).unwrap();
        let table = HostTensor::from_f64(angle_dtype, vec![4], &inv(1e4, 1.0, 4));
        let table = b.constant(table);
        let f = b.mul(p, table).unwrap();
        let e = b.concat(&[f, f], -1).unwrap();
        let mut c = b.unary(UnaryOp::Cos, e).unwrap();
        let mut s = b.unary(UnaryOp::Sin, e).unwrap();
        if let Some((mc, ms)) = mscale {
            let (kc, ks) = (b.scalar_like(c, mc), b.scalar_like(s, ms));
            c = b.mul(c, kc).unwrap();
            s = b.mul(ks, s).unwrap();
        }
        (g, c, s)
    }

    fn arange(b: &mut Builder<'_>, start: f64) -> Value {
        b.add(Op::Range { start, step: 1.0, len: Dim::sym("seq"), dtype: DType::I64 }, &[]).unwrap()
    }

    #[test]
    fn table_of_an_arange_with_offset_and_mscale() {
        let (g, c, s) = graph(|b| arange(b, 3.0), Some((0.5, 0.5)), DType::F32);
        let t = table(&g, c, s, true, DType::F32).unwrap();
        assert_eq!(t.positions, Positions::Offset(3));
        assert_eq!(t.freqs, Frequencies::Base { base: 1e4, scale: 1.0 });
        assert_eq!(t.mscale, 0.5);
        assert!(table(&g, c, s, false, DType::F32).is_err(), "full-width angles are not per pair");
    }

    #[test]
    fn table_of_past_plus_arange_and_of_position_ids() {
        let mut past = None;
        let (g, c, s) = graph(
            |b| {
                let r = arange(b, 0.0);
                let p = b.input("past", TensorType::known(DType::I64, &[]));
                past = Some(p);
                b.add2(r, p).unwrap()
            },
            None,
            DType::F32,
        );
        assert_eq!(table(&g, c, s, true, DType::F32).unwrap().positions, Positions::Past(past.unwrap()));
        let mut ids = None;
        let (g, c, s) = graph(
            |b| {
                let p =
                    b.input("position_ids", TensorType::new(DType::I32, [Dim::sym("b"), Dim::sym("seq")]));
                ids = Some(p);
                p
            },
            None,
            DType::F32,
        );
        assert_eq!(table(&g, c, s, true, DType::F32).unwrap().positions, Positions::Tensor(ids.unwrap()));
    }

    #[test]
    fn not_a_table() {
        let (g, c, s) = graph(|b| arange(b, 0.0), Some((0.5, 0.25)), DType::F32);
        assert!(table(&g, c, s, true, DType::F32).unwrap_err().contains("scaled differently"));
        let (g, c, s) = graph(|b| arange(b, 0.0), None, DType::F16);
        assert!(table(&g, c, s, true, DType::F32).unwrap_err().contains("computed in f16"));
        let (g, c, _) = graph(|b| arange(b, 0.0), None, DType::F32);
        assert!(table(&g, c, c, true, DType::F32).unwrap_err().contains("not cos and sin"));
    }
}
