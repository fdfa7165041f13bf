//! The static KV-cache write (`slice_update`) and the compiled session on MLX, against the
//! reference evaluator: values, run-time errors, and how often the lowering is traced.

mod common;

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::backend::{Backend, CachePair, Session};
use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, Op, TensorType};
use blockfuse_models::{llama_kv_layer_with, llama_kv_model, CacheWrite, KvConfig};
use blockfuse_patterns::{default_rules, optimize};
use common::{assert_close, mlx, rand, reference};

/// `y = slice_update(buf, upd · 2, start)` along axis 1 of a `{2, 6, 3}` buffer.
fn write_graph(dtype: DType) -> Graph {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let buf = b.input("buf", TensorType::known(dtype, &[2, 6, 3]));
    let upd = b.input("upd", TensorType::new(dtype, [Dim::Known(2), Dim::sym("n"), Dim::Known(3)]));
    let start = b.input("start", TensorType::known(DType::I64, &[]));
    let two = b.constant(HostTensor::from_f64(dtype, vec![], &[2.0]));
    let u2 = b.mul(upd, two).unwrap();
    let y = b.add(Op::SliceUpdate { axis: 1 }, &[buf, u2, start]).unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn slice_update_matches_the_reference_in_every_dtype_and_both_modes() {
    for dtype in [DType::F32, DType::BF16, DType::F16, DType::I64] {
        let g = write_graph(dtype);
        let backend = mlx();
        for compiled in [false, true] {
            let mut s = backend.session(&g).unwrap();
            s.set_compiled(compiled);
            for (n, start) in [(1usize, 0i64), (2, 4), (6, 0), (1, 5), (3, 2)] {
                let inputs = [
                    rand(dtype, &[2, 6, 3], 1, 4.0),
                    rand(dtype, &[2, n, 3], 2, 4.0),
                    HostTensor::from_i64(vec![], &[start]),
                ];
                let want = reference(&g, &inputs);
                // Exact: a copy, and ·2 is exact in every dtype.
                let got = Session::run(&mut s, &inputs).unwrap();
                assert_close(
                    &got[0],
                    &want[0],
                    0.0,
                    &format!("{dtype} n={n} start={start} compiled={compiled}"),
                );
                let y = want[0].to_f64_vec();
                let (u, b) = (inputs[1].to_f64_vec(), inputs[0].to_f64_vec());
                for (i, v) in y.iter().enumerate() {
                    let (o, t, c) = (i / 18, (i / 3) % 6, i % 3);
                    let t = t as i64 - start;
                    let expect =
                        if (0..n as i64).contains(&t) { 2.0 * u[(o * n + t as usize) * 3 + c] } else { b[i] };
                    assert_eq!(*v, expect, "{dtype} element {i}");
                }
            }
            // One plan per update length (5 runs, lengths 1, 2, 6, 3).
            assert_eq!(s.stats().lowerings, 4);
            assert_eq!(s.traces(), if compiled { 4 } else { 0 });
        }
    }
}

#[test]
fn a_start_without_room_is_an_error_naming_the_node_everywhere() {
    let g = write_graph(DType::F32);
    let backend = mlx();
    for (n, start) in [(2usize, 5i64), (1, -1), (1, 6)] {
        let inputs = [
            rand(DType::F32, &[2, 6, 3], 1, 1.0),
            rand(DType::F32, &[2, n, 3], 2, 1.0),
            HostTensor::from_i64(vec![], &[start]),
        ];
        let e = FallbackBackend::new().run(&g, &inputs).unwrap_err().to_string();
        assert!(e.contains("slice_update") && e.contains("does not leave room"), "{e}");
        for compiled in [false, true] {
            let mut s = backend.session(&g).unwrap();
            s.set_compiled(compiled);
            let e = Session::run(&mut s, &inputs).unwrap_err().to_string();
            assert!(e.contains("slice_update") && e.contains("leaves no room for"), "{compiled}: {e}");
            // The same session runs a valid start afterwards.
            let ok = [inputs[0].clone(), inputs[1].clone(), HostTensor::from_i64(vec![], &[0])];
            assert_close(
                &Session::run(&mut s, &ok).unwrap()[0],
                &reference(&g, &ok)[0],
                0.0,
                "after the error",
            );
        }
    }
}

/// Greedy-free decode: the same prompt and tokens through both sessions, step by step.
fn decode(s: &mut dyn Session, g: &Graph, steps: &[(Vec<i64>, usize)]) -> Vec<HostTensor> {
    // past_key_values.L.* (inputs 2..) ↔ present.L.* (outputs 1..), by the builder's order.
    let pairs: Vec<CachePair> =
        (0..g.inputs().len() - 2).map(|k| CachePair { input: 2 + k, output: 1 + k }).collect();
    let mut logits = Vec::new();
    for (ids, start) in steps {
        let n = ids.len();
        let pos: Vec<i64> = (*start..start + n).map(|p| p as i64).collect();
        let inputs = [HostTensor::from_i64(vec![1, n], ids), HostTensor::from_i64(vec![n], &pos)];
        let mut out = s.step(&inputs, &pairs).unwrap();
        logits.push(out[0].take().unwrap());
    }
    logits
}

#[test]
fn the_tiny_kv_model_decodes_like_the_reference_compiled_or_not() {
    let cfg = KvConfig::tiny();
    let mut g = llama_kv_model(cfg).unwrap();
    optimize(&mut g, &default_rules()).unwrap();
    let steps: Vec<(Vec<i64>, usize)> = std::iter::once(((0..4).map(|i| (i * 7) % 96).collect(), 0))
        .chain((4..7).map(|p| (vec![p as i64 * 5 % 96], p)))
        .collect();
    let fallback = FallbackBackend::new();
    let mut r = Backend::prepare(&fallback, &g).unwrap();
    let want = decode(&mut *r, &g, &steps);
    let backend = mlx();
    for compiled in [false, true] {
        let mut s = backend.session(&g).unwrap();
        s.set_compiled(compiled);
        let got = decode(&mut s, &g, &steps);
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_close(a, b, 2e-5, &format!("step {k}, compiled {compiled}"));
        }
        // Two shapes (prompt of 4, then single tokens): planned and traced once each.
        assert_eq!(s.stats().lowerings, 2);
        assert_eq!(s.traces(), if compiled { 2 } else { 0 });
        assert_eq!(s.stats().runs, steps.len());
    }
}

#[test]
fn both_cache_writes_give_the_same_layer() {
    let d = KvConfig::tiny().decoder;
    let (max, start, n) = (16usize, 5usize, 3usize);
    let one_hot = llama_kv_layer_with(d, max, CacheWrite::OneHot).unwrap();
    let slice = llama_kv_layer_with(d, max, CacheWrite::SliceUpdate).unwrap();
    let mut cache = rand(d.dtype, &[1, d.kv_heads, max, d.head_dim()], 3, 1.0).to_f64_vec();
    for (i, x) in cache.iter_mut().enumerate() {
        if (i / d.head_dim()) % max >= start {
            *x = 0.0;
        }
    }
    let cache = HostTensor::from_f64(d.dtype, vec![1, d.kv_heads, max, d.head_dim()], &cache);
    let pos: Vec<i64> = (start..start + n).map(|p| p as i64).collect();
    let inputs =
        [rand(d.dtype, &[1, n, d.hidden], 1, 1.0), HostTensor::from_i64(vec![n], &pos), cache.clone(), cache];
    let a = reference(&one_hot, &inputs);
    let b = reference(&slice, &inputs);
    for (x, y) in a.iter().zip(&b) {
        assert_close(x, y, 1e-6, "one-hot vs slice_update");
    }
    let m = mlx().run(&slice, &inputs).unwrap();
    for (x, y) in m.iter().zip(&b) {
        assert_close(x, y, 2e-5, "MLX vs reference");
    }
}
