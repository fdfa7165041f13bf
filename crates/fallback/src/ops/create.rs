//! Ops that create tensors from attributes: constants, symbolic constants, ranges, fills.

use crate::tensor::{from_f64_values, wrap_int, Buf, Tensor};
use blockfuse_ir::{Bindings, DType, Dim};

/// Evaluates a dim under the bindings.
pub(crate) fn eval_dim(d: &Dim, bindings: &Bindings) -> Result<usize, String> {
    d.eval(bindings).ok_or_else(|| format!("dim {d} mentions a symbol no input binds"))
}

/// Evaluates dims under the bindings.
pub(crate) fn eval_dims(dims: &[Dim], bindings: &Bindings) -> Result<Vec<usize>, String> {
    dims.iter().map(|d| eval_dim(d, bindings)).collect()
}

/// The i64 vector of the dims' values.
pub(crate) fn sym_const(dims: &[Dim], bindings: &Bindings) -> Result<Tensor, String> {
    let v = eval_dims(dims, bindings)?;
    Ok(Tensor::new(DType::I64, vec![v.len()], Buf::I64(v.into_iter().map(|x| x as i64).collect())))
}

/// `start + step·i` for `i < len`: exact integer arithmetic for integer dtypes with integral
/// start and step, computed in f64 and converted otherwise.
pub(crate) fn range(start: f64, step: f64, len: usize, dtype: DType) -> Result<Tensor, String> {
    if step == 0.0 {
        return Err("range step is 0".into());
    }
    if dtype.is_int() && start.fract() == 0.0 && step.fract() == 0.0 {
        let (s, d) = (start as i64, step as i64);
        let v = (0..len as i64).map(|i| wrap_int(dtype, s.wrapping_add(d.wrapping_mul(i)))).collect();
        return Ok(Tensor::new(dtype, vec![len], Buf::I64(v)));
    }
    Ok(from_f64_values(dtype, vec![len], (0..len).map(|i| start + step * i as f64)))
}

/// A tensor of one repeated value.
pub(crate) fn full(dims: Vec<usize>, value: f64, dtype: DType) -> Tensor {
    let n = dims.iter().product();
    from_f64_values(dtype, dims, std::iter::repeat_n(value, n))
}
