//! RMSNorm and LayerNorm on MLX (fused and fallback subgraph) against the reference
//! evaluator (blocks.md test cases 6; tolerances of blocks.md).

mod common;

use blockfuse_ir::blocks::{LayerNorm, RmsNorm};
use blockfuse_ir::{Builder, DType, Graph, TensorType};
use blockfuse_mlx::lowerings;
use common::*;

const HALF_AND_FULL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn rms_tol(d: DType) -> f64 {
    tol(1e-6, 1e-3, 1e-2, d)
}

fn ln_tol(d: DType) -> f64 {
    tol(1e-5, 5e-3, 5e-2, d)
}

#[test]
fn rms_norm_dims_dtypes_and_weights() {
    for d in HALF_AND_FULL {
        for dim in [31, 32, 33, 4099] {
            let x = rand(d, &[3, dim], 1 + dim as u64, 2.0);
            let w = rand(d, &[dim], 2 + dim as u64, 1.0);
            let blk = RmsNorm::new(1e-5);
            let what = format!("rms_norm {d} D={dim}");
            check_block(lowerings::rms_norm, &blk, &[x.clone(), w], rms_tol(d), false, &what);
            check_block(lowerings::rms_norm, &blk, &[x], rms_tol(d), false, &format!("{what}, no weight"));
        }
    }
}

#[test]
fn rms_norm_gemma_offset_and_mixed_dtypes() {
    for d in HALF_AND_FULL {
        let x = rand(d, &[2, 3, 64], 11, 3.0);
        let w = rand(d, &[64], 12, 0.5);
        check_block(
            lowerings::rms_norm,
            &RmsNorm::gemma(1e-6),
            &[x.clone(), w],
            rms_tol(d),
            false,
            &format!("gemma rms_norm {d}"),
        );
        // an f32 weight on a half-precision x: cast to x's dtype first, then multiply in f32
        let w32 = rand(DType::F32, &[64], 13, 1.0);
        check_block(
            lowerings::rms_norm,
            &RmsNorm::new(1e-6),
            &[x, w32],
            rms_tol(d),
            false,
            &format!("rms_norm {d} x, f32 weight"),
        );
    }
    // f16 with bf16 gives f32
    let x = rand(DType::F16, &[4, 48], 14, 1.0);
    let w = rand(DType::BF16, &[48], 15, 1.0);
    check_block(lowerings::rms_norm, &RmsNorm::new(1e-5), &[x, w], 1e-6, false, "f16 x, bf16 w");
}

#[test]
fn rms_norm_f64_declines() {
    let x = rand(DType::F64, &[2, 16], 21, 1.0);
    let w = rand(DType::F64, &[16], 22, 1.0);
    check_block(lowerings::rms_norm, &RmsNorm::new(1e-6), &[x, w], 1e-12, true, "f64");
}

/// A strided (transposed) input: x {D, T} transposed to {T, D} before the norm.
fn transposed_then(block: impl blockfuse_ir::Block, d: DType, dim: usize, extra: &[TensorType]) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(d, &[dim, 5]));
    let mut args = vec![b.transpose(x, &[1, 0]).unwrap()];
    for (i, t) in extra.iter().enumerate() {
        args.push(b.input(&format!("p{i}"), t.clone()));
    }
    let y = b.block(block, &args).unwrap()[0];
    g.add_output("y", y);
    g
}

#[test]
fn norms_of_a_transposed_input() {
    for d in HALF_AND_FULL {
        let x = rand(d, &[33, 5], 31, 1.5);
        let w = rand(d, &[33], 32, 1.0);
        let bias = rand(d, &[33], 33, 1.0);
        let g = transposed_then(RmsNorm::new(1e-5), d, 33, &[TensorType::known(d, &[33])]);
        check_graph(lowerings::rms_norm, &g, &[x.clone(), w.clone()], rms_tol(d), false, "rms_norm strided");
        let t = TensorType::known(d, &[33]);
        let g = transposed_then(LayerNorm::new(1e-5), d, 33, &[t.clone(), t]);
        check_graph(lowerings::layer_norm, &g, &[x, w, bias], ln_tol(d), false, "layer_norm strided");
    }
}

#[test]
fn layer_norm_dims_dtypes_weight_and_bias_omitted() {
    for d in HALF_AND_FULL {
        for dim in [31, 32, 33, 4099] {
            let x = rand(d, &[3, dim], 41 + dim as u64, 2.0);
            let w = rand(d, &[dim], 42 + dim as u64, 1.0);
            let bias = rand(d, &[dim], 43 + dim as u64, 1.0);
            let t = ln_tol(d);
            let what = format!("layer_norm {d} D={dim}");
            let mut blk = LayerNorm::new(1e-5);
            check_block(lowerings::layer_norm, &blk, &[x.clone(), w.clone(), bias.clone()], t, false, &what);
            blk.has_bias = false;
            check_block(lowerings::layer_norm, &blk, &[x.clone(), w], t, false, &format!("{what}, no bias"));
            blk.has_weight = false;
            check_block(
                lowerings::layer_norm,
                &blk,
                std::slice::from_ref(&x),
                t,
                false,
                &format!("{what}, neither"),
            );
            blk.has_bias = true;
            check_block(lowerings::layer_norm, &blk, &[x, bias], t, false, &format!("{what}, no weight"));
        }
    }
}

#[test]
fn layer_norm_mixed_dtypes_and_f64() {
    let x = rand(DType::BF16, &[2, 40], 51, 2.0);
    let w = rand(DType::F32, &[40], 52, 1.0);
    let bias = rand(DType::F16, &[40], 53, 1.0);
    check_block(
        lowerings::layer_norm,
        &LayerNorm::new(1e-5),
        &[x, w, bias],
        1e-5,
        false,
        "bf16 x, f32 w, f16 b",
    );
    let x = rand(DType::F64, &[2, 40], 54, 2.0);
    check_block(
        lowerings::layer_norm,
        &LayerNorm { eps: 1e-5, has_weight: false, has_bias: false },
        &[x],
        1e-12,
        true,
        "f64",
    );
}
