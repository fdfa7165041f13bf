//! Weight quantization (lossy, opt-in: `blockfuse optimize --quantize 4[:64]`), the graph-level
//! counterpart of `mlx_lm.convert -q`: every `MatMul(x, W)` whose weight `W {K, N}` is a float
//! constant becomes a [`QuantizedMatmul`] of `Wᵀ` quantized affinely along K
//! ([`quantize_affine`]), and every `Gather(T, ids)` of rows of a float constant table `T {V, D}`
//! becomes a [`QuantizedEmbedding`] (the table packed row by row). Unlike the fusion rules this changes values (within half a
//! quantization step per weight), so it never runs as part of [`crate::optimize`].

use crate::driver::NearMiss;
use blockfuse_ir::blocks::{quantize_affine, QuantizedEmbedding, QuantizedMatmul};
use blockfuse_ir::Block;
use blockfuse_ir::{DType, Graph, HostTensor, IrError, NodeId, Op, Value};
use serde::Serialize;
use std::str::FromStr;
use std::sync::Arc;

/// How to quantize: bits per weight and the group size along the input dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// 4 or 8.
    pub bits: u32,
    /// 32, 64 or 128 input channels per scale and bias.
    pub group_size: u32,
}

impl FromStr for QuantizeOptions {
    type Err = String;

    /// `"4"`, `"8"`, or `"BITS:GROUP"` such as `"4:64"` (the group size defaults to 64, as in
    /// `mlx_lm`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (bits, group) = s.split_once(':').unwrap_or((s, "64"));
        let parse = |v: &str, what: &str| {
            v.trim().parse::<u32>().map_err(|_| format!("--quantize: {what} {v:?} is not a number"))
        };
        let opts = QuantizeOptions { bits: parse(bits, "bits")?, group_size: parse(group, "group size")? };
        QuantizedMatmul::new(opts.bits, opts.group_size)
            .validate()
            .map_err(|e| format!("--quantize: {e}"))?;
        Ok(opts)
    }
}

/// What [`quantize_weights`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuantizeReport {
    /// MatMuls that became quantized blocks.
    pub quantized: usize,
    /// Embedding gathers that became quantized blocks.
    pub embeddings: usize,
    /// Bytes of all constants before.
    pub constant_bytes_before: usize,
    /// Bytes of all constants after (a weight that other nodes still read stays as well).
    pub constant_bytes_after: usize,
    /// MatMuls with a constant weight that were left as they were, and why.
    pub skipped: Vec<NearMiss>,
}

/// Quantizes the constant weights of every eligible MatMul of `g` in place.
pub fn quantize_weights(g: &mut Graph, opts: QuantizeOptions) -> Result<QuantizeReport, IrError> {
    let mut report = QuantizeReport { constant_bytes_before: constant_bytes(g), ..Default::default() };
    let candidates: Vec<(NodeId, Site)> =
        g.node_ids().filter_map(|id| Some((id, Site::of(&g.node(id).op)?))).collect();
    for (id, site) in candidates {
        match site.eligible_weight(g, id, opts) {
            Ok(None) => {}
            Ok(Some(w)) => {
                site.quantize(g, id, &w, opts)?;
                *(if site == Site::Embedding { &mut report.embeddings } else { &mut report.quantized }) += 1;
            }
            Err(reason) => report.skipped.push(NearMiss {
                rule: "quantize".to_string(),
                node: g.label(id).to_string(),
                reason,
            }),
        }
    }
    g.remove_dead();
    report.constant_bytes_after = constant_bytes(g);
    Ok(report)
}

/// Where a constant weight is read: the right operand of a MatMul, or the table of a row gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    Matmul,
    Embedding,
}

impl Site {
    fn of(op: &Op) -> Option<Site> {
        match op {
            Op::MatMul => Some(Site::Matmul),
            Op::Gather { axis: 0 } => Some(Site::Embedding),
            _ => None,
        }
    }

    /// The operand positions of (activation or ids, weight).
    fn operands(self) -> (usize, usize) {
        match self {
            Site::Matmul => (0, 1),
            Site::Embedding => (1, 0),
        }
    }

    /// The weight of node `id` when it can be quantized; `None` when it is not a constant
    /// (nothing to say); `Err` when it is one but does not fit the block.
    fn eligible_weight(
        self,
        g: &Graph,
        id: NodeId,
        opts: QuantizeOptions,
    ) -> Result<Option<HostTensor>, String> {
        let (a, w) = self.operands();
        let [x, w] = [a, w].map(|i| g.node(id).operands[i]);
        let Op::Constant(weight) = &g.node(w.node).op else { return Ok(None) };
        if !weight.dtype().is_float() || weight.dims().len() != 2 {
            return Err(format!(
                "the weight is {} {:?}, not a 2-D float matrix",
                weight.dtype(),
                weight.dims()
            ));
        }
        // The grouped axis: K (rows of W) for a matmul, D (columns of T) for a table.
        let grouped = weight.dims()[if self == Site::Matmul { 0 } else { 1 }];
        if !grouped.is_multiple_of(opts.group_size as usize) {
            return Err(format!(
                "the grouped axis has {grouped} values, not a multiple of the group size {}",
                opts.group_size
            ));
        }
        let x = g.value_type(x);
        match self {
            Site::Matmul if x.dtype != weight.dtype() => {
                Err(format!("the activation is {} and the weight {}", x.dtype, weight.dtype()))
            }
            Site::Matmul if x.rank() < 2 => Err("the activation has rank 1".to_string()),
            _ => Ok(Some(weight.clone())),
        }
    }

    fn quantize(
        self,
        g: &mut Graph,
        id: NodeId,
        w: &HostTensor,
        opts: QuantizeOptions,
    ) -> Result<(), IrError> {
        let values = w.to_f64_vec();
        let (rows, cols, data): (usize, usize, Vec<f32>) = match self {
            // Wᵀ {N, K}: MLX's layout groups along the input dimension.
            Site::Matmul => {
                let (k, n) = (w.dims()[0], w.dims()[1]);
                (n, k, (0..n * k).map(|i| values[(i % k) * n + i / k] as f32).collect())
            }
            Site::Embedding => (w.dims()[0], w.dims()[1], values.iter().map(|&v| v as f32).collect()),
        };
        let q = quantize_affine(&data, rows, cols, opts.bits, opts.group_size).map_err(IrError::Graph)?;
        let node = g.node(id);
        let (a, wi) = self.operands();
        let (x, weight_name, name) =
            (node.operands[a], g.node(node.operands[wi].node).name.clone(), node.name.clone());
        let named = |suffix: &str| weight_name.as_ref().map(|w| format!("{w}.{suffix}"));
        let groups = vec![rows, cols / opts.group_size as usize];
        let packed = HostTensor::from_bytes(DType::U8, vec![rows, q.packed.len() / rows], q.packed)
            .map_err(|e| IrError::Graph(format!("quantize: {e}")))?;
        let as_scale = |v: &[f32]| {
            HostTensor::from_f64(w.dtype(), groups.clone(), &v.iter().map(|&s| s as f64).collect::<Vec<_>>())
        };
        let consts = [
            (packed, named("packed")),
            (as_scale(&q.scales), named("scales")),
            (as_scale(&q.biases), named("biases")),
        ]
        .into_iter()
        .map(|(t, nm)| g.add_node(Op::Constant(t), &[], nm).map(Value::first))
        .collect::<Result<Vec<_>, _>>()?;
        let block: Arc<dyn Block> = match self {
            Site::Matmul => Arc::new(q.block),
            Site::Embedding => Arc::new(QuantizedEmbedding::new(opts.bits, opts.group_size)),
        };
        let new = g.add_node(Op::Block(block), &[x, consts[0], consts[1], consts[2]], name)?;
        g.replace_all_uses(Value::first(id), Value::first(new));
        g.remove_node(id);
        Ok(())
    }
}

fn constant_bytes(g: &Graph) -> usize {
    g.node_ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Constant(t) => Some(t.bytes().len()),
            _ => None,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_bits_and_group() {
        assert_eq!("4".parse::<QuantizeOptions>().unwrap(), QuantizeOptions { bits: 4, group_size: 64 });
        assert_eq!("8:128".parse::<QuantizeOptions>().unwrap(), QuantizeOptions { bits: 8, group_size: 128 });
        assert!("3".parse::<QuantizeOptions>().unwrap_err().contains("bits"));
        assert!("4:48".parse::<QuantizeOptions>().unwrap_err().contains("group_size"));
        assert!("four".parse::<QuantizeOptions>().unwrap_err().contains("not a number"));
    }
}
