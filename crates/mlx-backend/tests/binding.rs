//! The MLX binding against hand-computed values and small f64 references.

use blockfuse_ir::{DType, HostTensor};
use blockfuse_mlx::array::{
    self, default_device, set_default_device, thread_device, with_device, BinaryOp, ReduceOp, UnaryOp,
};
use blockfuse_mlx::fast;
use blockfuse_mlx::{Array, Device, MlxError};
use blockfuse_testkit::noise;

fn f32a(dims: &[usize], values: &[f64]) -> Array {
    Array::from_host(&HostTensor::from_f64(DType::F32, dims.to_vec(), values)).unwrap()
}

fn vals(a: &Array) -> Vec<f64> {
    a.to_host().unwrap().to_f64_vec()
}

#[track_caller]
fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(worst <= tol, "max abs error {worst:e} > {tol:e}\n got {got:?}\nwant {want:?}");
}

/// Rounds through f32, as the inputs MLX sees.
fn f32_round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

#[test]
fn round_trip_every_dtype() {
    let values = [0.0, 1.0, -2.0, 3.5, 100.0, -7.25];
    for dtype in DType::ALL {
        let want = HostTensor::from_f64(dtype, vec![2, 3], &values);
        let a = Array::from_host(&want).unwrap();
        assert_eq!(a.dtype().unwrap(), dtype);
        assert_eq!(a.shape(), vec![2, 3]);
        assert_eq!((a.ndim(), a.size()), (2, 6));
        assert_eq!(a.to_host().unwrap(), want, "{dtype}");
        // rank 0 and empty tensors too
        let s = HostTensor::scalar(dtype, 1.0);
        assert_eq!(Array::from_host(&s).unwrap().to_host().unwrap(), s, "{dtype} scalar");
        let e = HostTensor::from_f64(dtype, vec![0, 4], &[]);
        assert_eq!(Array::from_host(&e).unwrap().to_host().unwrap(), e, "{dtype} empty");
    }
    let big = HostTensor::from_i64(vec![2], &[i64::MAX, i64::MIN + 1]);
    assert_eq!(Array::from_host(&big).unwrap().to_host().unwrap(), big);
}

#[test]
fn non_contiguous_results_come_out_row_major() {
    let a = f32a(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let t = a.transpose(&[1, 0]).unwrap();
    assert_eq!(t.shape(), vec![3, 2]);
    assert_eq!(vals(&t), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let b = f32a(&[3], &[1.0, 2.0, 3.0]).broadcast_to(&[2, 3]).unwrap();
    assert_eq!(vals(&b), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let s = a.slice(&[0, 2], &[2, -4], &[1, -2]).unwrap(); // a[:, 2::-2]
    assert_eq!(vals(&s), [3.0, 1.0, 6.0, 4.0]);
}

#[test]
fn elementwise_ops() {
    let x = f32a(&[6], &[-2.5, -0.5, 0.0, 0.5, 1.5, 4.0]);
    let u = |op| vals(&x.unary(op).unwrap());
    assert_eq!(u(UnaryOp::Neg), [2.5, 0.5, -0.0, -0.5, -1.5, -4.0]);
    assert_eq!(u(UnaryOp::Abs), [2.5, 0.5, 0.0, 0.5, 1.5, 4.0]);
    assert_eq!(u(UnaryOp::Floor), [-3.0, -1.0, 0.0, 0.0, 1.0, 4.0]);
    assert_eq!(u(UnaryOp::Ceil), [-2.0, -0.0, 0.0, 1.0, 2.0, 4.0]);
    assert_eq!(u(UnaryOp::Round), [-2.0, -0.0, 0.0, 0.0, 2.0, 4.0]); // half to even
    assert_eq!(u(UnaryOp::Sign), [-1.0, -1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(u(UnaryOp::Square), [6.25, 0.25, 0.0, 0.25, 2.25, 16.0]);
    let xs = [-2.5f64, -0.5, 0.0, 0.5, 1.5, 4.0];
    let map = |f: fn(f64) -> f64| xs.iter().map(|&v| f(v)).collect::<Vec<_>>();
    assert_close(&u(UnaryOp::Exp), &map(f64::exp), 1e-4);
    assert_close(&u(UnaryOp::Tanh), &map(f64::tanh), 1e-6);
    assert_close(&u(UnaryOp::Sigmoid), &map(|v| 1.0 / (1.0 + (-v).exp())), 1e-6);
    assert_close(&u(UnaryOp::Sin), &map(f64::sin), 1e-6);
    assert_close(&u(UnaryOp::Cos), &map(f64::cos), 1e-6);
    // erf(0.5) = 0.5204998778, erf(1.5) = 0.9661051465, erf(4) = 0.9999999846
    let erf = u(UnaryOp::Erf);
    assert_close(&erf[2..], &[0.0, 0.520_499_877_8, 0.966_105_146_5, 0.999_999_984_6], 1e-6);
    assert_close(&erf[..2], &[-0.999_593_047_9, -0.520_499_877_8], 1e-6);
    let p = f32a(&[3], &[0.25, 1.0, 4.0]);
    assert_close(&vals(&p.unary(UnaryOp::Sqrt).unwrap()), &[0.5, 1.0, 2.0], 1e-7);
    assert_close(&vals(&p.unary(UnaryOp::Rsqrt).unwrap()), &[2.0, 1.0, 0.5], 1e-6);
    assert_close(&vals(&p.unary(UnaryOp::Reciprocal).unwrap()), &[4.0, 1.0, 0.25], 1e-7);
    assert_close(&vals(&p.unary(UnaryOp::Log).unwrap()), &[-1.386_294_361, 0.0, 1.386_294_361], 1e-6);

    let a = f32a(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32a(&[3], &[2.0, -2.0, 4.0]); // broadcast over rows
    let bin = |op| vals(&a.binary(op, &b).unwrap());
    assert_eq!(bin(BinaryOp::Add), [3.0, 0.0, 7.0, 6.0, 3.0, 10.0]);
    assert_eq!(bin(BinaryOp::Sub), [-1.0, 4.0, -1.0, 2.0, 7.0, 2.0]);
    assert_eq!(bin(BinaryOp::Mul), [2.0, -4.0, 12.0, 8.0, -10.0, 24.0]);
    assert_eq!(bin(BinaryOp::Div), [0.5, -1.0, 0.75, 2.0, -2.5, 1.5]);
    assert_close(&bin(BinaryOp::Pow), &[1.0, 0.25, 81.0, 16.0, 0.04, 1296.0], 1e-4);
    assert_eq!(bin(BinaryOp::Maximum), [2.0, 2.0, 4.0, 4.0, 5.0, 6.0]);
    assert_eq!(bin(BinaryOp::Minimum), [1.0, -2.0, 3.0, 2.0, -2.0, 4.0]);
    assert_eq!(bin(BinaryOp::Remainder), [1.0, -0.0, 3.0, 0.0, -1.0, 2.0]);
    assert_eq!(bin(BinaryOp::FloorDivide), [0.0, -1.0, 0.0, 2.0, -3.0, 1.0]);
    let cmp = |op| {
        let r = a.binary(op, &b).unwrap();
        assert_eq!(r.dtype().unwrap(), DType::Bool);
        vals(&r)
    };
    assert_eq!(cmp(BinaryOp::Equal), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(cmp(BinaryOp::NotEqual), [1.0; 6]);
    assert_eq!(cmp(BinaryOp::Less), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(cmp(BinaryOp::LessEqual), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(cmp(BinaryOp::Greater), [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(cmp(BinaryOp::GreaterEqual), [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);

    let t = Array::from_host(&HostTensor::from_f64(DType::Bool, vec![4], &[0.0, 0.0, 1.0, 1.0])).unwrap();
    let f = Array::from_host(&HostTensor::from_f64(DType::Bool, vec![4], &[0.0, 1.0, 0.0, 1.0])).unwrap();
    assert_eq!(vals(&t.binary(BinaryOp::LogicalAnd, &f).unwrap()), [0.0, 0.0, 0.0, 1.0]);
    assert_eq!(vals(&t.binary(BinaryOp::LogicalOr, &f).unwrap()), [0.0, 1.0, 1.0, 1.0]);
    assert_eq!(vals(&t.binary(BinaryOp::LogicalXor, &f).unwrap()), [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(vals(&t.binary(BinaryOp::NotEqual, &f).unwrap()), [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(vals(&t.unary(UnaryOp::LogicalNot).unwrap()), [1.0, 1.0, 0.0, 0.0]);

    let picked = Array::where_(&t, &f32a(&[4], &[1.0, 2.0, 3.0, 4.0]), &f32a(&[], &[-1.0])).unwrap();
    assert_eq!(vals(&picked), [-1.0, -1.0, 3.0, 4.0]);
    let i = x.astype(DType::I32).unwrap();
    assert_eq!(i.dtype().unwrap(), DType::I32);
    assert_eq!(vals(&i), [-2.0, 0.0, 0.0, 0.0, 1.0, 4.0]); // truncation
}

#[test]
fn reductions_softmax_matmul() {
    let a = f32a(&[2, 3], &[1.0, 5.0, 3.0, 4.0, 2.0, 6.0]);
    let r = |op, axes: &[i32], keep| {
        let out = a.reduce(op, axes, keep).unwrap();
        (out.shape(), vals(&out))
    };
    assert_eq!(r(ReduceOp::Sum, &[1], false), (vec![2], vec![9.0, 12.0]));
    assert_eq!(r(ReduceOp::Sum, &[0, 1], true), (vec![1, 1], vec![21.0]));
    assert_eq!(r(ReduceOp::Mean, &[-1], true), (vec![2, 1], vec![3.0, 4.0]));
    assert_eq!(r(ReduceOp::Max, &[0], false), (vec![3], vec![4.0, 5.0, 6.0]));
    assert_eq!(r(ReduceOp::Min, &[1], false), (vec![2], vec![1.0, 2.0]));
    assert_eq!(r(ReduceOp::Prod, &[1], false), (vec![2], vec![15.0, 48.0]));
    let am = a.reduce(ReduceOp::ArgMax, &[1], false).unwrap();
    assert_eq!(am.dtype().unwrap(), DType::I64);
    assert_eq!(vals(&am), [1.0, 2.0]);
    assert_eq!(vals(&a.reduce(ReduceOp::ArgMin, &[0], true).unwrap()), [0.0, 1.0, 0.0]);
    assert!(a.reduce(ReduceOp::ArgMax, &[0, 1], false).is_err());
    let gt = a.binary(BinaryOp::Greater, &f32a(&[], &[2.5])).unwrap();
    assert_eq!(vals(&gt.reduce(ReduceOp::All, &[1], false).unwrap()), [0.0, 0.0]);
    assert_eq!(vals(&gt.reduce(ReduceOp::Any, &[1], false).unwrap()), [1.0, 1.0]);

    let sm = vals(&a.softmax(&[-1], true).unwrap());
    let mut want = Vec::new();
    for row in [[1.0f64, 5.0, 3.0], [4.0, 2.0, 6.0]] {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        want.extend(row.iter().map(|v| (v - m).exp() / z));
    }
    assert_close(&sm, &want, 1e-6);

    let b = f32a(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 2.0, -1.0]);
    let mm = a.matmul(&b).unwrap();
    assert_eq!(mm.shape(), vec![2, 2]);
    assert_eq!(vals(&mm), [7.0, 2.0, 16.0, -4.0]);
}

#[test]
fn shape_ops_and_constructors() {
    let a = Array::arange(0.0, 6.0, 1.0, DType::F32).unwrap().reshape(&[2, -1]).unwrap();
    assert_eq!(a.shape(), vec![2, 3]);
    let e = a.expand_dims(&[0, 3]).unwrap();
    assert_eq!(e.shape(), vec![1, 2, 3, 1]);
    assert_eq!(e.squeeze(&[3]).unwrap().shape(), vec![1, 2, 3]);
    assert_eq!(e.squeeze(&[]).unwrap().shape(), vec![2, 3]);
    assert_eq!(a.transpose(&[]).unwrap().shape(), vec![3, 2]);

    let c = Array::concatenate(&[&a, &a], 1).unwrap();
    assert_eq!(c.shape(), vec![2, 6]);
    assert_eq!(vals(&c), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0]);
    let parts = c.split(&[1, 4], 1).unwrap();
    let shapes: Vec<_> = parts.iter().map(Array::shape).collect();
    assert_eq!(shapes, [vec![2, 1], vec![2, 3], vec![2, 2]]);
    assert_eq!(vals(&parts[2]), [1.0, 2.0, 4.0, 5.0]);

    let idx = Array::from_host(&HostTensor::from_i64(vec![2, 2], &[2, 0, -1, 1])).unwrap();
    let g = a.take(&idx, 1).unwrap();
    assert_eq!(g.shape(), vec![2, 2, 2]);
    assert_eq!(vals(&g), [2.0, 0.0, 2.0, 1.0, 5.0, 3.0, 5.0, 4.0]);

    let ar = Array::arange(5.0, -1.0, -2.0, DType::I64).unwrap();
    assert_eq!(ar.to_host().unwrap(), HostTensor::from_i64(vec![3], &[5, 3, 1]));
    let f = Array::full(&[2, 2], 1.5, DType::BF16).unwrap();
    assert_eq!(f.to_host().unwrap(), HostTensor::from_f64(DType::BF16, vec![2, 2], &[1.5; 4]));
    let s = Array::scalar(3.0, DType::Bool).unwrap();
    assert_eq!(s.to_host().unwrap(), HostTensor::scalar(DType::Bool, 1.0));

    let ones = Array::full(&[3, 3], 1.0, DType::F32).unwrap();
    assert_eq!(vals(&ones.tril(0).unwrap()), [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(vals(&ones.triu(1).unwrap()), [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);

    let clone = a.clone();
    array::eval(&[&a, &clone]).unwrap();
    assert_eq!(format!("{clone:?}"), "Array(f32[2, 3])");
}

fn rms_norm_ref(x: &[f64], d: usize, w: Option<&[f64]>, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + eps).sqrt();
            row.iter().enumerate().map(move |(i, v)| v * r * w.map_or(1.0, |w| w[i]))
        })
        .collect()
}

fn layer_norm_ref(x: &[f64], d: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mu = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            let r = 1.0 / (var + eps).sqrt();
            row.iter()
                .enumerate()
                .map(move |(i, v)| (v - mu) * r * w.map_or(1.0, |w| w[i]) + b.map_or(0.0, |b| b[i]))
        })
        .collect()
}

#[test]
fn norms_match_f64_reference() {
    for d in [31usize, 32, 33] {
        let x = f32_round(&noise(4 * d, d as u64));
        let w = f32_round(&noise(d, 7 + d as u64));
        let bias = f32_round(&noise(d, 11 + d as u64));
        let xa = f32a(&[2, 2, d], &x);
        let wa = f32a(&[d], &w);
        let ba = f32a(&[d], &bias);
        for with_w in [false, true] {
            let got = vals(&fast::rms_norm(&xa, with_w.then_some(&wa), 1e-5).unwrap());
            assert_close(&got, &rms_norm_ref(&x, d, with_w.then_some(&w), 1e-5), 1e-5);
            for with_b in [false, true] {
                let got = fast::layer_norm(&xa, with_w.then_some(&wa), with_b.then_some(&ba), 1e-5);
                let want = layer_norm_ref(&x, d, with_w.then_some(&w), with_b.then_some(&bias), 1e-5);
                assert_close(&vals(&got.unwrap()), &want, 1e-5);
            }
        }
    }
    // a wrong-size weight is an error, not an abort
    let err = fast::rms_norm(&f32a(&[2, 4], &[1.0; 8]), Some(&f32a(&[3], &[1.0; 3])), 1e-5)
        .and_then(|a| a.to_host().map(|_| a));
    assert!(matches!(err, Err(MlxError::Mlx(_))), "{err:?}");
}

/// RoPE on `{B, H, T, D}` in f64; `inv` are the inverse frequencies (dims/2 of them).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn rope_ref(
    x: &[f64],
    shape: [usize; 4],
    dims: usize,
    traditional: bool,
    inv: &[f64],
    scale: f64,
    offsets: &[f64],
) -> Vec<f64> {
    let [b, h, t, d] = shape;
    let half = dims / 2;
    let mut out = x.to_vec();
    for bi in 0..b {
        for hi in 0..h {
            for ti in 0..t {
                let base = ((bi * h + hi) * t + ti) * d;
                let pos = (offsets[bi] + ti as f64) * scale;
                for i in 0..half {
                    let (c, s) = ((pos * inv[i]).cos(), (pos * inv[i]).sin());
                    let (j, k) = if traditional { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let (x1, x2) = (x[base + j], x[base + k]);
                    out[base + j] = x1 * c - x2 * s;
                    out[base + k] = x1 * s + x2 * c;
                }
            }
        }
    }
    out
}

#[test]
fn rope_matches_f64_reference() {
    let shape = [2usize, 3, 5, 8];
    let n: usize = shape.iter().product();
    let x = f32_round(&noise(n, 3));
    let xa = f32a(&shape, &x);
    for dims in [8usize, 4] {
        for traditional in [false, true] {
            for base in [10_000.0f64, 1e6] {
                for scale in [1.0f64, 2.0] {
                    let inv: Vec<f64> =
                        (0..dims / 2).map(|i| base.powf(-2.0 * i as f64 / dims as f64)).collect();
                    let d = dims as i32;
                    let b = Some(base as f32);
                    let s = scale as f32;
                    // int offset
                    let got = fast::rope(&xa, d, traditional, b, s, 3, None).unwrap();
                    let want = rope_ref(&x, shape, dims, traditional, &inv, scale, &[3.0, 3.0]);
                    assert_close(&vals(&got), &want, 1e-5);
                    // scalar array offset, and one offset per batch row
                    let off = Array::from_host(&HostTensor::scalar(DType::I32, 3.0)).unwrap();
                    let got = fast::rope(&xa, d, traditional, b, s, &off, None).unwrap();
                    assert_close(&vals(&got), &want, 1e-5);
                    let offs =
                        Array::from_host(&HostTensor::from_f64(DType::I32, vec![2], &[0.0, 4.0])).unwrap();
                    let got = fast::rope(&xa, d, traditional, b, s, &offs, None).unwrap();
                    let want = rope_ref(&x, shape, dims, traditional, &inv, scale, &[0.0, 4.0]);
                    assert_close(&vals(&got), &want, 1e-5);
                }
            }
            // freqs are periods: inverse frequency 1/freqs_i
            let freqs: Vec<f64> = (0..dims / 2).map(|i| 1.0 + 3.0 * i as f64).collect();
            let inv: Vec<f64> = freqs.iter().map(|f| 1.0 / f).collect();
            let fa = f32a(&[dims / 2], &freqs);
            let got = fast::rope(&xa, dims as i32, traditional, None, 1.0, 2, Some(&fa)).unwrap();
            let want = rope_ref(&x, shape, dims, traditional, &inv, 1.0, &[2.0, 2.0]);
            assert_close(&vals(&got), &want, 1e-5);
        }
    }
    // errors: odd dims, both base and freqs, neither
    let fa = f32a(&[4], &[1.0; 4]);
    assert!(fast::rope(&xa, 7, false, Some(1e4), 1.0, 0, None).is_err());
    assert!(fast::rope(&xa, 8, false, Some(1e4), 1.0, 0, Some(&fa)).is_err());
    assert!(fast::rope(&xa, 8, false, None, 1.0, 0, None).is_err());
}

/// Mask of the reference SDPA: additive `{Tq, Tk}`, or boolean (true = keep).
enum RefMask<'a> {
    Additive(&'a [f64]),
    Keep(&'a [bool]),
}

/// SDPA on q `{B, Nq, Tq, D}`, k `{B, Nkv, Tk, D}`, v `{B, Nkv, Tk, Dv}` in f64.
#[allow(clippy::too_many_arguments)]
fn sdpa_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    [b, nq, nkv, tq, tk, d, dv]: [usize; 7],
    scale: f64,
    causal: bool,
    mask: Option<RefMask>,
    sinks: Option<&[f64]>,
) -> Vec<f64> {
    let mut out = vec![0.0; b * nq * tq * dv];
    for bi in 0..b {
        for h in 0..nq {
            let kh = h / (nq / nkv);
            for i in 0..tq {
                let mut s: Vec<f64> = (0..tk)
                    .map(|j| {
                        let qo = ((bi * nq + h) * tq + i) * d;
                        let ko = ((bi * nkv + kh) * tk + j) * d;
                        let mut dot = scale * (0..d).map(|e| q[qo + e] * k[ko + e]).sum::<f64>();
                        if causal && j > i + tk - tq {
                            dot = f64::NEG_INFINITY;
                        }
                        match &mask {
                            Some(RefMask::Additive(m)) => dot += m[i * tk + j],
                            Some(RefMask::Keep(m)) if !m[i * tk + j] => dot = f64::NEG_INFINITY,
                            _ => {}
                        }
                        dot
                    })
                    .collect();
                let sink = sinks.map_or(f64::NEG_INFINITY, |s| s[h]);
                let m = s.iter().cloned().fold(sink, f64::max);
                s.iter_mut().for_each(|x| *x = (*x - m).exp());
                let z = s.iter().sum::<f64>() + (sink - m).exp();
                for e in 0..dv {
                    let acc: f64 = (0..tk).map(|j| s[j] * v[((bi * nkv + kh) * tk + j) * dv + e]).sum();
                    out[((bi * nq + h) * tq + i) * dv + e] = acc / z;
                }
            }
        }
    }
    out
}

#[test]
fn sdpa_matches_f64_reference() {
    for (tq, tk) in [(4usize, 4usize), (3, 6), (1, 5)] {
        let (b, nq, nkv, d, dv) = (2usize, 4usize, 2usize, 8usize, 6usize);
        let dims = [b, nq, nkv, tq, tk, d, dv];
        let q = f32_round(&noise(b * nq * tq * d, 1));
        let k = f32_round(&noise(b * nkv * tk * d, 2));
        let v = f32_round(&noise(b * nkv * tk * dv, 3));
        let qa = f32a(&[b, nq, tq, d], &q);
        let ka = f32a(&[b, nkv, tk, d], &k);
        let va = f32a(&[b, nkv, tk, dv], &v);
        let scale = 1.0 / (d as f64).sqrt();
        let sc = scale as f32;
        let run = |causal, mask: Option<&Array>, sinks: Option<&Array>| {
            vals(&fast::scaled_dot_product_attention(&qa, &ka, &va, sc, causal, mask, sinks).unwrap())
        };
        let want = |causal, mask, sinks| sdpa_ref(&q, &k, &v, dims, scale, causal, mask, sinks);
        assert_close(&run(false, None, None), &want(false, None, None), 1e-5);
        assert_close(&run(true, None, None), &want(true, None, None), 1e-5);

        let add = f32_round(&noise(tq * tk, 9));
        let add_a = f32a(&[tq, tk], &add);
        let got = run(false, Some(&add_a), None);
        assert_close(&got, &want(false, Some(RefMask::Additive(&add)), None), 1e-5);

        let keep: Vec<bool> = (0..tq * tk).map(|i| i % tk == 0 || i % 3 != 1).collect();
        let keep_f: Vec<f64> = keep.iter().map(|&k| k as u8 as f64).collect();
        let keep_a = Array::from_host(&HostTensor::from_f64(DType::Bool, vec![tq, tk], &keep_f)).unwrap();
        let got = run(false, Some(&keep_a), None);
        assert_close(&got, &want(false, Some(RefMask::Keep(&keep)), None), 1e-5);

        let sinks = f32_round(&noise(nq, 5));
        let sinks_a = f32a(&[nq], &sinks);
        assert_close(&run(false, None, Some(&sinks_a)), &want(false, None, Some(&sinks)), 1e-5);
        assert_close(&run(true, None, Some(&sinks_a)), &want(true, None, Some(&sinks)), 1e-5);

        let both = fast::scaled_dot_product_attention(&qa, &ka, &va, sc, true, Some(&add_a), None);
        assert!(matches!(both, Err(MlxError::Mlx(m)) if m.contains("mask")));
    }
}

#[test]
fn invalid_ops_return_mlx_errors() {
    let six = Array::arange(0.0, 6.0, 1.0, DType::F32).unwrap();
    match six.reshape(&[4]) {
        Err(MlxError::Mlx(m)) => {
            assert!(m.contains("[reshape]") && m.contains("size 6"), "{m}")
        }
        other => panic!("expected an MLX error, got {other:?}"),
    }
    let a = six.reshape(&[2, 3]).unwrap();
    let err = a.matmul(&a).unwrap_err();
    assert!(err.to_string().starts_with("MLX: [matmul]"), "{err}");
    assert!(Array::concatenate(&[], 0).is_err());
    assert!(a.slice(&[0], &[1, 2], &[1]).is_err());
    assert!(a.take(&a, 0).is_err()); // float indices
                                     // u8 sums are u32 in MLX, which blockfuse has no DType for
    let u8s = Array::from_host(&HostTensor::from_f64(DType::U8, vec![2], &[1.0, 2.0])).unwrap();
    let sum = u8s.reduce(ReduceOp::Sum, &[0], false).unwrap();
    assert!(matches!(sum.to_host(), Err(MlxError::Binding(m)) if m.contains("uint32")));
    assert_eq!(vals(&sum.astype(DType::I64).unwrap()), [3.0]);
    // still usable after the errors
    assert_eq!(vals(&a.reduce(ReduceOp::Sum, &[0, 1], false).unwrap()), [15.0]);
}

#[test]
fn devices() {
    assert!(array::version().starts_with("0.32.4"), "{}", array::version());
    assert!(Device::Cpu.is_available());
    assert!(!Device::Gpu.is_available(), "the tests link the CPU-only MLX");
    assert!(matches!(set_default_device(Device::Gpu), Err(MlxError::Mlx(m)) if m.contains("gpu")));
    assert_eq!(default_device().unwrap(), Device::Cpu);
    assert!(with_device(Device::Gpu, || ()).is_err());
    assert_eq!(thread_device(), None);
    let got = with_device(Device::Cpu, || {
        assert_eq!(thread_device(), Some(Device::Cpu));
        let x = f32a(&[2], &[1.0, 2.0]);
        vals(&x.binary(BinaryOp::Add, &x).unwrap())
    })
    .unwrap();
    assert_eq!(got, [2.0, 4.0]);
    assert_eq!(thread_device(), None);
    array::synchronize().unwrap();
}
