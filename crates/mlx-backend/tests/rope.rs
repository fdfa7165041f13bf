//! RoPE on MLX (fused and fallback subgraph) against the reference evaluator (blocks.md
//! test cases 1, 3, 4, 5; tolerances of blocks.md).

mod common;

use blockfuse_ir::blocks::{Rope, RopePosition};
use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType};
use blockfuse_mlx::lowerings;
use common::*;

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn rope_tol(d: DType, freqs: bool) -> f64 {
    if freqs {
        tol(1e-5, 1e-2, 1e-2, d)
    } else {
        tol(1e-6, 1e-3, 1e-2, d)
    }
}

fn offsets(v: &[i64]) -> HostTensor {
    HostTensor::from_i64(vec![v.len()], v)
}

#[test]
fn sweep_traditional_base_scale_offset_dtype() {
    let mut seed = 0;
    for d in DTYPES {
        for traditional in [false, true] {
            for base in [1e4f32, 1e6] {
                for scale in [1.0f32, 2.0] {
                    seed += 1;
                    let x = rand(d, &[2, 4, 8], seed, 1.0);
                    let blk = Rope::new(8, base).with_traditional(traditional).with_scale(scale);
                    let what = format!("rope {d} trad={traditional} base={base} scale={scale}");
                    let t = rope_tol(d, false);
                    for o in [0, 3] {
                        let b = blk.clone().with_position(RopePosition::Offset(o));
                        check_block(
                            lowerings::rope,
                            &b,
                            std::slice::from_ref(&x),
                            t,
                            false,
                            &format!("{what} offset {o}"),
                        );
                    }
                    // the offset 3 as a tensor: a scalar, and one per batch row
                    let b = blk.clone().with_position(RopePosition::Offsets);
                    let scalar = HostTensor::from_i64(vec![], &[3]);
                    check_block(
                        lowerings::rope,
                        &b,
                        &[x.clone(), scalar],
                        t,
                        false,
                        &format!("{what} tensor offset"),
                    );
                    let per_row = HostTensor::from_f64(DType::I32, vec![2], &[3.0, 3.0]);
                    check_block(
                        lowerings::rope,
                        &b,
                        &[x, per_row],
                        t,
                        false,
                        &format!("{what} {{B}} offsets"),
                    );
                }
            }
        }
    }
}

#[test]
fn transposed_input() {
    // x arrives as {B, D, T} and is transposed to {B, T, D} before the block.
    for d in DTYPES {
        for traditional in [false, true] {
            let mut g = Graph::new();
            let mut b = Builder::new(&mut g);
            let x = b.input("x", TensorType::known(d, &[2, 8, 4]));
            let xt = b.transpose(x, &[0, 2, 1]).unwrap();
            let blk = Rope::new(8, 1e4).with_traditional(traditional).with_position(RopePosition::Offset(3));
            let y = b.block(blk, &[xt]).unwrap()[0];
            g.add_output("y", y);
            let x = rand(d, &[2, 8, 4], 7, 1.0);
            check_graph(
                lowerings::rope,
                &g,
                &[x],
                rope_tol(d, false),
                false,
                &format!("transposed {d} trad={traditional}"),
            );
        }
    }
}

#[test]
fn per_batch_offsets() {
    for d in DTYPES {
        for b in [1, 2, 3] {
            let x = rand(d, &[b, 2, 4, 32], 20 + b as u64, 1.0);
            let off: Vec<i64> = (0..b as i64).collect();
            for traditional in [false, true] {
                let blk =
                    Rope::new(32, 1e4).with_traditional(traditional).with_position(RopePosition::Offsets);
                check_block(
                    lowerings::rope,
                    &blk,
                    &[x.clone(), offsets(&off)],
                    rope_tol(d, false),
                    false,
                    &format!("{d} B={b} offsets arange(B) trad={traditional}"),
                );
            }
        }
    }
}

#[test]
fn single_token_every_batch_row() {
    // MLX had bugs in batch rows ≥ 1 for T = 1 (mlx#3494/#3795/#3949).
    for d in DTYPES {
        for b in [2, 4, 8] {
            for h in [1, 4, 7] {
                for traditional in [false, true] {
                    let x = rand(d, &[b, h, 1, 16], (b * 10 + h) as u64, 1.0);
                    let blk = Rope::new(16, 1e4)
                        .with_traditional(traditional)
                        .with_position(RopePosition::Offset(5));
                    let what = format!("T=1 {d} B={b} H={h} trad={traditional}");
                    check_block(
                        lowerings::rope,
                        &blk,
                        std::slice::from_ref(&x),
                        rope_tol(d, false),
                        false,
                        &what,
                    );
                    // and per-row offsets 5, 6, ...
                    let off: Vec<i64> = (5..5 + b as i64).collect();
                    let blk = blk.with_position(RopePosition::Offsets);
                    check_block(
                        lowerings::rope,
                        &blk,
                        &[x, offsets(&off)],
                        rope_tol(d, false),
                        false,
                        &format!("{what} per-row offsets"),
                    );
                }
            }
        }
    }
}

#[test]
fn partial_rotation_keeps_the_tail() {
    for d in DTYPES {
        for traditional in [false, true] {
            let x = rand(d, &[2, 3, 5, 32], 40, 1.0);
            let blk = Rope::new(16, 1e4).with_traditional(traditional).with_position(RopePosition::Offset(2));
            let y = check_block(
                lowerings::rope,
                &blk,
                std::slice::from_ref(&x),
                rope_tol(d, false),
                false,
                &format!("partial {d} trad={traditional}"),
            );
            let (yv, xv) = (y[0].to_f64_vec(), x.to_f64_vec());
            for (i, (a, b)) in yv.iter().zip(&xv).enumerate() {
                if i % 32 >= 16 {
                    assert_eq!(a, b, "the tail passes through unchanged");
                }
            }
        }
    }
}

#[test]
fn heads_of_a_bthd_layout_rotate_alone() {
    // x {B, T, H, D} transposed to {B, H, T, D}: each head equals that head rotated alone.
    let (b, t, h, dd) = (2, 5, 3, 16);
    let x = rand(DType::F32, &[b, t, h, dd], 50, 1.0);
    let mut g = Graph::new();
    let mut bld = Builder::new(&mut g);
    let xi = bld.input("x", type_of(&x));
    let xt = bld.transpose(xi, &[0, 2, 1, 3]).unwrap();
    let y = bld.block(Rope::new(dd, 1e4), &[xt]).unwrap()[0];
    g.add_output("y", y);
    let all = check_graph(lowerings::rope, &g, std::slice::from_ref(&x), 1e-6, false, "bthd")[0].to_f64_vec();
    let xv = x.to_f64_vec();
    for head in 0..h {
        // the head alone, {B, 1, T, D}
        let mut v = Vec::new();
        for bi in 0..b {
            for ti in 0..t {
                let at = ((bi * t + ti) * h + head) * dd;
                v.extend_from_slice(&xv[at..at + dd]);
            }
        }
        let alone = tensor(DType::F32, &[b, 1, t, dd], &v);
        let one = mlx().run(&block_graph(Rope::new(dd, 1e4), &[type_of(&alone)]), &[alone]).unwrap()[0]
            .to_f64_vec();
        for bi in 0..b {
            for ti in 0..t {
                for k in 0..dd {
                    let got = all[((bi * h + head) * t + ti) * dd + k];
                    let want = one[(bi * t + ti) * dd + k];
                    assert!((got - want).abs() < 1e-6, "head {head} b {bi} t {ti} k {k}");
                }
            }
        }
    }
}

#[test]
fn explicit_positions_lower_through_the_cos_sin_kernel() {
    for d in DTYPES {
        let x = rand(d, &[1, 2, 2, 8], 60, 1.0);
        let blk = Rope::new(8, 1e4).with_position(RopePosition::Positions);
        // non-sequential positions [[0, 5]], as i64 and as f32; {T} too
        let p = HostTensor::from_i64(vec![1, 2], &[0, 5]);
        check_block(
            lowerings::rope,
            &blk,
            &[x.clone(), p],
            rope_tol(d, false),
            false,
            &format!("positions [[0, 5]] {d}"),
        );
        let p = tensor(DType::F32, &[2], &[0.0, 5.0]);
        check_block(
            lowerings::rope,
            &blk,
            &[x, p],
            rope_tol(d, false),
            false,
            &format!("positions [0, 5] f32 {d}"),
        );
    }
}

#[test]
fn freqs_operand() {
    for d in DTYPES {
        for traditional in [false, true] {
            let dims = 8;
            // periods base^(2i/dims), as mlx_lm passes them, and arbitrary ones
            let periods: Vec<f64> =
                (0..dims / 2).map(|i| 1e4f64.powf(2.0 * i as f64 / dims as f64)).collect();
            let odd: Vec<f64> = (0..dims / 2).map(|i| 1.5 + 3.0 * i as f64).collect();
            for (name, f) in [("periods", periods), ("arbitrary", odd)] {
                for fd in [DType::F32, d] {
                    let x = rand(d, &[2, 2, 5, 12], 70, 1.0);
                    let freqs = tensor(fd, &[dims / 2], &f);
                    let blk = Rope::new(dims, 1e4)
                        .with_freqs()
                        .with_traditional(traditional)
                        .with_position(RopePosition::Offset(4));
                    check_block(
                        lowerings::rope,
                        &blk,
                        &[x, freqs],
                        rope_tol(d, true),
                        false,
                        &format!("freqs {name} {d} ({fd} freqs) trad={traditional}"),
                    );
                }
            }
        }
    }
}

#[test]
fn f64_declines_and_symbolic_shapes_bind() {
    // MLX's f64 sin/cos (and exp, erf) are only f32-accurate on the CPU.
    let x = rand(DType::F64, &[1, 3, 8], 80, 1.0);
    check_block(lowerings::rope, &Rope::new(8, 1e4), &[x], 1e-6, true, "f64");

    // x {batch, heads, seq, 16} with symbolic dims, offsets {batch}
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let xt = TensorType::new(DType::F32, [batch.clone(), Dim::Known(2), seq, Dim::Known(16)]);
    let ot = TensorType::new(DType::I64, [batch]);
    let blk = Rope::new(16, 1e4).with_position(RopePosition::Offsets);
    let g = block_graph(blk, &[xt, ot]);
    for (b, t) in [(1, 1), (3, 7)] {
        let x = rand(DType::F32, &[b, 2, t, 16], 81, 1.0);
        let off: Vec<i64> = (0..b as i64).map(|i| 10 * i).collect();
        check_graph(lowerings::rope, &g, &[x, offsets(&off)], 1e-6, false, &format!("symbolic B={b} T={t}"));
    }
}

/// The cos/sin form on MLX: one compiled function, against the reference evaluator, for
/// split halves and interleaved pairs, full-width and per-pair cos/sin, whole and partial
/// rotation, with and without an mscale, cos/sin broadcast along the heads or along
/// another axis (ONNX's {B, T, H, D}).
#[test]
fn cos_sin_form() {
    let mut seed = 100;
    for d in DTYPES {
        for traditional in [false, true] {
            for (dims, w) in [(8, 8), (8, 4), (6, 6), (6, 3)] {
                for (xs, cs) in [([2, 3, 5, 8], [2, 1, 5]), ([2, 5, 3, 8], [2, 5, 1])] {
                    for mscale in [1.0f32, 0.8] {
                        seed += 1;
                        let x = rand(d, &xs, seed, 1.0);
                        let cshape = [cs[0], cs[1], cs[2], w];
                        let cos = rand(DType::F32, &cshape, seed + 1000, 1.0);
                        let sin = rand(DType::F32, &cshape, seed + 2000, 1.0);
                        let blk = Rope::cos_sin(dims, traditional).with_mscale(mscale);
                        check_block(
                            lowerings::rope,
                            &blk,
                            &[x, cos, sin],
                            rope_tol(d, false),
                            false,
                            &format!("cos/sin {d} trad={traditional} dims={dims} w={w} x={xs:?} m={mscale}"),
                        );
                    }
                }
            }
        }
    }
}

/// A freqs table (a rounded llama3 one) with an mscale: fast::rope times mscale when every
/// feature rotates; declines for a partial rotation.
#[test]
fn freqs_form_with_mscale() {
    for d in DTYPES {
        let periods: Vec<f64> = (0..4)
            .map(|i| {
                let f = 5e5f64.powf(-2.0 * i as f64 / 8.0);
                let f = if i >= 2 { f / 8.0 } else { f };
                1.0 / half::bf16::from_f64(f).to_f64()
            })
            .collect();
        for (width, declines) in [(8, false), (12, true)] {
            let x = rand(d, &[1, 2, 6, width], 200, 1.0);
            let freqs = tensor(DType::F32, &[4], &periods);
            let blk = Rope::new(8, 1.0).with_freqs().with_mscale(0.7);
            check_block(
                lowerings::rope,
                &blk,
                &[x, freqs],
                rope_tol(d, true),
                declines,
                &format!("freqs + mscale {d} D={width}"),
            );
        }
    }
}

/// Positions with a freqs table, a position scale, an mscale and interleaved pairs, on a
/// {B, H, T, D} x with {B, T} positions (the KV-cache decoder's rope).
#[test]
fn positions_with_freqs_scale_and_mscale() {
    for d in DTYPES {
        for traditional in [false, true] {
            let x = rand(d, &[2, 3, 4, 10], 300, 1.0);
            let p = HostTensor::from_i64(vec![2, 4], &[5, 6, 7, 8, 0, 3, 9, 2]);
            let periods = tensor(DType::F32, &[4], &[1.0, 3.0, 17.0, 140.0]);
            let blk = Rope::new(8, 1.0)
                .with_freqs()
                .with_traditional(traditional)
                .with_scale(0.5)
                .with_mscale(0.9)
                .with_position(RopePosition::Positions);
            check_block(
                lowerings::rope,
                &blk,
                &[x, p, periods],
                rope_tol(d, true),
                false,
                &format!("positions + freqs {d} trad={traditional}"),
            );
        }
    }
}
