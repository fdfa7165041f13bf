//! From a recognized rotation to a rope block: the check half ([`plan`]: shapes, then where
//! cos/sin come from) and the rewrite half ([`build`]), which uses what the plan found.

use crate::analysis::angles::{self, Frequencies, Positions, Table};
use crate::rule::require;
use blockfuse_ir::blocks::{compute_dtype, Rope, RopePosition};
use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, IrError, TensorType, Value};

/// A rotation as its rule found it: `out = x·cos + rotate(x)·sin` over all of x's last axis.
pub(super) struct Rotation {
    /// The rotated tensor.
    pub x: Value,
    /// cos and sin as the rotation multiplies them.
    pub cos: Value,
    /// See `cos`.
    pub sin: Value,
    /// Interleaved pairs, or split halves.
    pub traditional: bool,
    /// cos/sin have one entry per feature (else one per pair).
    pub full_width: bool,
    /// The rotation's result.
    pub out: Value,
}

/// Where the block's angles come from.
pub(super) enum Source {
    /// A frequency table (base or freqs form).
    Table(Table),
    /// cos and sin as operands (the cos/sin form).
    Given,
}

/// What the check established: enough to build the block without looking again.
pub(super) struct Plan {
    rotation: Rotation,
    dims: usize,
    out_dtype: DType,
    source: Source,
}

/// True when `s` (cos's shape) varies only along axis −2 of `x` (the block's positions axis)
/// and, if at all, along axis 0 (the batch, for `{B, T}` positions).
fn along_positions(x: &TensorType, s: &[Dim]) -> bool {
    let (r, xs) = (s.len(), &x.shape);
    r >= 2
        && r <= xs.len()
        && s[r - 2] == xs[xs.len() - 2]
        && s[..r - 2].iter().enumerate().all(|(i, c)| *c == Dim::Known(1) || i == 0 && r == xs.len())
}

/// True when the block accepts these positions for x (`{T}`, `{B, T}` or `{1, T}`).
fn positions_fit(g: &Graph, x: &TensorType, p: &Positions) -> bool {
    let Positions::Tensor(v) = p else { return true };
    let (s, t) = (&g.value_type(*v).shape, &x.shape[x.rank() - 2]);
    match s.len() {
        1 => &s[0] == t,
        2 => &s[1] == t && (s[0] == Dim::Known(1) || s[0] == x.shape[0]),
        _ => false,
    }
}

/// Checks the rotation's shapes and classifies its cos/sin (most specific first).
pub(super) fn plan(g: &Graph, r: Rotation) -> Result<Plan, String> {
    let (xt, out) = (g.value_type(r.x), g.value_type(r.out));
    let d = xt.shape.last().and_then(Dim::known).ok_or("head dim is not known")?;
    require(d % 2 == 0 && d > 0, format!("the rotated width {d} is not a positive even number"))?;
    require(out.shape == xt.shape, format!("cos/sin broadcast x {xt} to a larger result {out}"))?;
    let (ct, st) = (g.value_type(r.cos), g.value_type(r.sin));
    require(ct.shape == st.shape, format!("cos {ct} and sin {st} differ in shape"))?;
    let w = if r.full_width { d } else { d / 2 };
    require(
        ct.shape.last() == Some(&Dim::Known(w)),
        format!("cos/sin {ct} do not have {w} entries per row"),
    )?;
    let lead = &xt.shape[xt.rank().saturating_sub(ct.rank())..xt.rank() - 1];
    let fits =
        ct.rank() <= xt.rank() && ct.shape.iter().zip(lead).all(|(c, a)| c == a || *c == Dim::Known(1));
    require(fits, format!("cos/sin {ct} do not broadcast against x {xt}"))?;
    let source = table_source(g, &r, xt).map_or(Source::Given, Source::Table);
    Ok(Plan { dims: d, out_dtype: out.dtype, source, rotation: r })
}

/// The frequency table behind the rotation, when the base or freqs form can express it.
fn table_source(g: &Graph, r: &Rotation, xt: &TensorType) -> Option<Table> {
    let (cos_type, out_dtype) = (g.value_type(r.cos), g.value_type(r.out).dtype);
    // The block casts its cos/sin to the dtype it rotates in: they must be in that dtype.
    let same_dtype = cos_type.dtype == out_dtype;
    if xt.rank() < 3
        || !along_positions(xt, &cos_type.shape)
        || (r.traditional && r.full_width)
        || !same_dtype
    {
        return None;
    }
    let t = angles::table(g, r.cos, r.sin, r.full_width, compute_dtype(xt.dtype)).ok()?;
    let n = match &t.freqs {
        Frequencies::Base { .. } => xt.shape.last().and_then(Dim::known)? / 2,
        Frequencies::Inverse(inv) => inv.len(),
    };
    (n * 2 == xt.shape.last().and_then(Dim::known)? && positions_fit(g, xt, &t.positions)).then_some(t)
}

/// The rope block of a plan.
pub(super) fn build(b: &mut Builder<'_>, p: Plan) -> Result<Value, IrError> {
    let r = &p.rotation;
    let x = if b.ty(r.x).dtype == p.out_dtype { r.x } else { b.cast(r.x, p.out_dtype)? };
    let (block, args) = match p.source {
        Source::Given => (Rope::cos_sin(p.dims, r.traditional), vec![x, r.cos, r.sin]),
        Source::Table(t) => table_block(b, x, p.dims, r.traditional, t)?,
    };
    Ok(b.block(block, &args)?[0])
}

/// The base or freqs form for a table: an offset, an offsets operand (`past + arange`) or a
/// positions operand; a base and scale, or a periods operand.
fn table_block(
    b: &mut Builder<'_>,
    x: Value,
    dims: usize,
    traditional: bool,
    t: Table,
) -> Result<(Rope, Vec<Value>), IrError> {
    let mut args = vec![x];
    let position = match t.positions {
        Positions::Offset(o) => RopePosition::Offset(o),
        Positions::Past(v) => {
            args.push(if b.ty(v).rank() == 0 { v } else { b.reshape(v, vec![])? });
            RopePosition::Offsets
        }
        Positions::Tensor(v) => {
            args.push(v);
            RopePosition::Positions
        }
    };
    let mut rope = Rope::new(dims, 1.0).with_traditional(traditional).with_position(position);
    match t.freqs {
        Frequencies::Base { base, scale } => {
            rope.base = Some(base as f32);
            rope.scale = scale as f32;
        }
        Frequencies::Inverse(inv) => {
            let periods: Vec<f32> = inv.iter().map(|c| (1.0 / c) as f32).collect();
            args.push(b.constant(HostTensor::from_f32(vec![periods.len()], &periods)));
            rope = rope.with_freqs();
        }
    }
    Ok((rope.with_mscale(t.mscale as f32), args))
}
