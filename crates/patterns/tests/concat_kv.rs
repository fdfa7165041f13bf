//! The concat-form KV cache (`present = concat(past, new)`, typed `past_seq+seq`): a decoder
//! layer fuses into `rms_norm`, `rope`, `sdpa` with the causal band aligned to the end
//! (query t sees key j iff `j ≤ past_seq + t`, the block's lower-right `Causal`), and
//! `swiglu`; a mask aligned to the start instead (ONNX's top-left `is_causal`, wrong for a
//! cache) stays an operand.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{self, MaskKind};
use blockfuse_ir::{BinaryOp, Builder, DType, Dim, Graph, HostTensor, Op, TensorType, Value};
use blockfuse_models::{llama_concat_kv_layer, KvConfig};
use common::{fuse, snapshot_text};

fn sdpa_masks(g: &Graph) -> Vec<(MaskKind, usize)> {
    g.node_ids()
        .filter_map(|id| {
            let s = g.node(id).op.as_block()?.downcast_ref::<blocks::Sdpa>()?.clone();
            Some((s.mask, g.node(id).operands.len()))
        })
        .collect()
}

/// Random inputs for `past` cached tokens and `seq` new ones (batch 2).
fn inputs(g: &Graph, past: usize, seq: usize) -> Vec<HostTensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ty = &g.node(id).types[0];
            let b = [("batch", 2), ("seq", seq), ("past_seq", past)];
            let bindings = b.iter().map(|&(k, v)| (k.into(), v)).collect();
            let dims = ty.eval_dims(&bindings).unwrap();
            let n: usize = dims.iter().product();
            let v: Vec<f64> = (0..n).map(|j| ((j * 7 + i * 13) % 17) as f64 / 8.0 - 1.0).collect();
            HostTensor::from_f64(ty.dtype, dims, &v)
        })
        .collect()
}

fn assert_same(a: &Graph, b: &Graph, past: usize, seq: usize) {
    let x = inputs(a, past, seq);
    let fb = FallbackBackend::new();
    let (p, q) = (fb.run(a, &x).unwrap(), fb.run(b, &x).unwrap());
    for (u, v) in p.iter().zip(&q) {
        assert_eq!(u.dims(), v.dims());
        let err = u.to_f64_vec().iter().zip(v.to_f64_vec()).map(|(s, t)| (s - t).abs()).fold(0.0, f64::max);
        assert!(err <= 1e-5, "past {past}, seq {seq}: outputs differ by {err}");
    }
}

#[test]
fn concat_kv_layer_fuses_with_the_causal_band_aligned_to_the_end() {
    let g = llama_concat_kv_layer(KvConfig::tiny().decoder).unwrap();
    let (before, after, report, opt) = fuse(&g);
    // The second norm reads the residual sum: one `residual_rms_norm` block (norm and add).
    for (kind, n) in [("rms_norm", 1), ("residual_rms_norm", 1), ("rope", 2), ("sdpa", 1), ("swiglu", 1)] {
        assert_eq!(report.blocks.get(kind), Some(&n), "{kind}: {:?}\n{after}", report.near_misses);
    }
    assert_eq!(sdpa_masks(&opt), vec![(MaskKind::Causal, 3)]);
    assert!(after.contains("past_seq+seq"), "{after}");
    insta::assert_snapshot!(snapshot_text(&before, &after));
    // Prefill with an empty cache, a prefill after a past, decode steps.
    for (past, seq) in [(0, 4), (5, 3), (6, 1), (1, 1)] {
        assert_same(&g, &opt, past, seq);
    }
}

/// Attention of new queries over `concat(past, new)` keys with the mask `j ≤ t + offset`,
/// where `offset` is `past_seq` (the right alignment) or 0 (aligned to the start).
fn cached_attention(offset_by_past: bool) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (batch, seq, past) = (Dim::sym("batch"), Dim::sym("seq"), Dim::sym("past_seq"));
    let total = past.add(&seq).unwrap();
    let t4 =
        |len: &Dim| TensorType::new(DType::F32, [batch.clone(), Dim::Known(2), len.clone(), Dim::Known(8)]);
    let q = b.input("q", t4(&seq));
    let k_new = b.input("k", t4(&seq));
    let v_new = b.input("v", t4(&seq));
    let past_k = b.input("past_key", t4(&past));
    let past_v = b.input("past_value", t4(&past));
    let k = b.concat(&[past_k, k_new], 2).unwrap();
    let v = b.concat(&[past_v, v_new], 2).unwrap();
    let range = |b: &mut Builder<'_>, len: &Dim| -> Value {
        b.add(Op::Range { start: 0.0, step: 1.0, len: len.clone(), dtype: DType::I64 }, &[]).unwrap()
    };
    let mut rows = range(&mut b, &seq);
    if offset_by_past {
        let p = b.add(Op::SymConst(vec![past.clone()]), &[]).unwrap();
        rows = b.add2(rows, p).unwrap();
    }
    let rows = b.reshape(rows, vec![seq.clone(), Dim::Known(1)]).unwrap();
    let cols = range(&mut b, &total);
    let cols = b.reshape(cols, vec![Dim::Known(1), total.clone()]).unwrap();
    let keep = b.binary(BinaryOp::LessEqual, cols, rows).unwrap();
    let zero = b.scalar(DType::F32, 0.0);
    let low = b.scalar(DType::F32, f32::MIN as f64);
    let mask = b.select(keep, zero, low).unwrap();
    let kt = b.transpose(k, &[0, 1, 3, 2]).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let scale = b.scalar(DType::F32, 1.0 / 8f64.sqrt());
    let s = b.mul(s, scale).unwrap();
    let s = b.add2(s, mask).unwrap();
    let p = b.softmax(s, -1).unwrap();
    let o = b.matmul(p, v).unwrap();
    g.add_output("out", o);
    g.add_output("present_key", k);
    g.add_output("present_value", v);
    g
}

#[test]
fn cached_attention_aligned_to_the_end_is_causal() {
    let g = cached_attention(true);
    let (_, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("sdpa"), Some(&1), "{:?}\n{after}", report.near_misses);
    assert_eq!(sdpa_masks(&opt), vec![(MaskKind::Causal, 3)]);
    for (past, seq) in [(0, 3), (4, 2), (7, 1)] {
        assert_same(&g, &opt, past, seq);
    }
}

#[test]
fn negative_cached_attention_aligned_to_the_start_keeps_its_mask() {
    let g = cached_attention(false);
    let (before, after, report, opt) = fuse(&g);
    assert_eq!(report.blocks.get("sdpa"), Some(&1), "{:?}\n{after}", report.near_misses);
    // j ≤ t is not the block's band once past_seq > 0: the mask stays an operand (the kept
    // positions, as a boolean).
    assert_eq!(sdpa_masks(&opt), vec![(MaskKind::Boolean, 4)]);
    insta::assert_snapshot!(snapshot_text(&before, &after));
    for (past, seq) in [(0, 3), (4, 2), (7, 1)] {
        assert_same(&g, &opt, past, seq);
    }
}
