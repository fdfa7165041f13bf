//! The differential target: fuzzer-built programs of primitive ops, optimized, evaluated
//! before and after on the fallback evaluator.
//!
//! The bytes choose the row count and width of two inputs `x`, `y` (known or symbolic rows),
//! then up to 16 steps over a pool of values: elementwise ops, reductions, softmax, matmul by
//! a constant, casts to f16/bf16 (mixed dtypes), extra graph outputs of interior values, and
//! spellings of the fused patterns (RMSNorm, LayerNorm, the GELUs, SwiGLU/GeGLU, attention
//! with scale placements, masks, softcap and key permutations) whose every constant, axis and
//! operand order the bytes may perturb. Then the input values (in [−4, 4), optionally with
//! NaN and ±∞). [`differential`] is the oracle.

use crate::check::close;
use arbitrary::{Result, Unstructured};
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::{
    text, BinaryOp, Builder, DType, Dim, Graph, HostTensor, Op, ReduceOp, TensorType, UnaryOp, Value,
};
use blockfuse_patterns::{default_rules, optimize, Report};
use std::f64::consts::{PI, SQRT_2};

/// The target: builds a program and its inputs from `data`, then [`differential`].
pub fn optimize_eval(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok((g, inputs)) = program(&mut u) {
        differential(&g, &inputs);
    }
}

/// Optimizes a copy of `g` and checks that it evaluates to what `g` evaluates to on `inputs`
/// (NaN-aware, [`close`]), both on the fallback evaluator. Panics on a disagreement, on an
/// optimizer error and on an invalid result; returns the optimizer's report, or `None` when
/// the evaluator cannot run the original.
pub fn differential(g: &Graph, inputs: &[HostTensor]) -> Option<Report> {
    differential_on(g, inputs, &FallbackBackend::new())
}

/// [`differential`] with the optimized graph run on `backend` (the original always on the
/// fallback evaluator). A graph that `backend` cannot run, optimized or not, is skipped.
pub fn differential_on(g: &Graph, inputs: &[HostTensor], backend: &dyn Backend) -> Option<Report> {
    let want = FallbackBackend::new().run(g, inputs).ok()?;
    let half = crate::check::has_half(g);
    let mut opt = g.clone();
    let before = text::dump(g).unwrap_or_default();
    let report = match optimize(&mut opt, &default_rules()) {
        Ok(r) => r,
        Err(e) => panic!("optimize failed: {e}\n{before}"),
    };
    if let Err(e) = opt.validate() {
        panic!("the optimized graph is invalid: {e}\n{before}");
    }
    let after = text::dump(&opt).unwrap_or_default();
    let got = match backend.run(&opt, inputs) {
        Ok(got) => got,
        Err(_) if backend.run(g, inputs).is_err() => return None,
        Err(e) => panic!("the optimized graph fails on {}: {e}\n{after}", backend.name()),
    };
    assert_eq!(want.len(), got.len());
    for (i, (w, o)) in want.iter().zip(&got).enumerate() {
        if let Err(e) = close(w, o, half) {
            let shown: Vec<Vec<f64>> = inputs.iter().map(HostTensor::to_f64_vec).collect();
            panic!(
                "output {i} differs on {}: {e}\ninputs: {shown:?}\nbefore:\n{before}\nafter:\n{after}",
                backend.name()
            );
        }
    }
    Some(report)
}

/// Constant `exact`, or (one time in four) a perturbation of it.
fn konst(u: &mut Unstructured<'_>, exact: f64) -> Result<f64> {
    if u.ratio(3, 4)? {
        return Ok(exact);
    }
    // Finite and moderate: with ±∞ or f32::MIN as a constant, an ulp of difference (x/y is
    // canonicalized to x·(1/y)) is amplified without bound, e.g. by pow. (−∞ here found the
    // `sum·(−∞)` → mean bug; the masks' fills are chosen apart, in `attend`.)
    let menu = [exact * 1.01, -exact, 0.0, 1.0, 2.0, 0.5, exact + 1e-3, 1e-6];
    Ok(*u.choose(&menu)?)
}

struct P<'a, 'g, 'u, 'd> {
    b: &'a mut Builder<'g>,
    u: &'u mut Unstructured<'d>,
    pool: Vec<Value>,
    dtype: DType,
}

impl P<'_, '_, '_, '_> {
    /// A value of the pool; the constants that follow take its dtype.
    fn pick(&mut self) -> Result<Value> {
        let v = *self.u.choose(&self.pool)?;
        self.dtype = self.b.ty(v).dtype;
        Ok(v)
    }

    fn c(&mut self, exact: f64) -> Result<Value> {
        let v = konst(self.u, exact)?;
        Ok(self.b.scalar(self.dtype, v))
    }

    fn axis(&mut self) -> Result<i64> {
        Ok(if self.u.ratio(7, 8)? { -1 } else { 0 })
    }
}

type R<T> = std::result::Result<T, Step>;

/// Why a step was skipped: the fuzzer's bytes ran out, or the builder refused the op.
enum Step {
    Out,
    Refused,
}

impl From<arbitrary::Error> for Step {
    fn from(_: arbitrary::Error) -> Self {
        Step::Out
    }
}

impl From<blockfuse_ir::IrError> for Step {
    fn from(_: blockfuse_ir::IrError) -> Self {
        Step::Refused
    }
}

const UNARY: &[UnaryOp] = &[
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Reciprocal,
    UnaryOp::Square,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Erf,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Sin,
    UnaryOp::Relu,
];

const BINARY: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Pow,
    BinaryOp::Max,
    BinaryOp::Min,
];

/// A program and its inputs, as the bytes of `u` say.
pub fn program(u: &mut Unstructured<'_>) -> Result<(Graph, Vec<HostTensor>)> {
    let rows = u.int_in_range(1..=3usize)?;
    let width = *u.choose(&[4usize, 8])?;
    let symbolic = u.arbitrary::<bool>()?;
    let row_dim = if symbolic { Dim::sym("batch") } else { Dim::Known(rows) };
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let ty = TensorType::new(DType::F32, [row_dim, Dim::Known(width)]);
    let x = b.input("x", ty.clone());
    let y = b.input("y", ty);
    let mut extra = vec![];
    let mut p = P { b: &mut b, u, pool: vec![x, y], dtype: DType::F32 };
    let mut attention: Option<[Value; 3]> = None;
    let tq = p.u.int_in_range(1..=4usize)?;
    for _ in 0..p.u.int_in_range(1..=16)? {
        match step(&mut p, width, tq, &mut attention, &mut extra) {
            Ok(v) => p.pool.push(v),
            Err(Step::Refused) => {}
            Err(Step::Out) => break,
        }
    }
    let last = *p.pool.last().unwrap_or(&x);
    let u = p.u;
    for (i, v) in std::iter::once(last).chain(extra).enumerate() {
        g.add_output(&format!("o{i}"), v);
    }
    let special = u.ratio(1, 4)?;
    let mut inputs = vec![];
    for &id in g.inputs() {
        // ±∞ in q or k makes a ±∞ score at a kept key, which the blocks' finfo.min masking
        // treats differently from a −∞ fill (docs/reliability.md, known differences).
        let special = special && !matches!(g.node(id).name.as_deref(), Some("q" | "k"));
        let dims: Vec<usize> = g.node(id).types[0].shape.iter().map(|d| d.known().unwrap_or(rows)).collect();
        let n: usize = dims.iter().product();
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let byte: u8 = u.arbitrary().unwrap_or(128);
            v.push(match byte {
                0 if special => f64::NAN,
                1 if special => f64::INFINITY,
                2 if special => f64::NEG_INFINITY,
                _ => (byte as f64 - 128.0) / 32.0,
            });
        }
        inputs.push(HostTensor::from_f64(DType::F32, dims, &v));
    }
    Ok((g, inputs))
}

fn step(
    p: &mut P<'_, '_, '_, '_>,
    width: usize,
    tq: usize,
    attention: &mut Option<[Value; 3]>,
    extra: &mut Vec<Value>,
) -> R<Value> {
    Ok(match p.u.int_in_range(0..=11)? {
        0 => {
            let op = *p.u.choose(UNARY)?;
            let a = p.pick()?;
            p.b.unary(op, a)?
        }
        1 => {
            let op = *p.u.choose(BINARY)?;
            let a = p.pick()?;
            let b = if p.u.ratio(1, 3)? { p.c(2.0)? } else { p.pick()? };
            if p.u.arbitrary()? {
                p.b.binary(op, b, a)?
            } else {
                p.b.binary(op, a, b)?
            }
        }
        2 => {
            let op = *p.u.choose(&[ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max])?;
            let a = p.pick()?;
            let axis = p.axis()?;
            let keep = p.u.ratio(7, 8)?;
            p.b.reduce(op, a, &[axis], keep)?
        }
        3 => {
            let a = p.pick()?;
            let axis = p.axis()?;
            p.b.softmax(a, axis)?
        }
        4 => {
            let a = p.pick()?;
            let w: Vec<f32> = (0..width * width).map(|i| ((i * 7919) % 17) as f32 / 17.0 - 0.5).collect();
            let w = p.b.constant(HostTensor::from_f32(vec![width, width], &w));
            p.b.matmul(a, w)?
        }
        5 => rms_norm(p, width)?,
        6 => layer_norm(p, width)?,
        7 => gelu(p)?,
        8 => {
            // x·σ(x)·up (SwiGLU), gelu(x)·up (GeGLU); the gate's σ may be of another value.
            let (x, up) = (p.pick()?, p.pick()?);
            let gated = if p.u.arbitrary()? {
                let arg = if p.u.ratio(7, 8)? { x } else { p.pick()? };
                let s = p.b.unary(UnaryOp::Sigmoid, arg)?;
                p.b.mul(x, s)?
            } else {
                gelu_of(p, x)?
            };
            if p.u.ratio(1, 8)? {
                extra.push(gated);
            }
            p.b.mul(gated, up)?
        }
        9 => attend(p, width, tq, attention)?,
        10 => {
            let to = *p.u.choose(&[DType::F16, DType::BF16, DType::F32])?;
            let a = p.pick()?;
            p.b.cast(a, to)?
        }
        _ => {
            let a = p.pick()?;
            extra.push(a);
            return Err(Step::Refused);
        }
    })
}

/// `x · rsqrt(mean(x², axis) + ε) · w` in several spellings; the exponent, ε, the axis and
/// the weight may be perturbed.
fn rms_norm(p: &mut P<'_, '_, '_, '_>, width: usize) -> R<Value> {
    let x = p.pick()?;
    let sq = match p.u.int_in_range(0..=2)? {
        0 => {
            let e = p.c(2.0)?;
            p.b.binary(BinaryOp::Pow, x, e)?
        }
        1 => p.b.mul(x, x)?,
        _ => p.b.unary(UnaryOp::Square, x)?,
    };
    let axis = p.axis()?;
    let ms = p.b.reduce(ReduceOp::Mean, sq, &[axis], true)?;
    let eps = p.c(1e-6)?;
    let a = p.b.add2(ms, eps)?;
    let n = match p.u.int_in_range(0..=2)? {
        0 => {
            let r = p.b.unary(UnaryOp::Rsqrt, a)?;
            p.b.mul(x, r)?
        }
        1 => {
            let s = p.b.unary(UnaryOp::Sqrt, a)?;
            p.b.div(x, s)?
        }
        _ => {
            let s = p.b.unary(UnaryOp::Sqrt, a)?;
            let r = p.b.unary(UnaryOp::Reciprocal, s)?;
            p.b.mul(r, x)?
        }
    };
    if p.u.arbitrary()? {
        let w: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 8.0).collect();
        let w = p.b.constant(HostTensor::from_f32(vec![width], &w));
        Ok(p.b.mul(n, w)?)
    } else {
        Ok(n)
    }
}

/// `(x − μ) / √(var + ε) · w + b`; μ − x, the axes and ε may be perturbed.
fn layer_norm(p: &mut P<'_, '_, '_, '_>, width: usize) -> R<Value> {
    let x = p.pick()?;
    let axis = p.axis()?;
    let mu = p.b.reduce(ReduceOp::Mean, x, &[axis], true)?;
    let d = if p.u.ratio(7, 8)? { p.b.sub(x, mu)? } else { p.b.sub(mu, x)? };
    let sq = p.b.mul(d, d)?;
    let axis = p.axis()?;
    let var = p.b.reduce(ReduceOp::Mean, sq, &[axis], true)?;
    let eps = p.c(1e-5)?;
    let a = p.b.add2(var, eps)?;
    let s = p.b.unary(UnaryOp::Sqrt, a)?;
    let n = p.b.div(d, s)?;
    let w: Vec<f32> = (0..width).map(|i| 1.0 - i as f32 / 16.0).collect();
    let w = p.b.constant(HostTensor::from_f32(vec![width], &w));
    let n = p.b.mul(n, w)?;
    let bias = p.c(0.25)?;
    Ok(p.b.add2(n, bias)?)
}

fn gelu(p: &mut P<'_, '_, '_, '_>) -> R<Value> {
    let x = p.pick()?;
    gelu_of(p, x)
}

/// Exact GELU `½x(1 + erf(x/√2))`, the tanh approximation or QuickGELU `x·σ(1.702x)`, each
/// constant perturbable.
fn gelu_of(p: &mut P<'_, '_, '_, '_>, x: Value) -> R<Value> {
    Ok(match p.u.int_in_range(0..=2)? {
        0 => {
            let s = p.c(SQRT_2)?;
            let d = if p.u.ratio(7, 8)? { p.b.div(x, s)? } else { p.b.div(s, x)? };
            let e = p.b.unary(UnaryOp::Erf, d)?;
            let one = p.c(1.0)?;
            let e1 = p.b.add2(e, one)?;
            let half = p.c(0.5)?;
            let h = p.b.mul(x, half)?;
            p.b.mul(h, e1)?
        }
        1 => {
            let three = p.c(3.0)?;
            let cube = p.b.binary(BinaryOp::Pow, x, three)?;
            let k = p.c(0.044715)?;
            let cx = p.b.mul(k, cube)?;
            let inner = p.b.add2(x, cx)?;
            let s = p.c((2.0 / PI).sqrt())?;
            let t = p.b.mul(inner, s)?;
            let t = p.b.unary(UnaryOp::Tanh, t)?;
            let one = p.c(1.0)?;
            let t1 = p.b.add2(one, t)?;
            let half = p.c(0.5)?;
            let h = p.b.mul(half, x)?;
            p.b.mul(h, t1)?
        }
        _ => {
            let k = p.c(1.702)?;
            let s = p.b.mul(x, k)?;
            let s = p.b.unary(UnaryOp::Sigmoid, s)?;
            p.b.mul(x, s)?
        }
    })
}

/// `softmax(scale·q·kᵀ + mask)·v` over `{1, 2, T, width}` inputs: scale before or after the
/// product or √scale on both, no mask, a causal `where` mask (−∞ or finfo.min), an additive
/// mask input, softcap; perturbable: the key permutation, the softmax axis, the constants.
fn attend(p: &mut P<'_, '_, '_, '_>, width: usize, tq: usize, qkv: &mut Option<[Value; 3]>) -> R<Value> {
    let [q, k, v] = match qkv {
        Some(vals) => *vals,
        None => {
            let t = TensorType::known(DType::F32, &[1, 2, tq, width]);
            let vals = ["q", "k", "v"].map(|n| p.b.input(n, t.clone()));
            *qkv = Some(vals);
            vals
        }
    };
    let perm: &[usize] =
        if p.u.ratio(7, 8)? { &[0, 1, 3, 2] } else { p.u.choose(&[&[1, 0, 3, 2][..], &[0, 3, 1, 2]])? };
    let kt = p.b.transpose(k, perm)?;
    let scale = 1.0 / (width as f64).sqrt();
    let s = match p.u.int_in_range(0..=2)? {
        0 => {
            let s = p.b.matmul(q, kt)?;
            let c = p.c(scale)?;
            p.b.mul(s, c)?
        }
        1 => {
            let c = p.c(scale)?;
            let qs = p.b.mul(q, c)?;
            p.b.matmul(qs, kt)?
        }
        _ => {
            let r = p.c(scale.sqrt())?;
            let qs = p.b.mul(q, r)?;
            let ks = p.b.mul(kt, r)?;
            p.b.matmul(qs, ks)?
        }
    };
    let s = match p.u.int_in_range(0..=3)? {
        0 => s,
        1 => {
            // Causal: key j ≤ query i, as `where(keep, s, fill)`.
            let len = Dim::Known(tq);
            let r = p.b.add(Op::Range { start: 0.0, step: 1.0, len, dtype: DType::I64 }, &[])?;
            let rows = p.b.reshape(r, vec![Dim::Known(tq), Dim::Known(1)])?;
            let cols = p.b.reshape(r, vec![Dim::Known(1), Dim::Known(tq)])?;
            let keep = p.b.binary(BinaryOp::LessEqual, cols, rows)?;
            let fill = *p.u.choose(&[f64::NEG_INFINITY, f32::MIN as f64])?;
            let fill = p.c(fill)?;
            p.b.select(keep, s, fill)?
        }
        2 => {
            let m = p.b.input("mask", TensorType::known(DType::F32, &[1, 1, tq, tq]));
            p.b.add2(s, m)?
        }
        _ => {
            let inv = p.c(0.2)?;
            let si = p.b.mul(s, inv)?;
            let t = p.b.unary(UnaryOp::Tanh, si)?;
            let cap = p.c(5.0)?;
            p.b.mul(t, cap)?
        }
    };
    let axis = if p.u.ratio(7, 8)? { -1 } else { -2 };
    let pr = p.b.softmax(s, axis)?;
    Ok(p.b.matmul(pr, v)?)
}

/// The block kinds [`program`] builds instances of.
pub const KINDS: &[&str] = &["rms_norm", "layer_norm", "gelu", "swiglu", "geglu", "sdpa"];

/// What a [`run_differential`] compared.
#[derive(Debug, Default)]
pub struct Stats {
    /// Programs built and compared (the rest ran out of bytes, or the backend could run
    /// neither graph).
    pub compared: usize,
    /// Blocks fused, per kind, over the compared programs.
    pub blocks: std::collections::BTreeMap<String, usize>,
}

/// The proptest of the differential: `cases` programs from random bytes (shrunk on failure)
/// through [`differential_on`] with `backend`, from the fixed RNG seed `seed` (reproducible
/// CI runs) or, with `None`, a random one. `BLOCKFUSE_DIFF_CASES` overrides `cases`.
pub fn run_differential(cases: u32, seed: Option<u64>, backend: &dyn Backend) -> Stats {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("BLOCKFUSE_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let rng_seed = seed.map_or(proptest::test_runner::RngSeed::Random, proptest::test_runner::RngSeed::Fixed);
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, rng_seed, ..Config::default() });
    let stats = std::cell::RefCell::new(Stats::default());
    let result = runner.run(&prop::collection::vec(any::<u8>(), 16..1024), |bytes| {
        let mut u = Unstructured::new(&bytes);
        let Ok((g, inputs)) = program(&mut u) else { return Ok(()) };
        if let Some(report) = differential_on(&g, &inputs, backend) {
            let mut stats = stats.borrow_mut();
            stats.compared += 1;
            for (k, n) in report.blocks {
                *stats.blocks.entry(k).or_insert(0) += n;
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    stats.into_inner()
}
