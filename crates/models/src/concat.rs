//! A Llama-style language model with a concat-form (dynamic) KV cache, in primitive ops:
//! what `transformers`/`optimum` exports with `past_key_values` look like.
//!
//! Inputs: `input_ids` i64 `{batch, seq}` (the new tokens) and per layer
//! `past_key_values.L.key` / `.value` `{batch, kv_heads, past_seq, head_dim}`. Outputs:
//! `logits` `{batch, seq, vocab}` and per layer `present.L.key` / `.value`
//! `{batch, kv_heads, past_seq+seq, head_dim}` = `concat(past, new)` along the sequence axis;
//! `present.L.*` pairs with `past_key_values.L.*` by name.
//!
//! The new tokens sit at positions `past_seq + t` (`range(seq) + sym_const[past_seq]`, the
//! RoPE angles), and attention runs over past + new keys with the causal band aligned to the
//! end: query t sees key j iff `j ≤ past_seq + t` (an additive `{seq, past_seq+seq}` mask).
//! Feeding `present` back as `past` grows `past_seq` by `seq` per step.

use crate::{Composer, DecoderConfig};
use blockfuse_ir::{BinaryOp, Builder, DType, Dim, Graph, IrError, Op, TensorType, Value};

/// `past_seq + seq`, the length of the cache after a step.
fn total() -> Dim {
    Dim::sym("past_seq").add(&Dim::sym("seq")).expect("no overflow")
}

/// Builds the concat-form KV-cache model: the layers of `d` (its `final_norm` always
/// applied), a token embedding of `vocab` rows and an LM head.
pub fn llama_concat_kv_model(d: DecoderConfig, vocab: usize) -> Result<Graph, IrError> {
    d.check()?;
    if vocab == 0 {
        return Err(IrError::Graph(format!("concat kv model {d:?}: vocab must be > 0")));
    }
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let ids = b.input("input_ids", TensorType::new(DType::I64, [Dim::sym("batch"), Dim::sym("seq")]));
    let past: Vec<(Value, Value)> = (0..d.layers)
        .map(|l| {
            let k = b.input(&format!("past_key_values.{l}.key"), past_type(&d));
            let v = b.input(&format!("past_key_values.{l}.value"), past_type(&d));
            (k, v)
        })
        .collect();
    let mut c = Composer::new(&mut b, d.dtype, d.seed);
    let embed = c.weight(&[vocab, d.hidden], 1.0);
    let mut h = c.b.add(Op::Gather { axis: 0 }, &[embed, ids])?;
    let step = Step::new(&mut c, d.head_dim())?;
    let mut present = Vec::new();
    for &pkv in &past {
        let (out, k, v) = concat_layer(&mut c, h, &d, &step, pkv)?;
        h = out;
        present.push((k, v));
    }
    crate::lm_outputs(&mut c, h, &d, vocab, present)?;
    Ok(g)
}

/// One decoder layer with a concat-form cache (no embedding, no head): inputs
/// `hidden_states` `{batch, seq, hidden}`, `past_key_values.0.key` / `.value`
/// `{batch, kv_heads, past_seq, head_dim}`; outputs `out` and `present.0.key` / `.value`
/// `{batch, kv_heads, past_seq+seq, head_dim}`.
pub fn llama_concat_kv_layer(d: DecoderConfig) -> Result<Graph, IrError> {
    d.check()?;
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let hidden = [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(d.hidden)];
    let x = b.input("hidden_states", TensorType::new(d.dtype, hidden));
    let pk = b.input("past_key_values.0.key", past_type(&d));
    let pv = b.input("past_key_values.0.value", past_type(&d));
    let mut c = Composer::new(&mut b, d.dtype, d.seed);
    let step = Step::new(&mut c, d.head_dim())?;
    let (out, k, v) = concat_layer(&mut c, x, &d, &step, (pk, pv))?;
    g.add_output("out", out);
    g.add_output("present.0.key", k);
    g.add_output("present.0.value", v);
    Ok(g)
}

fn past_type(d: &DecoderConfig) -> TensorType {
    TensorType::new(
        d.dtype,
        [Dim::sym("batch"), Dim::Known(d.kv_heads), Dim::sym("past_seq"), Dim::Known(d.head_dim())],
    )
}

/// What every layer of one step shares: the RoPE tables at `past_seq + t` and the mask.
struct Step {
    cos: Value,
    sin: Value,
    /// `{seq, past_seq+seq}` additive: 0 where key j ≤ past_seq + query t.
    mask: Value,
}

impl Step {
    fn new(c: &mut Composer<'_, '_>, hd: usize) -> Result<Self, IrError> {
        let (seq, total) = (Dim::sym("seq"), total());
        let past = c.b.add(Op::SymConst(vec![Dim::sym("past_seq")]), &[])?;
        let t = c.range(&seq)?;
        let pos = c.b.add2(t, past)?;
        let (cos, sin) = c.cos_sin_at(pos, hd)?;
        let keys = c.range(&total)?;
        let keys = c.b.reshape(keys, vec![Dim::Known(1), total])?;
        let queries = c.b.reshape(pos, vec![seq, Dim::Known(1)])?;
        let allowed = c.b.binary(BinaryOp::LessEqual, keys, queries)?;
        let mask = c.additive_mask(allowed)?;
        Ok(Step { cos, sin, mask })
    }
}

/// One decoder layer: returns the hidden state and the layer's present key and value.
fn concat_layer(
    c: &mut Composer<'_, '_>,
    h: Value,
    d: &DecoderConfig,
    step: &Step,
    (past_k, past_v): (Value, Value),
) -> Result<(Value, Value, Value), IrError> {
    c.decoder_layer_with(h, d, (step.cos, step.sin), step.mask, |c, k, v| {
        Ok((c.b.concat(&[past_k, k], 2)?, c.b.concat(&[past_v, v], 2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvConfig;

    #[test]
    fn present_is_typed_past_plus_seq_and_pairs_by_name() {
        let d = KvConfig::tiny().decoder;
        let g = llama_concat_kv_model(d, 96).unwrap();
        g.validate().unwrap();
        let names: Vec<String> = g.inputs().iter().map(|&i| g.node(i).name.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "input_ids",
                "past_key_values.0.key",
                "past_key_values.0.value",
                "past_key_values.1.key",
                "past_key_values.1.value"
            ]
        );
        let outs: Vec<&str> = g.outputs().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(outs, ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]);
        assert_eq!(g.value_type(g.outputs()[1].1).to_string(), "f32[batch, 2, past_seq+seq, 16]");
        assert_eq!(g.value_type(g.outputs()[0].1).to_string(), "f32[batch, seq, 96]");
        let layer = llama_concat_kv_layer(d).unwrap();
        layer.validate().unwrap();
        assert_eq!(layer.value_type(layer.outputs()[2].1).to_string(), "f32[batch, 2, past_seq+seq, 16]");
        assert!(llama_concat_kv_model(d, 0).is_err());
    }
}
