//! `MaxPool`, `AveragePool` and `Conv` over 1–3 spatial axes, composed from strided slices:
//! the input is padded (a concat with fills), each kernel tap is one strided slice, and the
//! taps are combined by `max`, by a sum divided by the (static) tap count, or — for `Conv` —
//! stacked into columns (im2col) and contracted with the weights in one matmul per group.

use crate::import::prelude::*;

/// The window geometry of a pooling or convolution over the spatial axes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Geometry {
    /// Input size per spatial axis.
    pub input: Vec<usize>,
    /// Kernel size.
    pub kernel: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
    /// Padding before.
    pub pad_begin: Vec<usize>,
    /// Padding after.
    pub pad_end: Vec<usize>,
    /// Output size.
    pub output: Vec<usize>,
}

/// One spatial axis of a [`Geometry`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Geometry {
    /// The spatial axes in order (as many as the shortest field has entries: [`geometry`]
    /// makes them all one per axis), so that loops over axes need no indexing.
    pub(crate) fn axes(&self) -> impl Iterator<Item = Axis> + '_ {
        self.input
            .iter()
            .zip(&self.kernel)
            .zip(self.strides.iter().zip(&self.dilations))
            .zip(self.pad_begin.iter().zip(&self.pad_end).zip(&self.output))
            .map(|(((&input, &kernel), (&stride, &dilation)), ((&pad_begin, &pad_end), &output))| Axis {
                input,
                kernel,
                stride,
                dilation,
                pad_begin,
                pad_end,
                output,
            })
    }
}

/// Computes the geometry (ONNX `auto_pad`, `pads`, `ceil_mode` rules).
pub(crate) fn geometry(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: &str,
    ceil: bool,
) -> Result<Geometry, String> {
    let r = input.len();
    if kernel.len() != r || strides.len() != r || dilations.len() != r {
        return Err(format!("kernel, strides and dilations need {r} entries"));
    }
    if kernel.iter().chain(strides).chain(dilations).any(|&v| v == 0) {
        return Err("kernel, strides and dilations must be positive".into());
    }
    match auto_pad {
        "NOTSET" | "" | "VALID" | "SAME_UPPER" | "SAME_LOWER" => {}
        o => return Err(format!("unknown auto_pad '{o}'")),
    }
    let explicit = matches!(auto_pad, "NOTSET" | "");
    if explicit && !pads.is_empty() && pads.len() != 2 * r {
        return Err(format!("pads need {} entries, got {}", 2 * r, pads.len()));
    }
    // Explicit pads are `[begin…, end…]`; without them (and for the other modes) zeros.
    let zeros = vec![0; r];
    let (begins, ends) = match pads.split_at_checked(r) {
        Some(halves) if explicit && !pads.is_empty() => halves,
        _ => (zeros.as_slice(), zeros.as_slice()),
    };
    let (mut pb, mut pe) = (Vec::with_capacity(r), Vec::with_capacity(r));
    let mut output = Vec::with_capacity(r);
    let per_axis = input.iter().zip(kernel).zip(strides.iter().zip(dilations)).zip(begins.iter().zip(ends));
    for (((&input, &kernel), (&stride, &dilation)), (&begin, &end)) in per_axis {
        let dk = (kernel - 1) * dilation + 1;
        let (b, e, o) = match auto_pad {
            "VALID" => {
                if input < dk {
                    return Err(format!("the window ({dk}) is larger than the input ({input})"));
                }
                let q = input - dk;
                (0, 0, if ceil { q.div_ceil(stride) } else { q / stride } + 1)
            }
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = input.div_ceil(stride);
                let total = ((o - 1) * stride + dk).saturating_sub(input);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    (small, total - small, o)
                } else {
                    (total - small, small, o)
                }
            }
            _ => {
                let span = input + begin + end;
                if span < dk {
                    return Err(format!("the window ({dk}) is larger than the padded input ({span})"));
                }
                let q = span - dk;
                let mut o = if ceil { q.div_ceil(stride) } else { q / stride } + 1;
                // The last window must start inside the input or its leading padding.
                if ceil && (o - 1) * stride >= input + begin {
                    o -= 1;
                }
                (begin, end, o)
            }
        };
        pb.push(b);
        pe.push(e);
        output.push(o);
    }
    Ok(Geometry {
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pad_begin: pb,
        pad_end: pe,
        output,
    })
}

/// For each output position along one axis: how many taps fall in `[lo, hi)` (input
/// coordinates, the padding before at negative positions).
pub(crate) fn tap_counts(a: &Axis, lo: i64, hi: i64) -> Vec<usize> {
    (0..a.output)
        .map(|j| {
            (0..a.kernel)
                .filter(|&t| {
                    let p = (j * a.stride + t * a.dilation) as i64 - a.pad_begin as i64;
                    lo <= p && p < hi
                })
                .count()
        })
        .collect()
}

/// What a pooling combines.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pool {
    Max,
    Avg,
    Lp(f64),
}

/// Every kernel tap, in row-major order.
fn taps(kernel: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &k in kernel {
        out = out.into_iter().flat_map(|p| (0..k).map(move |t| [p.clone(), vec![t]].concat())).collect();
    }
    out
}

/// For kernel tap `tap`, per output position (row-major over the output): whether the tap
/// reads inside the input (not padding), and the flat index within one `(n, c)` plane of
/// the element it reads (row-major, or column-major with `storage_order`, as ONNX numbers
/// MaxPool's `Indices`).
fn tap_indices(g: &Geometry, tap: &[usize], column_major: bool) -> (Vec<f64>, Vec<i64>) {
    let axes: Vec<(Axis, usize)> = g.axes().zip(tap.iter().copied()).collect();
    let count: usize = axes.iter().map(|(a, _)| a.output).product();
    let (mut inside, mut index) = (Vec::with_capacity(count), Vec::with_capacity(count));
    let mut o = vec![0usize; axes.len()];
    for _ in 0..count {
        let mut ok = true;
        let mut flat = 0i64;
        let mut stride = 1i64;
        let mut at = |(a, t): &(Axis, usize), oi: usize| {
            let pos = (oi * a.stride + t * a.dilation) as i64 - a.pad_begin as i64;
            ok &= pos >= 0 && pos < a.input as i64;
            flat += pos * stride;
            stride *= a.input as i64;
        };
        if column_major {
            axes.iter().zip(&o).for_each(|(a, &oi)| at(a, oi));
        } else {
            axes.iter().zip(&o).rev().for_each(|(a, &oi)| at(a, oi));
        }
        inside.push(f64::from(u8::from(ok)));
        index.push(if ok { flat } else { 0 });
        // The next output position, row-major.
        for (oi, (a, _)) in o.iter_mut().zip(&axes).rev() {
            *oi += 1;
            if *oi < a.output {
                break;
            }
            *oi = 0;
        }
    }
    (inside, index)
}

fn usizes(v: &[i64], what: &str) -> Result<Vec<usize>, String> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| format!("{what} must not be negative, got {x}")))
        .collect()
}

impl Importer {
    /// The geometry of node `n` for input `x` (`[N, C, spatial…]`) and the given kernel.
    pub(crate) fn node_geometry(
        &self,
        n: &NodeProto,
        spatial: &[usize],
        kernel: &[usize],
        ceil: bool,
    ) -> R<Geometry> {
        let r = spatial.len();
        let ones = vec![1i64; r];
        let strides = usizes(&attr_ints(n, "strides").unwrap_or_else(|| ones.clone()), "strides");
        let dil = usizes(&attr_ints(n, "dilations").unwrap_or(ones), "dilations");
        let pads = usizes(&attr_ints(n, "pads").unwrap_or_default(), "pads");
        let (strides, dil, pads) = match (strides, dil, pads) {
            (Ok(s), Ok(d), Ok(p)) => (s, d, p),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(self.err(e)),
        };
        let auto = attr_s(n, "auto_pad").unwrap_or_default();
        geometry(spatial, kernel, &strides, &dil, &pads, &auto, ceil).map_err(|e| self.err(e))
    }

    /// `x` with `before`/`after` elements of `value` added along `axis`.
    pub(crate) fn pad_axis(
        &mut self,
        x: Value,
        axis: usize,
        before: usize,
        after: usize,
        value: f64,
    ) -> R<Value> {
        if before == 0 && after == 0 {
            return Ok(x);
        }
        let t = self.vt(x);
        let mut parts = vec![];
        for (k, first) in [(before, true), (after, false)] {
            if k == 0 {
                continue;
            }
            let mut shape = t.shape.to_vec();
            *self.at_mut(&mut shape, axis)? = Dim::Known(k);
            let f = self.emit(Op::Full { shape, value, dtype: t.dtype }, &[])?;
            if first {
                parts.push(f);
                parts.push(x);
            } else {
                if parts.is_empty() {
                    parts.push(x);
                }
                parts.push(f);
            }
        }
        self.emit(Op::Concat { axis: axis as i64 }, &parts)
    }

    /// The input padded for the windows of `g` (including the overhang of `ceil_mode`).
    pub(crate) fn padded(&mut self, x: Value, g: &Geometry, value: f64) -> R<Value> {
        let mut x = x;
        for (i, a) in g.axes().enumerate() {
            let need = (a.output - 1) * a.stride + (a.kernel - 1) * a.dilation + 1;
            let have = a.pad_begin + a.input;
            let after = need.saturating_sub(have);
            x = self.pad_axis(x, 2 + i, a.pad_begin, after, value)?;
        }
        Ok(x)
    }

    /// The strided slice of the padded input that kernel tap `tap` reads: `[N, C, out…]`.
    pub(crate) fn tap_slice(&mut self, xp: Value, g: &Geometry, tap: &[usize]) -> R<Value> {
        let mut spec = SliceSpec { axes: vec![], starts: vec![], ends: vec![], steps: vec![] };
        for (i, (&t, a)) in tap.iter().zip(g.axes()).enumerate() {
            let start = t * a.dilation;
            let end = start + (a.output - 1) * a.stride + 1;
            spec.axes.push(2 + i as i64);
            spec.starts.push(Bound::Const(start as i64));
            spec.ends.push(Bound::Const(end as i64));
            spec.steps.push(a.stride as i64);
        }
        self.emit(Op::Slice(spec), &[xp])
    }

    /// The known dims of an `[N, C, spatial…]` operand with 1–3 spatial axes.
    pub(crate) fn nc_dims(&self, x: Value) -> R<Vec<usize>> {
        let t = self.vt(x);
        t.known_dims().filter(|d| (3..=5).contains(&d.len())).ok_or_else(|| {
            self.err(format!(
                "input must be [N, C, spatial…] with 1 to 3 spatial axes of known size, got {t}"
            ))
        })
    }

    /// `LpPool`: `(Σ |x|ᵖ)^(1/p)` over each window (zero padding).
    pub(crate) fn lp_pool_node(&mut self, n: &NodeProto) -> R<()> {
        let p = attr_i(n, "p", 2);
        if !(1..=16).contains(&p) {
            return Err(self.err(format!("p = {p} is not in 1..=16")));
        }
        self.pool(n, Pool::Lp(p as f64))
    }

    /// `MaxPool` (`max`) or `AveragePool`.
    pub(crate) fn pool_node(&mut self, n: &NodeProto, max: bool) -> R<()> {
        self.pool(n, if max { Pool::Max } else { Pool::Avg })
    }

    fn pool(&mut self, n: &NodeProto, kind: Pool) -> R<()> {
        let max = kind == Pool::Max;
        let want_indices = max && self.output_used(n, 1);
        let x = self.input_v(n, 0)?;
        let dims = self.nc_dims(x)?;
        let dt = self.vt(x).dtype;
        if dt == DType::Bool || (!max && !dt.is_float()) {
            return Err(self.err(format!("unsupported element type {dt}")));
        }
        let kernel = usizes(&attr_ints(n, "kernel_shape").unwrap_or_default(), "kernel_shape")
            .map_err(|e| self.err(e))?;
        let g = self.node_geometry(n, self.part(&dims, 2..)?, &kernel, attr_i(n, "ceil_mode", 0) != 0)?;
        let pad_value = match (max, dt) {
            (false, _) => 0.0,
            (true, d) if d.is_float() => f64::NEG_INFINITY,
            (true, DType::U8) => 0.0,
            (true, DType::I8) => i8::MIN as f64,
            (true, DType::I32) => i32::MIN as f64,
            (true, _) => i64::MIN as f64,
        };
        let mut x = x;
        if let Pool::Lp(p) = kind {
            let a = self.un(UnaryOp::Abs, x)?;
            let pv = self.scalar_of(dt, p)?;
            x = self.bin(BinaryOp::Pow, a, pv)?;
        }
        let xp = self.padded(x, &g, pad_value)?;
        let mut acc: Option<Value> = None;
        let storage_order = attr_i(n, "storage_order", 0) != 0;
        // With `Indices`: the flat input index of the first maximum (ONNX's strict `>` over
        // the window in order), taken only from taps inside the input.
        let mut arg: Option<(Value, Value)> = None;
        for tap in taps(&g.kernel) {
            let s = self.tap_slice(xp, &g, &tap)?;
            if want_indices {
                let (inside, index) = tap_indices(&g, &tap, storage_order);
                let mut shape = vec![1, 1];
                shape.extend(&g.output);
                let inside =
                    self.emit(Op::Constant(HostTensor::from_f64(DType::Bool, shape.clone(), &inside)), &[])?;
                let index = self.emit(Op::Constant(HostTensor::from_i64(shape, &index)), &[])?;
                arg = Some(match (arg, acc) {
                    (Some((seen, idx)), Some(a)) => {
                        let unseen = self.un(UnaryOp::Not, seen)?;
                        let gt = self.bin(BinaryOp::Greater, s, a)?;
                        let better = self.bin(BinaryOp::Or, unseen, gt)?;
                        let take = self.bin(BinaryOp::And, inside, better)?;
                        let idx = self.emit(Op::Where, &[take, index, idx])?;
                        (self.bin(BinaryOp::Or, seen, inside)?, idx)
                    }
                    _ => (inside, index),
                });
            }
            acc = Some(match acc {
                Some(a) => self.bin(if max { BinaryOp::Max } else { BinaryOp::Add }, a, s)?,
                None => s,
            });
        }
        if let Some((_, idx)) = arg {
            // Plus the offset of each (n, c) plane.
            let plane: usize = g.input.iter().product();
            let (nb, c) = (self.at(&dims, 0)?, self.at(&dims, 1)?);
            let base: Vec<i64> = (0..nb * c).map(|p| (p * plane) as i64).collect();
            let mut shape = vec![nb, c];
            shape.extend(std::iter::repeat_n(1, g.input.len()));
            let base = self.emit(Op::Constant(HostTensor::from_i64(shape, &base)), &[])?;
            let idx = self.bin(BinaryOp::Add, idx, base)?;
            self.out(n, 1, idx);
        }
        let mut y = acc.ok_or_else(|| self.err("empty kernel"))?;
        if let Pool::Lp(p) = kind {
            let inv = self.scalar_of(dt, 1.0 / p)?;
            y = self.bin(BinaryOp::Pow, y, inv)?;
        }
        if kind == Pool::Avg {
            let include = attr_i(n, "count_include_pad", 0) != 0;
            let per: Vec<Vec<usize>> = g
                .axes()
                .map(|a| {
                    let (lo, hi) = if include {
                        (-(a.pad_begin as i64), (a.input + a.pad_end) as i64)
                    } else {
                        (0, a.input as i64)
                    };
                    tap_counts(&a, lo, hi)
                })
                .collect();
            let mut counts = vec![1.0f64];
            for p in &per {
                counts = counts.iter().flat_map(|c| p.iter().map(move |&k| c * k as f64)).collect();
            }
            let mut shape = vec![1, 1];
            shape.extend(&g.output);
            let c = self.emit(Op::Constant(HostTensor::from_f64(dt, shape, &counts)), &[])?;
            y = self.bin(BinaryOp::Div, y, c)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// The convolution of `x: [N, C, in…]` with `w: [M, C/groups, k…]` over the windows of `g`
    /// (padding with zeros), as `[N, M, out…]`: im2col by strided slices, one matmul per group.
    fn conv_core(
        &mut self,
        x: Value,
        dims: &[usize],
        w: Value,
        wd: &[usize],
        groups: usize,
        g: &Geometry,
    ) -> R<Value> {
        let (nb, c, m) = (self.at(dims, 0)?, self.at(dims, 1)?, self.at(wd, 0)?);
        let kernel = &g.kernel;
        let xp = self.padded(x, g, 0.0)?;
        let p: usize = g.output.iter().product();
        let k: usize = kernel.iter().product();
        let mut cols = vec![];
        for tap in taps(kernel) {
            let s = self.tap_slice(xp, g, &tap)?;
            cols.push(self.reshape_v(s, [nb, c, 1, p].map(Dim::Known).to_vec())?);
        }
        let cols = match cols.as_slice() {
            [one] => *one,
            _ => self.emit(Op::Concat { axis: 2 }, &cols)?,
        };
        let cg = c / groups;
        let cols = self.reshape_v(cols, [nb, groups, cg * k, p].map(Dim::Known).to_vec())?;
        let wm = self.reshape_v(w, [groups, m / groups, cg * k].map(Dim::Known).to_vec())?;
        let y = self.emit(Op::MatMul, &[wm, cols])?;
        let mut shape = vec![Dim::Known(nb), Dim::Known(m)];
        shape.extend(g.output.iter().map(|&o| Dim::Known(o)));
        self.reshape_v(y, shape)
    }

    /// `x` with `before`/`after` zeros along `axis`, a negative count cropping instead.
    fn pad_or_crop(&mut self, x: Value, axis: usize, before: i64, after: i64) -> R<Value> {
        let len = self
            .at(&self.vt(x).shape, axis)?
            .known()
            .ok_or_else(|| self.err("axis must have a known size"))? as i64;
        let (cb, ca) = ((-before).max(0), (-after).max(0));
        let x = if cb > 0 || ca > 0 { self.slice_axis_v(x, axis, cb, len - ca, 1)? } else { x };
        self.pad_axis(x, axis, before.max(0) as usize, after.max(0) as usize, 0.0)
    }

    /// `x` with `s − 1` zeros after every element along `axis` but the last (stride dilation).
    fn zero_insert(&mut self, x: Value, axis: usize, s: usize) -> R<Value> {
        if s == 1 {
            return Ok(x);
        }
        let t = self.vt(x);
        let len = self.at(&t.shape, axis)?.known().ok_or_else(|| self.err("axis must have a known size"))?;
        let mut shape = t.shape.to_vec();
        shape.insert(axis + 1, Dim::Known(s - 1));
        // The same shape with a 1 there: x as [.., len, 1, ..], concatenated with the zeros.
        let mut one = shape.clone();
        *self.at_mut(&mut one, axis + 1)? = Dim::Known(1);
        let x1 = self.reshape_v(x, one)?;
        let z = self.emit(Op::Full { shape, value: 0.0, dtype: t.dtype }, &[])?;
        let xz = self.emit(Op::Concat { axis: axis as i64 + 1 }, &[x1, z])?;
        let mut flat = t.shape.to_vec();
        *self.at_mut(&mut flat, axis)? = Dim::Known(len * s);
        let xz = self.reshape_v(xz, flat)?;
        self.slice_axis_v(xz, axis, 0, ((len - 1) * s + 1) as i64, 1)
    }

    /// `ConvTranspose`: the convolution of the stride-dilated, padded input with the flipped,
    /// transposed kernel (ONNX's `pads`, `output_padding`, `output_shape`, `auto_pad`, groups).
    pub(crate) fn conv_transpose_node(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let w = self.input_v(n, 1)?;
        let dims = self.nc_dims(x)?;
        let dt = self.vt(x).dtype;
        if !dt.is_float() {
            return Err(self.err(format!("ConvTranspose needs a float input, got {dt}")));
        }
        let w = self.cast_to(w, dt)?;
        let wd = self.vt(w).known_dims().filter(|d| d.len() == dims.len()).ok_or_else(|| {
            self.err(format!("weights must have the input's rank and known dims, got {}", self.vt(w)))
        })?;
        let (c_in, w0) = (self.at(&dims, 1)?, self.at(&wd, 0)?);
        let groups =
            usize::try_from(attr_i(n, "group", 1)).ok().filter(|&g| g > 0 && c_in % g == 0 && w0 == c_in);
        let groups = groups.ok_or_else(|| {
            self.err(format!("group does not divide the channels of {dims:?} / weights {wd:?}"))
        })?;
        let r = dims.len() - 2;
        let get = |name: &str, def: i64| -> R<Vec<usize>> {
            usizes(&attr_ints(n, name).unwrap_or_else(|| vec![def; r]), name).map_err(|e| self.err(e))
        };
        let (strides, dil) = (get("strides", 1)?, get("dilations", 1)?);
        let opad = usizes(&attr_ints(n, "output_padding").unwrap_or_else(|| vec![0; r]), "output_padding")
            .map_err(|e| self.err(e))?;
        let kernel = self.part(&wd, 2..)?.to_vec();
        let spatial = self.part(&dims, 2..)?;
        if strides.len() != r || dil.len() != r || opad.len() < r || strides.contains(&0) || dil.contains(&0)
        {
            return Err(
                self.err("strides, dilations and output_padding need one positive entry per spatial axis")
            );
        }
        let dk: Vec<usize> = kernel.iter().zip(&dil).map(|(&k, &d)| (k - 1) * d + 1).collect();
        let full: Vec<usize> = spatial
            .iter()
            .zip(&strides)
            .zip(opad.iter().zip(&dk))
            .map(|((&x, &s), (&o, &k))| s * (x - 1) + o + k)
            .collect();
        let auto = attr_s(n, "auto_pad").unwrap_or_default();
        let out_shape = attr_ints(n, "output_shape")
            .map(|v| usizes(&v, "output_shape"))
            .transpose()
            .map_err(|e| self.err(e))?;
        let (pb, out): (Vec<i64>, Vec<usize>) = match (attr_ints(n, "pads"), auto.as_str()) {
            (None, "SAME_UPPER" | "SAME_LOWER") => {
                let os = out_shape
                    .clone()
                    .unwrap_or_else(|| spatial.iter().zip(&strides).map(|(&x, &s)| x * s).collect());
                // (An `output_shape` of the wrong length makes `pb` short too: refused below.)
                let pb = full
                    .iter()
                    .zip(&os)
                    .map(|(&f, &o)| {
                        let total = f as i64 - o as i64;
                        if auto == "SAME_UPPER" {
                            total / 2
                        } else {
                            total - total / 2
                        }
                    })
                    .collect();
                (pb, os)
            }
            (p, _) => {
                let p = usizes(&p.unwrap_or_else(|| vec![0; 2 * r]), "pads").map_err(|e| self.err(e))?;
                let (begin, end) = p
                    .split_at_checked(r)
                    .filter(|_| p.len() == 2 * r)
                    .ok_or_else(|| self.err(format!("pads need {} entries", 2 * r)))?;
                let out = match &out_shape {
                    Some(os) => os.clone(),
                    None => full
                        .iter()
                        .zip(begin.iter().zip(end))
                        .map(|(&f, (&b, &e))| f.saturating_sub(b + e))
                        .collect(),
                };
                (begin.iter().map(|&b| b as i64).collect(), out)
            }
        };
        if out.len() != r || pb.len() != r || out.contains(&0) {
            return Err(self.err(format!("output shape {out:?} is not one positive size per spatial axis")));
        }
        // y[o] = z[o + pb] where z is the unpadded transposed convolution.
        let mut xd = x;
        let per_axis = spatial.iter().zip(&strides).zip(dk.iter().zip(&pb).zip(&out));
        for (i, ((&x_len, &s), ((&k, &b), &o))) in per_axis.enumerate() {
            xd = self.zero_insert(xd, 2 + i, s)?;
            let before = k as i64 - 1 - b;
            let len = ((x_len - 1) * s + 1) as i64;
            let after = o as i64 + k as i64 - 1 - before - len;
            xd = self.pad_or_crop(xd, 2 + i, before, after)?;
        }
        // Kernel: flip the taps, and [C, M/g, k…] → [M, C/g, k…] per group.
        let mut wf = w;
        for (i, &k) in kernel.iter().enumerate() {
            wf = self.slice_axis_v(wf, 2 + i, k as i64 - 1, i64::MIN, -1)?;
        }
        let (c, mg) = (w0, self.at(&wd, 1)?);
        let mut sh = vec![groups, c / groups, mg];
        sh.extend(&kernel);
        let wf = self.reshape_v(wf, sh.iter().map(|&d| Dim::Known(d)).collect())?;
        let mut perm = vec![0, 2, 1];
        perm.extend(3..3 + r);
        let wf = self.emit(Op::Transpose { perm }, &[wf])?;
        let mut wsh = vec![groups * mg, c / groups];
        wsh.extend(&kernel);
        let wf = self.reshape_v(wf, wsh.iter().map(|&d| Dim::Known(d)).collect())?;
        let xdd = self.vt(xd).known_dims().ok_or_else(|| self.err("internal: unknown dims"))?;
        let g = Geometry {
            input: self.part(&xdd, 2..)?.to_vec(),
            kernel: kernel.clone(),
            strides: vec![1; r],
            dilations: dil,
            pad_begin: vec![0; r],
            pad_end: vec![0; r],
            output: out,
        };
        let mut y = self.conv_core(xd, &xdd, wf, &wsh, groups, &g)?;
        if let Some(b) = inp(n, 2) {
            let b = self.value(b)?;
            let b = self.channel_param(b, dims.len(), dt)?;
            y = self.bin(BinaryOp::Add, y, b)?;
        }
        self.out(n, 0, y);
        Ok(())
    }

    /// `CausalConvWithState`: the depthwise convolution of `concat(past_state, input)` (zeros
    /// when there is no past) along time, plus bias, optionally SiLU; `present_state` is the last
    /// `k − 1` steps of that concatenation.
    pub(crate) fn causal_conv_with_state(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let Some(&[b, c, l]) = self.vt(x).known_dims().as_deref() else {
            return Err(self.err(format!("input must be [B, C, L] of known size, got {}", self.vt(x))));
        };
        let dt = self.vt(x).dtype;
        self.need_float(&self.vt(x))?;
        let w = self.input_v(n, 1)?;
        let w = self.cast_to(w, dt)?;
        let k = match self.vt(w).known_dims().as_deref() {
            Some(&[wc, 1, k]) if wc == c && k >= 1 => k,
            _ => return Err(self.err(format!("weight must be [C, 1, k], got {}", self.vt(w)))),
        };
        let wd = [c, 1, k];
        let past = match inp(n, 3) {
            Some(name) => {
                let v = self.value(name)?;
                self.cast_to(v, dt)?
            }
            None => self.emit(
                Op::Full { shape: [b, c, k - 1].map(Dim::Known).to_vec(), value: 0.0, dtype: dt },
                &[],
            )?,
        };
        let xp = if k > 1 { self.emit(Op::Concat { axis: 2 }, &[past, x])? } else { x };
        let g = Geometry {
            input: vec![l + k - 1],
            kernel: vec![k],
            strides: vec![1],
            dilations: vec![1],
            pad_begin: vec![0],
            pad_end: vec![0],
            output: vec![l],
        };
        let mut y = self.conv_core(xp, &[b, c, l + k - 1], w, &wd, c, &g)?;
        if let Some(bias) = inp(n, 2) {
            let bv = self.value(bias)?;
            let bv = self.channel_param(bv, 3, dt)?;
            y = self.bin(BinaryOp::Add, y, bv)?;
        }
        match attr_s(n, "activation").as_deref().unwrap_or("none") {
            "none" => {}
            "silu" | "swish" => y = self.swish(y, 1.0)?,
            a => return Err(self.unsupported(format!("activation '{a}' is not supported"))),
        }
        self.out(n, 0, y);
        let state = self.slice_axis_v(xp, 2, l as i64, (l + k - 1) as i64, 1)?;
        self.out(n, 1, state);
        Ok(())
    }

    pub(crate) fn conv_node(&mut self, n: &NodeProto) -> R<()> {
        let x = self.input_v(n, 0)?;
        let w = self.input_v(n, 1)?;
        let dims = self.nc_dims(x)?;
        let dt = self.vt(x).dtype;
        if !dt.is_float() {
            return Err(self.err(format!("Conv needs a float input, got {dt}")));
        }
        let w = self.cast_to(w, dt)?;
        let wd = self.vt(w).known_dims().filter(|d| d.len() == dims.len()).ok_or_else(|| {
            self.err(format!("weights must have the input's rank and known dims, got {}", self.vt(w)))
        })?;
        let groups = usize::try_from(attr_i(n, "group", 1))
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| self.err("group must be a positive integer"))?;
        let (c, m) = (self.at(&dims, 1)?, self.at(&wd, 0)?);
        if c % groups != 0 || m % groups != 0 || self.at(&wd, 1)? * groups != c {
            return Err(self.err(format!("channels (input {c}, weights {wd:?}) do not match group {groups}")));
        }
        let kernel = match attr_ints(n, "kernel_shape") {
            Some(k) => usizes(&k, "kernel_shape").map_err(|e| self.err(e))?,
            None => self.part(&wd, 2..)?.to_vec(),
        };
        if kernel != self.part(&wd, 2..)? {
            return Err(self.err(format!("kernel_shape {kernel:?} differs from the weights {wd:?}")));
        }
        let g = self.node_geometry(n, self.part(&dims, 2..)?, &kernel, false)?;
        let mut y = self.conv_core(x, &dims, w, &wd, groups, &g)?;
        if let Some(b) = inp(n, 2) {
            let b = self.value(b)?;
            let b = self.channel_param(b, dims.len(), dt)?;
            y = self.bin(BinaryOp::Add, y, b)?;
        }
        self.out(n, 0, y);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn explicit_pads_and_strides() {
        let g = geometry(&[5, 5], &[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1], "NOTSET", false).unwrap();
        assert_eq!(g.output, vec![3, 3]);
        assert_eq!((g.pad_begin.clone(), g.pad_end.clone()), (vec![1, 1], vec![1, 1]));
    }

    #[test]
    pub(crate) fn same_upper_puts_the_odd_pad_last() {
        let g = geometry(&[4], &[2], &[1], &[1], &[], "SAME_UPPER", false).unwrap();
        assert_eq!((g.output[0], g.pad_begin[0], g.pad_end[0]), (4, 0, 1));
        let g = geometry(&[4], &[2], &[1], &[1], &[], "SAME_LOWER", false).unwrap();
        assert_eq!((g.pad_begin[0], g.pad_end[0]), (1, 0));
    }

    #[test]
    pub(crate) fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
        // 4 inputs, kernel 3, stride 2, no pads: floor gives 1, ceil gives 2.
        let g = geometry(&[4], &[3], &[2], &[1], &[], "NOTSET", true).unwrap();
        assert_eq!(g.output, vec![2]);
        // Ceil would add a window starting at 4 = input + pad_begin: dropped.
        let g = geometry(&[4], &[1], &[2], &[1], &[0, 1], "NOTSET", true).unwrap();
        assert_eq!(g.output, vec![2]);
    }

    #[test]
    pub(crate) fn tap_counts_exclude_padding() {
        let g = geometry(&[3], &[3], &[1], &[1], &[1, 1], "NOTSET", false).unwrap();
        let a = g.axes().next().unwrap();
        assert_eq!(tap_counts(&a, 0, 3), vec![2, 3, 2]);
        assert_eq!(tap_counts(&a, -1, 4), vec![3, 3, 3]);
    }

    #[test]
    pub(crate) fn bad_geometry_is_an_error() {
        assert!(geometry(&[2], &[3], &[1], &[1], &[], "NOTSET", false).is_err());
        assert!(geometry(&[4], &[0], &[1], &[1], &[], "NOTSET", false).is_err());
        assert!(geometry(&[4], &[2], &[1], &[1], &[1], "NOTSET", false).is_err());
        assert!(geometry(&[4], &[2], &[1], &[1], &[], "SAME", false).is_err());
    }
}
