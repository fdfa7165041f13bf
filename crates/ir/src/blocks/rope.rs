//! Rotary position embedding (RoPE), MLX semantics.

use super::common::{self, compute_dtype};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
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
///
/// `mscale` multiplies cos and sin (both) before they are cast to x's dtype: an attention
/// scaling folded into the rotation (YaRN, Hugging Face's `attention_scaling`); the
/// pass-through tail is not scaled.
///
/// **cos/sin form** (`cos_sin = true`): the angles are not computed but given. Operands:
/// `x` (float, rank ≥ 1, any layout), `cos`, `sin` (float, one shape, broadcastable against
/// x except on the last axis, which has `dims` entries — one per rotated feature, in x's
/// order — or `dims/2` — one per rotated pair, shared by both of its features). With
/// `c1, s1` the entries of the first feature of each pair and `c2, s2` of the second:
/// `out1 = x1·c1 − x2·s1`, `out2 = x2·c2 + x1·s2` (split-half or interleaved pairs as above),
/// which is `x·cos + rotate(x)·sin`. `base` must be `None`, `scale` 1, `position`
/// `Offset(0)`.
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
    /// Multiplies cos and sin (an attention scaling); 1 when absent.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub mscale: f32,
    /// cos and sin are operands (the cos/sin form); false when absent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cos_sin: bool,
}

fn one() -> f32 {
    1.0
}

fn is_one(v: &f32) -> bool {
    *v == 1.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Rope {
    /// The block's kind.
    pub const KIND: &'static str = "rope";

    /// Split-half RoPE of the first `dims` features with `base`, scale 1 and offset 0.
    pub fn new(dims: usize, base: f32) -> Self {
        Rope {
            dims,
            traditional: false,
            base: Some(base),
            scale: 1.0,
            position: RopePosition::Offset(0),
            mscale: 1.0,
            cos_sin: false,
        }
    }

    /// The cos/sin form rotating the first `dims` features: operands `x, cos, sin`.
    pub fn cos_sin(dims: usize, traditional: bool) -> Self {
        Rope { base: None, cos_sin: true, ..Rope::new(dims, 1.0).with_traditional(traditional) }
    }

    /// The same block with cos and sin multiplied by `mscale`.
    pub fn with_mscale(mut self, mscale: f32) -> Self {
        self.mscale = mscale;
        self
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
        if self.cos_sin {
            return "x, cos, sin".into();
        }
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
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let ropes = [Rope::new(16, 10000.0), Rope::new(8, 10000.0).with_traditional(true)];
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        let case = |(d, r)| ParityCase::new(r, d, &[&[1, 2, 6, 16]], 2.0, common::parity_tol(d));
        dtypes.into_iter().flat_map(|d| ropes.clone().map(|r| (d, r))).map(case).collect()
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
        common::finite(k, "mscale", self.mscale)?;
        if self.cos_sin {
            return self.infer_cos_sin(inputs);
        }
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
        if self.cos_sin {
            let cs = self.given_cos_sin(b, inputs)?;
            return self.rotate(b, x, cs);
        }
        let r = xt.rank();
        let c = compute_dtype(xt.dtype);
        let seq = xt.shape[r - 2].clone();
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
        let sin = b.unary(UnaryOp::Sin, theta)?;
        let (cos, sin) = self.scaled_to(b, cos, sin, xt.dtype)?;
        self.rotate(b, x, CosSin { c1: cos, s1: sin, c2: cos, s2: sin })
    }
}

/// The cos/sin entries of the first (`c1`, `s1`) and second (`c2`, `s2`) feature of each
/// rotated pair, in x's dtype, `{..., dims/2}`.
struct CosSin {
    c1: Value,
    s1: Value,
    c2: Value,
    s2: Value,
}

impl Rope {
    /// cos and sin times `mscale` (in their own dtype), then cast to `dtype`.
    fn scaled_to(
        &self,
        b: &mut Builder<'_>,
        cos: Value,
        sin: Value,
        dtype: crate::DType,
    ) -> Result<(Value, Value), IrError> {
        let (cos, sin) = if self.mscale != 1.0 {
            let m = b.scalar_like(cos, self.mscale as f64);
            (b.mul(cos, m)?, b.mul(sin, m)?)
        } else {
            (cos, sin)
        };
        Ok((b.cast(cos, dtype)?, b.cast(sin, dtype)?))
    }

    /// The cos/sin operands of the cos/sin form, split per pair member.
    fn given_cos_sin(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<CosSin, IrError> {
        let dtype = b.ty(inputs[0]).dtype;
        let (cos, sin) = self.scaled_to(b, inputs[1], inputs[2], dtype)?;
        if b.ty(cos).shape.last() == Some(&Dim::Known(self.dims / 2)) {
            return Ok(CosSin { c1: cos, s1: sin, c2: cos, s2: sin });
        }
        let (d, h) = (self.dims as i64, (self.dims / 2) as i64);
        let traditional = self.traditional;
        let members = |b: &mut Builder<'_>, v: Value| -> Result<(Value, Value), IrError> {
            if traditional {
                Ok((strided(b, v, 0, d, 2)?, strided(b, v, 1, d, 2)?))
            } else {
                Ok((b.slice_axis(v, -1, 0, h)?, b.slice_axis(v, -1, h, d)?))
            }
        };
        let ((c1, c2), (s1, s2)) = (members(b, cos)?, members(b, sin)?);
        Ok(CosSin { c1, s1, c2, s2 })
    }

    /// `[x1·c1 − x2·s1, x2·c2 + x1·s2]` (halves, or interleaved back into pairs), then the
    /// pass-through tail.
    fn rotate(&self, b: &mut Builder<'_>, x: Value, cs: CosSin) -> Result<Vec<Value>, IrError> {
        let xt = b.ty(x).clone();
        let r = xt.rank();
        let d = xt.shape[r - 1].known().expect("checked by infer");
        let half = self.dims / 2;
        let one = Dim::Known(1);
        let (x1, x2) = if self.traditional {
            (strided(b, x, 0, self.dims as i64, 2)?, strided(b, x, 1, self.dims as i64, 2)?)
        } else {
            (b.slice_axis(x, -1, 0, half as i64)?, b.slice_axis(x, -1, half as i64, self.dims as i64)?)
        };
        let a = b.mul(x1, cs.c1)?;
        let bb = b.mul(x2, cs.s1)?;
        let o1 = b.sub(a, bb)?;
        let a = b.mul(x1, cs.s2)?;
        let bb = b.mul(x2, cs.c2)?;
        let o2 = b.add2(a, bb)?;
        let mut parts = if self.traditional {
            // Interleave back: [..., half, 2] -> [..., dims].
            let lead: Vec<Dim> = b.ty(o1).shape[..r - 1].to_vec();
            let mut pair = lead.clone();
            pair.extend([Dim::Known(half), one.clone()]);
            let o1 = b.reshape(o1, pair.clone())?;
            let o2 = b.reshape(o2, pair)?;
            let both = b.concat(&[o1, o2], -1)?;
            let mut flat = lead;
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

    /// [`Block::infer`] of the cos/sin form.
    fn infer_cos_sin(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::arity(k, inputs, &[3], &self.operand_names())?;
        if self.base.is_some() || self.scale != 1.0 || self.position != RopePosition::Offset(0) {
            return Err(format!(
                "{k}: the cos/sin form takes no base, scale or position (cos and sin give the angles)"
            ));
        }
        let (x, cos, sin) = (&inputs[0], &inputs[1], &inputs[2]);
        if !x.dtype.is_float() || x.rank() == 0 {
            return Err(format!("{k}: x must be a float tensor of rank ≥ 1, got {x}"));
        }
        common::float(k, "cos", cos)?;
        common::float(k, "sin", sin)?;
        if cos.shape != sin.shape {
            return Err(format!("{k}: cos {cos} and sin {sin} differ in shape"));
        }
        let Some(d) = x.shape[x.rank() - 1].known() else {
            return Err(format!("{k}: the last axis of x must have a known size, got {x}"));
        };
        if self.dims > d {
            return Err(format!("{k}: dims ({}) exceed the last axis of x ({d})", self.dims));
        }
        let w = cos.shape.last().and_then(Dim::known);
        if cos.rank() == 0 || (w != Some(self.dims) && w != Some(self.dims / 2)) {
            return Err(format!(
                "{k}: the last axis of cos/sin must be dims ({}) or dims/2, got {cos}",
                self.dims
            ));
        }
        if cos.rank() > x.rank() {
            return Err(format!("{k}: cos {cos} has more axes than x {x}"));
        }
        let lead = &x.shape[x.rank() - cos.rank()..x.rank() - 1];
        for (i, (c, a)) in cos.shape[..cos.rank() - 1].iter().zip(lead).enumerate() {
            if *c != Dim::Known(1) && known_mismatch(c, a) {
                return Err(format!("{k}: cos/sin axis {i} has {c}, x has {a} there (expected {a} or 1)"));
            }
        }
        Ok(vec![x.clone()])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_without_the_new_fields_reads_as_before_and_they_round_trip() {
        let old =
            r#"{"dims": 8, "traditional": false, "base": 10000.0, "scale": 1.0, "position": {"offset": 2}}"#;
        let r: Rope = serde_json::from_str(old).unwrap();
        assert_eq!(r, Rope::new(8, 1e4).with_position(RopePosition::Offset(2)));
        // Defaults are not written: existing IR and dumps stay byte-identical.
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("mscale").is_none() && v.get("cos_sin").is_none(), "{v}");
        let new = Rope::cos_sin(6, true).with_mscale(0.5);
        let back: Rope = serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
