//! The weight-quantization pass: which MatMuls it rewrites, what it reports, and how far a
//! quantized decoder's logits move.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::QuantizedMatmul;
use blockfuse_ir::*;
use blockfuse_models::{llama_decoder, DecoderConfig};
use blockfuse_patterns::{default_rules, optimize, quantize_weights, QuantizeOptions};
use common::*;

fn opts(s: &str) -> QuantizeOptions {
    s.parse().unwrap()
}

/// `x {batch, seq, 64} · W1 {64, 32} · W2 {32, 8}`: both weights constant.
fn two_projections(k2: usize) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", bsd(64));
    let w1 = weight(&mut b, DType::F32, &[64, k2], 1);
    b.graph_mut().set_name(w1.node, Some("w1".into()));
    let h = b.matmul(x, w1).unwrap();
    let w2 = weight(&mut b, DType::F32, &[k2, 8], 2);
    let y = b.matmul(h, w2).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn quantizes_every_constant_weight_matmul() {
    let g = two_projections(64);
    let before = text::dump(&g).unwrap();
    let mut q = g.clone();
    let report = quantize_weights(&mut q, opts("4:32")).unwrap();
    q.validate().unwrap();
    assert_eq!((report.quantized, report.skipped.len()), (2, 0));
    // f32 weights of 64·64 + 64·8 values become 4 bits each plus two f32 per 32 weights.
    assert_eq!(report.constant_bytes_before, (64 * 64 + 64 * 8) * 4);
    assert_eq!(report.constant_bytes_after, (64 * 64 + 64 * 8) / 2 + (64 * 64 + 64 * 8) / 32 * 8);
    insta::assert_snapshot!(snapshot_text(&before, &text::dump(&q).unwrap()));
    let inputs = random_inputs(&g, 3);
    let (want, got) =
        (FallbackBackend::new().run(&g, &inputs).unwrap(), FallbackBackend::new().run(&q, &inputs).unwrap());
    // Weights uniform in ±1 at 4 bits: steps of 2/15, a rounding error of rms 0.038 against
    // weights of rms 0.58 (6.6 %) in each of the two layers; measured 5.8 %.
    let change = relative_change(&want[0], &got[0]);
    assert!(change < 0.1, "4-bit outputs moved by {change:.3e} of their range");
}

#[test]
fn leaves_a_weight_whose_rows_are_not_whole_groups() {
    let g = two_projections(48);
    let mut q = g.clone();
    let report = quantize_weights(&mut q, opts("4:32")).unwrap();
    assert_eq!(report.quantized, 1, "only W1 (K = 64) fits groups of 32");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        report.skipped[0].reason,
        "the grouped axis has 48 values, not a multiple of the group size 32"
    );
    let blocks =
        q.node_ids().filter(|&id| matches!(&q.node(id).op, Op::Block(b) if b.is::<QuantizedMatmul>()));
    assert_eq!(blocks.count(), 1);
}

#[test]
fn keeps_weight_names_on_the_quantized_operands() {
    let mut q = two_projections(64);
    quantize_weights(&mut q, opts("8:64")).unwrap();
    let names: Vec<String> = q.node_ids().filter_map(|id| q.node(id).name.clone()).collect();
    for n in ["w1.packed", "w1.scales", "w1.biases"] {
        assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
    }
}

/// The largest |a − b| over all elements, relative to the largest |a|.
fn relative_change(a: &HostTensor, b: &HostTensor) -> f64 {
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn a_quantized_decoder_stays_close_to_the_original_after_fusion() {
    let cfg = DecoderConfig {
        layers: 2,
        hidden: 128,
        heads: 4,
        kv_heads: 2,
        intermediate: 256,
        ..DecoderConfig::demo()
    };
    let g = llama_decoder(cfg).unwrap();
    let inputs = random_inputs(&g, 5);
    let reference = FallbackBackend::new().run(&g, &inputs).unwrap();
    for (spec, bound) in [("8:64", 5e-3), ("4:64", 5e-2)] {
        let mut q = g.clone();
        optimize(&mut q, &default_rules()).unwrap();
        let report = quantize_weights(&mut q, opts(spec)).unwrap();
        assert_eq!(report.quantized, 2 * 7, "{spec}: q, k, v, o, gate, up, down in each layer");
        assert!(report.constant_bytes_after * 3 < report.constant_bytes_before, "{spec}: {report:?}");
        let got = FallbackBackend::new().run(&q, &inputs).unwrap();
        let change = relative_change(&reference[0], &got[0]);
        eprintln!("{spec}: largest change {change:.3e} of the largest output");
        assert!(change < bound, "{spec}: outputs moved by {change:.3e} of their range (bound {bound})");
    }
}

#[test]
fn quantizes_an_embedding_table_and_its_projection() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let ids = b.input("ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let table = weight(&mut b, DType::F32, &[16, 64], 3);
    let h = b.add(Op::Gather { axis: 0 }, &[table, ids]).unwrap();
    let w = weight(&mut b, DType::F32, &[64, 32], 4);
    let y = b.matmul(h, w).unwrap();
    g.add_output("y", y);
    let before = text::dump(&g).unwrap();
    let mut q = g.clone();
    let report = quantize_weights(&mut q, opts("8:32")).unwrap();
    assert_eq!((report.embeddings, report.quantized), (1, 1));
    insta::assert_snapshot!(snapshot_text(&before, &text::dump(&q).unwrap()));
    let ids = HostTensor::from_i64(vec![2, 3], &[0, 15, 7, -1, 2, 2]);
    let (want, got) = (
        FallbackBackend::new().run(&g, std::slice::from_ref(&ids)).unwrap(),
        FallbackBackend::new().run(&q, &[ids]).unwrap(),
    );
    let change = relative_change(&want[0], &got[0]);
    assert!(change < 0.02, "8-bit outputs moved by {change:.3e} of their range");
}
