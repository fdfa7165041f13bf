//! Every primitive op on MLX against the reference evaluator: integers and bools exactly,
//! floats within a small tolerance (or one ulp), plus random chains of ops from a fixed seed.

mod common;

use blockfuse_ir::{
    BinaryOp, Bound, Builder, DType, Dim, Graph, HostTensor, Op, ReduceOp, SliceSpec, TensorType, UnaryOp,
};
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const FLOATS: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];
const INTS: [DType; 4] = [DType::I64, DType::I32, DType::I8, DType::U8];

/// Float tolerance: MLX's own float kernels differ from the reference's in the last bits;
/// MLX's f64 transcendental functions are only f32-accurate on the CPU.
fn ftol(d: DType) -> f64 {
    match d {
        DType::F16 => 1e-3,
        DType::BF16 => 8e-3,
        DType::F64 => 1e-6,
        _ => 2e-6,
    }
}

/// A graph with the inputs' types feeding one `op` node; every output of the node is a
/// graph output.
fn op_graph(op: Op, types: &[TensorType]) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let args: Vec<_> = types.iter().enumerate().map(|(i, t)| b.input(&format!("in{i}"), t.clone())).collect();
    let outs = b.add_multi(op, &args).expect("the op accepts its operands");
    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), v);
    }
    g
}

/// Runs `g` on MLX and on the reference and compares every output.
#[track_caller]
fn check_graph_outputs(g: &Graph, inputs: &[HostTensor], tol: f64, what: &str) -> Vec<HostTensor> {
    let want = reference(g, inputs);
    let got = mlx().run(g, inputs).unwrap_or_else(|e| panic!("{what}: MLX failed: {e}"));
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_close(a, b, tol, &format!("{what}, output {i}"));
    }
    got
}

#[track_caller]
fn check_op(op: Op, inputs: &[HostTensor], tol: f64, what: &str) -> Vec<HostTensor> {
    let types: Vec<TensorType> = inputs.iter().map(type_of).collect();
    check_graph_outputs(&op_graph(op, &types), inputs, tol, what)
}

#[test]
fn unary_floats() {
    use UnaryOp::*;
    for d in FLOATS {
        let x = rand(d, &[3, 17], 1, 3.0);
        let pos = tensor(d, &[5], &[0.01, 0.5, 1.0, 7.5, 100.0]);
        let mut special = vec![-2.5, -0.5, 0.0, 0.5, 1.5, 2.5, f64::INFINITY, f64::NEG_INFINITY];
        special.push(f64::NAN);
        let special = tensor(d, &[9], &special);
        for op in [Neg, Abs, Reciprocal, Square, Exp, Erf, Tanh, Sigmoid, Sin, Cos, Relu, Floor, Ceil, IsNan]
        {
            check_op(Op::Unary(op), std::slice::from_ref(&x), ftol(d), &format!("{} {d}", op.name()));
        }
        for op in [Sqrt, Rsqrt, Log] {
            check_op(Op::Unary(op), std::slice::from_ref(&pos), ftol(d), &format!("{} {d}", op.name()));
        }
        for op in [Neg, Abs, Floor, Ceil, IsNan, Relu, Square, Sigmoid, Tanh] {
            check_op(
                Op::Unary(op),
                std::slice::from_ref(&special),
                ftol(d),
                &format!("{} {d} specials", op.name()),
            );
        }
    }
}

#[test]
fn unary_integers_and_bool() {
    use UnaryOp::*;
    for d in INTS {
        let x = tensor(d, &[7], &[-128.0, -5.0, -1.0, 0.0, 1.0, 100.0, 127.0]);
        let big = tensor(d, &[3], &[20000.0, -70000.0, 3e9]);
        for op in [Neg, Abs, Square, Relu] {
            check_op(Op::Unary(op), std::slice::from_ref(&x), 0.0, &format!("{} {d}", op.name()));
            check_op(Op::Unary(op), std::slice::from_ref(&big), 0.0, &format!("{} {d} wrapping", op.name()));
        }
    }
    let b = tensor(DType::Bool, &[2, 2], &[1.0, 0.0, 0.0, 1.0]);
    check_op(Op::Unary(Not), &[b], 0.0, "not");
}

#[test]
fn binary_floats_with_broadcasting() {
    use BinaryOp::*;
    for d in FLOATS {
        let a = rand(d, &[2, 3, 4], 10, 4.0);
        for (i, bd) in [vec![2, 3, 4], vec![4], vec![], vec![3, 1], vec![2, 1, 1]].iter().enumerate() {
            let b = rand(d, bd, 11 + i as u64, 3.0);
            for op in [Add, Sub, Mul, Div, Max, Min, Mod, Equal, Less, LessEqual, Greater, GreaterEqual] {
                check_op(
                    Op::Binary(op),
                    &[a.clone(), b.clone()],
                    ftol(d),
                    &format!("{} {d} {bd:?}", op.name()),
                );
            }
        }
        // pow of positive bases, and integral exponents of negative ones
        let base = tensor(d, &[4], &[0.5, 1.0, 2.0, 3.5]);
        let e = tensor(d, &[4], &[-1.5, 0.0, 2.0, 0.5]);
        check_op(Op::Binary(Pow), &[base, e], ftol(d), &format!("pow {d}"));
        let base = tensor(d, &[3], &[-2.0, -0.5, -3.0]);
        let e = tensor(d, &[3], &[2.0, 3.0, -1.0]);
        check_op(Op::Binary(Pow), &[base, e], ftol(d), &format!("pow {d} negative base"));
        // NaN through max/min, mod with negative operands and zero
        let a = tensor(d, &[6], &[f64::NAN, 1.0, -7.5, 7.5, -7.5, 3.0]);
        let b = tensor(d, &[6], &[1.0, f64::NAN, 2.0, -2.0, -2.0, 0.0]);
        for op in [Max, Min, Mod, Div, Equal, Less] {
            check_op(
                Op::Binary(op),
                &[a.clone(), b.clone()],
                ftol(d),
                &format!("{} {d} specials", op.name()),
            );
        }
    }
}

#[test]
fn binary_integers_and_bools() {
    use BinaryOp::*;
    for d in INTS {
        // (u8 takes the magnitudes: negative values would saturate to 0)
        let u =
            |v: &[f64]| -> Vec<f64> { v.iter().map(|x| if d == DType::U8 { x.abs() } else { *x }).collect() };
        let a = tensor(d, &[2, 4], &u(&[7.0, -7.0, 7.0, -7.0, 0.0, 1.0, 100.0, -128.0]));
        let b = tensor(d, &[2, 4], &u(&[2.0, 2.0, -2.0, -2.0, 3.0, -1.0, 7.0, -1.0]));
        let row = tensor(d, &[4], &u(&[3.0, -3.0, 5.0, 1.0]));
        for op in [Add, Sub, Mul, Max, Min, Div, Mod, Equal, Less, LessEqual, Greater, GreaterEqual] {
            check_op(Op::Binary(op), &[a.clone(), b.clone()], 0.0, &format!("{} {d}", op.name()));
            check_op(Op::Binary(op), &[a.clone(), row.clone()], 0.0, &format!("{} {d} broadcast", op.name()));
        }
        let base = tensor(d, &[5], &[2.0, -3.0, 7.0, 0.0, 10.0]);
        let e = tensor(d, &[5], &[10.0, 3.0, 0.0, 2.0, 25.0]);
        check_op(Op::Binary(Pow), &[base, e], 0.0, &format!("pow {d} (wrapping)"));
    }
    // MIN / −1 and MIN mod −1 wrap instead of trapping
    for (d, min) in [(DType::I64, i64::MIN), (DType::I32, i32::MIN as i64)] {
        let a = HostTensor::from_i64(vec![2], &[min, min]).cast(d);
        let b = HostTensor::from_i64(vec![2], &[-1, 3]).cast(d);
        check_op(Op::Binary(Div), &[a.clone(), b.clone()], 0.0, &format!("{d} MIN / -1"));
        check_op(Op::Binary(Mod), &[a, b], 0.0, &format!("{d} MIN mod -1"));
    }
    let p = tensor(DType::Bool, &[4], &[0.0, 0.0, 1.0, 1.0]);
    let q = tensor(DType::Bool, &[4], &[0.0, 1.0, 0.0, 1.0]);
    for op in [And, Or, Xor, Equal, Less, Greater] {
        check_op(Op::Binary(op), &[p.clone(), q.clone()], 0.0, op.name());
    }
}

#[test]
fn where_and_casts() {
    let c = tensor(DType::Bool, &[2, 1], &[1.0, 0.0]);
    for d in FLOATS.into_iter().chain(INTS).chain([DType::Bool]) {
        let a = rand(d, &[2, 3], 20, 50.0);
        let b = rand(d, &[3], 21, 50.0);
        check_op(Op::Where, &[c.clone(), a, b], 0.0, &format!("where {d}"));
    }
    let values = [
        0.0,
        1.0,
        -1.0,
        0.4,
        -0.6,
        2.5,
        -2.5,
        127.9,
        128.0,
        -129.0,
        255.5,
        256.0,
        1e5,
        -1e5,
        3e9,
        -3e9,
        1e20,
        -1e20,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    for from in FLOATS.into_iter().chain(INTS).chain([DType::Bool]) {
        let x = tensor(from, &[values.len()], &values);
        for to in DType::ALL {
            check_op(Op::Cast(to), std::slice::from_ref(&x), 0.0, &format!("cast {from} → {to}"));
        }
    }
}

#[test]
fn reductions() {
    for d in FLOATS.into_iter().chain(INTS) {
        let x = rand(d, &[3, 4, 5], 30, if d.is_int() { 100.0 } else { 2.0 });
        for op in ReduceOp::ALL {
            for axes in [vec![], vec![0], vec![-1], vec![0, 2], vec![1, -3]] {
                for keepdims in [false, true] {
                    // integer products of 20+ values wrap identically; float ones overflow
                    let t = if d.is_int() { 0.0 } else { ftol(d) };
                    check_op(
                        Op::Reduce { op: *op, axes: axes.clone(), keepdims },
                        std::slice::from_ref(&x),
                        t,
                        &format!("{} {d} axes {axes:?} keepdims {keepdims}", op.name()),
                    );
                }
            }
        }
    }
}

#[test]
fn softmax_and_matmul() {
    for d in FLOATS {
        let x = rand(d, &[2, 3, 7], 40, 6.0);
        for axis in [0, 1, -1] {
            check_op(
                Op::Softmax { axis },
                std::slice::from_ref(&x),
                ftol(d),
                &format!("softmax {d} axis {axis}"),
            );
        }
    }
    let shapes: [(&[usize], &[usize]); 7] = [
        (&[2, 3], &[3, 4]),
        (&[2, 1, 3, 4], &[5, 4, 2]),
        (&[3], &[3, 4]),
        (&[2, 3], &[3]),
        (&[3], &[3]),
        (&[4, 2, 3], &[3, 2]),
        (&[1, 6], &[6, 1]),
    ];
    for d in FLOATS.into_iter().chain(INTS) {
        for (i, (sa, sb)) in shapes.iter().enumerate() {
            let scale = if d.is_int() { 20.0 } else { 1.0 };
            let a = rand(d, sa, 50 + i as u64, scale);
            let b = rand(d, sb, 60 + i as u64, scale);
            let t = if d.is_int() { 0.0 } else { ftol(d).max(1e-5) };
            check_op(Op::MatMul, &[a, b], t, &format!("matmul {d} {sa:?} @ {sb:?}"));
        }
    }
}

#[test]
fn layout_ops() {
    let x = rand(DType::F32, &[2, 3, 4], 70, 1.0);
    let i = HostTensor::from_i64(vec![2, 3, 4], &(0..24).collect::<Vec<_>>()).cast(DType::I32);
    for x in [x, i] {
        let k = |v: &[usize]| v.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>();
        check_op(Op::Transpose { perm: vec![2, 0, 1] }, std::slice::from_ref(&x), 0.0, "transpose");
        check_op(Op::Reshape { shape: k(&[4, 6]) }, std::slice::from_ref(&x), 0.0, "reshape");
        check_op(Op::Expand { shape: k(&[5, 2, 3, 4]) }, std::slice::from_ref(&x), 0.0, "expand");
        check_op(Op::Expand { shape: k(&[3, 1]) }, std::slice::from_ref(&x), 0.0, "expand both ways");
        check_op(Op::Concat { axis: 1 }, &[x.clone(), x.clone(), x.clone()], 0.0, "concat");
        check_op(Op::Concat { axis: -1 }, std::slice::from_ref(&x), 0.0, "concat of one");
        check_op(Op::Split { axis: 2, sizes: k(&[1, 0, 3]) }, std::slice::from_ref(&x), 0.0, "split");
        check_op(Op::Split { axis: -2, sizes: k(&[3]) }, std::slice::from_ref(&x), 0.0, "split into one");
        for (upper, kk) in [(false, 0), (true, 0), (false, -1), (true, 2), (false, 9), (true, -9)] {
            check_op(
                Op::Trilu { upper, k: kk },
                std::slice::from_ref(&x),
                0.0,
                &format!("trilu {upper} {kk}"),
            );
        }
        let idx = HostTensor::from_i64(vec![2, 2], &[0, -1, 2, -3]);
        check_op(Op::Gather { axis: 1 }, &[x.clone(), idx.clone()], 0.0, "gather 2-D negative");
        check_op(Op::Gather { axis: -1 }, &[x.clone(), idx.cast(DType::I8)], 0.0, "gather i8");
        check_op(
            Op::Gather { axis: 0 },
            &[x.clone(), HostTensor::from_i64(vec![], &[-1])],
            0.0,
            "gather scalar",
        );
        check_op(
            Op::Gather { axis: 2 },
            &[x.clone(), tensor(DType::U8, &[3], &[3.0, 0.0, 3.0])],
            0.0,
            "gather u8",
        );
    }
}

fn spec(axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> SliceSpec {
    SliceSpec {
        axes: axes.to_vec(),
        starts: starts.iter().map(|&s| Bound::Const(s)).collect(),
        ends: ends.iter().map(|&e| Bound::Const(e)).collect(),
        steps: steps.to_vec(),
    }
}

#[test]
fn slices() {
    let x = HostTensor::from_i64(vec![4, 6], &(0..24).collect::<Vec<_>>());
    let cases = [
        spec(&[1], &[1], &[4], &[1]),
        spec(&[1], &[0], &[i64::MAX], &[2]),
        spec(&[1], &[-1], &[i64::MIN], &[-1]),
        spec(&[1], &[i64::MAX], &[-100], &[-2]),
        spec(&[0, 1], &[-2, 5], &[100, 0], &[1, -3]),
        spec(&[-1], &[4], &[2], &[1]),
        spec(&[0], &[3], &[-5], &[-1]),
        spec(&[1], &[-100], &[100], &[7]),
        spec(&[1], &[5], &[-100], &[-9]),
        spec(&[0, 1], &[0, 0], &[0, 6], &[1, 1]),
    ];
    for s in cases {
        let what = format!("slice {s:?}");
        check_op(Op::Slice(s), std::slice::from_ref(&x), 0.0, &what);
    }
    // an empty axis walked backward
    let e = HostTensor::from_i64(vec![0, 3], &[]);
    check_op(Op::Slice(spec(&[0], &[-1], &[i64::MIN], &[-1])), &[e], 0.0, "empty backward");
}

#[test]
fn leaves_and_symbolic_dims() {
    // x {batch, seq}: range over seq, symbolic slice end, sym_const, full, reshape with
    // symbols, constants.
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [batch.clone(), seq.clone()]));
    let n = b.input("n", TensorType::new(DType::I64, [Dim::sym("n")]));
    let r = b.add(Op::Range { start: 2.0, step: 0.5, len: seq.clone(), dtype: DType::F32 }, &[]).unwrap();
    let xr = b.add2(x, r).unwrap();
    let ri = b.add(Op::Range { start: -3.0, step: 2.0, len: seq.clone(), dtype: DType::I8 }, &[]).unwrap();
    let rf = b.add(Op::Range { start: 0.5, step: 100.25, len: seq.clone(), dtype: DType::U8 }, &[]).unwrap();
    let sc =
        b.add(Op::SymConst(vec![batch.clone(), seq.clone(), batch.mul(&seq), Dim::Known(7)]), &[]).unwrap();
    let full = b
        .add(Op::Full { shape: vec![batch.clone(), Dim::Known(2)], value: -1.7, dtype: DType::I32 }, &[])
        .unwrap();
    let flat = b.reshape(x, vec![batch.mul(&seq)]).unwrap();
    let back = b.reshape(flat, vec![batch.clone(), seq.clone()]).unwrap();
    let head = b
        .add(
            Op::Slice(SliceSpec {
                axes: vec![1],
                starts: vec![Bound::Const(0)],
                ends: vec![Bound::Dim(Dim::sym("n"))],
                steps: vec![1],
            }),
            &[x],
        )
        .unwrap();
    let c = b.constant(HostTensor::from_f32(vec![2], &[1.5, -2.5]));
    let cn = b.unary(UnaryOp::Neg, c).unwrap();
    let e = b.expand(n, vec![Dim::Known(3), Dim::sym("n")]).unwrap();
    for (name, v) in [
        ("xr", xr),
        ("ri", ri),
        ("rf", rf),
        ("sc", sc),
        ("full", full),
        ("back", back),
        ("head", head),
        ("cn", cn),
        ("e", e),
    ] {
        g.add_output(name, v);
    }
    for (bs, s, nn) in [(1, 1, 1), (2, 5, 3), (3, 4, 4)] {
        let inputs = [rand(DType::F32, &[bs, s], 80, 1.0), HostTensor::from_i64(vec![nn], &vec![7; nn])];
        check_graph_outputs(&g, &inputs, 0.0, &format!("leaves batch={bs} seq={s} n={nn}"));
    }
}

/// Random graphs of float ops on `[4, 4]` values: unary, binary, transpose, softmax, a
/// reduction broadcast back, reversed slices, matmul, where, casts through f16.
#[test]
fn random_chains() {
    let mut rng = SmallRng::seed_from_u64(2024);
    let unary = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Square,
        UnaryOp::Relu,
        UnaryOp::Floor,
        UnaryOp::Erf,
    ];
    let binary = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min];
    let k = |v: &[usize]| v.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>();
    for case in 0..60 {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let t = TensorType::known(DType::F32, &[4, 4]);
        let mut vals = vec![b.input("a", t.clone()), b.input("b", t)];
        for _ in 0..rng.gen_range(4..12) {
            let x = vals[rng.gen_range(0..vals.len())];
            let y = vals[rng.gen_range(0..vals.len())];
            let v = match rng.gen_range(0..9) {
                0 => b.unary(unary[rng.gen_range(0..unary.len())], x),
                1 => b.binary(binary[rng.gen_range(0..binary.len())], x, y),
                2 => b.transpose(x, &[1, 0]),
                3 => b.softmax(x, rng.gen_range(-2..2)),
                4 => {
                    let ops = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min];
                    let r = b.reduce(ops[rng.gen_range(0..4)], x, &[rng.gen_range(0..2)], true).unwrap();
                    b.expand(r, k(&[4, 4]))
                }
                5 => b.add(Op::Slice(spec(&[rng.gen_range(0..2)], &[-1], &[i64::MIN], &[-1])), &[x]),
                6 => {
                    let m = b.matmul(x, y).unwrap();
                    let s = b.scalar(DType::F32, 0.25);
                    b.mul(m, s)
                }
                7 => {
                    let c = b.binary(BinaryOp::Greater, x, y).unwrap();
                    b.select(c, x, y)
                }
                _ => {
                    let h = b.cast(x, DType::F16).unwrap();
                    b.cast(h, DType::F32)
                }
            };
            vals.push(v.unwrap());
        }
        let n = vals.len();
        g.add_output("y0", vals[n - 1]);
        g.add_output("y1", vals[n - 2]);
        let inputs = [rand(DType::F32, &[4, 4], 100 + case, 2.0), rand(DType::F32, &[4, 4], 200 + case, 2.0)];
        check_graph_outputs(&g, &inputs, 1e-5, &format!("random chain {case}"));
    }
}
