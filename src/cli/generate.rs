//! `blockfuse generate MODEL`: greedy decoding with a KV-cache model. A random prompt is
//! prefilled in one step, then one token per step (the argmax of the last logits), the
//! cache staying in the backend's session between steps; `--check` runs every step on the
//! fallback evaluator too and compares the logits.

use super::{load, BackendArgs, Failure};
use crate::cache::{cache_pairs, parse_override};
use crate::compare::{compare, Tolerance};
use crate::{CachePair, Error, Registry, Session};
use blockfuse_ir::{Graph, HostTensor};
use blockfuse_patterns::{default_rules, optimize};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Instant;

/// Arguments of `generate`.
#[derive(clap::Args)]
pub(super) struct Args {
    /// A KV-cache model (`.json` or `.onnx`), or `tiny-kv` / `tiny-kv-concat` for the bundled
    /// tiny model with a static (fixed buffer) / concat-form (growing) cache.
    model: String,
    /// Prompt tokens (random ids), prefilled in one step.
    #[arg(long, default_value_t = 8)]
    prompt_len: usize,
    /// Tokens to generate after the prompt.
    #[arg(long, default_value_t = 16)]
    tokens: usize,
    #[command(flatten)]
    backend: BackendArgs,
    /// Compare every step's logits with the fallback evaluator (exit 1 on a mismatch).
    #[arg(long)]
    check: bool,
    /// Run the model as loaded, without fusing blocks.
    #[arg(long)]
    no_optimize: bool,
    /// Pair a cache input with its output by name, overriding the automatic pairing
    /// (repeatable).
    #[arg(long = "cache-pair", value_name = "PAST=PRESENT", value_parser = parse_override)]
    cache_pair: Vec<(String, String)>,
    /// Seed of the random prompt.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// How the step inputs that are not cache inputs are made, by their role.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// `{batch, seq}` token ids.
    Ids,
    /// `{seq}` positions of the new tokens.
    CachePosition,
    /// `{batch, seq}` positions of the new tokens.
    PositionIds,
    /// `{batch, past + seq}` ones.
    AttentionMask,
}

fn roles(g: &Graph, pairs: &[CachePair]) -> Result<Vec<Role>, Error> {
    let mut roles = Vec::new();
    for (i, &id) in g.inputs().iter().enumerate() {
        if pairs.iter().any(|p| p.input == i) {
            continue;
        }
        let name = g.node(id).name.clone().unwrap_or_default();
        roles.push(match name.as_str() {
            n if n.contains("input_ids") => Role::Ids,
            n if n.contains("cache_position") => Role::CachePosition,
            n if n.contains("position_ids") => Role::PositionIds,
            n if n.contains("attention_mask") => Role::AttentionMask,
            n => {
                return Err(Error::Other(format!(
                    "generate: input \"{n}\" is neither a cache input (pair it with --cache-pair) nor input_ids, cache_position, position_ids or attention_mask"
                )))
            }
        });
    }
    if !roles.contains(&Role::Ids) {
        return Err(Error::Other("generate: the model has no input_ids input".into()));
    }
    Ok(roles)
}

/// The non-cache inputs of one step: `tokens` at positions `start..`.
fn step_inputs(roles: &[Role], tokens: &[i64], start: usize) -> Vec<HostTensor> {
    let n = tokens.len();
    let pos: Vec<i64> = (start..start + n).map(|p| p as i64).collect();
    roles
        .iter()
        .map(|r| match r {
            Role::Ids => HostTensor::from_i64(vec![1, n], tokens),
            Role::CachePosition => HostTensor::from_i64(vec![n], &pos),
            Role::PositionIds => HostTensor::from_i64(vec![1, n], &pos),
            Role::AttentionMask => HostTensor::from_i64(vec![1, start + n], &vec![1; start + n]),
        })
        .collect()
}

/// The argmax over the vocabulary of the last position's logits `{1, seq, vocab}`.
fn last_argmax(logits: &HostTensor) -> i64 {
    let vocab = *logits.dims().last().unwrap_or(&1);
    let from = logits.len().saturating_sub(vocab);
    let mut best = (f64::NEG_INFINITY, 0usize);
    for k in 0..vocab {
        let v = logits.get_f64(from + k);
        if v > best.0 {
            best = (v, k);
        }
    }
    best.1 as i64
}

fn load_kv(model: &str) -> Result<Graph, Error> {
    if model == "tiny-kv" {
        Ok(blockfuse_models::llama_kv_model(blockfuse_models::KvConfig::tiny())?)
    } else if model == "tiny-kv-concat" {
        let cfg = blockfuse_models::KvConfig::tiny();
        Ok(blockfuse_models::llama_concat_kv_model(cfg.decoder, cfg.vocab)?)
    } else {
        load(Path::new(model))
    }
}

/// One step on `s` (and on the checker), returning the logits.
fn step(
    s: &mut dyn Session,
    inputs: &[HostTensor],
    pairs: &[CachePair],
    logits_at: usize,
) -> Result<HostTensor, Error> {
    let mut outs = s.step(inputs, pairs)?;
    outs.get_mut(logits_at)
        .and_then(Option::take)
        .ok_or_else(|| Error::Other(format!("generate: output {logits_at} (logits) is missing")))
}

pub(super) fn run(a: Args, registry: &Registry) -> Result<(), Failure> {
    let backend = a.backend.create(registry)?;
    let mut g = load_kv(&a.model)?;
    if !a.no_optimize {
        optimize(&mut g, &default_rules())?;
    }
    let pairs = cache_pairs(&g, &a.cache_pair)?;
    if pairs.is_empty() {
        return Err(Error::Other(
            "generate: no cache pairs found (name them with --cache-pair PAST=PRESENT)".into(),
        )
        .into());
    }
    let roles = roles(&g, &pairs)?;
    let logits_at = (0..g.outputs().len())
        .find(|o| g.outputs().get(*o).is_some_and(|(name, _)| name.contains("logits")))
        .or_else(|| (0..g.outputs().len()).find(|o| !pairs.iter().any(|p| p.output == *o)))
        .ok_or_else(|| Error::Other("generate: no logits output".into()))?;
    let vocab = g
        .outputs()
        .get(logits_at)
        .and_then(|(_, v)| g.value_type(*v).shape.last().and_then(|d| d.known()))
        .unwrap_or(2);
    let total = a.prompt_len.max(1) + a.tokens;
    for p in &pairs {
        let Some(ty) = g.inputs().get(p.input).and_then(|&id| g.node(id).types.first()) else {
            return Err(Error::Other(format!("generate: the graph has no input {}", p.input)).into());
        };
        if let Some(cap) = ty.shape.get(2).and_then(|d| d.known()) {
            if roles.contains(&Role::CachePosition) && cap < total {
                return Err(Error::Other(format!(
                    "generate: the cache holds {cap} positions, prompt + tokens need {total}"
                ))
                .into());
            }
        }
    }
    let fallback = if a.check { Some(registry.create("fallback")?) } else { None };
    let mut checker = match &fallback {
        Some(f) => Some(f.prepare(&g)?),
        None => None,
    };
    let mut session = backend.prepare(&g)?;
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let prompt: Vec<i64> = (0..a.prompt_len.max(1)).map(|_| rng.gen_range(0..vocab as i64)).collect();
    let (mut worst, mut generated) = (0.0f64, Vec::new());
    let mut check = |logits: &HostTensor, inputs: &[HostTensor], step_no: usize| -> Result<(), Failure> {
        if let Some(c) = checker.as_mut() {
            let want = step(&mut **c, inputs, &pairs, logits_at)?;
            let cmp = compare(logits, &want, Tolerance::for_dtype(want.dtype()));
            worst = worst.max(cmp.max_abs);
            if !cmp.passed() {
                return Err(Failure::Mismatch(format!(
                    "generate --check: step {step_no}: logits differ from the fallback evaluator's (max_abs {:.3e}, {} bad)",
                    cmp.max_abs, cmp.bad
                )));
            }
        }
        Ok(())
    };
    let inputs = step_inputs(&roles, &prompt, 0);
    let t = Instant::now();
    let logits = step(&mut *session, &inputs, &pairs, logits_at)?;
    let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    check(&logits, &inputs, 0)?;
    let mut next = last_argmax(&logits);
    let mut decode_ms = Vec::new();
    for k in 0..a.tokens {
        generated.push(next);
        let inputs = step_inputs(&roles, &[next], prompt.len() + k);
        let t = Instant::now();
        let logits = step(&mut *session, &inputs, &pairs, logits_at)?;
        decode_ms.push(t.elapsed().as_secs_f64() * 1e3);
        check(&logits, &inputs, k + 1)?;
        next = last_argmax(&logits);
    }
    let per_token =
        if decode_ms.is_empty() { 0.0 } else { decode_ms.iter().sum::<f64>() / decode_ms.len() as f64 };
    let stats = session.stats();
    println!(
        "backend: {}  cache pairs: {}  prompt: {}  generated: {}",
        backend.name(),
        pairs.len(),
        prompt.len(),
        a.tokens
    );
    println!("tokens: {generated:?}");
    println!("prefill ms        {prefill_ms:>10.3}");
    println!("decode ms/token   {per_token:>10.3}");
    println!("tokens/s          {:>10.1}", if per_token > 0.0 { 1e3 / per_token } else { 0.0 });
    println!("lowerings         {:>10}", stats.lowerings);
    println!("host copy ms      {:>10.3}", stats.host_copy_s * 1e3);
    if a.check {
        println!(
            "check: {} steps equal to the fallback evaluator's (max |logits diff| {worst:.3e})",
            a.tokens + 1
        );
    }
    Ok(())
}
