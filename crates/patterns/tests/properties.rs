//! Property test of the whole optimizer: random programs of primitive ops with embedded
//! instances of our composed patterns (exporter spellings) and perturbed near-instances keep
//! their values through `optimize` (fallback evaluator), stay valid, fuse every clean
//! instance and none of the perturbed ones.

mod common;
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::*;
use blockfuse_patterns::{default_rules, optimize};
use common::rms_norm_composed;
use proptest::prelude::*;
use std::collections::HashMap;

/// One step of a random program over `{batch, 8}` values (operands index the live pool).
#[derive(Debug, Clone)]
enum Step {
    Unary(usize, usize),
    Binary(usize, usize, usize),
    MeanAdd(usize, usize),
    MatMul(usize, u64),
    /// A pattern instance (`kind`), clean (`None`) or with perturbation `Some(p)`.
    Instance(usize, usize, usize, Option<usize>),
}

fn step() -> impl Strategy<Value = Step> {
    let i = || 0usize..64;
    prop_oneof![
        (0usize..4, i()).prop_map(|(u, a)| Step::Unary(u, a)),
        (0usize..5, i(), i()).prop_map(|(o, a, b)| Step::Binary(o, a, b)),
        (i(), i()).prop_map(|(a, b)| Step::MeanAdd(a, b)),
        (i(), any::<u64>()).prop_map(|(a, s)| Step::MatMul(a, s)),
        (0usize..KINDS, i(), i(), prop::option::weighted(0.4, 0usize..4))
            .prop_map(|(k, a, b, p)| Step::Instance(k, a, b, p)),
        (0usize..KINDS, i(), i(), prop::option::weighted(0.4, 0usize..4))
            .prop_map(|(k, a, b, p)| Step::Instance(k, a, b, p)),
    ]
}

const KINDS: usize = 7;

/// What a program embeds: clean instances per counted kind, and slack where a perturbation
/// legitimately fuses as another kind.
#[derive(Default, Debug)]
struct Expect {
    clean: HashMap<&'static str, usize>,
    slack: HashMap<&'static str, usize>,
}

struct Prog<'a, 'g> {
    b: &'a mut Builder<'g>,
    n: usize,
}

impl Prog<'_, '_> {
    fn c(&mut self, v: f64) -> Value {
        self.b.scalar(DType::F32, v)
    }

    /// A distinct copy of `x` (`x + small unique constant`), so that CSE never merges two
    /// instances built on the same operand.
    fn fresh(&mut self, x: Value) -> Value {
        self.n += 1;
        let c = self.c(self.n as f64 / 64.0);
        self.b.add2(x, c).unwrap()
    }

    fn weight(&mut self, dims: &[usize], seed: u64) -> Value {
        common::weight(self.b, DType::F32, dims, seed)
    }
}

/// Builds the instance of kind `k` (perturbation `p`) on `x` (and `y`); returns its value and
/// (kind counted, whether it is clean, extra graph output for "extra consumers").
fn instance(
    p: &mut Prog<'_, '_>,
    k: usize,
    x: Value,
    y: Value,
    perturb: Option<usize>,
    ex: &mut Expect,
    extra: &mut Vec<Value>,
) -> Value {
    let x = p.fresh(x);
    let pert = perturb.unwrap_or(usize::MAX);
    let eps_v = 1e-6 * (1 + p.n) as f64;
    let (kind, out) = match k {
        // rms_norm, Llama spelling; perturbed: exponent 3, negative eps, batch axis, escape.
        0 => {
            let exponent = if pert == 0 { 3.0 } else { 2.0 };
            let eps = p.c(if pert == 1 { -eps_v } else { eps_v });
            let axis = if pert == 2 { 0 } else { -1 };
            let w = p.weight(&[8], p.n as u64);
            let y = rms_norm_composed(p.b, x, Some(w), eps, exponent, axis);
            if pert == 3 {
                // Extra consumer of an interior value: mean(x²) + eps (the unweighted core
                // would be a clean RMSNorm of its own).
                let g = p.b.graph();
                let inner = g.node(y.node).operands.iter().copied().find(|v| *v != w).unwrap();
                let r = g.node(inner.node).operands[1];
                let s = g.node(r.node).operands[0];
                extra.push(g.node(s.node).operands[0]);
            }
            ("rms_norm", y)
        }
        // rms_norm, spelled x · rsqrt(mean(x·x) + eps), no weight (perturbations as above).
        1 => {
            let sq = p.b.mul(x, x).unwrap();
            // Perturbed: x⁴ instead of x².
            let sq = if pert == 0 { p.b.mul(sq, sq).unwrap() } else { sq };
            let axis = if pert == 2 { 0 } else { -1 };
            let ms = p.b.reduce(ReduceOp::Mean, sq, &[axis], true).unwrap();
            let eps = p.c(if pert == 1 { -eps_v } else { eps_v });
            let a = p.b.add2(ms, eps).unwrap();
            let r = p.b.unary(UnaryOp::Rsqrt, a).unwrap();
            if pert == 3 {
                extra.push(r);
            }
            ("rms_norm", p.b.mul(x, r).unwrap())
        }
        // layer_norm: (x − μ) / √(var + eps) · w + b; perturbed: μ − x (swapped sub), batch
        // axis, negative eps, escape.
        2 => {
            let mu = p.b.reduce(ReduceOp::Mean, x, &[if pert == 1 { 0 } else { -1 }], true).unwrap();
            let d = if pert == 0 { p.b.sub(mu, x).unwrap() } else { p.b.sub(x, mu).unwrap() };
            let two = p.c(2.0);
            let sq = p.b.binary(BinaryOp::Pow, d, two).unwrap();
            let var = p.b.reduce(ReduceOp::Mean, sq, &[-1], true).unwrap();
            let eps = p.c(if pert == 2 { -eps_v } else { eps_v });
            let a = p.b.add2(var, eps).unwrap();
            let s = p.b.unary(UnaryOp::Sqrt, a).unwrap();
            let n = p.b.div(d, s).unwrap();
            let w = p.weight(&[8], p.n as u64 + 1);
            let bias = p.weight(&[8], p.n as u64 + 2);
            let n = p.b.mul(n, w).unwrap();
            if pert == 3 {
                extra.push(var);
            }
            if pert <= 1 {
                // d normalized is still a valid RMSNorm of d (times w): it may fuse so.
                *ex.slack.entry("rms_norm").or_default() += 1;
            }
            ("layer_norm", p.b.add2(n, bias).unwrap())
        }
        // gelu erf: 0.5·x·(1 + erf(x/√2)); perturbed: 1/√3, 0.6, erf(√2/x) swapped, escape.
        3 => {
            let s = p.c(if pert == 0 { 3f64.sqrt() } else { std::f64::consts::SQRT_2 });
            let d = if pert == 2 { p.b.div(s, x).unwrap() } else { p.b.div(x, s).unwrap() };
            let e = p.b.unary(UnaryOp::Erf, d).unwrap();
            let one = p.c(1.0);
            let e1 = p.b.add2(e, one).unwrap();
            let half = p.c(if pert == 1 { 0.6 } else { 0.5 });
            let h = p.b.mul(x, half).unwrap();
            if pert == 3 {
                extra.push(e);
            }
            ("gelu", p.b.mul(h, e1).unwrap())
        }
        // gelu tanh; perturbed: 0.1 for 0.044715, x⁴ for x³, tanh scale 1, escape.
        4 => {
            let cube = if pert == 1 {
                let sq = p.b.mul(x, x).unwrap();
                p.b.mul(sq, sq).unwrap()
            } else {
                let three = p.c(3.0);
                p.b.binary(BinaryOp::Pow, x, three).unwrap()
            };
            let c = p.c(if pert == 0 { 0.1 } else { 0.044715 });
            let cx = p.b.mul(c, cube).unwrap();
            let inner = p.b.add2(x, cx).unwrap();
            let k = p.c(if pert == 2 { 1.0 } else { (2.0 / std::f64::consts::PI).sqrt() });
            let t = p.b.mul(inner, k).unwrap();
            let t = p.b.unary(UnaryOp::Tanh, t).unwrap();
            if pert == 3 {
                extra.push(t);
            }
            let one = p.c(1.0);
            let t1 = p.b.add2(one, t).unwrap();
            let half = p.c(0.5);
            let h = p.b.mul(half, x).unwrap();
            ("gelu", p.b.mul(h, t1).unwrap())
        }
        // quick gelu: x·sigmoid(1.702·x); perturbed: 1.5, sigmoid(1.702·y), x/…, escape.
        5 => {
            let k = p.c(if pert == 0 { 1.5 } else { 1.702 });
            let arg = if pert == 1 { p.fresh(y) } else { x };
            let s = p.b.mul(arg, k).unwrap();
            let s = p.b.unary(UnaryOp::Sigmoid, s).unwrap();
            if pert == 3 {
                extra.push(s);
            }
            let out = if pert == 2 { p.b.div(x, s).unwrap() } else { p.b.mul(x, s).unwrap() };
            ("gelu", out)
        }
        // swiglu: x·sigmoid(x)·up; perturbed: sigmoid of another value, sigmoid(−x) in two spellings, escape.
        _ => {
            let up = p.fresh(y);
            let s = match pert {
                0 => {
                    // (sigmoid(up) would make a clean SwiGLU with gate = up.)
                    let other = p.fresh(y);
                    p.b.unary(UnaryOp::Sigmoid, other).unwrap()
                }
                1 => {
                    let n = p.b.unary(UnaryOp::Neg, x).unwrap();
                    p.b.unary(UnaryOp::Sigmoid, n).unwrap()
                }
                2 => {
                    // 1 / (1 + e^x): sigmoid(−x) again, in the other spelling.
                    let e = p.b.unary(UnaryOp::Exp, x).unwrap();
                    let one = p.c(1.0);
                    let d = p.b.add2(e, one).unwrap();
                    p.b.unary(UnaryOp::Reciprocal, d).unwrap()
                }
                _ => p.b.unary(UnaryOp::Sigmoid, x).unwrap(),
            };
            let silu = p.b.mul(x, s).unwrap();
            if pert == 3 {
                extra.push(silu);
            }
            let out = p.b.mul(silu, up).unwrap();
            ("swiglu", out)
        }
    };
    if perturb.is_none() {
        *ex.clean.entry(kind).or_default() += 1;
    }
    out
}

/// Builds the program; returns the graph and what it embeds.
fn program(steps: &[Step], attention: &[Option<bool>]) -> (Graph, Expect) {
    let mut g = Graph::new();
    let mut ex = Expect::default();
    let mut extra = vec![];
    let mut b = Builder::new(&mut g);
    let bd = || TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(8)]);
    let mut pool = vec![b.input("x", bd()), b.input("y", bd())];
    let mut outs = vec![];
    let mut p = Prog { b: &mut b, n: 0 };
    for s in steps {
        let at = |i: usize| pool[i % pool.len()];
        let v = match *s {
            Step::Unary(u, a) => {
                let op = [UnaryOp::Tanh, UnaryOp::Neg, UnaryOp::Sin, UnaryOp::Abs][u];
                p.b.unary(op, at(a)).unwrap()
            }
            Step::Binary(o, a, c) => {
                let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Max, BinaryOp::Min, BinaryOp::Mul][o];
                let v = p.b.binary(op, at(a), at(c)).unwrap();
                // Products stay bounded, so that f32 differences stay relative.
                if op == BinaryOp::Mul {
                    p.b.unary(UnaryOp::Tanh, v).unwrap()
                } else {
                    v
                }
            }
            Step::MeanAdd(a, c) => {
                let m = p.b.reduce(ReduceOp::Mean, at(a), &[-1], true).unwrap();
                p.b.add2(m, at(c)).unwrap()
            }
            Step::MatMul(a, seed) => {
                let w = p.weight(&[8, 8], seed);
                p.b.matmul(at(a), w).unwrap()
            }
            Step::Instance(k, a, c, pert) => {
                let (x, y) = (at(a), at(c));
                instance(&mut p, k, x, y, pert, &mut ex, &mut extra)
            }
        };
        pool.push(v);
        outs.push(v);
    }
    // Attention over {batch, 2, seq, 8} with a causal range mask; `Some(false)` = perturbed
    // (softmax over the query axis).
    if !attention.is_empty() {
        let t4 = || {
            TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2), Dim::sym("seq"), Dim::Known(8)])
        };
        let (q, k, v) = (p.b.input("q", t4()), p.b.input("k", t4()), p.b.input("v", t4()));
        let seq = Dim::sym("seq");
        let range = |b: &mut Builder<'_>, shape: Vec<Dim>| {
            let r =
                b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[]).unwrap();
            b.reshape(r, shape).unwrap()
        };
        let rows = range(p.b, vec![seq.clone(), Dim::Known(1)]);
        let cols = range(p.b, vec![Dim::Known(1), seq.clone()]);
        let keep = p.b.binary(BinaryOp::LessEqual, cols, rows).unwrap();
        let (zero, low) = (p.c(0.0), p.c(f32::MIN as f64));
        let mask = p.b.select(keep, zero, low).unwrap();
        for (i, clean) in attention.iter().enumerate() {
            let clean = clean.is_some();
            let s = p.c(1.0 / (8f64.sqrt() + i as f64));
            let qs = p.b.mul(q, s).unwrap();
            let kt = p.b.transpose(k, &[0, 1, 3, 2]).unwrap();
            let sc = p.b.matmul(qs, kt).unwrap();
            let sc = p.b.add2(sc, mask).unwrap();
            let pr = p.b.softmax(sc, if clean { -1 } else { -2 }).unwrap();
            outs.push(p.b.matmul(pr, v).unwrap());
            if clean {
                *ex.clean.entry("sdpa").or_default() += 1;
            }
        }
    }
    for (i, o) in outs.into_iter().chain(extra).enumerate() {
        g.add_output(&format!("o{i}"), o);
    }
    (g, ex)
}

fn assert_close(a: &Graph, b: &Graph, seed: u64) -> Result<(), TestCaseError> {
    let inputs = common::random_inputs(a, seed);
    let fb = FallbackBackend::new();
    let (x, y) = (fb.run(a, &inputs).unwrap(), fb.run(b, &inputs).unwrap());
    prop_assert_eq!(x.len(), y.len());
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        prop_assert_eq!(p.dims(), q.dims());
        for (u, v) in p.to_f64_vec().into_iter().zip(q.to_f64_vec()) {
            let ok = (u.is_nan() && v.is_nan()) || (u - v).abs() <= 1e-4 + 1e-4 * u.abs().max(v.abs());
            prop_assert!(ok, "output {}: {} vs {}", i, u, v);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn optimization_keeps_values_and_fuses_exactly_the_clean_instances(
        steps in prop::collection::vec(step(), 1..9),
        attention in prop::collection::vec(prop::option::weighted(0.7, Just(true)), 0..3),
        seed in any::<u64>(),
    ) {
        let (g, ex) = program(&steps, &attention);
        g.validate().unwrap();
        let mut opt = g.clone();
        let report = optimize(&mut opt, &default_rules()).unwrap();
        opt.validate().unwrap();
        assert_close(&g, &opt, seed)?;
        let n = |k: &str| report.blocks.get(k).copied().unwrap_or(0);
        let want = |k: &str| ex.clean.get(k).copied().unwrap_or(0);
        let slack = |k: &str| ex.slack.get(k).copied().unwrap_or(0);
        // A gelu block may be consumed by a geglu (gelu(x) · y from the random products).
        let gelus = n("gelu") + n("geglu");
        prop_assert_eq!(gelus, want("gelu"), "gelu {:?} {:?}", report.blocks, report.near_misses);
        for k in ["layer_norm", "swiglu", "sdpa"] {
            prop_assert_eq!(n(k), want(k), "{} {:?} {:?}", k, report.blocks, report.near_misses);
        }
        let r = n("rms_norm");
        prop_assert!(r >= want("rms_norm") && r <= want("rms_norm") + slack("rms_norm"),
            "rms_norm {} for {} clean (+{}) {:?}", r, want("rms_norm"), slack("rms_norm"), report.near_misses);
        prop_assert_eq!(n("rope"), 0);
    }
}

/// RoPE instances on `{batch, 2, seq, 8}` tensors: a rotation spelling × an angle source,
/// clean or perturbed so that it is no longer a rotation.
mod rope_instances {
    use super::*;

    const D: usize = 8;

    fn seq() -> Dim {
        Dim::sym("seq")
    }

    fn heads() -> TensorType {
        TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(2), seq(), Dim::Known(D)])
    }

    /// cos/sin `{1, 1, T, w}` of `arange · table` (duplicated halves when `full`).
    fn table_angles(b: &mut Builder<'_>, table: &[f32], full: bool) -> (Value, Value) {
        let r = b.add(Op::Range { start: 0.0, step: 1.0, len: seq(), dtype: DType::I64 }, &[]).unwrap();
        let p = b.reshape(r, vec![Dim::Known(1), Dim::Known(1), seq(), Dim::Known(1)]).unwrap();
        let p = b.cast(p, DType::F32).unwrap();
        let inv = b.constant(HostTensor::from_f32(vec![table.len()], table));
        let f = b.mul(p, inv).unwrap();
        let f = if full { b.concat(&[f, f], -1).unwrap() } else { f };
        (b.unary(UnaryOp::Cos, f).unwrap(), b.unary(UnaryOp::Sin, f).unwrap())
    }

    fn given_angles(b: &mut Builder<'_>, i: usize, w: usize) -> (Value, Value) {
        let ty = TensorType::new(DType::F32, [Dim::Known(1), Dim::Known(1), seq(), Dim::Known(w)]);
        (b.input(&format!("cos{i}"), ty.clone()), b.input(&format!("sin{i}"), ty))
    }

    fn table(kind: usize) -> Vec<f32> {
        (0..D / 2)
            .map(|i| {
                let f = 1e4f32.powf(-2.0 * i as f32 / D as f32);
                if kind == 1 {
                    half::bf16::from_f32(if i >= 2 { f / 8.0 } else { f }).to_f32()
                } else {
                    f
                }
            })
            .collect()
    }

    fn strided(b: &mut Builder<'_>, x: Value, start: i64) -> Value {
        let s = SliceSpec {
            axes: vec![-1],
            starts: vec![Bound::Const(start)],
            ends: vec![Bound::Const(D as i64)],
            steps: vec![2],
        };
        b.add(Op::Slice(s), &[x]).unwrap()
    }

    fn unsqueeze(b: &mut Builder<'_>, v: Value) -> Value {
        let mut s = b.ty(v).shape.to_vec();
        s.push(Dim::Known(1));
        b.reshape(v, s).unwrap()
    }

    /// `x·cos ± rotate(x)·sin` with `rotate` = rotate_half (halves, `lo` = the first part's
    /// end) or rotate_every_two (pairs).
    fn full(b: &mut Builder<'_>, x: Value, c: Value, s: Value, pairs: bool, lo: i64, minus: bool) -> Value {
        let rot = if pairs {
            let (e, o) = (strided(b, x, 0), strided(b, x, 1));
            let no = b.unary(UnaryOp::Neg, o).unwrap();
            let (no, e) = (unsqueeze(b, no), unsqueeze(b, e));
            let st = b.concat(&[no, e], -1).unwrap();
            b.reshape(st, heads().shape.to_vec()).unwrap()
        } else {
            let (x1, x2) = (b.slice_axis(x, -1, 0, lo).unwrap(), b.slice_axis(x, -1, lo, D as i64).unwrap());
            let n2 = b.unary(UnaryOp::Neg, x2).unwrap();
            b.concat(&[n2, x1], -1).unwrap()
        };
        let (a, r) = (b.mul(x, c).unwrap(), b.mul(rot, s).unwrap());
        if minus {
            b.sub(a, r).unwrap()
        } else {
            b.add2(a, r).unwrap()
        }
    }

    /// The real/imaginary spelling with per-pair cos/sin, of halves or interleaved pairs;
    /// `wrong` flips the sign of the real part's sine term.
    fn parts(b: &mut Builder<'_>, x: Value, c: Value, s: Value, pairs: bool, wrong: bool) -> Value {
        let h = D as i64 / 2;
        let (x1, x2) = if pairs {
            (strided(b, x, 0), strided(b, x, 1))
        } else {
            (b.slice_axis(x, -1, 0, h).unwrap(), b.slice_axis(x, -1, h, D as i64).unwrap())
        };
        let (a, d) = (b.mul(x1, c).unwrap(), b.mul(x2, s).unwrap());
        let re = if wrong { b.add2(a, d).unwrap() } else { b.sub(a, d).unwrap() };
        let (a, d) = (b.mul(x2, c).unwrap(), b.mul(x1, s).unwrap());
        let im = b.add2(a, d).unwrap();
        if !pairs {
            return b.concat(&[re, im], -1).unwrap();
        }
        let (re, im) = (unsqueeze(b, re), unsqueeze(b, im));
        let st = b.concat(&[re, im], -1).unwrap();
        b.reshape(st, heads().shape.to_vec()).unwrap()
    }

    /// Instance `i` of `form` (0..7), perturbed when `pert`: returns its value.
    pub(super) fn build(b: &mut Builder<'_>, i: usize, form: usize, pert: bool) -> Value {
        let x = b.input(&format!("q{i}"), heads());
        let lo = if pert { 3 } else { D as i64 / 2 };
        match form {
            0 | 1 => {
                let (c, s) = table_angles(b, &table(form), true);
                full(b, x, c, s, false, lo, false)
            }
            2 => {
                let (c, s) = given_angles(b, i, D);
                full(b, x, c, s, false, D as i64 / 2, pert)
            }
            3 => {
                let (c, s) = table_angles(b, &table(0), false);
                parts(b, x, c, s, false, pert)
            }
            4 => {
                let (c, s) = given_angles(b, i, D / 2);
                parts(b, x, c, s, true, pert)
            }
            5 => {
                let (c, s) = given_angles(b, i, D);
                full(b, x, c, s, true, 0, pert)
            }
            _ => {
                // Partial rotation of the first 4 features (Slice + Concat).
                let (c, s) = given_angles(b, i, D / 2);
                let head = b.slice_axis(x, -1, 0, 4).unwrap();
                let tail = b.slice_axis(x, -1, if pert { 3 } else { 4 }, D as i64).unwrap();
                let (x1, x2) = (b.slice_axis(head, -1, 0, 2).unwrap(), b.slice_axis(head, -1, 2, 4).unwrap());
                let n2 = b.unary(UnaryOp::Neg, x2).unwrap();
                let rot = b.concat(&[n2, x1], -1).unwrap();
                let (a, r) = (b.mul(head, c).unwrap(), b.mul(rot, s).unwrap());
                let y = b.add2(a, r).unwrap();
                let y = b.concat(&[y, tail], -1).unwrap();
                // A perturbed partial rotation is 9 wide: keep the first 8 for the output.
                b.slice_axis(y, -1, 0, D as i64).unwrap()
            }
        }
    }
}

/// A graph with one output per `(form, perturbed)` instance made by `build`, optimized and
/// checked to keep its values; returns the optimizer's report.
fn optimize_instances(
    forms: &[(usize, bool)],
    build: fn(&mut Builder<'_>, usize, usize, bool) -> Value,
    seed: u64,
) -> Result<blockfuse_patterns::Report, TestCaseError> {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let outs: Vec<Value> =
        forms.iter().enumerate().map(|(i, &(f, pert))| build(&mut b, i, f, pert)).collect();
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("o{i}"), o);
    }
    let mut opt = g.clone();
    let report = optimize(&mut opt, &default_rules()).unwrap();
    opt.validate().unwrap();
    assert_close(&g, &opt, seed)?;
    Ok(report)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every clean RoPE instance (each spelling and angle source) fuses into one rope block, no
    /// perturbed one does, and the values stay.
    #[test]
    fn rope_instances_fuse_exactly_and_keep_values(
        forms in prop::collection::vec((0usize..7, prop::bool::weighted(0.3)), 1..5),
        seed in any::<u64>(),
    ) {
        let report = optimize_instances(&forms, rope_instances::build, seed)?;
        // A perturbed partial rotation still rotates its head: one rope, not of all of x.
        let clean = forms.iter().filter(|&&(f, pert)| !pert || f == 6).count();
        let got = report.blocks.get("rope").copied().unwrap_or(0);
        prop_assert_eq!(got, clean, "{:?} {:?}", forms, report.near_misses);
        let partial_misses = forms.iter().filter(|&&(f, pert)| pert && f == 6).count();
        let reported = report.near_misses.iter().filter(|m| m.rule == "rope_partial").count();
        prop_assert_eq!(reported, partial_misses, "{:?}", report.near_misses);
        let partial = forms.iter().filter(|&&(f, pert)| !pert && f == 6).count();
        prop_assert_eq!(report.rules["rope_partial"], partial);
    }
}

/// Attention instances on `{1, 2, 4, 8}` q, k, v inputs: a scale placement, a mask spelling or
/// softcapping, clean or perturbed so that it is no longer `softmax(scale·qkᵀ + mask)·v`.
mod sdpa_instances {
    use super::*;

    fn input(b: &mut Builder<'_>, name: String, dtype: DType) -> Value {
        b.input(&name, TensorType::known(dtype, &[1, 2, 4, 8]))
    }

    fn kt(b: &mut Builder<'_>, k: Value) -> Value {
        b.transpose(k, &[0, 1, 3, 2]).unwrap()
    }

    pub(super) fn build(b: &mut Builder<'_>, i: usize, form: usize, pert: bool) -> Value {
        let [q, k, v] = ["q", "k", "v"].map(|n| input(b, format!("{n}{i}"), DType::F32));
        let c = |b: &mut Builder<'_>, x: f64| b.scalar(DType::F32, x);
        let scores = match form {
            // scale after the product; perturbed: a key `{4, 2, 1, 8}` permuted by
            // [2, 1, 3, 0], which is not a transpose of the last two axes.
            0 => {
                let kt = if pert {
                    let k = b.input(&format!("kp{i}"), TensorType::known(DType::F32, &[4, 2, 1, 8]));
                    b.transpose(k, &[2, 1, 3, 0]).unwrap()
                } else {
                    kt(b, k)
                };
                let s = b.matmul(q, kt).unwrap();
                let sc = c(b, 0.35);
                b.mul(s, sc).unwrap()
            }
            // √scale on q and on kᵀ; perturbed: the logits squared (any change of q or k
            // alone is still attention, of other q or k).
            1 => {
                let r = c(b, 0.6);
                let q = b.mul(q, r).unwrap();
                let kt = kt(b, k);
                let kt = b.mul(kt, r).unwrap();
                let s = b.matmul(q, kt).unwrap();
                if pert {
                    b.unary(UnaryOp::Square, s).unwrap()
                } else {
                    s
                }
            }
            // where(mask, s, −inf); perturbed: where(mask, s, 0), which masks nothing.
            2 => {
                let kt = kt(b, k);
                let s = b.matmul(q, kt).unwrap();
                let m = b.input(&format!("m{i}"), TensorType::known(DType::Bool, &[1, 1, 4, 4]));
                let fill = c(b, if pert { 0.0 } else { f64::NEG_INFINITY });
                b.select(m, s, fill).unwrap()
            }
            // softcap c·tanh(s/c) (c·tanh(s/d) is too: softcap c of the scale c/d);
            // perturbed: s·tanh(s/c), not a cap.
            _ => {
                let kt = kt(b, k);
                let s = b.matmul(q, kt).unwrap();
                let inv = c(b, 1.0 / 5.0);
                let si = b.mul(s, inv).unwrap();
                let t = b.unary(UnaryOp::Tanh, si).unwrap();
                let cap = if pert { s } else { c(b, 5.0) };
                b.mul(t, cap).unwrap()
            }
        };
        let p = b.softmax(scores, -1).unwrap();
        b.matmul(p, v).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every clean attention instance (scale placements, a −∞ where-mask that may mask whole
    /// rows, softcap) fuses into one sdpa block, no perturbed one does, and the values stay —
    /// NaN rows included.
    #[test]
    fn sdpa_instances_fuse_exactly_and_keep_values(
        forms in prop::collection::vec((0usize..4, prop::bool::weighted(0.3)), 1..4),
        seed in any::<u64>(),
    ) {
        let report = optimize_instances(&forms, sdpa_instances::build, seed)?;
        let clean = forms.iter().filter(|&&(_, pert)| !pert).count();
        let got = report.blocks.get("sdpa").copied().unwrap_or(0);
        prop_assert_eq!(got, clean, "{:?} {:?}", forms, report.near_misses);
    }
}
