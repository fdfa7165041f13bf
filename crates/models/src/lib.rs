//! Reference models for blockfuse, built from primitive ops the way exporters spell them.
//!
//! One Llama-style decoder, [`llama_decoder`], shared by the `blockfuse demo` command, the
//! optimizer and evaluator benches and the MLX GPU timings: pow/mean/sqrt/div RMSNorm,
//! rotate-half RoPE with cos/sin from positions ⊗ inverse frequencies, `repeat_kv` (GQA),
//! eager attention with an additive causal mask built from `range` and `less_equal`, and a
//! SiLU-gated MLP. Before `blockfuse_patterns::optimize` the graph holds no blocks; after
//! it, each layer holds 2 norms, 2 `rope`, 1 `sdpa` (causal) and 1 `swiglu`, plus the
//! final norm; every norm but the first layer's first reads a residual sum, so it is a
//! `residual_rms_norm` (2 layers with the final norm: 1 `rms_norm`, 4 `residual_rms_norm`).
//!
//! The pieces are public as [`Composer`], for graphs that need only some of them (the GPU
//! bench times each block's primitive spelling on its own). Weights are graph constants,
//! uniform random from a seeded generator and written straight into the dtype's bytes, so
//! that a 4096-wide bf16 layer (200M+ parameters) costs 2 bytes per weight and no
//! temporaries.
//!
//! Beside the decoder: its KV-cache forms ([`kv`], [`concat`](mod@concat)), a single eager attention
//! with the caller's logits ([`attention`]) and the smallest fusable graph
//! ([`rms_norm_graph`]).

#![deny(missing_docs)]

pub mod attention;
pub mod concat;
pub mod kv;
pub use concat::{llama_concat_kv_layer, llama_concat_kv_model};
pub use kv::{llama_kv_layer, llama_kv_layer_with, llama_kv_model, CacheWrite, KvConfig};

use blockfuse_ir::{
    BinaryOp, Builder, DType, Dim, Graph, HostTensor, IrError, Op, TensorType, UnaryOp, Value,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// The decoder's size, element type and weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecoderConfig {
    /// Decoder layers.
    pub layers: usize,
    /// Model width.
    pub hidden: usize,
    /// Query heads (`hidden / heads` is the head dim, which must be even).
    pub heads: usize,
    /// Key/value heads: GQA (`repeat_kv`) when fewer than `heads`, which they must divide.
    pub kv_heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Element type of activations and weights.
    pub dtype: DType,
    /// Projection weights are uniform in `[-weight_scale, weight_scale)` (must be > 0);
    /// norm weights are uniform in `[-1, 1)`.
    pub weight_scale: f64,
    /// Seed of the weights' generator: equal configs build equal graphs.
    pub seed: u64,
    /// Ends with an RMSNorm after the last layer (a whole model); without it, the graph is
    /// the bare stack of layers (one layer: the GPU bench's "decoder layer").
    pub final_norm: bool,
}

impl DecoderConfig {
    /// The demo's model: 2 layers, hidden 256, 4 query / 2 kv heads of 64, MLP 512, f32,
    /// weights ±0.05 (seed 7), with the final norm.
    pub fn demo() -> Self {
        DecoderConfig {
            layers: 2,
            hidden: 256,
            heads: 4,
            kv_heads: 2,
            intermediate: 512,
            dtype: DType::F32,
            weight_scale: 0.05,
            seed: 7,
            final_norm: true,
        }
    }

    /// Head dim: `hidden / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    fn check(&self) -> Result<(), IrError> {
        let bad = |why: &str| Err(IrError::Graph(format!("decoder config {self:?}: {why}")));
        if self.heads == 0 || self.kv_heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad("heads must be > 0 and divide hidden");
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad("kv_heads must divide heads");
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("the head dim must be even (rotate-half RoPE)");
        }
        if self.weight_scale.is_nan() || self.weight_scale <= 0.0 {
            return bad("weight_scale must be > 0");
        }
        Ok(())
    }
}

/// Builds the decoder: input `hidden_states` {batch, seq, hidden} of `cfg.dtype`, output
/// `out` of the same type; `batch` and `seq` are symbolic.
pub fn llama_decoder(cfg: DecoderConfig) -> Result<Graph, IrError> {
    cfg.check()?;
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let x = b.input("hidden_states", TensorType::new(cfg.dtype, [batch, seq, Dim::Known(cfg.hidden)]));
    let mut c = Composer::new(&mut b, cfg.dtype, cfg.seed);
    let hd = cfg.head_dim();
    // Shared by every layer.
    let (cos, sin) = c.cos_sin(hd)?;
    let mask = c.causal_mask()?;
    let mut h = x;
    for _ in 0..cfg.layers {
        h = c.decoder_layer(h, &cfg, cos, sin, mask)?;
    }
    let out = if cfg.final_norm { c.rms_norm(h, cfg.hidden)? } else { h };
    g.add_output("out", out);
    Ok(g)
}

/// The smallest graph that fuses: RMSNorm over `x` `{batch, width}` (f32) in exporter
/// spelling, `y = x · rsqrt(mean(x ^ 2) + 1e-6) · w` with `w` a constant of 0.5s. The
/// optimizer makes it one `rms_norm` block; the command-line and extension tests use it as
/// their fixture.
pub fn rms_norm_graph(width: usize) -> Result<Graph, IrError> {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(width)]));
    let w = b.constant(HostTensor::from_f32(vec![width], &vec![0.5; width]));
    let two = b.scalar(DType::F32, 2.0);
    let sq = b.binary(BinaryOp::Pow, x, two)?;
    let m = b.mean_last(sq)?;
    let eps = b.scalar(DType::F32, 1e-6);
    let a = b.add2(m, eps)?;
    let r = b.unary(UnaryOp::Rsqrt, a)?;
    let y = b.mul(x, r)?;
    let y = b.mul(y, w)?;
    g.add_output("y", y);
    Ok(g)
}

pub use blockfuse_testkit::random::random_tensor;

/// The end of a KV-cache model: the final norm and the LM head (`logits` `{batch, seq,
/// vocab}`), then each layer's `present.L.key` / `.value`, in layer order.
fn lm_outputs(
    c: &mut Composer<'_, '_>,
    h: Value,
    d: &DecoderConfig,
    vocab: usize,
    present: Vec<(Value, Value)>,
) -> Result<(), IrError> {
    let h = c.rms_norm(h, d.hidden)?;
    let head = c.weight(&[d.hidden, vocab], d.weight_scale);
    let logits = c.b.matmul(h, head)?;
    let g = c.b.graph_mut();
    g.add_output("logits", logits);
    for (l, (k, v)) in present.into_iter().enumerate() {
        g.add_output(&format!("present.{l}.key"), k);
        g.add_output(&format!("present.{l}.value"), v);
    }
    Ok(())
}

/// The dtype's most negative finite value: the additive mask's "masked" entry.
fn lowest(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::MIN as f64,
        DType::BF16 => -3.3895313892515355e38,
        DType::F64 => f64::MIN,
        _ => -65504.0,
    }
}

/// Writes the decoder's pieces in primitive ops into a [`Builder`], with weights (graph
/// constants) from a seeded generator. Activations use the composer's dtype; symbolic dims
/// are `batch` and `seq` (the layouts [`llama_decoder`] documents).
pub struct Composer<'a, 'g> {
    /// The builder written to, for ops the composer does not spell.
    pub b: &'a mut Builder<'g>,
    dtype: DType,
    rng: SmallRng,
}

impl<'a, 'g> Composer<'a, 'g> {
    /// A composer writing `dtype` activations and weights into `b`, weights seeded by `seed`.
    pub fn new(b: &'a mut Builder<'g>, dtype: DType, seed: u64) -> Self {
        Composer { b, dtype, rng: SmallRng::seed_from_u64(seed) }
    }

    /// The element type of activations and weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A weight constant of `dims`, uniform in `[-scale, scale)` (`scale` > 0).
    pub fn weight(&mut self, dims: &[usize], scale: f64) -> Value {
        let bytes =
            blockfuse_testkit::random::random_bytes(&mut self.rng, self.dtype, dims.iter().product(), scale);
        let t =
            HostTensor::from_bytes(self.dtype, dims.to_vec(), bytes).expect("the byte count matches dims");
        self.b.constant(t)
    }

    /// A scalar constant of the composer's dtype.
    pub fn scalar(&mut self, v: f64) -> Value {
        self.b.scalar(self.dtype, v)
    }

    /// RMSNorm over the last axis (`d` wide) with a fresh weight, spelled
    /// `w · (x · 1 / sqrt(mean(x ^ 2) + 1e-6))`.
    pub fn rms_norm(&mut self, x: Value, d: usize) -> Result<Value, IrError> {
        let w = self.weight(&[d], 1.0);
        let two = self.scalar(2.0);
        let sq = self.b.binary(BinaryOp::Pow, x, two)?;
        let ms = self.b.mean_last(sq)?;
        let eps = self.scalar(1e-6);
        let s = self.b.add2(ms, eps)?;
        let s = self.b.unary(UnaryOp::Sqrt, s)?;
        let one = self.scalar(1.0);
        let r = self.b.div(one, s)?;
        let y = self.b.mul(x, r)?;
        self.b.mul(w, y)
    }

    /// RoPE tables cos, sin `{1, 1, seq, hd}` (the composer's dtype) from positions ⊗
    /// inverse frequencies (base 10000) in f32, as Hugging Face computes them.
    pub fn cos_sin(&mut self, hd: usize) -> Result<(Value, Value), IrError> {
        let seq = Dim::sym("seq");
        let pos = self.range(&seq)?;
        self.cos_sin_at(pos, hd)
    }

    /// [`cos_sin`](Self::cos_sin) at the positions `pos` (integers `{seq}`): a KV-cache
    /// step's new tokens sit at `cache_position`, not at `0..seq`.
    pub fn cos_sin_at(&mut self, pos: Value, hd: usize) -> Result<(Value, Value), IrError> {
        let seq = Dim::sym("seq");
        let pos = self.b.reshape(pos, vec![Dim::Known(1), seq.clone(), Dim::Known(1)])?;
        let pos = self.b.cast(pos, DType::F32)?;
        let inv: Vec<f32> = (0..hd / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / hd as f32)).collect();
        let inv = self.b.constant(HostTensor::from_f32(vec![hd / 2], &inv));
        let f = self.b.mul(pos, inv)?;
        let emb = self.b.concat(&[f, f], -1)?;
        let cos = self.b.unary(UnaryOp::Cos, emb)?;
        let sin = self.b.unary(UnaryOp::Sin, emb)?;
        let view = vec![Dim::Known(1), Dim::Known(1), seq, Dim::Known(hd)];
        let cos = self.b.reshape(cos, view.clone())?;
        let sin = self.b.reshape(sin, view)?;
        let cos = self.b.cast(cos, self.dtype)?;
        let sin = self.b.cast(sin, self.dtype)?;
        Ok((cos, sin))
    }

    /// Rotate-half RoPE of `x` `{.., hd}`: `x · cos + concat(-x₂, x₁) · sin`.
    pub fn rotate_half_rope(
        &mut self,
        x: Value,
        cos: Value,
        sin: Value,
        hd: usize,
    ) -> Result<Value, IrError> {
        let half = (hd / 2) as i64;
        let lo = self.b.slice_axis(x, -1, 0, half)?;
        let hi = self.b.slice_axis(x, -1, half, i64::MAX)?;
        let nhi = self.b.unary(UnaryOp::Neg, hi)?;
        let rot = self.b.concat(&[nhi, lo], -1)?;
        let a = self.b.mul(x, cos)?;
        let c = self.b.mul(rot, sin)?;
        self.b.add2(a, c)
    }

    /// Additive causal mask `{seq, seq}`: 0 where key ≤ query, the dtype's lowest finite
    /// value elsewhere.
    pub fn causal_mask(&mut self) -> Result<Value, IrError> {
        let seq = Dim::sym("seq");
        let rows = self.range(&seq)?;
        let rows = self.b.reshape(rows, vec![seq.clone(), Dim::Known(1)])?;
        let cols = self.range(&seq)?;
        let cols = self.b.reshape(cols, vec![Dim::Known(1), seq])?;
        let allowed = self.b.binary(BinaryOp::LessEqual, cols, rows)?;
        self.additive_mask(allowed)
    }

    /// The additive mask of the bool `allowed`: 0 where it is true, the dtype's lowest
    /// finite value elsewhere.
    pub fn additive_mask(&mut self, allowed: Value) -> Result<Value, IrError> {
        let zero = self.scalar(0.0);
        let lowest = self.scalar(lowest(self.dtype));
        self.b.select(allowed, zero, lowest)
    }

    /// `{batch, seq, n · hd}` → `{batch, n, seq, hd}`.
    pub fn heads(&mut self, x: Value, n: usize, hd: usize) -> Result<Value, IrError> {
        let shape = vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(n), Dim::Known(hd)];
        let r = self.b.reshape(x, shape)?;
        self.b.transpose(r, &[0, 2, 1, 3])
    }

    /// Hugging Face's `repeat_kv`: `{batch, kv, seq, hd}` → `{batch, kv · rep, seq, hd}`
    /// through reshape, expand, reshape; `x` itself when `rep` is 1.
    pub fn repeat_kv(&mut self, x: Value, kv: usize, rep: usize, hd: usize) -> Result<Value, IrError> {
        self.repeat_kv_len(x, kv, rep, hd, Dim::sym("seq"))
    }

    /// [`repeat_kv`](Self::repeat_kv) of keys or values `len` long (a KV cache's length).
    pub fn repeat_kv_len(
        &mut self,
        x: Value,
        kv: usize,
        rep: usize,
        hd: usize,
        len: Dim,
    ) -> Result<Value, IrError> {
        if rep == 1 {
            return Ok(x);
        }
        let (b, s, d) = (Dim::sym("batch"), len, Dim::Known(hd));
        let u = self.b.reshape(x, vec![b.clone(), Dim::Known(kv), Dim::Known(1), s.clone(), d.clone()])?;
        let e = self.b.expand(u, vec![b.clone(), Dim::Known(kv), Dim::Known(rep), s.clone(), d.clone()])?;
        self.b.reshape(e, vec![b, Dim::Known(kv * rep), s, d])
    }

    /// Eager attention of `q` `{batch, heads, seq, hd}` over `k`, `v`
    /// `{batch, kv_heads, len, hd}` (`len` is `seq`, or a KV cache's length): `repeat_kv`,
    /// `softmax(q kᵀ · 1/√hd + mask) · v`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: Value,
        k: Value,
        v: Value,
        heads: usize,
        kv_heads: usize,
        hd: usize,
        mask: Value,
    ) -> Result<Value, IrError> {
        let rep = heads / kv_heads;
        let len = self.b.ty(k).shape[2].clone();
        let k = self.repeat_kv_len(k, kv_heads, rep, hd, len.clone())?;
        let v = self.repeat_kv_len(v, kv_heads, rep, hd, len)?;
        let kt = self.b.transpose(k, &[0, 1, 3, 2])?;
        let s = self.b.matmul(q, kt)?;
        let scale = self.scalar(1.0 / (hd as f64).sqrt());
        let s = self.b.mul(s, scale)?;
        let s = self.b.add2(s, mask)?;
        let p = self.b.softmax(s, -1)?;
        self.b.matmul(p, v)
    }

    /// The SiLU-gated MLP activation: `gate · sigmoid(gate) · up`.
    pub fn swiglu(&mut self, gate: Value, up: Value) -> Result<Value, IrError> {
        let sg = self.b.unary(UnaryOp::Sigmoid, gate)?;
        let act = self.b.mul(gate, sg)?;
        self.b.mul(act, up)
    }

    /// One pre-norm decoder layer on `h` `{batch, seq, hidden}`: attention and MLP blocks,
    /// each with its residual; `cos`, `sin` from [`cos_sin`](Self::cos_sin) and `mask` from
    /// [`causal_mask`](Self::causal_mask). Projection weights use `cfg.weight_scale`.
    pub fn decoder_layer(
        &mut self,
        h: Value,
        cfg: &DecoderConfig,
        cos: Value,
        sin: Value,
        mask: Value,
    ) -> Result<Value, IrError> {
        let (h, _, _) = self.decoder_layer_with(h, cfg, (cos, sin), mask, |_, k, v| Ok((k, v)))?;
        Ok(h)
    }

    /// [`decoder_layer`](Self::decoder_layer) whose attention reads the keys and values
    /// that `kv` makes of the layer's new ones (`{batch, kv_heads, seq, hd}`, after RoPE):
    /// a KV cache's `concat(past, new)`, or the cache buffer with the new ones written in.
    /// `rope` is `(cos, sin)`. Returns the hidden state and the keys and values attention
    /// read (the layer's `present`).
    pub fn decoder_layer_with(
        &mut self,
        h: Value,
        cfg: &DecoderConfig,
        (cos, sin): (Value, Value),
        mask: Value,
        kv: impl FnOnce(&mut Self, Value, Value) -> Result<(Value, Value), IrError>,
    ) -> Result<(Value, Value, Value), IrError> {
        let (d, hd, s) = (cfg.hidden, cfg.head_dim(), cfg.weight_scale);
        let n = self.rms_norm(h, d)?;
        let wq = self.weight(&[d, cfg.heads * hd], s);
        let wk = self.weight(&[d, cfg.kv_heads * hd], s);
        let wv = self.weight(&[d, cfg.kv_heads * hd], s);
        let (q, k, v) = (self.b.matmul(n, wq)?, self.b.matmul(n, wk)?, self.b.matmul(n, wv)?);
        let q = self.heads(q, cfg.heads, hd)?;
        let k = self.heads(k, cfg.kv_heads, hd)?;
        let v = self.heads(v, cfg.kv_heads, hd)?;
        let q = self.rotate_half_rope(q, cos, sin, hd)?;
        let k = self.rotate_half_rope(k, cos, sin, hd)?;
        let (k, v) = kv(self, k, v)?;
        let o = self.attention(q, k, v, cfg.heads, cfg.kv_heads, hd, mask)?;
        let o = self.b.transpose(o, &[0, 2, 1, 3])?;
        let o = self.b.reshape(o, vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(d)])?;
        let wo = self.weight(&[d, d], s);
        let o = self.b.matmul(o, wo)?;
        let h = self.b.add2(h, o)?;
        let n = self.rms_norm(h, d)?;
        let wg = self.weight(&[d, cfg.intermediate], s);
        let wu = self.weight(&[d, cfg.intermediate], s);
        let wd = self.weight(&[cfg.intermediate, d], s);
        let gate = self.b.matmul(n, wg)?;
        let up = self.b.matmul(n, wu)?;
        let act = self.swiglu(gate, up)?;
        let down = self.b.matmul(act, wd)?;
        Ok((self.b.add2(h, down)?, k, v))
    }

    /// `range(0, seq)` of i64.
    fn range(&mut self, seq: &Dim) -> Result<Value, IrError> {
        self.b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_decoder_validates_and_is_deterministic() {
        let a = llama_decoder(DecoderConfig::demo()).unwrap();
        a.validate().unwrap();
        let b = llama_decoder(DecoderConfig::demo()).unwrap();
        assert_eq!(blockfuse_ir::json::to_json(&a).unwrap(), blockfuse_ir::json::to_json(&b).unwrap());
    }

    #[test]
    fn mha_and_no_final_norm_build() {
        let cfg = DecoderConfig { kv_heads: 4, layers: 1, final_norm: false, ..DecoderConfig::demo() };
        llama_decoder(cfg).unwrap().validate().unwrap();
        let bf16 = DecoderConfig { dtype: DType::BF16, ..cfg };
        llama_decoder(bf16).unwrap().validate().unwrap();
    }

    #[test]
    fn bad_configs_are_errors() {
        for cfg in [
            DecoderConfig { kv_heads: 3, ..DecoderConfig::demo() },
            DecoderConfig { heads: 3, ..DecoderConfig::demo() },
            DecoderConfig { weight_scale: 0.0, ..DecoderConfig::demo() },
        ] {
            assert!(llama_decoder(cfg).is_err(), "{cfg:?}");
        }
    }
}
