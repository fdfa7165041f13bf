//! Primitive-op unit tests of the evaluator: broadcasting, matmul, reductions, indexing,
//! rounding, integer semantics, casts, and the input binding and error paths.

mod common;

use blockfuse_fallback::{EvalError, FallbackBackend};
use blockfuse_ir::{
    BinaryOp, Bound, Builder, DType, Dim, Graph, HostTensor, Op, ReduceOp, SliceSpec, TensorType, UnaryOp,
    Value,
};
use common::*;
use std::collections::HashMap;

/// Runs a graph built by `body` over `args` and returns its outputs.
fn eval(args: &[HostTensor], body: impl FnOnce(&mut Builder<'_>, &[Value]) -> Vec<Value>) -> Vec<HostTensor> {
    let refs: Vec<&HostTensor> = args.iter().collect();
    let g = graph_with(&refs, body);
    FallbackBackend::new().run(&g, args).expect("runs")
}

fn eval1(args: &[HostTensor], body: impl FnOnce(&mut Builder<'_>, &[Value]) -> Value) -> HostTensor {
    eval(args, |b, x| vec![body(b, x)]).remove(0)
}

fn f32s(dims: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::from_f32(dims.to_vec(), v)
}

fn i64s(dims: &[usize], v: &[i64]) -> HostTensor {
    HostTensor::from_i64(dims.to_vec(), v)
}

fn of(dtype: DType, dims: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::from_f64(dtype, dims.to_vec(), v)
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn broadcasting_binary() {
    let a = f32s(&[2, 1, 3], &iota(6));
    let b = f32s(&[4, 1], &[0.0, 10.0, 20.0, 30.0]);
    let y = eval1(&[a, b], |b, x| b.add2(x[0], x[1]).unwrap());
    assert_eq!(y.dims(), &[2, 4, 3]);
    let v = y.to_f64_vec();
    for i in 0..2 {
        for j in 0..4 {
            for k in 0..3 {
                assert_eq!(v[(i * 4 + j) * 3 + k], (i * 3 + k) as f64 + 10.0 * j as f64);
            }
        }
    }
    // A scalar on either side, in f64 and i32.
    let y = eval1(&[of(DType::F64, &[3], &[1.0, 2.0, 3.0]), of(DType::F64, &[], &[2.0])], |b, x| {
        b.binary(BinaryOp::Sub, x[1], x[0]).unwrap()
    });
    assert_eq!(y.to_f64_vec(), vec![1.0, 0.0, -1.0]);
    let y = eval1(
        &[of(DType::I32, &[2, 2], &[1.0, 2.0, 3.0, 4.0]), of(DType::I32, &[2], &[10.0, 20.0])],
        |b, x| b.mul(x[0], x[1]).unwrap(),
    );
    assert_eq!((y.dtype(), y.to_f64_vec()), (DType::I32, vec![10.0, 40.0, 30.0, 80.0]));
}

fn matmul_ref(
    a: &[f64],
    b: &[f64],
    batch_a: &[usize],
    batch_b: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    // Broadcast batch dims of equal rank.
    let batch: Vec<usize> = batch_a.iter().zip(batch_b).map(|(x, y)| (*x).max(*y)).collect();
    let count: usize = batch.iter().product();
    let mut out = vec![0.0; count * m * n];
    for idx in 0..count {
        let mut rem = idx;
        let (mut oa, mut ob) = (0, 0);
        let (mut sa, mut sb) = (1, 1);
        for ax in (0..batch.len()).rev() {
            let i = rem % batch[ax];
            rem /= batch[ax];
            oa += (if batch_a[ax] == 1 { 0 } else { i }) * sa;
            ob += (if batch_b[ax] == 1 { 0 } else { i }) * sb;
            sa *= batch_a[ax];
            sb *= batch_b[ax];
        }
        for i in 0..m {
            for j in 0..n {
                out[(idx * m + i) * n + j] =
                    (0..k).map(|p| a[(oa * m + i) * k + p] * b[(ob * k + p) * n + j]).sum();
            }
        }
    }
    out
}

#[test]
fn matmul_with_batch_broadcast() {
    let mut rng = rng(1);
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let (a, av) = random(&mut rng, dtype, &[2, 1, 3, 4]);
        let (b, bv) = random(&mut rng, dtype, &[5, 4, 2]);
        let y = eval1(&[a, b], |b, x| b.matmul(x[0], x[1]).unwrap());
        assert_eq!(y.dims(), &[2, 5, 3, 2]);
        let want = matmul_ref(&av, &bv, &[2, 1], &[1, 5], 3, 4, 2);
        let tol = match dtype {
            DType::F32 => 1e-6,
            DType::F64 => 1e-12,
            DType::F16 => 2e-3,
            _ => 2e-2,
        };
        assert_close(&y, &want, tol, &format!("batched matmul {dtype}"));
    }
    // Weights without a batch (folded into one product), and a transposed operand.
    let (a, av) = random(&mut rng, DType::F32, &[3, 5, 8]);
    let (w, wv) = random(&mut rng, DType::F32, &[6, 8]);
    let y = eval1(&[a, w], |b, x| {
        let wt = b.transpose(x[1], &[1, 0]).unwrap();
        b.matmul(x[0], wt).unwrap()
    });
    let mut wt = vec![0.0; 48];
    for i in 0..6 {
        for j in 0..8 {
            wt[j * 6 + i] = wv[i * 8 + j];
        }
    }
    assert_close(&y, &matmul_ref(&av, &wt, &[3], &[1], 5, 8, 6), 1e-6, "x @ w^T");
}

#[test]
fn matmul_vectors_and_ints() {
    let a = f32s(&[3], &[1.0, 2.0, 3.0]);
    let m = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let y = eval1(&[a.clone(), m.clone()], |b, x| b.matmul(x[0], x[1]).unwrap());
    assert_eq!((y.dims().to_vec(), y.to_f64_vec()), (vec![2], vec![22.0, 28.0]));
    let v2 = f32s(&[2], &[1.0, -1.0]);
    let y = eval1(&[m, v2], |b, x| b.matmul(x[0], x[1]).unwrap());
    assert_eq!((y.dims().to_vec(), y.to_f64_vec()), (vec![3], vec![-1.0, -1.0, -1.0]));
    let y = eval1(&[a.clone(), a], |b, x| b.matmul(x[0], x[1]).unwrap());
    assert_eq!((y.dims().to_vec(), y.to_f64_vec()), (vec![], vec![14.0]));
    let p = of(DType::I32, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let y = eval1(&[p.clone(), p], |b, x| b.matmul(x[0], x[1]).unwrap());
    assert_eq!((y.dtype(), y.to_f64_vec()), (DType::I32, vec![7.0, 10.0, 15.0, 22.0]));
}

#[test]
fn reductions() {
    let x = f32s(&[2, 3, 4], &iota(24));
    let r = |op, axes: &[i64], keep| {
        let axes = axes.to_vec();
        eval1(std::slice::from_ref(&x), move |b, v| b.reduce(op, v[0], &axes, keep).unwrap())
    };
    let s = r(ReduceOp::Sum, &[0, 2], false);
    assert_eq!(s.dims(), &[3]);
    assert_eq!(s.to_f64_vec(), vec![60.0, 92.0, 124.0]);
    let m = r(ReduceOp::Mean, &[-1], true);
    assert_eq!(m.dims(), &[2, 3, 1]);
    assert_eq!(m.to_f64_vec(), vec![1.5, 5.5, 9.5, 13.5, 17.5, 21.5]);
    let all = r(ReduceOp::Max, &[], false);
    assert_eq!((all.dims().to_vec(), all.to_f64_vec()), (vec![], vec![23.0]));
    assert_eq!(r(ReduceOp::Min, &[1], false).to_f64_vec(), vec![0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]);
    let p = eval1(&[f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0])], |b, v| {
        b.reduce(ReduceOp::Prod, v[0], &[0], false).unwrap()
    });
    assert_eq!(p.to_f64_vec(), vec![3.0, 8.0]);
    // Integer mean truncates; integer sums wrap to the dtype.
    let im = eval1(&[i64s(&[3], &[-1, -2, -4])], |b, v| b.reduce(ReduceOp::Mean, v[0], &[], false).unwrap());
    assert_eq!(im.to_f64_vec(), vec![-2.0]);
    let w = eval1(&[of(DType::I8, &[2], &[100.0, 100.0])], |b, v| {
        b.reduce(ReduceOp::Sum, v[0], &[0], false).unwrap()
    });
    assert_eq!(w.to_f64_vec(), vec![-56.0]);
    // A long f16 sum accumulates wide and rounds once.
    let n = 4096;
    let y = eval1(&[of(DType::F16, &[n], &vec![0.1; n])], |b, v| {
        b.reduce(ReduceOp::Sum, v[0], &[0], false).unwrap()
    });
    let held = half::f16::from_f64(0.1).to_f64() * n as f64;
    assert_eq!(y.to_f64_vec()[0], half::f16::from_f64(held).to_f64());
}

#[test]
fn softmax_rows() {
    let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
    let y = eval1(&[x], |b, v| b.softmax(v[0], -1).unwrap()).to_f64_vec();
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
    let s: f64 = e.iter().sum();
    for i in 0..3 {
        assert!((y[i] - e[i] / s).abs() < 1e-7);
    }
    assert_eq!(&y[3..], &[0.0, 1.0, 0.0]);
    // Along axis 0, and a row of −∞ (NaN, like numpy).
    let x = f32s(&[2, 2], &[0.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
    let y = eval1(&[x], |b, v| b.softmax(v[0], 0).unwrap()).to_f64_vec();
    assert_eq!(&y[..1], &[0.5]);
    assert!(y[1].is_nan());
}

#[test]
fn gather_negative_indices() {
    let data = f32s(&[3, 4], &iota(12));
    let y = eval1(&[data.clone(), i64s(&[3], &[-1, 0, 2])], |b, v| {
        b.add(Op::Gather { axis: 0 }, &[v[0], v[1]]).unwrap()
    });
    assert_eq!(y.dims(), &[3, 4]);
    assert_eq!(y.to_f64_vec()[..4], [8.0, 9.0, 10.0, 11.0]);
    assert_eq!(y.to_f64_vec()[4..8], [0.0, 1.0, 2.0, 3.0]);
    let idx = of(DType::I32, &[2, 2], &[-4.0, 3.0, 1.0, -2.0]);
    let y = eval1(&[data.clone(), idx], |b, v| b.add(Op::Gather { axis: 1 }, &[v[0], v[1]]).unwrap());
    assert_eq!(y.dims(), &[3, 2, 2]);
    assert_eq!(y.to_f64_vec()[..4], [0.0, 3.0, 1.0, 2.0]);
    // Out of range is an error naming the node.
    let g = graph_with(&[&data, &i64s(&[1], &[3])], |b, v| {
        vec![b.add(Op::Gather { axis: 0 }, &[v[0], v[1]]).unwrap()]
    });
    let e = run_error(&g, &[data, i64s(&[1], &[3])]);
    assert!(matches!(&e, EvalError::Node { op, .. } if op == "gather"), "{e:?}");
    assert!(e.to_string().contains("index 3 is out of range for axis 0 of size 3"), "{e}");
}

fn slice(x: Value, b: &mut Builder<'_>, axis: i64, start: Bound, end: Bound, step: i64) -> Value {
    b.add(
        Op::Slice(SliceSpec { axes: vec![axis], starts: vec![start], ends: vec![end], steps: vec![step] }),
        &[x],
    )
    .unwrap()
}

#[test]
fn slices() {
    use Bound::Const as C;
    let x = f32s(&[6], &iota(6));
    let s = |start, end, step| {
        eval1(std::slice::from_ref(&x), move |b, v| slice(v[0], b, 0, start, end, step)).to_f64_vec()
    };
    assert_eq!(s(C(5), C(0), -2), vec![5.0, 3.0, 1.0]);
    assert_eq!(s(C(-1), C(i64::MIN), -1), vec![5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
    assert_eq!(s(C(-2), C(100), 1), vec![4.0, 5.0]);
    assert_eq!(s(C(1), C(i64::MAX), 2), vec![1.0, 3.0, 5.0]);
    assert_eq!(s(C(4), C(2), 1), Vec::<f64>::new());
    // Several axes, and a symbolic bound.
    let m = f32s(&[3, 4], &iota(12));
    let y = eval1(&[m], |b, v| {
        b.add(
            Op::Slice(SliceSpec {
                axes: vec![1, 0],
                starts: vec![C(-1), C(0)],
                ends: vec![C(0), C(3)],
                steps: vec![-2, 2],
            }),
            &[v[0]],
        )
        .unwrap()
    });
    assert_eq!((y.dims().to_vec(), y.to_f64_vec()), (vec![2, 2], vec![3.0, 1.0, 11.0, 9.0]));
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq")]));
    let y = slice(x, &mut b, 0, C(0), Bound::Dim(Dim::sym("seq")), 1);
    g.add_output("y", y);
    let out = FallbackBackend::new().run(&g, &[f32s(&[4], &iota(4))]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.0, 1.0, 2.0, 3.0]);
}

#[test]
fn half_precision_rounds_after_every_op() {
    // 2048 + 1 is not an f16 (ties to even: 2048); 256 + 1 is not a bf16.
    let y = eval1(
        &[of(DType::F16, &[2], &[2048.0, 1.0]), of(DType::F16, &[2], &[1.0, 0.000_488_281_25])],
        |b, v| b.add2(v[0], v[1]).unwrap(),
    );
    assert_eq!(y.dtype(), DType::F16);
    assert_eq!(y.to_f64_vec(), vec![2048.0, 1.0]);
    let y = eval1(&[of(DType::BF16, &[1], &[256.0]), of(DType::BF16, &[1], &[1.0])], |b, v| {
        b.add2(v[0], v[1]).unwrap()
    });
    assert_eq!(y.to_f64_vec(), vec![256.0]);
    // (a + b) − a is evaluated with a rounding in between: 1 + 2^-12 rounds to 1.
    let y = eval1(&[of(DType::F16, &[1], &[1.0]), of(DType::F16, &[1], &[1.0 / 4096.0])], |b, v| {
        let s = b.add2(v[0], v[1]).unwrap();
        b.sub(s, v[0]).unwrap()
    });
    assert_eq!(y.to_f64_vec(), vec![0.0]);
    // Unary results round too: exp(1) in f16.
    let y = eval1(&[of(DType::F16, &[1], &[1.0])], |b, v| b.unary(UnaryOp::Exp, v[0]).unwrap());
    assert_eq!(y.to_f64_vec()[0], half::f16::from_f64(std::f64::consts::E).to_f64());
}

#[test]
fn integer_division_and_modulo() {
    let a = i64s(&[4], &[-7, 7, -7, 7]);
    let b = i64s(&[4], &[2, 2, -2, -2]);
    let d = eval1(&[a.clone(), b.clone()], |bb, v| bb.div(v[0], v[1]).unwrap());
    assert_eq!(d.to_i64_vec(), vec![-3, 3, 3, -3], "truncates toward zero");
    let m = eval1(&[a, b], |bb, v| bb.binary(BinaryOp::Mod, v[0], v[1]).unwrap());
    assert_eq!(m.to_i64_vec(), vec![1, 1, -1, -1], "floored: the sign of the divisor");
    let fm = eval1(&[f32s(&[2], &[-7.5, 7.5]), f32s(&[2], &[2.0, -2.0])], |bb, v| {
        bb.binary(BinaryOp::Mod, v[0], v[1]).unwrap()
    });
    assert_eq!(fm.to_f64_vec(), vec![0.5, -0.5]);
    // Wrapping to the dtype.
    let w = eval1(&[of(DType::I32, &[1], &[i32::MAX as f64]), of(DType::I32, &[1], &[1.0])], |bb, v| {
        bb.add2(v[0], v[1]).unwrap()
    });
    assert_eq!(w.to_f64_vec(), vec![i32::MIN as f64]);
    let w = eval1(&[of(DType::U8, &[1], &[200.0]), of(DType::U8, &[1], &[100.0])], |bb, v| {
        bb.add2(v[0], v[1]).unwrap()
    });
    assert_eq!(w.to_f64_vec(), vec![44.0]);
    // Division by zero is an error, not a panic.
    for op in [BinaryOp::Div, BinaryOp::Mod] {
        let x = i64s(&[2], &[1, 2]);
        let z = i64s(&[2], &[1, 0]);
        let g = graph_with(&[&x, &z], |b, v| vec![b.binary(op, v[0], v[1]).unwrap()]);
        let e = run_error(&g, &[x, z]).to_string();
        assert!(e.contains("by zero"), "{e}");
    }
}

#[test]
fn casts() {
    let x = f32s(&[5], &[-2.7, 2.7, f32::NAN, 1e10, -0.5]);
    let y = eval1(std::slice::from_ref(&x), |b, v| b.cast(v[0], DType::I32).unwrap());
    assert_eq!(y.to_f64_vec(), vec![-2.0, 2.0, 0.0, i32::MAX as f64, 0.0], "truncate, saturate, NaN → 0");
    let y = eval1(&[x], |b, v| b.cast(v[0], DType::Bool).unwrap());
    assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 1.0, 1.0, 1.0]);
    let y = eval1(&[i64s(&[3], &[300, -1, 0])], |b, v| b.cast(v[0], DType::U8).unwrap());
    assert_eq!(y.to_f64_vec(), vec![44.0, 255.0, 0.0], "integers wrap");
    let y = eval1(&[of(DType::Bool, &[2], &[1.0, 0.0])], |b, v| b.cast(v[0], DType::F16).unwrap());
    assert_eq!((y.dtype(), y.to_f64_vec()), (DType::F16, vec![1.0, 0.0]));
    let y = eval1(&[of(DType::F64, &[1], &[0.1])], |b, v| b.cast(v[0], DType::BF16).unwrap());
    assert_eq!(y.to_f64_vec(), vec![half::bf16::from_f64(0.1).to_f64()]);
    let y = eval1(&[i64s(&[1], &[2049])], |b, v| b.cast(v[0], DType::F16).unwrap());
    assert_eq!(y.to_f64_vec(), vec![2048.0]);
}

#[test]
fn unary_ops_match_std() {
    let xs = [-2.5, -0.3, 0.0, 0.7, 3.0];
    type Case = (UnaryOp, fn(f64) -> f64);
    let cases: [Case; 14] = [
        (UnaryOp::Neg, |x| -x),
        (UnaryOp::Abs, f64::abs),
        (UnaryOp::Square, |x| x * x),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Erf, libm::erf),
        (UnaryOp::Tanh, f64::tanh),
        (UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        (UnaryOp::Sin, f64::sin),
        (UnaryOp::Cos, f64::cos),
        (UnaryOp::Relu, |x| x.max(0.0)),
        (UnaryOp::Floor, f64::floor),
        (UnaryOp::Ceil, f64::ceil),
        (UnaryOp::Reciprocal, |x| 1.0 / x),
        (UnaryOp::Log, f64::ln),
    ];
    for dtype in [DType::F32, DType::F64] {
        let (x, xv) = tensor(dtype, &[5], &xs);
        for (op, f) in cases {
            let y = eval1(std::slice::from_ref(&x), |b, v| b.unary(op, v[0]).unwrap()).to_f64_vec();
            for (got, x) in y.iter().zip(&xv) {
                let want = f(*x);
                let ok = (got.is_nan() && want.is_nan())
                    || got == &want
                    || (got - want).abs() <= 1e-6 * want.abs().max(1.0);
                assert!(ok, "{} {dtype} of {x}: {got} vs {want}", op.name());
            }
        }
    }
    let (x, _) = tensor(DType::F32, &[3], &[4.0, 0.25, -1.0]);
    let y = eval1(std::slice::from_ref(&x), |b, v| b.unary(UnaryOp::Sqrt, v[0]).unwrap()).to_f64_vec();
    assert_eq!(&y[..2], &[2.0, 0.5]);
    assert!(y[2].is_nan());
    let y = eval1(std::slice::from_ref(&x), |b, v| b.unary(UnaryOp::Rsqrt, v[0]).unwrap()).to_f64_vec();
    assert_eq!(&y[..2], &[0.5, 2.0]);
    let y = eval1(&[y_nan()], |b, v| b.unary(UnaryOp::IsNan, v[0]).unwrap());
    assert_eq!((y.dtype(), y.to_f64_vec()), (DType::Bool, vec![0.0, 1.0]));
    let y = eval1(&[of(DType::Bool, &[2], &[1.0, 0.0])], |b, v| b.unary(UnaryOp::Not, v[0]).unwrap());
    assert_eq!(y.to_f64_vec(), vec![0.0, 1.0]);
    let y = eval1(&[of(DType::I8, &[3], &[-128.0, -3.0, 4.0])], |b, v| b.unary(UnaryOp::Abs, v[0]).unwrap());
    assert_eq!(y.to_f64_vec(), vec![-128.0, 3.0, 4.0], "abs wraps like numpy");
}

fn y_nan() -> HostTensor {
    f32s(&[2], &[1.0, f32::NAN])
}

#[test]
fn comparisons_logic_where() {
    let a = f32s(&[3], &[1.0, 2.0, 3.0]);
    let b = f32s(&[1], &[2.0]);
    let out = eval(&[a, b], |bb, v| {
        [BinaryOp::Equal, BinaryOp::Less, BinaryOp::LessEqual, BinaryOp::Greater, BinaryOp::GreaterEqual]
            .iter()
            .map(|op| bb.binary(*op, v[0], v[1]).unwrap())
            .collect()
    });
    let got: Vec<Vec<f64>> = out.iter().map(|t| t.to_f64_vec()).collect();
    assert_eq!(
        got,
        vec![
            vec![0.0, 1.0, 0.0],
            vec![1.0, 0.0, 0.0],
            vec![1.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
            vec![0.0, 1.0, 1.0]
        ]
    );
    let p = of(DType::Bool, &[2, 1], &[1.0, 0.0]);
    let q = of(DType::Bool, &[2], &[1.0, 0.0]);
    let out = eval(&[p.clone(), q], |bb, v| {
        [BinaryOp::And, BinaryOp::Or, BinaryOp::Xor]
            .iter()
            .map(|op| bb.binary(*op, v[0], v[1]).unwrap())
            .collect()
    });
    let got: Vec<Vec<f64>> = out.iter().map(|t| t.to_f64_vec()).collect();
    assert_eq!(got, vec![vec![1.0, 0.0, 0.0, 0.0], vec![1.0, 1.0, 1.0, 0.0], vec![0.0, 1.0, 1.0, 0.0]]);
    // where with all three operands broadcasting.
    let y = eval1(&[p, f32s(&[3], &[1.0, 2.0, 3.0]), f32s(&[], &[-1.0])], |bb, v| {
        bb.select(v[0], v[1], v[2]).unwrap()
    });
    assert_eq!((y.dims().to_vec(), y.to_f64_vec()), (vec![2, 3], vec![1.0, 2.0, 3.0, -1.0, -1.0, -1.0]));
}

#[test]
fn layout_ops() {
    let x = f32s(&[2, 3, 4], &iota(24));
    // Transpose.
    let y = eval1(std::slice::from_ref(&x), |b, v| b.transpose(v[0], &[2, 0, 1]).unwrap());
    assert_eq!(y.dims(), &[4, 2, 3]);
    let v = y.to_f64_vec();
    assert_eq!(v[..6], [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
    // Reshape with a symbolic dim bound from the input, then expand.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let xi = b.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(4)]));
    let r = b.reshape(xi, vec![Dim::sym("n").mul(&Dim::Known(4))]).unwrap();
    let e = b.expand(xi, vec![Dim::Known(2), Dim::Known(1), Dim::Known(1)]).unwrap();
    g.add_output("r", r);
    g.add_output("e", e);
    let out = FallbackBackend::new().run(&g, &[f32s(&[3, 4], &iota(12))]).unwrap();
    assert_eq!(out[0].dims(), &[12]);
    assert_eq!(out[1].dims(), &[2, 3, 4]);
    assert_eq!(out[1].to_f64_vec()[12..], out[0].to_f64_vec()[..]);
    // Concat and split.
    let a = f32s(&[2, 1], &[1.0, 2.0]);
    let c = f32s(&[2, 2], &[3.0, 4.0, 5.0, 6.0]);
    let out = eval(&[a, c], |b, v| {
        let cat = b.concat(&[v[0], v[1]], 1).unwrap();
        let mut parts =
            b.add_multi(Op::Split { axis: -1, sizes: vec![Dim::Known(2), Dim::Known(1)] }, &[cat]).unwrap();
        parts.insert(0, cat);
        parts
    });
    assert_eq!(out[0].to_f64_vec(), vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    assert_eq!(out[1].to_f64_vec(), vec![1.0, 3.0, 2.0, 5.0]);
    assert_eq!(out[2].to_f64_vec(), vec![4.0, 6.0]);
    // Trilu, lower with k = 0 and upper with k = 1.
    let m = f32s(&[3, 3], &[1.0; 9]);
    let out = eval(&[m], |b, v| {
        vec![
            b.add(Op::Trilu { upper: false, k: 0 }, &[v[0]]).unwrap(),
            b.add(Op::Trilu { upper: true, k: 1 }, &[v[0]]).unwrap(),
        ]
    });
    assert_eq!(out[0].to_f64_vec(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn creation_ops() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("seq"), Dim::sym("batch")]));
    let _ = x;
    let r1 =
        b.add(Op::Range { start: 5.0, step: -2.0, len: Dim::sym("seq"), dtype: DType::I64 }, &[]).unwrap();
    let r2 = b.add(Op::Range { start: 0.5, step: 0.25, len: Dim::Known(3), dtype: DType::F16 }, &[]).unwrap();
    let f = b
        .add(Op::Full { shape: vec![Dim::Known(2), Dim::sym("batch")], value: 1.5, dtype: DType::I32 }, &[])
        .unwrap();
    let s = b.add(Op::SymConst(vec![Dim::sym("batch"), Dim::sym("seq").mul(&Dim::Known(2))]), &[]).unwrap();
    for (n, v) in [("r1", r1), ("r2", r2), ("f", f), ("s", s)] {
        g.add_output(n, v);
    }
    let out = FallbackBackend::new().run(&g, &[f32s(&[4, 2], &[0.0; 8])]).unwrap();
    assert_eq!(out[0].to_i64_vec(), vec![5, 3, 1, -1]);
    assert_eq!((out[1].dtype(), out[1].to_f64_vec()), (DType::F16, vec![0.5, 0.75, 1.0]));
    assert_eq!((out[2].dims().to_vec(), out[2].to_f64_vec()), (vec![2, 2], vec![1.0; 4]));
    assert_eq!(out[3].to_i64_vec(), vec![2, 8]);
}

#[test]
fn input_binding_errors() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(4)]));
    let ids = b.input("ids", TensorType::new(DType::I64, [Dim::sym("batch").mul(&Dim::sym("seq"))]));
    let s = b.reduce(ReduceOp::Sum, x, &[], false).unwrap();
    let c = b.cast(ids, DType::F32).unwrap();
    let y = b.add2(c, s).unwrap();
    g.add_output("y", y);
    let be = FallbackBackend::new();
    // Good inputs: batch*seq solved from x's dims.
    let ok = be.run(&g, &[f32s(&[2, 3, 4], &[0.0; 24]), i64s(&[6], &[0; 6])]);
    assert_eq!(ok.unwrap()[0].dims(), &[6]);
    let e = be.run(&g, &[f32s(&[2, 3, 4], &[0.0; 24])]).unwrap_err();
    assert_eq!(e, EvalError::InputCount { expected: 2, found: 1 });
    let e = be.run(&g, &[f32s(&[2, 3, 5], &[0.0; 30]), i64s(&[6], &[0; 6])]).unwrap_err().to_string();
    assert!(e.contains("input \"x\": expected f32[batch, seq, 4], got f32[2, 3, 5]: axis 2 is 5"), "{e}");
    let e = be.run(&g, &[HostTensor::from_f64(DType::F16, vec![2, 3, 4], &[0.0; 24]), i64s(&[6], &[0; 6])]);
    assert!(e.unwrap_err().to_string().contains("input \"x\": expected f32[batch, seq, 4], got f16"));
    let e = be.run(&g, &[f32s(&[2, 3, 4], &[0.0; 24]), i64s(&[7], &[0; 7])]).unwrap_err().to_string();
    assert!(e.contains("input \"ids\": axis 0 is 7, but batch*seq = 6"), "{e}");
    // A symbol bound twice inconsistently names both inputs.
    let mut g2 = Graph::new();
    let mut b = Builder::new(&mut g2);
    let p = b.input("p", TensorType::new(DType::F32, [Dim::sym("seq")]));
    let q = b.input("q", TensorType::new(DType::F32, [Dim::sym("seq")]));
    let y = b.add2(p, q).unwrap();
    g2.add_output("y", y);
    let e = be.run(&g2, &[f32s(&[2], &[0.0; 2]), f32s(&[3], &[0.0; 3])]).unwrap_err().to_string();
    assert!(e.contains("input \"q\": symbol 'seq' is 3 on axis 0, but 2 from input \"p\""), "{e}");
    // run_named.
    let mut named = HashMap::new();
    named.insert("q".to_string(), f32s(&[2], &[1.0, 2.0]));
    assert_eq!(be.run_named(&g2, &named).unwrap_err(), EvalError::MissingInput("p".into()));
    named.insert("p".to_string(), f32s(&[2], &[1.0, 2.0]));
    assert_eq!(be.run_named(&g2, &named).unwrap()[0].to_f64_vec(), vec![2.0, 4.0]);
}

#[test]
fn only_needed_nodes_run() {
    let x = i64s(&[2], &[4, 6]);
    let z = i64s(&[2], &[0, 0]);
    let g = graph_with(&[&x, &z], |b, v| {
        let _dead = b.div(v[0], v[1]).unwrap();
        vec![v[0], b.add2(v[0], v[0]).unwrap(), v[0]]
    });
    let out = FallbackBackend::new().run(&g, &[x, z]).unwrap();
    assert_eq!(out[0].to_i64_vec(), vec![4, 6]);
    assert_eq!(out[1].to_i64_vec(), vec![8, 12]);
    assert_eq!(out[2].to_i64_vec(), vec![4, 6]);
}

#[test]
fn dangling_values_are_errors() {
    let x = f32s(&[2], &[1.0, 2.0]);
    let mut g = graph_with(&[&x], |b, v| {
        let y = b.unary(UnaryOp::Neg, v[0]).unwrap();
        vec![b.unary(UnaryOp::Exp, y).unwrap()]
    });
    // Remove the middle node without fixing its reader.
    let neg = g.node_ids().find(|id| g.node(*id).op.name() == "neg").unwrap();
    g.remove_node(neg);
    let e = run_error(&g, &[x]);
    assert!(matches!(e, EvalError::Graph(_)), "{e:?}");
    assert!(e.to_string().contains("which does not exist"), "{e}");
}
