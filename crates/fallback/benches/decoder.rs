//! A 2-layer Llama-style decoder (hidden 256, 4 heads × 64, SwiGLU MLP of 688, seq 64,
//! batch 1) run by the fallback backend, twice: built from primitive ops as an exporter
//! writes it (RMSNorm, RoPE, attention and SwiGLU composed), and with those four as blocks
//! (which then run their fallback subgraphs).
//!
//! `cargo bench -p blockfuse-fallback -- --warm-up-time 1 --measurement-time 3`

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{MaskKind, RmsNorm, Rope, Sdpa, SwiGlu};
use blockfuse_ir::{BinaryOp, Builder, DType, Dim, Graph, HostTensor, Op, TensorType, UnaryOp, Value};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const HIDDEN: usize = 256;
const HEADS: usize = 4;
const HEAD_DIM: usize = 64;
const FFN: usize = 688;
const SEQ: usize = 64;
const LAYERS: usize = 2;
const EPS: f32 = 1e-6;
const BASE: f64 = 10000.0;

fn k(n: usize) -> Dim {
    Dim::Known(n)
}

fn weight(b: &mut Builder<'_>, rng: &mut SmallRng, dims: &[usize], scale: f32) -> Value {
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
    b.constant(HostTensor::from_f32(dims.to_vec(), &v))
}

fn rms_norm(b: &mut Builder<'_>, x: Value, w: Value, blocks: bool) -> Value {
    if blocks {
        return b.block(RmsNorm::new(EPS), &[x, w]).unwrap()[0];
    }
    let sq = b.unary(UnaryOp::Square, x).unwrap();
    let ms = b.mean_last(sq).unwrap();
    let eps = b.scalar(DType::F32, EPS as f64);
    let ms = b.add2(ms, eps).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, ms).unwrap();
    let y = b.mul(x, r).unwrap();
    b.mul(w, y).unwrap()
}

/// Hugging Face's rotate_half form: `q·cos + rotate_half(q)·sin`, cos/sin from
/// `inv_freq ⊗ positions`.
fn rope(b: &mut Builder<'_>, x: Value, cos: Value, sin: Value, blocks: bool) -> Value {
    if blocks {
        return b.block(Rope::new(HEAD_DIM, BASE as f32), &[x]).unwrap()[0];
    }
    let half = (HEAD_DIM / 2) as i64;
    let x1 = b.slice_axis(x, -1, 0, half).unwrap();
    let x2 = b.slice_axis(x, -1, half, HEAD_DIM as i64).unwrap();
    let nx2 = b.unary(UnaryOp::Neg, x2).unwrap();
    let rot = b.concat(&[nx2, x1], -1).unwrap();
    let a = b.mul(x, cos).unwrap();
    let c = b.mul(rot, sin).unwrap();
    b.add2(a, c).unwrap()
}

fn heads(b: &mut Builder<'_>, x: Value) -> Value {
    let r = b.reshape(x, vec![k(1), k(SEQ), k(HEADS), k(HEAD_DIM)]).unwrap();
    b.transpose(r, &[0, 2, 1, 3]).unwrap()
}

fn attention(b: &mut Builder<'_>, q: Value, kk: Value, v: Value, mask: Value, blocks: bool) -> Value {
    let scale = Sdpa::default_scale(HEAD_DIM);
    if blocks {
        return b.block(Sdpa::new(scale, MaskKind::Causal), &[q, kk, v]).unwrap()[0];
    }
    let kt = b.transpose(kk, &[0, 1, 3, 2]).unwrap();
    let s = b.matmul(q, kt).unwrap();
    let sc = b.scalar(DType::F32, scale as f64);
    let s = b.mul(s, sc).unwrap();
    let s = b.add2(s, mask).unwrap();
    let p = b.softmax(s, -1).unwrap();
    b.matmul(p, v).unwrap()
}

fn swiglu(b: &mut Builder<'_>, gate: Value, up: Value, blocks: bool) -> Value {
    if blocks {
        return b.block(SwiGlu::new(), &[gate, up]).unwrap()[0];
    }
    let s = b.unary(UnaryOp::Sigmoid, gate).unwrap();
    let silu = b.mul(gate, s).unwrap();
    b.mul(silu, up).unwrap()
}

fn decoder(blocks: bool) -> Graph {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let mut x = b.input("x", TensorType::known(DType::F32, &[1, SEQ, HIDDEN]));

    // cos/sin [SEQ, HEAD_DIM] from inv_freq ⊗ positions; a causal additive mask.
    let pos = b.add(Op::Range { start: 0.0, step: 1.0, len: k(SEQ), dtype: DType::F32 }, &[]).unwrap();
    let pos = b.reshape(pos, vec![k(SEQ), k(1)]).unwrap();
    let inv: Vec<f32> =
        (0..HEAD_DIM / 2).map(|i| BASE.powf(-2.0 * i as f64 / HEAD_DIM as f64) as f32).collect();
    let inv = b.constant(HostTensor::from_f32(vec![HEAD_DIM / 2], &inv));
    let freqs = b.mul(pos, inv).unwrap();
    let emb = b.concat(&[freqs, freqs], -1).unwrap();
    let cos = b.unary(UnaryOp::Cos, emb).unwrap();
    let sin = b.unary(UnaryOp::Sin, emb).unwrap();
    let mask: Vec<f32> = (0..SEQ * SEQ).map(|i| if i % SEQ > i / SEQ { f32::MIN } else { 0.0 }).collect();
    let mask = b.constant(HostTensor::from_f32(vec![SEQ, SEQ], &mask));

    let s = 1.0 / (HIDDEN as f32).sqrt();
    for _ in 0..LAYERS {
        let w_norm = weight(&mut b, &mut rng, &[HIDDEN], 1.0);
        let h = rms_norm(&mut b, x, w_norm, blocks);
        let [wq, wk, wv, wo] = [0; 4].map(|_| weight(&mut b, &mut rng, &[HIDDEN, HIDDEN], s));
        let q = b.matmul(h, wq).unwrap();
        let q = heads(&mut b, q);
        let kk = b.matmul(h, wk).unwrap();
        let kk = heads(&mut b, kk);
        let v = b.matmul(h, wv).unwrap();
        let v = heads(&mut b, v);
        let q = rope(&mut b, q, cos, sin, blocks);
        let kk = rope(&mut b, kk, cos, sin, blocks);
        let a = attention(&mut b, q, kk, v, mask, blocks);
        let a = b.transpose(a, &[0, 2, 1, 3]).unwrap();
        let a = b.reshape(a, vec![k(1), k(SEQ), k(HIDDEN)]).unwrap();
        let a = b.matmul(a, wo).unwrap();
        x = b.binary(BinaryOp::Add, x, a).unwrap();

        let w_norm = weight(&mut b, &mut rng, &[HIDDEN], 1.0);
        let h = rms_norm(&mut b, x, w_norm, blocks);
        let wg = weight(&mut b, &mut rng, &[HIDDEN, FFN], s);
        let wu = weight(&mut b, &mut rng, &[HIDDEN, FFN], s);
        let wd = weight(&mut b, &mut rng, &[FFN, HIDDEN], 1.0 / (FFN as f32).sqrt());
        let gate = b.matmul(h, wg).unwrap();
        let up = b.matmul(h, wu).unwrap();
        let m = swiglu(&mut b, gate, up, blocks);
        let m = b.matmul(m, wd).unwrap();
        x = b.add2(x, m).unwrap();
    }
    let w_norm = weight(&mut b, &mut rng, &[HIDDEN], 1.0);
    let y = rms_norm(&mut b, x, w_norm, blocks);
    g.add_output("y", y);
    g.validate().unwrap();
    g
}

fn bench(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(7);
    let x: Vec<f32> = (0..SEQ * HIDDEN).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let x = HostTensor::from_f32(vec![1, SEQ, HIDDEN], &x);
    let backend = FallbackBackend::new();
    let composed = decoder(false);
    let blocks = decoder(true);
    // Both spellings compute the same decoder.
    let a = backend.run(&composed, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let b = backend.run(&blocks, std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
    let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-3, "composed and block decoders differ by {diff}");

    let mut group = c.benchmark_group("decoder_2x256_seq64");
    group.bench_function("composed", |bench| {
        bench.iter(|| backend.run(&composed, std::slice::from_ref(&x)).unwrap())
    });
    group.bench_function("blocks", |bench| {
        bench.iter(|| backend.run(&blocks, std::slice::from_ref(&x)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
