//! A whole Llama-style language model with a static KV cache, in primitive ops: what a
//! serving export with a fixed-size cache buffer looks like.
//!
//! Inputs: `input_ids` i64 `{batch, seq}` (the new tokens), `cache_position` i64 `{seq}`
//! (their positions), and per layer `past_key_values.L.key` / `.value`
//! `{batch, kv_heads, max_cache, head_dim}` (the cache buffer). Outputs: `logits`
//! `{batch, seq, vocab}` and per layer `present.L.key` / `.value` (the buffer with the new
//! tokens' keys and values written at `cache_position`); `present.L.*` pairs with
//! `past_key_values.L.*` by name.
//!
//! The cache update is the in-place (static) form, [`CacheWrite`]: by default one
//! `slice_update(past, k_new, cache_position[0])` along the sequence axis (the new tokens'
//! positions are consecutive, as in every decode loop: what `ScatterND`/`TensorScatter`
//! exports of a static cache import to); or, as exporters without a scatter op write it, a
//! one-hot `{max_cache, seq}` matrix `cache_position[j] == t`, `written = onehot · k_new`
//! (exact: one product by 1 per row) and `present = where(row t was written, written, past)`.
//! Attention runs over the whole buffer with the additive mask `t ≤ cache_position[i]`, so
//! unwritten slots never count. RoPE uses `cache_position`. The concat form (`present =
//! concat(past, new)`, typed `past_seq+seq`) is [`crate::concat`].

use crate::{Composer, DecoderConfig};
use blockfuse_ir::{
    BinaryOp, Builder, DType, Dim, Graph, HostTensor, IrError, Op, ReduceOp, TensorType, Value,
};

/// How the new keys and values are written into the static cache buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheWrite {
    /// One `slice_update` at `cache_position[0]` (positions consecutive): O(new tokens).
    #[default]
    SliceUpdate,
    /// A one-hot matmul and a `where` over the whole buffer (any positions): O(buffer).
    OneHot,
}

/// A KV-cache language model: the decoder layers of `decoder` (its `final_norm` is always
/// applied), a token embedding and an LM head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvConfig {
    /// Layers, widths, dtype and seed of the decoder stack.
    pub decoder: DecoderConfig,
    /// Vocabulary size.
    pub vocab: usize,
    /// Length of the static cache buffer: prompt plus generated tokens must fit.
    pub max_cache: usize,
}

impl KvConfig {
    /// A tiny model for tests and `generate`: 2 layers, hidden 64, 4 q / 2 kv heads of 16,
    /// MLP 128, vocab 96, cache 64, f32.
    pub fn tiny() -> Self {
        KvConfig {
            decoder: DecoderConfig {
                layers: 2,
                hidden: 64,
                heads: 4,
                kv_heads: 2,
                intermediate: 128,
                dtype: DType::F32,
                weight_scale: 0.1,
                seed: 11,
                final_norm: true,
            },
            vocab: 96,
            max_cache: 64,
        }
    }
}

/// Builds the KV-cache model (see the module docs for its inputs and outputs).
pub fn llama_kv_model(cfg: KvConfig) -> Result<Graph, IrError> {
    let d = cfg.decoder;
    d.check()?;
    if cfg.vocab == 0 || cfg.max_cache == 0 {
        return Err(IrError::Graph(format!("kv model {cfg:?}: vocab and max_cache must be > 0")));
    }
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let ids = b.input("input_ids", TensorType::new(DType::I64, [batch.clone(), seq.clone()]));
    let pos = b.input("cache_position", TensorType::new(DType::I64, [seq]));
    let cache_ty = TensorType::new(
        d.dtype,
        [batch, Dim::Known(d.kv_heads), Dim::Known(cfg.max_cache), Dim::Known(d.head_dim())],
    );
    let mut past = Vec::new();
    for l in 0..d.layers {
        let k = b.input(&format!("past_key_values.{l}.key"), cache_ty.clone());
        let v = b.input(&format!("past_key_values.{l}.value"), cache_ty.clone());
        past.push((k, v));
    }
    let mut c = Composer::new(&mut b, d.dtype, d.seed);
    let embed = c.weight(&[cfg.vocab, d.hidden], 1.0);
    let mut h = c.b.add(Op::Gather { axis: 0 }, &[embed, ids])?;
    let (cos, sin) = c.cos_sin_at(pos, d.head_dim())?;
    let slots = CacheSlots::new(&mut c, pos, cfg.max_cache, CacheWrite::default())?;
    let mut present = Vec::new();
    for &(pk, pv) in &past {
        let (out, k, v) = kv_layer(&mut c, h, &d, (cos, sin), &slots, (pk, pv))?;
        h = out;
        present.push((k, v));
    }
    crate::lm_outputs(&mut c, h, &d, cfg.vocab, present)?;
    Ok(g)
}

/// One decoder layer with a static KV cache (no embedding, no head): inputs
/// `hidden_states` `{batch, seq, hidden}`, `cache_position` i64 `{seq}`,
/// `past_key_values.0.key` / `.value` `{batch, kv_heads, max_cache, head_dim}`; outputs `out`
/// and `present.0.key` / `.value`. What the GPU bench times against hand-written MLX. The
/// cache is written with [`CacheWrite::SliceUpdate`]; see [`llama_kv_layer_with`].
pub fn llama_kv_layer(d: DecoderConfig, max_cache: usize) -> Result<Graph, IrError> {
    llama_kv_layer_with(d, max_cache, CacheWrite::default())
}

/// [`llama_kv_layer`] with the cache written as `write` says.
pub fn llama_kv_layer_with(d: DecoderConfig, max_cache: usize, write: CacheWrite) -> Result<Graph, IrError> {
    d.check()?;
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let (batch, seq) = (Dim::sym("batch"), Dim::sym("seq"));
    let x = b
        .input("hidden_states", TensorType::new(d.dtype, [batch.clone(), seq.clone(), Dim::Known(d.hidden)]));
    let pos = b.input("cache_position", TensorType::new(DType::I64, [seq]));
    let cache_ty = TensorType::new(
        d.dtype,
        [batch, Dim::Known(d.kv_heads), Dim::Known(max_cache), Dim::Known(d.head_dim())],
    );
    let pk = b.input("past_key_values.0.key", cache_ty.clone());
    let pv = b.input("past_key_values.0.value", cache_ty);
    let mut c = Composer::new(&mut b, d.dtype, d.seed);
    let (cos, sin) = c.cos_sin_at(pos, d.head_dim())?;
    let slots = CacheSlots::new(&mut c, pos, max_cache, write)?;
    let (out, k, v) = kv_layer(&mut c, x, &d, (cos, sin), &slots, (pk, pv))?;
    g.add_output("out", out);
    g.add_output("present.0.key", k);
    g.add_output("present.0.value", v);
    Ok(g)
}

/// How every layer's cache update writes, shared by the layers.
enum Write {
    /// `slice_update` along the sequence axis at this i64 scalar (`cache_position[0]`).
    At(Value),
    /// The one-hot `{max, seq}` matrix (1 where slot t receives new token j) and the
    /// `{max, 1}` bool "slot t is written this step".
    OneHot { onehot: Value, written: Value },
}

/// What every layer's cache update and attention share: the write and the additive mask.
struct CacheSlots {
    write: Write,
    /// `{seq, max}` additive mask: 0 where slot t ≤ the query's position.
    mask: Value,
}

impl CacheSlots {
    fn new(c: &mut Composer<'_, '_>, pos: Value, max: usize, how: CacheWrite) -> Result<Self, IrError> {
        let seq = Dim::sym("seq");
        let t = c.b.add(Op::Range { start: 0.0, step: 1.0, len: Dim::Known(max), dtype: DType::I64 }, &[])?;
        let write = match how {
            CacheWrite::SliceUpdate => {
                let first = c.b.constant(HostTensor::from_i64(vec![], &[0]));
                Write::At(c.b.add(Op::Gather { axis: 0 }, &[pos, first])?)
            }
            CacheWrite::OneHot => {
                let t_col = c.b.reshape(t, vec![Dim::Known(max), Dim::Known(1)])?;
                let p_row = c.b.reshape(pos, vec![Dim::Known(1), seq.clone()])?;
                let hit = c.b.binary(BinaryOp::Equal, t_col, p_row)?;
                let onehot = c.b.cast(hit, c.dtype())?;
                let any = c.b.reduce(ReduceOp::Max, onehot, &[1], true)?;
                let half = c.scalar(0.5);
                let written = c.b.binary(BinaryOp::Greater, any, half)?;
                Write::OneHot { onehot, written }
            }
        };
        let t_row = c.b.reshape(t, vec![Dim::Known(1), Dim::Known(max)])?;
        let p_col = c.b.reshape(pos, vec![seq, Dim::Known(1)])?;
        let allowed = c.b.binary(BinaryOp::LessEqual, t_row, p_col)?;
        let mask = c.additive_mask(allowed)?;
        Ok(CacheSlots { write, mask })
    }

    /// The cache buffer `past` with `new` `{batch, kv, seq, hd}` written at the positions.
    fn update(&self, c: &mut Composer<'_, '_>, past: Value, new: Value) -> Result<Value, IrError> {
        match self.write {
            Write::At(start) => c.b.add(Op::SliceUpdate { axis: 2 }, &[past, new, start]),
            Write::OneHot { onehot, written } => {
                let scattered = c.b.matmul(onehot, new)?;
                c.b.select(written, scattered, past)
            }
        }
    }
}

/// One decoder layer with the cache: returns the hidden state and the layer's present key
/// and value buffers.
fn kv_layer(
    c: &mut Composer<'_, '_>,
    h: Value,
    d: &DecoderConfig,
    (cos, sin): (Value, Value),
    slots: &CacheSlots,
    (past_k, past_v): (Value, Value),
) -> Result<(Value, Value, Value), IrError> {
    c.decoder_layer_with(h, d, (cos, sin), slots.mask, |c, k, v| {
        Ok((slots.update(c, past_k, k)?, slots.update(c, past_v, v)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiny_model_validates_with_paired_names() {
        let g = llama_kv_model(KvConfig::tiny()).unwrap();
        g.validate().unwrap();
        let names: Vec<String> = g.inputs().iter().map(|&i| g.node(i).name.clone().unwrap()).collect();
        assert_eq!(names[..3], ["input_ids", "cache_position", "past_key_values.0.key"]);
        let outs: Vec<&str> = g.outputs().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(outs, ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]);
        assert_eq!(g.value_type(g.outputs()[1].1), &g.node(g.inputs()[2]).types[0]);
        let layer = llama_kv_layer(KvConfig::tiny().decoder, 16).unwrap();
        layer.validate().unwrap();
        assert_eq!(layer.outputs().len(), 3);
        let bad = KvConfig { vocab: 0, ..KvConfig::tiny() };
        assert!(llama_kv_model(bad).is_err());
    }
}
