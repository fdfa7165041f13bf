//! `CenterCropPad`, `ReverseSequence`, `LRN`, `Det`, `Atan`/`Asin`/`Acos`: more compositions of
//! slices, pads, gathers, reductions and elementwise ops.

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
            let dim =
                self.at(&t.shape, a)?.known().ok_or_else(|| self.err("cropped/padded axes must be known"))?
                    as i64;
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
        *self.at_mut(&mut ls, ba)? = Dim::Known(self.at(&dims, ba)?);
        let lens = self.reshape_v(lens, ls)?;
        let tt = self.iota_along(Dim::Known(self.at(&dims, ta)?), ta, r)?;
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
        let sum = acc.ok_or_else(|| self.err("size must be positive"))?;
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

    /// Entry `(i, j)` of a matrix of values (rows of columns).
    fn cell(&self, e: &[Vec<Value>], i: usize, j: usize) -> R<Value> {
        let row = e.get(i).ok_or_else(|| self.err(format!("no row {i} in a {}-row matrix", e.len())))?;
        self.at(row, j)
    }

    /// `Det` of `[…, M, M]` matrices with M ≤ 3, by the cofactor expansion (exact formula).
    pub(crate) fn det(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let t = self.vt(x);
        self.need_float(&t)?;
        let r = t.rank();
        let m = match (t.shape.get(r.wrapping_sub(1)), t.shape.get(r.wrapping_sub(2))) {
            (Some(a), Some(b)) if a == b => a.known(),
            _ => None,
        };
        let m = m.filter(|&m| (1..=3).contains(&m));
        let m = m.ok_or_else(|| self.unsupported(format!("Det of {t}: only square matrices up to 3×3")))?;
        // (r ≥ 2: the last two axes are the matrices'.)
        let lead: Vec<Dim> = t.shape.iter().take(r - 2).cloned().collect();
        let mut e = vec![];
        for i in 0..m {
            let row = self.slice_axis_v(x, r - 2, i as i64, i as i64 + 1, 1)?;
            let mut cols = vec![];
            for j in 0..m {
                let c = self.slice_axis_v(row, r - 1, j as i64, j as i64 + 1, 1)?;
                cols.push(self.reshape_v(c, lead.clone())?);
            }
            e.push(cols);
        }
        use BinaryOp::{Add, Mul, Sub};
        let y = match m {
            1 => self.cell(&e, 0, 0)?,
            2 => {
                let a = self.bin(Mul, self.cell(&e, 0, 0)?, self.cell(&e, 1, 1)?)?;
                let b = self.bin(Mul, self.cell(&e, 0, 1)?, self.cell(&e, 1, 0)?)?;
                self.bin(Sub, a, b)?
            }
            _ => {
                let mut acc: Option<Value> = None;
                for j in 0..3 {
                    let (p, q) = ((j + 1) % 3, (j + 2) % 3);
                    let a = self.bin(Mul, self.cell(&e, 1, p)?, self.cell(&e, 2, q)?)?;
                    let b = self.bin(Mul, self.cell(&e, 1, q)?, self.cell(&e, 2, p)?)?;
                    let minor = self.bin(Sub, a, b)?;
                    let term = self.bin(Mul, self.cell(&e, 0, j)?, minor)?;
                    acc = Some(match acc {
                        Some(v) => self.bin(Add, v, term)?,
                        None => term,
                    });
                }
                acc.ok_or_else(|| self.err("a 3×3 determinant without terms"))?
            }
        };
        self.out(n, 0, y);
        Ok(())
    }

    /// `atan(x)` to f32 precision: `atan(x) = π/2·sign(x) − atan(1/x)` for |x| > 1, two
    /// half-angle reductions `t ↦ t/(1 + √(1 + t²))` (|t| ≤ tan(π/16)), then the odd Taylor
    /// series to t¹⁵ (truncation below 1e-12).
    fn atan_v(&mut self, x: Value) -> R<Value> {
        use BinaryOp::{Add, Div, Greater, Mul, Sub};
        let one = self.scalar_like(x, 1.0)?;
        let ax = self.un(UnaryOp::Abs, x)?;
        let big = self.bin(Greater, ax, one)?;
        let inv = self.bin(Div, one, x)?;
        let mut t = self.emit(Op::Where, &[big, inv, x])?;
        for _ in 0..2 {
            let t2 = self.un(UnaryOp::Square, t)?;
            let s = self.bin(Add, t2, one)?;
            let s = self.un(UnaryOp::Sqrt, s)?;
            let d = self.bin(Add, s, one)?;
            t = self.bin(Div, t, d)?;
        }
        let t2 = self.un(UnaryOp::Square, t)?;
        // Horner in t²: Σ (−1)ᵏ t²ᵏ / (2k+1), k = 0..7.
        let mut p = self.scalar_like(x, -1.0 / 15.0)?;
        for k in (0..7).rev() {
            let c = self.scalar_like(x, if k % 2 == 0 { 1.0 } else { -1.0 } / (2 * k + 1) as f64)?;
            let pt = self.bin(Mul, p, t2)?;
            p = self.bin(Add, pt, c)?;
        }
        let small = self.bin(Mul, p, t)?;
        let four = self.scalar_like(x, 4.0)?;
        let small = self.bin(Mul, small, four)?;
        // |x| > 1: π/2·sign(x) − atan(1/x).
        let z = self.scalar_like(x, 0.0)?;
        let (hp, hn) = (
            self.scalar_like(x, std::f64::consts::FRAC_PI_2)?,
            self.scalar_like(x, -std::f64::consts::FRAC_PI_2)?,
        );
        let pos = self.bin(Greater, x, z)?;
        let half = self.emit(Op::Where, &[pos, hp, hn])?;
        let far = self.bin(Sub, half, small)?;
        self.emit(Op::Where, &[big, far, small])
    }

    /// `Atan`, `Asin` (`atan(x/√(1 − x²))`), `Acos` (`π/2 − asin(x)`).
    pub(crate) fn inverse_trig(&mut self, n: &NodeProto) -> R<()> {
        let op = n.op_type().to_string();
        self.map1(n, |s, x| {
            s.need_float(&s.vt(x))?;
            if op == "Atan" {
                return s.atan_v(x);
            }
            let one = s.scalar_like(x, 1.0)?;
            let x2 = s.un(UnaryOp::Square, x)?;
            let d = s.bin(BinaryOp::Sub, one, x2)?;
            let d = s.un(UnaryOp::Sqrt, d)?;
            let q = s.bin(BinaryOp::Div, x, d)?;
            let asin = s.atan_v(q)?;
            if op == "Asin" {
                return Ok(asin);
            }
            let hp = s.scalar_like(x, std::f64::consts::FRAC_PI_2)?;
            s.bin(BinaryOp::Sub, hp, asin)
        })
    }
}
