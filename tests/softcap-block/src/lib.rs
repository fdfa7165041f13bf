//! docs/adding-a-block.md's worked example: softcap `c·tanh(x/c)`, its rule and MLX lowering.

use blockfuse_ir::block::{Block, ParityCase};
use blockfuse_ir::blocks::{compute_dtype, parity_tol};
use blockfuse_ir::{Builder, DType, IrError, TensorType, UnaryOp, Value};
use blockfuse_mlx::array::{BinaryOp, UnaryOp as MlxUnary};
use blockfuse_mlx::{Array, MlxBackend};
use blockfuse_patterns::pattern::{any, constant, mul, unary};
use blockfuse_patterns::{rule::require, Rule};
use serde::{Deserialize, Serialize};

/// Softcap `y = cap · tanh(x / cap)` of a float `x`, in f32 (f64 for f64), rounded once to x's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Softcap {
    /// The cap `c` (finite, > 0).
    pub cap: f64,
}

impl Softcap {
    /// The block's kind (`block.softcap` in the text IR).
    pub const KIND: &'static str = "softcap";
}

impl Block for Softcap {
    blockfuse_ir::block_identity!();

    fn parity_cases() -> Vec<ParityCase> {
        let dtypes = [DType::F32, DType::F16, DType::BF16, DType::F64];
        dtypes.map(|d| ParityCase::new(Softcap { cap: 4.0 }, d, &[&[3, 40]], 12.0, parity_tol(d))).to_vec()
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x] if x.dtype.is_float() && self.cap.is_finite() && self.cap > 0.0 => Ok(vec![x.clone()]),
            _ => Err(format!("softcap: needs a cap > 0 (got {}) and one float x, got {inputs:?}", self.cap)),
        }
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let t = b.ty(inputs[0]).dtype;
        let x = b.cast(inputs[0], compute_dtype(t))?;
        let (inv, c) = (b.scalar_like(x, 1.0 / self.cap), b.scalar_like(x, self.cap));
        let y = b.mul(x, inv).and_then(|y| b.unary(UnaryOp::Tanh, y)).and_then(|y| b.mul(y, c))?;
        Ok(vec![b.cast(y, t)?])
    }
}

/// The rule `softcap`: `c · tanh(x · k)` with scalars `c > 0` and `k = 1/c`
/// (canonicalization turns `x / c` into `x · (1/c)`), into one [`Softcap`] block.
pub fn softcap_rule() -> Rule {
    Rule::new(Softcap::KIND, mul(constant("c"), unary(UnaryOp::Tanh, mul(any("x"), constant("k")))))
        .check(|g, m| {
            let (c, k) = m.scalar(g, "c").zip(m.scalar(g, "k")).ok_or("the factors are not scalars")?;
            require(c.is_finite() && c > 0.0, format!("the cap {c} is not finite and > 0"))?;
            require((k * c - 1.0).abs() <= 1e-6, format!("the inner factor {k} is not 1/{c}"))?;
            require(g.value_type(m.root) == g.value_type(m.value("x")), "the factors change x's type")
        })
        .rewrite(|b, m| {
            let cap = m.scalar(b.graph(), "c").expect("checked");
            Ok(b.block(Softcap { cap }, &[m.value("x")])?[0])
        })
}

/// The MLX lowering of [`Softcap`] (the fallback's ops as MLX ops), registered on `backend`.
pub fn register_mlx(backend: &mut MlxBackend) {
    backend.register::<Softcap>(|s, call, _| {
        let (t, x) = (call.args[0].dtype()?, &call.args[0]);
        let w = compute_dtype(t);
        let (inv, c) = (Array::scalar(1.0 / s.cap, w)?, Array::scalar(s.cap, w)?);
        let y = x.astype(w)?.binary(BinaryOp::Mul, &inv)?.unary(MlxUnary::Tanh)?;
        Ok(vec![y.binary(BinaryOp::Mul, &c)?.astype(t)?])
    });
}
