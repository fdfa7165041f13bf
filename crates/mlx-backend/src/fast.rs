//! MLX's fused kernels (`mlx::core::fast`, MLX 0.32.4 signatures). On devices without a fused
//! kernel (the CPU build) MLX runs its own composed fallback, with the same semantics.

use crate::array::{Array, MlxError, Result};
use crate::ffi::{self, RawArray};
use std::ffi::c_int;
use std::ptr;

fn opt_ptr(a: Option<&Array>) -> *const RawArray {
    a.map_or(ptr::null(), Array::ptr)
}

fn make(f: impl FnOnce(*mut *mut RawArray) -> c_int) -> Result<Array> {
    crate::array::make(f)
}

/// `weight ⊙ x · rsqrt(mean(x², last axis) + eps)`, computed in f32; `weight` is 1-D of the
/// last axis' size, absent meaning ones.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    // SAFETY: valid handles or null.
    make(|o| unsafe { ffi::bfm_rms_norm(x.ptr(), opt_ptr(weight), eps, o) })
}

/// `(x − mean) · rsqrt(var + eps) ⊙ weight + bias` over the last axis (biased variance, f32);
/// absent weight/bias mean ones/zeros.
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Result<Array> {
    // SAFETY: valid handles or null.
    make(|o| unsafe { ffi::bfm_layer_norm(x.ptr(), opt_ptr(weight), opt_ptr(bias), eps, o) })
}

/// The position offset of [`rope`]: MLX's two overloads.
#[derive(Debug, Clone, Copy)]
pub enum RopeOffset<'a> {
    /// One offset for every batch row.
    Static(i32),
    /// An integer array: a scalar, or a `{B}` vector with one offset per batch row.
    Array(&'a Array),
}

impl From<i32> for RopeOffset<'_> {
    fn from(offset: i32) -> Self {
        RopeOffset::Static(offset)
    }
}

impl<'a> From<&'a Array> for RopeOffset<'a> {
    fn from(offset: &'a Array) -> Self {
        RopeOffset::Array(offset)
    }
}

/// Rotary position embedding of the first `dims` features of `x` (≥ 3-D; positions along axis
/// −2 are `(offset + t) · scale`). Exactly one of `base` (inverse frequencies
/// `base^(−2i/dims)`) and `freqs` (periods: inverse frequencies `1/freqs_i`, `dims/2` of them)
/// must be given. `traditional` rotates adjacent pairs; otherwise the two halves (`rotate_half`).
pub fn rope<'a>(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: impl Into<RopeOffset<'a>>,
    freqs: Option<&Array>,
) -> Result<Array> {
    let (offset, offset_array) = match offset.into() {
        RopeOffset::Static(o) => (o, ptr::null()),
        RopeOffset::Array(a) => (0, a.ptr()),
    };
    // SAFETY: valid handles or null.
    make(|o| unsafe {
        ffi::bfm_rope(
            x.ptr(),
            dims,
            traditional as c_int,
            base.is_some() as c_int,
            base.unwrap_or(0.0),
            scale,
            offset,
            offset_array,
            opt_ptr(freqs),
            o,
        )
    })
}

/// `softmax(scale · q kᵀ + mask) v` with q `{B, Nq, Tq, D}`, k `{B, Nkv, Tk, D}`, v
/// `{B, Nkv, Tk, Dv}` (grouped-query when `Nkv` divides `Nq`).
///
/// `causal` applies MLX's lower-right aligned causal mask (mask mode `"causal"`: key `j` is
/// kept for query `i` iff `j ≤ i + Tk − Tq`); `mask` is an additive (float) or boolean
/// (true = keep) array broadcastable to `{B, Nq, Tq, Tk}`. MLX 0.32.4 rejects `causal`
/// together with `mask` (fold the causal part into the mask instead). `sinks` (`{Nq}`) adds
/// one logit per head to the softmax denominator.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    causal: bool,
    mask: Option<&Array>,
    sinks: Option<&Array>,
) -> Result<Array> {
    let mode: &[u8] = if causal { b"causal\0" } else { b"\0" };
    if !scale.is_finite() {
        return Err(MlxError::Binding(format!("sdpa scale must be finite, got {scale}")));
    }
    // SAFETY: valid handles or null; `mode` is NUL-terminated.
    make(|o| unsafe {
        ffi::bfm_sdpa(
            q.ptr(),
            k.ptr(),
            v.ptr(),
            scale,
            mode.as_ptr().cast(),
            opt_ptr(mask),
            opt_ptr(sinks),
            o,
        )
    })
}
