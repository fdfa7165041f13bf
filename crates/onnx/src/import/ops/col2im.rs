//! ONNX `Col2Im` (PyTorch's `fold`) of static shapes: the columns spread onto the strided
//! output grid once, then one zero-padded copy per block position, summed, and the padding
//! cropped.

use crate::import::prelude::*;

/// The most block positions unrolled.
const MAX_TAPS: usize = 4096;

/// One spatial axis of a `Col2Im`.
struct Axis {
    image: usize,
    block: usize,
    dil: usize,
    stride: usize,
    /// Padding before.
    pad: usize,
    /// Blocks along the axis.
    per: usize,
    /// The padded image's size.
    padded: usize,
    /// The blocks spread to their stride.
    spread: usize,
}

impl Importer {
    /// ONNX `Col2Im`: `x` `[N, C·∏block, L]`, constant `image_shape` and `block_shape`,
    /// `dilations`, `pads` (begins then ends), `strides`; output `[N, C, image…]`.
    pub(crate) fn col2im(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let xt = self.g.value_type(x).clone();
        let Some(&[nb, ck, l]) = xt.known_dims().as_deref() else {
            return Err(self.err(format!("input must be [N, C·K, L] of known size, got {xt}")));
        };
        let consts = |imp: &Self, i: usize, what: &str| -> R<Vec<usize>> {
            let k = imp.known_req(&imp.in_req(n, i)?, what)?;
            k.consts()
                .and_then(|c| c.iter().map(|&v| usize::try_from(v).ok().filter(|&v| v > 0)).collect())
                .ok_or_else(|| imp.err(format!("{what} must be positive constants")))
        };
        let image = consts(self, 1, "image_shape")?;
        let block = consts(self, 2, "block_shape")?;
        let r = image.len();
        if block.len() != r || r == 0 {
            return Err(self.err(format!("image_shape {image:?} and block_shape {block:?} differ in length")));
        }
        let attr = |name: &str, len: usize, default: usize| -> R<Vec<usize>> {
            match attr_ints(n, name) {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len => v
                    .iter()
                    .map(|&a| usize::try_from(a).ok().filter(|&a| default == 0 || a > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        self.err(format!("{name} {v:?} must be {}", if default == 0 { "≥ 0" } else { "> 0" }))
                    }),
                Some(v) => Err(self.err(format!("{name} {v:?} must have {len} entries"))),
            }
        };
        let (dil, pads, strides) =
            (attr("dilations", r, 1)?, attr("pads", 2 * r, 0)?, attr("strides", r, 1)?);
        let taps: usize = block.iter().product();
        if taps > MAX_TAPS {
            return Err(self.unsupported(format!("Col2Im with {taps} block positions (at most {MAX_TAPS})")));
        }
        if ck % taps != 0 {
            return Err(self.err(format!("{ck} channels are not a multiple of the block size {taps}")));
        }
        let c = ck / taps;
        // Blocks per axis, and the padded image (`pads` has 2·r entries: begins, then ends).
        let (begins, ends) = pads.split_at(r.min(pads.len()));
        let mut axes = vec![];
        let per_axis = image.iter().zip(&block).zip(dil.iter().zip(&strides)).zip(begins.iter().zip(ends));
        for (((&image, &block), (&dil, &stride)), (&pad, &pad_end)) in per_axis {
            let padded = image + pad + pad_end;
            let span = dil * (block - 1) + 1;
            let per = padded
                .checked_sub(span)
                .map(|s| s / stride + 1)
                .ok_or_else(|| self.err("the block is larger than the padded image"))?;
            // The block axis spread to its stride: (count − 1)·stride + 1.
            let spread = (per - 1) * stride + 1;
            axes.push(Axis { image, block, dil, stride, pad, per, padded, spread });
        }
        let per: Vec<usize> = axes.iter().map(|a| a.per).collect();
        if per.iter().product::<usize>() != l {
            return Err(self.err(format!("{l} columns, but the image has {per:?} blocks")));
        }
        // [N, C, K, blocks…], each block axis spread to its stride: (count − 1)·stride + 1.
        let mut shape = vec![Dim::Known(nb), Dim::Known(c), Dim::Known(taps)];
        shape.extend(per.iter().map(|&p| Dim::Known(p)));
        let mut cols = self.reshape_v(x, shape.clone())?;
        for (i, a) in axes.iter().enumerate() {
            let s = a.stride;
            if s == 1 || a.per == 1 {
                continue;
            }
            let axis = 3 + i;
            let mut one = shape.clone();
            one.insert(axis + 1, Dim::Known(1));
            let v = self.reshape_v(cols, one.clone())?;
            let mut zeros = one.clone();
            *self.at_mut(&mut zeros, axis + 1)? = Dim::Known(s - 1);
            let z = self.emit(Op::Full { shape: zeros, value: 0.0, dtype: xt.dtype }, &[])?;
            let v = self.emit(Op::Concat { axis: axis as i64 + 1 }, &[v, z])?;
            *self.at_mut(&mut shape, axis)? = Dim::Known(a.per * s);
            let v = self.reshape_v(v, shape.clone())?;
            let keep = a.spread;
            cols = self.emit(
                Op::Slice(SliceSpec {
                    axes: vec![axis as i64],
                    starts: vec![Bound::Const(0)],
                    ends: vec![Bound::Const(keep as i64)],
                    steps: vec![1],
                }),
                &[v],
            )?;
            *self.at_mut(&mut shape, axis)? = Dim::Known(keep);
        }
        let mut out_shape = vec![Dim::Known(nb), Dim::Known(c)];
        out_shape.extend(axes.iter().map(|a| Dim::Known(a.spread)));
        let mut acc: Option<Value> = None;
        let mut tap = vec![0usize; r];
        for t in 0..taps {
            let part = self.emit(
                Op::Slice(SliceSpec {
                    axes: vec![2],
                    starts: vec![Bound::Const(t as i64)],
                    ends: vec![Bound::Const(t as i64 + 1)],
                    steps: vec![1],
                }),
                &[cols],
            )?;
            let mut part = self.reshape_v(part, out_shape.clone())?;
            for (i, (&t, a)) in tap.iter().zip(&axes).enumerate() {
                let before = t * a.dil;
                part = self.pad_axis(part, 2 + i, before, a.padded - before - a.spread, 0.0)?;
            }
            acc = Some(match acc {
                Some(a) => self.bin(BinaryOp::Add, a, part)?,
                None => part,
            });
            for (t, a) in tap.iter_mut().zip(&axes).rev() {
                *t += 1;
                if *t < a.block {
                    break;
                }
                *t = 0;
            }
        }
        let mut y = acc.ok_or_else(|| self.err("an empty block"))?;
        let crop = SliceSpec {
            axes: (0..r).map(|i| 2 + i as i64).collect(),
            starts: axes.iter().map(|a| Bound::Const(a.pad as i64)).collect(),
            ends: axes.iter().map(|a| Bound::Const((a.pad + a.image) as i64)).collect(),
            steps: vec![1; r],
        };
        if pads.iter().any(|&p| p > 0) {
            y = self.emit(Op::Slice(crop), &[y])?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}
