//! The bundled example: a small Llama-style decoder written in primitive ops the way
//! exporters spell it (pow/mean/sqrt/div RMSNorm, rotate_half RoPE, repeat_kv, eager
//! attention with an additive causal mask, SiLU-gated MLP), and the `demo` command.

use blockfuse_ir::{
    BinaryOp, Builder, DType, Dim, Graph, HostTensor, IrError, Op, TensorType, UnaryOp, Value,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The decoder's size.
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    /// Decoder layers.
    pub layers: usize,
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (GQA when fewer than `heads`).
    pub kv_heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Element type of activations and weights.
    pub dtype: DType,
}

impl DecoderConfig {
    /// The demo's model: 2 layers, hidden 256, 4 query / 2 kv heads of 64.
    pub fn demo() -> Self {
        DecoderConfig { layers: 2, hidden: 256, heads: 4, kv_heads: 2, intermediate: 512, dtype: DType::F32 }
    }
}

struct Ctx<'a, 'g> {
    b: &'a mut Builder<'g>,
    rng: SmallRng,
    dtype: DType,
}

impl Ctx<'_, '_> {
    fn weight(&mut self, dims: &[usize], scale: f64) -> Value {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.rng.gen_range(-scale..scale)).collect();
        self.b.constant(HostTensor::from_f64(self.dtype, dims.to_vec(), &v))
    }

    fn scalar(&mut self, v: f64) -> Value {
        self.b.scalar(self.dtype, v)
    }

    fn rms_norm(&mut self, x: Value, d: usize) -> Result<Value, IrError> {
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

    fn rotate_half_rope(&mut self, x: Value, cos: Value, sin: Value, d: i64) -> Result<Value, IrError> {
        let lo = self.b.slice_axis(x, -1, 0, d / 2)?;
        let hi = self.b.slice_axis(x, -1, d / 2, i64::MAX)?;
        let nhi = self.b.unary(UnaryOp::Neg, hi)?;
        let rot = self.b.concat(&[nhi, lo], -1)?;
        let a = self.b.mul(x, cos)?;
        let c = self.b.mul(rot, sin)?;
        self.b.add2(a, c)
    }

    fn heads(&mut self, x: Value, n: usize, d: usize) -> Result<Value, IrError> {
        let shape = vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(n), Dim::Known(d)];
        let r = self.b.reshape(x, shape)?;
        self.b.transpose(r, &[0, 2, 1, 3])
    }

    fn repeat_kv(&mut self, x: Value, kv: usize, rep: usize, d: usize) -> Result<Value, IrError> {
        let (b, s) = (Dim::sym("batch"), Dim::sym("seq"));
        let u =
            self.b.reshape(x, vec![b.clone(), Dim::Known(kv), Dim::Known(1), s.clone(), Dim::Known(d)])?;
        let e =
            self.b.expand(u, vec![b.clone(), Dim::Known(kv), Dim::Known(rep), s.clone(), Dim::Known(d)])?;
        self.b.reshape(e, vec![b, Dim::Known(kv * rep), s, Dim::Known(d)])
    }
}

/// Builds the decoder: inputs `hidden_states` {batch, seq, hidden}; output `out`.
pub fn llama_decoder(cfg: DecoderConfig) -> Result<Graph, IrError> {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let x = b.input(
        "hidden_states",
        TensorType::new(cfg.dtype, [batch.clone(), seq.clone(), Dim::Known(cfg.hidden)]),
    );
    let mut c = Ctx { b: &mut b, rng: SmallRng::seed_from_u64(7), dtype: cfg.dtype };
    let hd = cfg.hidden / cfg.heads;
    // cos/sin from positions ⊗ inverse frequencies, shared by every layer.
    let pos = c.b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[])?;
    let pos = c.b.reshape(pos, vec![Dim::Known(1), seq.clone(), Dim::Known(1)])?;
    let pos = c.b.cast(pos, DType::F32)?;
    let inv: Vec<f32> = (0..hd / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / hd as f32)).collect();
    let inv = c.b.constant(HostTensor::from_f32(vec![hd / 2], &inv));
    let f = c.b.mul(pos, inv)?;
    let emb = c.b.concat(&[f, f], -1)?;
    let cos = c.b.unary(UnaryOp::Cos, emb)?;
    let sin = c.b.unary(UnaryOp::Sin, emb)?;
    let view = vec![Dim::Known(1), Dim::Known(1), seq.clone(), Dim::Known(hd)];
    let cos = c.b.reshape(cos, view.clone())?;
    let sin = c.b.reshape(sin, view)?;
    let (cos, sin) = (c.b.cast(cos, cfg.dtype)?, c.b.cast(sin, cfg.dtype)?);
    // Additive causal mask: 0 where key ≤ query, the dtype's lowest value elsewhere.
    let rows = c.b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[])?;
    let rows = c.b.reshape(rows, vec![seq.clone(), Dim::Known(1)])?;
    let cols = c.b.add(Op::Range { start: 0.0, step: 1.0, len: seq.clone(), dtype: DType::I64 }, &[])?;
    let cols = c.b.reshape(cols, vec![Dim::Known(1), seq.clone()])?;
    let allowed = c.b.binary(BinaryOp::LessEqual, cols, rows)?;
    let zero = c.scalar(0.0);
    let lowest = c.scalar(if cfg.dtype == DType::F32 { f32::MIN as f64 } else { -65504.0 });
    let mask = c.b.select(allowed, zero, lowest)?;
    let mut h = x;
    for _ in 0..cfg.layers {
        let n = c.rms_norm(h, cfg.hidden)?;
        let wq = c.weight(&[cfg.hidden, cfg.heads * hd], 0.05);
        let wk = c.weight(&[cfg.hidden, cfg.kv_heads * hd], 0.05);
        let wv = c.weight(&[cfg.hidden, cfg.kv_heads * hd], 0.05);
        let (q, k, v) = (c.b.matmul(n, wq)?, c.b.matmul(n, wk)?, c.b.matmul(n, wv)?);
        let q = c.heads(q, cfg.heads, hd)?;
        let k = c.heads(k, cfg.kv_heads, hd)?;
        let v = c.heads(v, cfg.kv_heads, hd)?;
        let q = c.rotate_half_rope(q, cos, sin, hd as i64)?;
        let k = c.rotate_half_rope(k, cos, sin, hd as i64)?;
        let rep = cfg.heads / cfg.kv_heads;
        let k = c.repeat_kv(k, cfg.kv_heads, rep, hd)?;
        let v = c.repeat_kv(v, cfg.kv_heads, rep, hd)?;
        let kt = c.b.transpose(k, &[0, 1, 3, 2])?;
        let s = c.b.matmul(q, kt)?;
        let scale = c.scalar(1.0 / (hd as f64).sqrt());
        let s = c.b.mul(s, scale)?;
        let s = c.b.add2(s, mask)?;
        let p = c.b.softmax(s, -1)?;
        let o = c.b.matmul(p, v)?;
        let o = c.b.transpose(o, &[0, 2, 1, 3])?;
        let o = c.b.reshape(o, vec![batch.clone(), seq.clone(), Dim::Known(cfg.hidden)])?;
        let wo = c.weight(&[cfg.hidden, cfg.hidden], 0.05);
        let o = c.b.matmul(o, wo)?;
        h = c.b.add2(h, o)?;
        let n = c.rms_norm(h, cfg.hidden)?;
        let wg = c.weight(&[cfg.hidden, cfg.intermediate], 0.05);
        let wu = c.weight(&[cfg.hidden, cfg.intermediate], 0.05);
        let wd = c.weight(&[cfg.intermediate, cfg.hidden], 0.05);
        let gate = c.b.matmul(n, wg)?;
        let up = c.b.matmul(n, wu)?;
        let sg = c.b.unary(UnaryOp::Sigmoid, gate)?;
        let act = c.b.mul(gate, sg)?;
        let act = c.b.mul(act, up)?;
        let down = c.b.matmul(act, wd)?;
        h = c.b.add2(h, down)?;
    }
    let out = c.rms_norm(h, cfg.hidden)?;
    g.add_output("out", out);
    Ok(g)
}
