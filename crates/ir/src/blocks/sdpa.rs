//! Scaled dot-product attention with grouped-query heads, masks and sinks.

use super::common::{self, compute_dtype, result_type};
use crate::block::{Block, ParityCase};
use crate::builder::Builder;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::Value;
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::shape::{Dim, TensorType};
use serde::{Deserialize, Serialize};

/// The mask of an [`Sdpa`] block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// No mask.
    None,
    /// A float mask operand broadcastable to `{B, Nq, Tq, Tk}`, clamped from below to
    /// `finfo.min` and added to the scores (a fully masked row attends uniformly).
    Additive,
    /// A bool mask operand broadcastable to `{B, Nq, Tq, Tk}`: false masks the score.
    Boolean,
    /// Causal, aligned lower-right: query q sees key k iff `k ≤ q + (Tk − Tq)` (MLX).
    Causal,
    /// Causal combined with a key-padding operand `{B, Tk}` (nonzero / true = attend).
    CausalWithKeyPadding,
}

impl MaskKind {
    /// True when the mask comes with an operand.
    pub fn has_operand(self) -> bool {
        matches!(self, MaskKind::Additive | MaskKind::Boolean | MaskKind::CausalWithKeyPadding)
    }
}

/// Scaled dot-product attention (blocks.md § SDPA; MLX's
/// `fast::scaled_dot_product_attention`):
///
/// `S = (scale·q) kᵀ`, masked, `P = softmax(S)` over the keys, `out = P v`.
///
/// Operands, in order: `q {B, Nq, Tq, D}`, `k {B, Nkv, Tk, D}`, `v {B, Nkv, Tk, Dv}`, then the
/// mask operand when [`MaskKind::has_operand`] (additive: float, boolean: bool, both
/// broadcastable to `{B, Nq, Tq, Tk}`; key padding: `{B, Tk}` bool or numbers, nonzero =
/// attend), then `sinks {Nq}` (float) when `has_sinks`.
///
/// - grouped-query attention: Nq must be a multiple of Nkv; query head h uses kv head
///   `h ÷ (Nq/Nkv)`;
/// - softcap `c` (Gemma 2's logit softcapping), when set: `S ← c·tanh(S/c)` before the mask;
/// - boolean, causal and key-padding masks replace masked scores with the finite minimum of
///   the compute type (`finfo.min`), and additive masks are clamped from below to it (−∞
///   becomes `finfo.min`, NaN stays NaN), so a fully masked row attends uniformly and never
///   gives NaN.
///
/// **Fully masked rows** (a query whose every key is masked) therefore always attend
/// uniformly (the mean of v over the keys), on every backend. A composed graph that masks with
/// −∞ gives NaN there instead (or 0 behind a NaN guard): the `sdpa` rule reproduces that
/// explicitly around the block (`where(row fully masked, NaN | 0, sdpa(…))`), and proves that
/// no row is fully masked before it emits a causal mask (docs/reliability.md);
/// - sinks: one extra logit per query head that joins the softmax denominator only;
/// - everything (scores, softmax, `P v`) is computed in f32 (f64 when an operand is f64) and
///   the output is cast once to the result type of q, k and v ([`result_type`](super::result_type)).
///
/// Output: `{B, Nq, Tq, Dv}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sdpa {
    /// Multiplies q before the product (usually `1/√D`; see [`Sdpa::default_scale`]).
    pub scale: f32,
    /// The mask.
    pub mask: MaskKind,
    /// A sinks operand follows the mask.
    #[serde(default)]
    pub has_sinks: bool,
    /// Logit softcapping `c·tanh(S/c)` (positive, finite), applied to the scaled scores
    /// before the mask; `None` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softcap: Option<f32>,
}

impl Sdpa {
    /// The block's kind.
    pub const KIND: &'static str = "sdpa";

    /// Attention with `scale`, `mask` and no sinks.
    pub fn new(scale: f32, mask: MaskKind) -> Self {
        Sdpa { scale, mask, has_sinks: false, softcap: None }
    }

    /// The same block with a sinks operand (`true`) or without.
    pub fn with_sinks(mut self, has_sinks: bool) -> Self {
        self.has_sinks = has_sinks;
        self
    }

    /// The same block with logit softcapping `c·tanh(S/c)` (`None`: none).
    pub fn with_softcap(mut self, softcap: Option<f32>) -> Self {
        self.softcap = softcap;
        self
    }

    /// The usual scale `1/√head_dim`.
    pub fn default_scale(head_dim: usize) -> f32 {
        (1.0 / (head_dim as f64).sqrt()) as f32
    }

    /// The number of operands the block takes.
    pub fn operand_count(&self) -> usize {
        3 + self.mask.has_operand() as usize + self.has_sinks as usize
    }

    fn operand_names(&self) -> String {
        let mut s = String::from("q, k, v");
        match self.mask {
            MaskKind::Additive | MaskKind::Boolean => s.push_str(", mask"),
            MaskKind::CausalWithKeyPadding => s.push_str(", key_padding"),
            _ => {}
        }
        if self.has_sinks {
            s.push_str(", sinks");
        }
        s
    }
}

fn dims_differ(a: &Dim, b: &Dim) -> bool {
    a != b
}

impl Block for Sdpa {
    crate::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let qkv: &[&[usize]] = &[&[1, 4, 5, 16], &[1, 2, 7, 16], &[1, 2, 7, 16]];
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        let s = Sdpa::default_scale(16);
        let blocks = [Sdpa::new(s, MaskKind::None), Sdpa::new(s, MaskKind::Causal).with_softcap(Some(5.0))];
        let case = |(d, b)| ParityCase::new(b, d, qkv, 2.0, common::parity_tol(d));
        dtypes.into_iter().flat_map(|d| blocks.clone().map(|b| (d, b))).map(case).collect()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let k = Self::KIND;
        common::finite(k, "scale", self.scale)?;
        if let Some(c) = self.softcap {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("{k}: softcap must be positive and finite, got {c}"));
            }
        }
        common::arity(k, inputs, &[self.operand_count()], &self.operand_names())?;
        let (q, kk, v) = (&inputs[0], &inputs[1], &inputs[2]);
        for (t, what) in [(q, "q"), (kk, "k"), (v, "v")] {
            common::float(k, what, t)?;
            if t.rank() != 4 {
                return Err(format!("{k}: {what} must have 4 axes {{B, heads, T, D}}, got {t}"));
            }
        }
        let (b, nq, tq, d) = (&q.shape[0], &q.shape[1], &q.shape[2], &q.shape[3]);
        let (nkv, tk) = (&kk.shape[1], &kk.shape[2]);
        if dims_differ(&kk.shape[0], b) || dims_differ(&v.shape[0], b) {
            return Err(format!("{k}: batch sizes differ: q {q}, k {kk}, v {v}"));
        }
        if dims_differ(&kk.shape[3], d) {
            return Err(format!("{k}: q and k head dims differ: q {q}, k {kk}"));
        }
        if dims_differ(&v.shape[1], nkv) || dims_differ(&v.shape[2], tk) {
            return Err(format!("{k}: k and v disagree on heads or length: k {kk}, v {v}"));
        }
        if nq.div_exact(nkv).is_none() {
            return Err(format!("{k}: {nq} query heads are not a multiple of {nkv} kv heads"));
        }
        let full = [b.clone(), nq.clone(), tq.clone(), tk.clone()];
        let mut next = 3;
        match self.mask {
            MaskKind::Additive | MaskKind::Boolean => {
                let m = &inputs[next];
                if self.mask == MaskKind::Additive && !m.dtype.is_float() {
                    return Err(format!(
                        "{k}: an additive mask must be float, got {m} (bool masks use MaskKind::Boolean)"
                    ));
                }
                if self.mask == MaskKind::Boolean && m.dtype != DType::Bool {
                    return Err(format!("{k}: a boolean mask must be bool, got {m}"));
                }
                common::broadcasts_to(k, "mask", m, &full, "{B, Nq, Tq, Tk}")?;
                next += 1;
            }
            MaskKind::CausalWithKeyPadding => {
                let m = &inputs[next];
                if m.rank() != 2 || dims_differ(&m.shape[0], b) || dims_differ(&m.shape[1], tk) {
                    return Err(format!(
                        "{k}: the key padding mask must be {{B, Tk}} = [{b}, {tk}], got {m}"
                    ));
                }
                next += 1;
            }
            MaskKind::None | MaskKind::Causal => {}
        }
        if self.has_sinks {
            let s = &inputs[next];
            if !s.dtype.is_float() {
                return Err(format!("{k}: sinks must be a float tensor, got {s}"));
            }
            if s.rank() != 1 || dims_differ(&s.shape[0], nq) {
                return Err(format!("{k}: sinks must be 1-D {{Nq}} = [{nq}], got {s}"));
            }
        }
        let dtype = result_type(result_type(q.dtype, kk.dtype), v.dtype);
        Ok(vec![TensorType::new(dtype, [b.clone(), nq.clone(), tq.clone(), v.shape[3].clone()])])
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        let out = result_type(result_type(b.ty(q).dtype, b.ty(k).dtype), b.ty(v).dtype);
        let c = compute_dtype(out);
        let qt = b.ty(q).clone();
        let kt = b.ty(k).clone();
        let (bs, nq, tq) = (qt.shape[0].clone(), qt.shape[1].clone(), qt.shape[2].clone());
        let (nkv, tk, d) = (kt.shape[1].clone(), kt.shape[2].clone(), kt.shape[3].clone());
        let dv = b.ty(v).shape[3].clone();
        let groups = nq.div_exact(&nkv).expect("checked by infer");
        let grouped = groups != Dim::Known(1);

        let q = b.cast(q, c)?;
        let k = b.cast(k, c)?;
        let v = b.cast(v, c)?;
        let scale = b.scalar(c, self.scale as f64);
        let q = b.mul(q, scale)?;
        let k_t = b.transpose(k, &[0, 1, 3, 2])?;
        // Grouped heads: {B, Nq, Tq, D} -> {B, Nkv, g·Tq, D}, one product per kv head.
        let rows = groups.mul(&tq);
        let scores_shape = vec![bs.clone(), nq.clone(), tq.clone(), tk.clone()];
        let s = if grouped {
            let qg = b.reshape(q, vec![bs.clone(), nkv.clone(), rows.clone(), d])?;
            let s = b.matmul(qg, k_t)?;
            b.reshape(s, scores_shape.clone())?
        } else {
            b.matmul(q, k_t)?
        };

        let s = match self.softcap {
            Some(cap) => {
                let inv = b.scalar(c, 1.0 / cap as f64);
                let cap = b.scalar(c, cap as f64);
                let t = b.mul(s, inv)?;
                let t = b.unary(UnaryOp::Tanh, t)?;
                b.mul(t, cap)?
            }
            None => s,
        };
        let mut next = 3;
        let min = b.scalar(c, if c == DType::F64 { f64::MIN } else { f32::MIN as f64 });
        let s = match self.mask {
            MaskKind::None => s,
            MaskKind::Additive => {
                // −∞ entries become finfo.min, so a fully masked row is uniform, not NaN.
                let m = b.cast(inputs[next], c)?;
                let m = b.binary(BinaryOp::Max, m, min)?;
                next += 1;
                b.add2(s, m)?
            }
            MaskKind::Boolean => {
                let m = inputs[next];
                next += 1;
                b.select(m, s, min)?
            }
            MaskKind::Causal => {
                let keep = causal(b, &tq, &tk)?;
                b.select(keep, s, min)?
            }
            MaskKind::CausalWithKeyPadding => {
                let keep = causal(b, &tq, &tk)?;
                let kp = inputs[next];
                next += 1;
                let kp = if b.ty(kp).dtype == DType::Bool {
                    kp
                } else {
                    let zero = b.scalar_like(kp, 0.0);
                    let is_pad = b.binary(BinaryOp::Equal, kp, zero)?;
                    b.unary(UnaryOp::Not, is_pad)?
                };
                let one = Dim::Known(1);
                let kp = b.reshape(kp, vec![bs.clone(), one.clone(), one, tk.clone()])?;
                let keep = b.binary(BinaryOp::And, keep, kp)?;
                b.select(keep, s, min)?
            }
        };

        let p = if self.has_sinks {
            // softmax over [S, sink] without materializing the concatenation.
            let one = Dim::Known(1);
            let sk = b.cast(inputs[next], c)?;
            let sk = b.reshape(sk, vec![one.clone(), nq.clone(), one.clone(), one])?;
            let m = b.reduce(ReduceOp::Max, s, &[-1], true)?;
            let m = b.binary(BinaryOp::Max, m, sk)?;
            let e = b.sub(s, m)?;
            let e = b.unary(UnaryOp::Exp, e)?;
            let sum = b.reduce(ReduceOp::Sum, e, &[-1], true)?;
            let es = b.sub(sk, m)?;
            let es = b.unary(UnaryOp::Exp, es)?;
            let den = b.add2(sum, es)?;
            b.div(e, den)?
        } else {
            b.softmax(s, -1)?
        };

        let o = if grouped {
            let pg = b.reshape(p, vec![bs.clone(), nkv, rows, tk])?;
            let o = b.matmul(pg, v)?;
            b.reshape(o, vec![bs, nq, tq, dv])?
        } else {
            b.matmul(p, v)?
        };
        Ok(vec![b.cast(o, out)?])
    }
}

/// The causal keep-mask `{Tq, Tk}`: key k is visible to query q iff `k + Tq ≤ q + Tk`.
fn causal(b: &mut Builder<'_>, tq: &Dim, tk: &Dim) -> Result<Value, IrError> {
    let range = |b: &mut Builder<'_>, len: &Dim| {
        b.add(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[])
    };
    let qi = range(b, tq)?;
    let qi = b.reshape(qi, vec![tq.clone(), Dim::Known(1)])?;
    let ki = range(b, tk)?;
    let tq_v = b.add(Op::SymConst(vec![tq.clone()]), &[])?;
    let tk_v = b.add(Op::SymConst(vec![tk.clone()]), &[])?;
    let lhs = b.add2(ki, tq_v)?;
    let rhs = b.add2(qi, tk_v)?;
    b.binary(BinaryOp::LessEqual, lhs, rhs)
}
