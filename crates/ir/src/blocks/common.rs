//! Helpers shared by the block files: dtype promotion, the compute dtype and operand checks
//! whose messages all start with the block's kind.

use crate::dtype::DType;
use crate::shape::{join_dims, Dim, TensorType};

/// The result type of two dtypes, as MLX and PyTorch promote them: equal types stay; a float
/// beats an integer or bool; f16 with bf16 gives f32; otherwise the wider type wins (i8 with
/// u8 gives i32, the narrowest signed type here holding both).
pub fn result_type(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    match (a.is_float(), b.is_float()) {
        (true, false) => a,
        (false, true) => b,
        (true, true) => match (a, b) {
            (F64, _) | (_, F64) => F64,
            _ => F32,
        },
        (false, false) => match (a, b) {
            (Bool, x) | (x, Bool) => x,
            _ if a.size_bytes() > b.size_bytes() => a,
            _ if b.size_bytes() > a.size_bytes() => b,
            // i8 with u8: the next wider signed type.
            _ => I32,
        },
    }
}

/// The dtype a block computes in for inputs of `dtype`: f64 for f64, f32 otherwise.
pub fn compute_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// `Err` unless `t` has a float dtype.
pub(crate) fn float(kind: &str, what: &str, t: &TensorType) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{kind}: {what} must be a float tensor, got {t}"))
    }
}

/// `Err` unless the operand count is one of `allowed`; `names` spells the operand list.
pub(crate) fn arity(kind: &str, inputs: &[TensorType], allowed: &[usize], names: &str) -> Result<(), String> {
    if allowed.contains(&inputs.len()) {
        Ok(())
    } else {
        Err(format!("{kind}: expects operands ({names}), got {} operand(s)", inputs.len()))
    }
}

/// `Err` unless `t` is 1-D with `len` elements ("has 63 elements, the last axis has 64").
pub(crate) fn vector_of(
    kind: &str,
    what: &str,
    t: &TensorType,
    len: &Dim,
    len_name: &str,
) -> Result<(), String> {
    if t.rank() != 1 {
        return Err(format!("{kind}: {what} must be 1-D with {len} elements ({len_name}), got {t}"));
    }
    if &t.shape[0] != len {
        return Err(format!("{kind}: {what} has {} elements, {len_name} has {len}", t.shape[0]));
    }
    Ok(())
}

/// `Err` unless `v` is finite (`what` names the attribute).
pub(crate) fn finite(kind: &str, what: &str, v: f32) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("{kind}: {what} must be finite, got {v}"))
    }
}

/// `Err` unless `eps` is finite and not negative.
pub(crate) fn eps(kind: &str, eps: f32) -> Result<(), String> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(format!("{kind}: eps must be finite and ≥ 0, got {eps}"))
    }
}

/// `Err` unless `shape` broadcasts to `target` (right-aligned, each dim equal or 1).
pub(crate) fn broadcasts_to(
    kind: &str,
    what: &str,
    t: &TensorType,
    target: &[Dim],
    target_name: &str,
) -> Result<(), String> {
    let bad = || {
        format!(
            "{kind}: {what} of shape [{}] does not broadcast to {target_name} = [{}]",
            join_dims(&t.shape),
            join_dims(target)
        )
    };
    if t.rank() > target.len() {
        return Err(bad());
    }
    let skip = target.len() - t.rank();
    for (i, d) in t.shape.iter().enumerate() {
        let want = &target[skip + i];
        if d != want && *d != Dim::Known(1) {
            return Err(format!("{}: axis {i} has {d}, expected {want} or 1", bad()));
        }
    }
    Ok(())
}

/// The parity tolerance of the built-in blocks' tables by operand dtype: what one rounding
/// to the dtype at the end (after computing in f32) costs against an f64 computation, with
/// room for the f32 compute error (`1e-5` f32, `2e-3` f16, `1e-2` bf16, `1e-9` f64).
pub fn parity_tol(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2e-3,
        DType::BF16 => 1e-2,
        DType::F64 => 1e-9,
        _ => 1e-5,
    }
}
