//! `CenterCropPad`, `ReverseSequence`, `LRN`: more compositions of slices, pads, gathers and
//! reductions.

use crate::import::prelude::*;

impl Importer {
    /// `CenterCropPad`: each listed axis cropped or zero-padded to the target size, centered
    /// (the odd element goes to the end).
    pub(crate) fn center_crop_pad(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let shape = self
            .known_req(&self.in_req(n, 1)?, "shape")?
            .consts()
            .ok_or_else(|| self.err("symbolic shape"))?;
        let axes: Vec<usize> = match attr_ints(n, "axes") {
            Some(a) => a.iter().map(|&v| self.axis_of(v, t.rank())).collect::<R<_>>()?,
            None => (0..t.rank()).collect(),
        };
        if shape.len() != axes.len() {
            return Err(self.err(format!("{} target sizes for {} axes", shape.len(), axes.len())));
        }
        let mut y = x;
        for (&a, &sh) in axes.iter().zip(&shape) {
            let dim = t.shape[a].known().ok_or_else(|| self.err("cropped/padded axes must be known"))? as i64;
            if sh < 0 {
                return Err(self.err(format!("target size {sh} is negative")));
            }
            if sh < dim {
                let start = (dim - sh) / 2;
                y = self.slice_axis_v(y, a, start, start + sh, 1)?;
            } else if sh > dim {
                let before = (sh - dim) / 2;
                y = self.pad_axis(y, a, before as usize, (sh - dim - before) as usize, 0.0)?;
            }
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `ReverseSequence`: per batch entry, the first `sequence_lens[b]` steps reversed (a gather).
    pub(crate) fn reverse_sequence(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        let dims = t.known_dims().ok_or_else(|| self.unsupported(format!("symbolic dims ({t})")))?;
        let r = dims.len();
        let (ba, ta) =
            (self.axis_of(attr_i(n, "batch_axis", 1), r)?, self.axis_of(attr_i(n, "time_axis", 0), r)?);
        if ba == ta {
            return Err(self.err("batch_axis and time_axis must differ"));
        }
        let lens = self.input_v(n, 1)?;
        let lens = self.cast_to(lens, DType::I64)?;
        let mut ls = vec![Dim::Known(1); r];
        ls[ba] = Dim::Known(dims[ba]);
        let lens = self.reshape_v(lens, ls)?;
        let tt = self.iota_along(Dim::Known(dims[ta]), ta, r)?;
        let inside = self.bin(BinaryOp::Less, tt, lens)?;
        let one = self.scalar_of(DType::I64, 1.0)?;
        let last = self.bin(BinaryOp::Sub, lens, one)?;
        let rev = self.bin(BinaryOp::Sub, last, tt)?;
        let src = self.emit(Op::Where, &[inside, rev, tt])?;
        let src = self.emit(Op::Expand { shape: dims.iter().map(|&d| Dim::Known(d)).collect() }, &[src])?;
        let mut comps = vec![];
        for (k, &d) in dims.iter().enumerate() {
            comps.push(if k == ta { src } else { self.iota_along(Dim::Known(d), k, r)? });
        }
        let y = self.flat_gather(x, comps)?;
        self.out(n, 0, y);
        Ok(())
    }

    /// `LRN`: `x / (bias + alpha/size · Σ x²)^beta`, the sum over a window of channels.
    pub(crate) fn lrn(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        let c = t.shape.get(1).and_then(Dim::known).filter(|_| t.rank() >= 3);
        let c = c.ok_or_else(|| self.err(format!("input must be [N, C, …] with a known C, got {t}")))?;
        let size = usize::try_from(attr_i(n, "size", 0)).ok().filter(|&s| s > 0);
        let size = size.ok_or_else(|| self.err("size must be a positive integer"))?;
        let (alpha, beta, bias) =
            (attr_f(n, "alpha", 1e-4) as f64, attr_f(n, "beta", 0.75) as f64, attr_f(n, "bias", 1.0) as f64);
        let (c1, c2) = ((size - 1) / 2, (size - 1).div_ceil(2));
        let sq = self.un(UnaryOp::Square, x)?;
        let sp = self.pad_axis(sq, 1, c1, c2, 0.0)?;
        let mut acc: Option<Value> = None;
        for k in 0..size {
            let s = self.slice_axis_v(sp, 1, k as i64, (k + c) as i64, 1)?;
            acc = Some(match acc {
                Some(a) => self.bin(BinaryOp::Add, a, s)?,
                None => s,
            });
        }
        let sum = acc.expect("size > 0");
        let k = self.scalar_like(x, alpha / size as f64)?;
        let b = self.scalar_like(x, bias)?;
        let e = self.scalar_like(x, beta)?;
        let d = self.bin(BinaryOp::Mul, sum, k)?;
        let d = self.bin(BinaryOp::Add, d, b)?;
        let d = self.bin(BinaryOp::Pow, d, e)?;
        let y = self.bin(BinaryOp::Div, x, d)?;
        self.out(n, 0, y);
        Ok(())
    }
}
