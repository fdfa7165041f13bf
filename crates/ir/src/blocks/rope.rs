//! Rotary position embedding (RoPE), MLX semantics.

use super::common::{self, compute_dtype};
use crate::block::Block;
use crate::builder::Builder;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::{Bound, Op, SliceSpec, UnaryOp};
use crate::shape::{Dim, TensorType};
use crate::tensor::HostTensor;
use serde::{Deserialize, Serialize};

/// Where the positions of a [`Rope`] come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopePosition {
    /// A constant offset: `p_t = offset + t`.
    Offset(i64),
    /// An operand of integer offsets, rank 0 or `{B}` (one per batch row, B = axis 0 of x):
    /// `p_{b,t} = offsets[b] + t`.
    Offsets,
    /// An operand of explicit positions (integer or float), `{T}` or `{B, T}` (or `{1, T}`):
    /// `p_{b,t} = positions[b, t]`; arbitrary, non-sequential positions are allowed.
    Positions,
}

impl Default for RopePosition {
    fn default() -> Self {
        RopePosition::Offset(0)
    }
}

/// Rotary position embedding over the last axis of `x`, positions along axis −2
/// (blocks.md § RoPE; MLX's `fast::rope`).
///
/// `p = (offset + t) · scale` (or `positions · scale`), `θ_{t,i} = p_t · inv_i` for
/// `i < dims/2`, with `inv_i = base^(−2i/dims)`, or `inv_i = 1/freqs_i` when a freqs operand
/// is given instead of a base (MLX's convention: freqs are periods, not inverse frequencies).
///
/// - split-half (`traditional = false`, Hugging Face `rotate_half`): with `x1 = x[..., :dims/2]`
///   and `x2 = x[..., dims/2:dims]`, `out = [x1·cos − x2·sin, x1·sin + x2·cos, x[..., dims:]]`;
/// - interleaved (`traditional = true`, GPT-J/Meta): the same rotation of the pairs
///   `(x_{2i}, x_{2i+1})`;
/// - partial rotation: `dims < D` leaves `x[..., dims:]` unchanged.
///
/// Angles are computed in f32 (f64 for f64 inputs); cos and sin are cast to x's dtype before
/// the rotation, which runs in x's dtype (as MLX's fallback does).
///
/// Operands, in order: `x` (float, rank ≥ 3: `{B, T, D}` or `{B, H, T, D}`), then the
/// `offsets` or `positions` operand when [`Rope::position`] asks for one, then `freqs`
/// (float, `{dims/2}`) exactly when `base` is `None`. Output: x's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rope {
    /// How many leading features of the last axis rotate (even, 0 < dims ≤ D).
    pub dims: usize,
    /// Interleaved pairs (`true`) or split halves (`false`).
    pub traditional: bool,
    /// The frequency base; `None` when a freqs operand gives the frequencies.
    pub base: Option<f32>,
    /// Multiplies the positions (MLX's `scale`; linear position interpolation).
    pub scale: f32,
    /// Where the positions come from.
    #[serde(default)]
    pub position: RopePosition,
}

impl Rope {
    /// The block's kind.
    pub const KIND: &'static str = "rope";

    /// Split-half RoPE of the first `dims` features with `base`, scale 1 and offset 0.
    pub fn new(dims: usize, base: f32) -> Self {
        Rope { dims, traditional: false, base: Some(base), scale: 1.0, position: RopePosition::Offset(0) }
    }

    /// The same block, interleaved (`true`) or split-half (`false`).
    pub fn with_traditional(mut self, traditional: bool) -> Self {
        self.traditional = traditional;
        self
    }

    /// The same block with another position scale.
    pub fn with_scale(mut self, scale: f32) -> Self {
        self.scale = scale;
        self
    }

    /// The same block with another source of positions.
    pub fn with_position(mut self, position: RopePosition) -> Self {
        self.position = position;
        self
    }

    /// The same block taking its frequencies from a freqs operand (base unset).
    pub fn with_freqs(mut self) -> Self {
        self.base = None;
        self
    }

    /// True when an offsets or positions operand follows x.
    pub fn has_position_operand(&self) -> bool {
        !matches!(self.position, RopePosition::Offset(_))
    }

    fn operand_names(&self) -> String {
        let mut s = String::from("x");
        match self.position {
            RopePosition::Offset(_) => {}
            RopePosition::Offsets => s.push_str(", offsets"),
            RopePosition::Positions => s.push_str(", positions"),
        }
        if self.base.is_none() {
            s.push_str(", freqs");
        }
        s
    }
}

/// True when both dims are known and differ (symbolic dims are checked at run time, when the
/// evaluator infers the block again on concrete types).
fn known_mismatch(a: &Dim, b: &Dim) -> bool {
    matches!((a.known(), b.known()), (Some(x), Some(y)) if x != y)
}

impl Block for Rope {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn attrs(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain struct")
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        if self.dims == 0 {
            return Err(format!("{k}: dims must be positive, got 0"));
        }
        if !self.dims.is_multiple_of(2) {
            return Err(format!("{k}: dims must be even, got {}", self.dims));
        }
        common::finite(k, "scale", self.scale)?;
        if let Some(base) = self.base {
            if !(base.is_finite() && base > 0.0) {
                return Err(format!("{k}: base must be finite and > 0, got {base}"));
            }
        }
        let npos = self.has_position_operand() as usize;
        match (inputs.len() == 1 + npos, inputs.len() == 2 + npos, self.base) {
            (true, _, None) => {
                return Err(format!(
                    "{k}: neither base nor freqs is given (set base, or pass a freqs operand)"
                ))
            }
            (_, true, Some(base)) => {
                return Err(format!(
                    "{k}: both base ({base}) and a freqs operand are given; give exactly one"
                ))
            }
            (false, false, _) => {
                common::arity(k, inputs, &[1 + npos + self.base.is_none() as usize], &self.operand_names())?;
            }
            _ => {}
        }
        let x = &inputs[0];
        if !x.dtype.is_float() {
            return Err(format!("{k}: x must be a float tensor, got {x}"));
        }
        if x.rank() < 3 {
            return Err(format!("{k}: x must have at least 3 axes ({{B, T, D}} or {{B, H, T, D}}), got {x}"));
        }
        let (batch, seq, last) = (&x.shape[0], &x.shape[x.rank() - 2], &x.shape[x.rank() - 1]);
        let Some(d) = last.known() else {
            return Err(format!("{k}: the last axis of x must have a known size, got {x}"));
        };
        if self.dims > d {
            return Err(format!("{k}: dims ({}) exceed the last axis of x ({d})", self.dims));
        }
        if npos == 1 {
            let p = &inputs[1];
            match self.position {
                RopePosition::Offsets => {
                    if !p.dtype.is_int() {
                        return Err(format!("{k}: offsets must be integers, got {p}"));
                    }
                    match p.rank() {
                        0 => {}
                        1 if known_mismatch(&p.shape[0], batch) => {
                            return Err(format!(
                                "{k}: offsets has {} entries, x has batch {batch} (axis 0)",
                                p.shape[0]
                            ))
                        }
                        1 => {}
                        _ => {
                            return Err(format!(
                                "{k}: offsets must be a scalar or {{B}} = [{batch}], got {p}"
                            ))
                        }
                    }
                }
                RopePosition::Positions => {
                    if !(p.dtype.is_int() || p.dtype.is_float()) {
                        return Err(format!("{k}: positions must be numbers, got {p}"));
                    }
                    let ok = match p.rank() {
                        1 => !known_mismatch(&p.shape[0], seq),
                        2 => {
                            !known_mismatch(&p.shape[1], seq)
                                && (p.shape[0] == Dim::Known(1) || !known_mismatch(&p.shape[0], batch))
                        }
                        _ => false,
                    };
                    if !ok {
                        return Err(format!(
                            "{k}: positions must be {{T}} = [{seq}] or {{B, T}} = [{batch}, {seq}], got {p}"
                        ));
                    }
                }
                RopePosition::Offset(_) => unreachable!("no operand"),
            }
        }
        if self.base.is_none() {
            let f = &inputs[1 + npos];
            common::float(k, "freqs", f)?;
            common::vector_of(k, "freqs", f, &Dim::Known(self.dims / 2), "dims/2")?;
        }
        Ok(vec![x.clone()])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let x = inputs[0];
        let xt = b.ty(x).clone();
        let r = xt.rank();
        let c = compute_dtype(xt.dtype);
        let seq = xt.shape[r - 2].clone();
        let d = xt.shape[r - 1].known().expect("checked by infer");
        let half = self.dims / 2;
        let one = Dim::Known(1);

        // Positions p, shaped to broadcast against [..., T, half].
        let ramp = |b: &mut Builder<'_>, start: f64| {
            b.add(Op::Range { start, step: 1.0, len: seq.clone(), dtype: c }, &[])
        };
        let p = match self.position {
            RopePosition::Offset(o) => ramp(b, o as f64)?,
            RopePosition::Offsets => {
                let off = b.cast(inputs[1], c)?;
                let t = ramp(b, 0.0)?;
                let ot = b.ty(off).clone();
                let off = if ot.rank() == 1 {
                    // {B} -> {B, 1, ..., 1} of rank r - 1, against t of shape {T}.
                    let mut shape = vec![ot.shape[0].clone()];
                    shape.extend(std::iter::repeat_n(one.clone(), r - 2));
                    b.reshape(off, shape)?
                } else {
                    off
                };
                b.add2(off, t)?
            }
            RopePosition::Positions => {
                let pos = b.cast(inputs[1], c)?;
                let pt = b.ty(pos).clone();
                if pt.rank() == 2 {
                    // {B, T} -> {B, 1, ..., 1, T} of rank r - 1.
                    let mut shape = vec![pt.shape[0].clone()];
                    shape.extend(std::iter::repeat_n(one.clone(), r - 3));
                    shape.push(pt.shape[1].clone());
                    b.reshape(pos, shape)?
                } else {
                    pos
                }
            }
        };
        let p = if self.scale != 1.0 {
            let s = b.scalar(c, self.scale as f64);
            b.mul(p, s)?
        } else {
            p
        };
        let mut pshape = b.ty(p).shape.to_vec();
        pshape.push(one.clone());
        let p = b.reshape(p, pshape)?;

        // Inverse frequencies {half}.
        let inv = match self.base {
            Some(base) => {
                let v: Vec<f64> =
                    (0..half).map(|i| (base as f64).powf(-2.0 * i as f64 / self.dims as f64)).collect();
                b.constant(HostTensor::from_f64(c, vec![half], &v))
            }
            None => {
                let f = b.cast(inputs[inputs.len() - 1], c)?;
                b.unary(UnaryOp::Reciprocal, f)?
            }
        };
        let theta = b.mul(p, inv)?;
        let cos = b.unary(UnaryOp::Cos, theta)?;
        let cos = b.cast(cos, xt.dtype)?;
        let sin = b.unary(UnaryOp::Sin, theta)?;
        let sin = b.cast(sin, xt.dtype)?;

        let (x1, x2) = if self.traditional {
            (strided(b, x, 0, self.dims as i64, 2)?, strided(b, x, 1, self.dims as i64, 2)?)
        } else {
            (b.slice_axis(x, -1, 0, half as i64)?, b.slice_axis(x, -1, half as i64, self.dims as i64)?)
        };
        let a = b.mul(x1, cos)?;
        let bb = b.mul(x2, sin)?;
        let o1 = b.sub(a, bb)?;
        let a = b.mul(x1, sin)?;
        let bb = b.mul(x2, cos)?;
        let o2 = b.add2(a, bb)?;
        let mut parts = if self.traditional {
            // Interleave back: [..., half, 2] -> [..., dims].
            let mut pair: Vec<Dim> = xt.shape[..r - 1].to_vec();
            pair.extend([Dim::Known(half), one.clone()]);
            let o1 = b.reshape(o1, pair.clone())?;
            let o2 = b.reshape(o2, pair)?;
            let both = b.concat(&[o1, o2], -1)?;
            let mut flat: Vec<Dim> = xt.shape[..r - 1].to_vec();
            flat.push(Dim::Known(self.dims));
            vec![b.reshape(both, flat)?]
        } else {
            vec![o1, o2]
        };
        if self.dims < d {
            parts.push(b.slice_axis(x, -1, self.dims as i64, d as i64)?);
        }
        Ok(vec![b.concat(&parts, -1)?])
    }
}

/// `x[..., start:end:step]` on the last axis.
fn strided(b: &mut Builder<'_>, x: Value, start: i64, end: i64, step: i64) -> Result<Value, IrError> {
    b.add(
        Op::Slice(SliceSpec {
            axes: vec![-1],
            starts: vec![Bound::Const(start)],
            ends: vec![Bound::Const(end)],
            steps: vec![step],
        }),
        &[x],
    )
}
