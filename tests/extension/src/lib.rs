//! An extension crate built only on blockfuse's public API, the way a downstream user would
//! write one:
//!
//! - its own block, [`ClampedGelu`], with its math as a fallback (a nested GELU block, then a
//!   clamp), registered for JSON reading with [`register`];
//! - its own fusion rule, [`extension_rule`], that runs next to blockfuse's
//!   (`default_rules().with(extension_rule())`) and fuses `min(max(gelu(x), −c), c)`;
//! - a lowering of that block for the fallback backend ([`clamped_gelu_lowering`]);
//! - overrides of one of blockfuse's own blocks, [`RmsNorm`]: one that counts its calls and
//!   delegates to the fallback handle ([`register_rms_norm_spy`]), and one that runs its own
//!   kernel only for some shapes and declines at run time for the others
//!   ([`register_rms_norm_kernel`]).
#![deny(missing_docs)]

pub mod backend;
pub use backend::{register_backend, KernelBackend};

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{Gelu, GeluKind, RmsNorm};
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::{BinaryOp, Block, Builder, HostTensor, IrError, Op, TensorType, UnaryOp, Value};
use blockfuse_patterns::pattern::{add, any, commutative, constant, either, mul, node, product, unary, Pat};
use blockfuse_patterns::rule::require;
use blockfuse_patterns::{Match, Rule};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// GELU clamped to `[−limit, limit]`: `y = min(max(gelu(x), −limit), limit)` with exact
/// (erf) GELU.
///
/// Operand: `x` (float). Output: x's type. The fallback is a [`Gelu`] block followed by
/// `max` and `min` in x's dtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClampedGelu {
    /// The clamp bound (finite, > 0).
    pub limit: f32,
}

impl ClampedGelu {
    /// The block's kind (its JSON op name is `block.clamped_gelu`).
    pub const KIND: &'static str = "clamped_gelu";
}

impl Block for ClampedGelu {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn attrs(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain struct")
    }

    fn infer(&self, inputs: &[TensorType]) -> Result<Vec<TensorType>, String> {
        if !(self.limit.is_finite() && self.limit > 0.0) {
            return Err(format!("clamped_gelu: limit must be finite and > 0, got {}", self.limit));
        }
        match inputs {
            [x] if x.dtype.is_float() => Ok(vec![x.clone()]),
            [x] => Err(format!("clamped_gelu: x must be a float tensor, got {x}")),
            _ => Err(format!("clamped_gelu: expects 1 operand (x), got {}", inputs.len())),
        }
    }

    fn fallback(&self, b: &mut Builder<'_>, inputs: &[Value]) -> Result<Vec<Value>, IrError> {
        let x = inputs[0];
        let y = b.block(Gelu::new(GeluKind::Exact), &[x])?[0];
        let lo = b.scalar_like(x, -(self.limit as f64));
        let hi = b.scalar_like(x, self.limit as f64);
        let y = b.binary(BinaryOp::Max, y, lo)?;
        Ok(vec![b.binary(BinaryOp::Min, y, hi)?])
    }
}

/// Registers [`ClampedGelu`] in the process-wide block registry, so that JSON documents
/// naming `block.clamped_gelu` can be read. Calling it again is harmless.
pub fn register() {
    blockfuse_ir::register_block::<ClampedGelu>(ClampedGelu::KIND);
}

/// An exact GELU: our `gelu` block (blockfuse's `gelu_erf` rule runs first), or the composed
/// `0.5 · x · (1 + erf(x · 1/√2))` when that rule is disabled.
fn exact_gelu() -> Pat {
    let block = node(
        "gelu",
        |o| matches!(o, Op::Block(b) if b.downcast_ref::<Gelu>().is_some_and(|g| g.approximation == GeluKind::Exact)),
        vec![any("x")],
    );
    let erf = unary(UnaryOp::Erf, mul(any("x"), constant("inv_sqrt2")));
    let composed = product(vec![any("x"), constant("half"), add(erf, constant("one"))]);
    either(block, composed)
}

fn near(v: Option<f64>, want: f64, tol: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= tol)
}

/// Our fusion rule, `clamped_gelu`: `min(max(gelu(x), lo), hi)` (or `max(min(gelu(x), hi), lo)`)
/// with `lo = −hi`, `hi > 0` scalars, into one [`ClampedGelu`] block. Built on the public API
/// of `blockfuse-patterns` only; add it with `default_rules().with(extension_rule())`.
pub fn extension_rule() -> Rule {
    let max_first =
        commutative(BinaryOp::Min, commutative(BinaryOp::Max, exact_gelu(), constant("lo")), constant("hi"));
    let min_first =
        commutative(BinaryOp::Max, commutative(BinaryOp::Min, exact_gelu(), constant("hi")), constant("lo"));
    Rule::new(ClampedGelu::KIND, either(max_first, min_first))
        .check(|g, m: &Match| {
            if m.get("half").is_some() {
                require(
                    near(m.scalar(g, "half"), 0.5, 1e-6) && near(m.scalar(g, "one"), 1.0, 0.0),
                    "gelu constants are not 0.5 and 1",
                )?;
                require(
                    near(m.scalar(g, "inv_sqrt2"), std::f64::consts::FRAC_1_SQRT_2, 1e-4),
                    "erf argument is not x/√2",
                )?;
            }
            let (lo, hi) = (m.scalar(g, "lo"), m.scalar(g, "hi"));
            let hi = hi.ok_or("the upper bound is not a scalar")?;
            require(hi.is_finite() && hi > 0.0, format!("the upper bound {hi} is not finite and > 0"))?;
            require(lo == Some(-hi), format!("the lower bound {lo:?} is not −{hi}"))?;
            require(
                g.value_type(m.root) == g.value_type(m.value("x")),
                "the clamp changes the type of gelu(x) (the bounds broadcast it)",
            )
        })
        .rewrite(|b, m| {
            let limit = m.scalar(b.graph(), "hi").expect("checked") as f32;
            Ok(b.block(ClampedGelu { limit }, &[m.value("x")])?[0])
        })
}

/// A direct CPU implementation of [`ClampedGelu`] for the fallback backend: computes in f64
/// and rounds once to the operand's dtype.
pub fn clamped_gelu_lowering(
    blk: &ClampedGelu,
    call: &Call<'_, HostTensor>,
    _fallback: &mut dyn Fallback<HostTensor>,
) -> LowerResult<HostTensor> {
    let x = &call.args[0];
    let limit = blk.limit as f64;
    let y: Vec<f64> = x
        .to_f64_vec()
        .into_iter()
        .map(|v| {
            let g = 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
            g.clamp(-limit, limit)
        })
        .collect();
    Ok(vec![HostTensor::from_f64(x.dtype(), x.dims().to_vec(), &y)])
}

/// Registers an [`RmsNorm`] override that counts its calls in `calls` and delegates to the
/// block's fallback.
pub fn register_rms_norm_spy(backend: &mut FallbackBackend, calls: Arc<AtomicUsize>) {
    backend.register::<RmsNorm>(move |_blk, call, fallback| {
        calls.fetch_add(1, Ordering::SeqCst);
        fallback.run(call.args)
    });
}

/// How often [`register_rms_norm_kernel`]'s override ran its kernel or declined.
#[derive(Debug, Default)]
pub struct KernelStats {
    /// Calls the kernel handled.
    pub fused: AtomicUsize,
    /// Calls handed to the fallback.
    pub declined: AtomicUsize,
}

/// Registers an [`RmsNorm`] override with its own kernel for f32 inputs whose last axis is a
/// multiple of `multiple` (as a SIMD kernel might require); other calls decline to the
/// fallback at run time.
pub fn register_rms_norm_kernel(backend: &mut FallbackBackend, multiple: usize, stats: Arc<KernelStats>) {
    backend.register::<RmsNorm>(move |blk, call, fallback| {
        let x = &call.args[0];
        let d = x.dims().last().copied().unwrap_or(0);
        let supported = x.dtype() == blockfuse_ir::DType::F32
            && call.args.iter().all(|a| a.dtype() == blockfuse_ir::DType::F32)
            && d > 0
            && d % multiple == 0;
        if !supported {
            stats.declined.fetch_add(1, Ordering::SeqCst);
            return fallback.run(call.args);
        }
        stats.fused.fetch_add(1, Ordering::SeqCst);
        let w = call.args.get(1).map(HostTensor::to_f64_vec);
        let xs = x.to_f64_vec();
        let mut out = Vec::with_capacity(xs.len());
        for row in xs.chunks(d) {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + blk.eps as f64).sqrt();
            for (i, v) in row.iter().enumerate() {
                let scale = w.as_ref().map_or(1.0, |w| blk.weight_offset as f64 + w[i]);
                out.push(v * r * scale);
            }
        }
        Ok(vec![HostTensor::from_f64(call.outputs[0].dtype, x.dims().to_vec(), &out)])
    });
}
