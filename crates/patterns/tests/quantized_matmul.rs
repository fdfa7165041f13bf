//! The `quantized_matmul` rule: a matmul by a blocked dequantization of constant integers
//! (as the ONNX importer leaves `DequantizeLinear(block_size)` → `MatMul`/`Gemm(transB)` and
//! `MatMulNBits`) becomes the `QuantizedMatmul` block; a layout MLX cannot take is a near-miss.

mod common;

use blockfuse_ir::blocks::{pack_int4, Dequantize, Int4};
use blockfuse_ir::*;
use common::*;

/// Signed int4 values `{dims}` as an `Int4` block over packed bytes, with the dims' row-major
/// values `(i · 7 + seed) mod 16 − 8`.
fn int4_const(b: &mut Builder<'_>, dims: &[usize], seed: i32) -> Value {
    let n: usize = dims.iter().product();
    let vals: Vec<i32> = (0..n as i32).map(|i| (i * 7 + seed).rem_euclid(16) - 8).collect();
    let packed = HostTensor::from_bytes(DType::U8, vec![n.div_ceil(2)], pack_int4(&vals)).unwrap();
    let c = b.constant(packed);
    b.graph_mut().set_name(c.node, Some(format!("w{seed}")));
    b.block(Int4::new(true, dims.to_vec()), &[c]).unwrap()[0]
}

/// `x {batch, seq, 64} · dequantize(q, s, zp)` with blocks of `block` along K: W `{64, 16}`,
/// or `{16, 64}` transposed before the matmul (`Gemm` with `transB`).
fn dequantized_matmul(block: usize, transposed: bool) -> Graph {
    let (k, n) = (64, 16);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(k));
    let (wd, sd) = if transposed { ([n, k], [n, k / block]) } else { ([k, n], [k / block, n]) };
    let q = int4_const(&mut b, &wd, 1);
    let zp = int4_const(&mut b, &sd, 2);
    let s: Vec<f64> = (0..sd[0] * sd[1]).map(|i| 0.01 + i as f64 / 400.0).collect();
    let s = b.constant(HostTensor::from_f64(DType::F32, sd.to_vec(), &s));
    let mut w = b.block(Dequantize::new(usize::from(transposed), block), &[q, s, zp]).unwrap()[0];
    if transposed {
        w = b.transpose(w, &[1, 0]).unwrap();
    }
    let y = b.matmul(x, w).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_an_int4_blocked_dequantization_before_a_matmul() {
    let g = dequantized_matmul(32, false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["quantized_matmul"], 1, "{:?}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    // (q − zp)·s and s·q' − s·(zp + 8) differ by roundings of f32 products only.
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn fuses_the_transposed_weight_of_a_gemm() {
    let g = dequantized_matmul(64, true);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["quantized_matmul"], 1, "{:?}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-5);
}

#[test]
fn a_block_size_mlx_lacks_is_a_near_miss() {
    let g = dequantized_matmul(16, false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("quantized_matmul").copied().unwrap_or(0), 0);
    let reasons: Vec<&str> = report
        .near_misses
        .iter()
        .filter(|m| m.rule == "quantized_matmul")
        .map(|m| m.reason.as_str())
        .collect();
    assert_eq!(reasons, ["block size 16 is not a group size MLX supports ([32, 64, 128])"]);
    insta::assert_snapshot!(format!("{}near-miss: {}\n", snapshot_text(&before, &after), reasons[0]));
    assert_same_values(&g, &opt, 0.0);
}

#[test]
fn blocks_along_the_output_dim_are_a_near_miss() {
    // W {16, 64} blocked along axis 1 read untransposed: the blocks run along N.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(16));
    let q = int4_const(&mut b, &[16, 64], 3);
    let zp = int4_const(&mut b, &[16, 2], 4);
    let s = b.constant(HostTensor::from_f64(DType::F32, vec![16, 2], &[0.02; 32]));
    let w = b.block(Dequantize::new(1, 32), &[q, s, zp]).unwrap()[0];
    let y = b.matmul(x, w).unwrap();
    g.add_output("y", y);
    let (_, _, report, _) = fuse(&g);
    let m = report.near_misses.iter().find(|m| m.rule == "quantized_matmul").expect("a near-miss");
    assert_eq!(m.reason, "the blocks run along axis 1 of the weight, not its input dim");
}

#[test]
fn integers_that_are_not_constants_are_a_near_miss() {
    // Activation quantization: q is a graph input, so there is no weight to repack.
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(32));
    let q = b.input("q", TensorType::new(DType::U8, [Dim::Known(32), Dim::Known(4)]));
    let zp = b.constant(HostTensor::from_f64(DType::U8, vec![1, 4], &[8.0; 4]));
    let s = b.constant(HostTensor::from_f64(DType::F32, vec![1, 4], &[0.5; 4]));
    let w = b.block(Dequantize::new(0, 32), &[q, s, zp]).unwrap()[0];
    let y = b.matmul(x, w).unwrap();
    g.add_output("y", y);
    let (_, _, report, _) = fuse(&g);
    let m = report.near_misses.iter().find(|m| m.rule == "quantized_matmul").expect("a near-miss");
    assert_eq!(m.reason, "the quantized weight: it is not a constant (its op is `input`)");
}

/// `gather(dequantize(table), ids)`: a `{64, 64}` int4 table in blocks of `block` along its
/// rows (`GatherBlockQuantized`, or `DequantizeLinear(block_size)` → `Gather`).
fn dequantized_gather(block: usize) -> Graph {
    let (v, d) = (64, 64);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let ids = b.input("ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let q = int4_const(&mut b, &[v, d], 5);
    let zp = b
        .add(
            Op::Full { shape: vec![Dim::Known(v), Dim::Known(d / block)], value: 0.0, dtype: DType::I8 },
            &[],
        )
        .unwrap();
    let s: Vec<f64> = (0..v * d / block).map(|i| 0.01 + i as f64 / 1000.0).collect();
    let s = b.constant(HostTensor::from_f64(DType::F32, vec![v, d / block], &s));
    let t = b.block(Dequantize::new(1, block), &[q, s, zp]).unwrap()[0];
    let y = b.add(Op::Gather { axis: 0 }, &[t, ids]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn fuses_a_row_gather_of_a_dequantized_table() {
    let g = dequantized_gather(32);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks["quantized_embedding"], 1, "{:?}", report.near_misses);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    assert_same_values(&g, &opt, 1e-6);
}

#[test]
fn a_table_in_blocks_of_16_is_a_near_miss() {
    let g = dequantized_gather(16);
    let (_, _, report, opt) = fuse(&g);
    let m = report.near_misses.iter().find(|m| m.rule == "quantized_embedding").expect("a near-miss");
    assert_eq!(m.reason, "block size 16 is not a group size MLX supports ([32, 64, 128])");
    assert_same_values(&g, &opt, 0.0);
}
