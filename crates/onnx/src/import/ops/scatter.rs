//! `TensorScatter` in linear mode (a KV-cache write: one contiguous block per batch row at a
//! run-time position) becomes the native `slice_update` op, one per batch row; its circular
//! mode is a gather over the cache positions (O(cache)).
//!
//! `ScatterND` and `ScatterElements`, composed from comparisons and reductions: every update
//! gets a flat row index into the data viewed as `[P, R]` (`P` rows addressed by the indices,
//! `R` elements per row); a `[U, P]` equality mask selects, per row, the updates that land on
//! it, and a reduction over the updates combines them (`none`/`add`: sum, `mul`: product,
//! `max`/`min`). Rows no update hits keep the data. The mask has `U·P` elements, so large
//! scatters (a KV cache of thousands of rows) are refused rather than materialized.

use crate::import::prelude::*;

/// The largest `U·P·R` (updates × rows × row length) the composition materializes.
const MAX_MASK_ELEMENTS: usize = 1 << 24;

impl Importer {
    fn scatter_reduction(&self, n: &NodeProto) -> R<Option<ReduceOp>> {
        match attr_s(n, "reduction").as_deref().unwrap_or("none") {
            "none" => Ok(None),
            "add" => Ok(Some(ReduceOp::Sum)),
            "mul" => Ok(Some(ReduceOp::Prod)),
            "max" => Ok(Some(ReduceOp::Max)),
            "min" => Ok(Some(ReduceOp::Min)),
            o => Err(self.err(format!("unknown reduction '{o}'"))),
        }
    }

    /// Indices made non-negative: `i + dim` where `i < 0`.
    fn wrap_index(&mut self, idx: Value, dim: usize) -> R<Value> {
        let z = self.scalar_of(DType::I64, 0.0)?;
        let d = self.scalar_of(DType::I64, dim as f64)?;
        let neg = self.bin(BinaryOp::Less, idx, z)?;
        let w = self.bin(BinaryOp::Add, idx, d)?;
        self.emit(Op::Where, &[neg, w, idx])
    }

    /// `data: [P, R]`, `rows: [U]` (i64, in range), `upd: [U, R]` → the scattered `[P, R]`.
    fn scatter_rows(&mut self, data: Value, rows: Value, upd: Value, red: Option<ReduceOp>) -> R<Value> {
        let dt = self.vt(data);
        let (p, r) = (self.at(&dt.shape, 0)?.known(), self.at(&dt.shape, 1)?.known());
        let u = self.at(&self.vt(rows).shape, 0)?.known();
        let (Some(p), Some(r), Some(u)) = (p, r, u) else {
            return Err(self.unsupported("scatter of symbolic sizes is not supported"));
        };
        if u.saturating_mul(p).saturating_mul(r.max(1)) > MAX_MASK_ELEMENTS {
            return Err(self.unsupported(format!(
                "scatter of {u} updates into {p} rows of {r} needs a {u}×{p}×{r} mask (over {MAX_MASK_ELEMENTS} \
                 elements); a native scatter op is not implemented"
            )));
        }
        let ru = self.reshape_v(rows, vec![Dim::Known(u), Dim::Known(1)])?;
        let iota = self.iota_along(Dim::Known(p), 1, 2)?;
        let eq = self.bin(BinaryOp::Equal, ru, iota)?; // [U, P]
        let eq3 = self.reshape_v(eq, [u, p, 1].map(Dim::Known).to_vec())?;
        let up3 = self.reshape_v(upd, [u, 1, r].map(Dim::Known).to_vec())?;
        let neutral = match red {
            None | Some(ReduceOp::Sum) => 0.0,
            Some(ReduceOp::Prod) => 1.0,
            Some(ReduceOp::Max) if dt.dtype.is_float() => f64::NEG_INFINITY,
            Some(ReduceOp::Min) if dt.dtype.is_float() => f64::INFINITY,
            Some(ReduceOp::Max) => int_limit(dt.dtype, false),
            Some(ReduceOp::Min) => int_limit(dt.dtype, true),
            Some(ReduceOp::Mean) => return Err(self.err("mean is not a scatter reduction")),
        };
        let nv = self.scalar_of(dt.dtype, neutral)?;
        let sel = self.emit(Op::Where, &[eq3, up3, nv])?;
        let comb = self.reduce_v(red.unwrap_or(ReduceOp::Sum), sel, vec![0], false)?; // [P, R]
        let hit_i = self.cast_to(eq, DType::I32)?;
        let hit_i = self.reduce_v(ReduceOp::Max, hit_i, vec![0], false)?;
        let zero = self.scalar_of(DType::I32, 0.0)?;
        let hit = self.bin(BinaryOp::Greater, hit_i, zero)?;
        let hit = self.reshape_v(hit, vec![Dim::Known(p), Dim::Known(1)])?;
        let new = match red {
            None => comb,
            Some(ReduceOp::Sum) => self.bin(BinaryOp::Add, data, comb)?,
            Some(ReduceOp::Prod) => self.bin(BinaryOp::Mul, data, comb)?,
            Some(ReduceOp::Max) => self.bin(BinaryOp::Max, data, comb)?,
            Some(_) => self.bin(BinaryOp::Min, data, comb)?,
        };
        self.emit(Op::Where, &[hit, new, data])
    }

    /// The known dims of operand `i`.
    fn static_dims(&mut self, n: &NodeProto, i: usize) -> R<(Value, Vec<usize>)> {
        let v = self.input_v(n, i)?;
        let t = self.vt(v);
        let d =
            t.known_dims().ok_or_else(|| self.unsupported(format!("input {i} has symbolic dims ({t})")))?;
        Ok((v, d))
    }

    pub(crate) fn scatter_nd(&mut self, n: &NodeProto) -> R<()> {
        let red = self.scatter_reduction(n)?;
        let (data, dd) = self.static_dims(n, 0)?;
        let (idx, id) = self.static_dims(n, 1)?;
        let (upd, _) = self.static_dims(n, 2)?;
        let idx = self.cast_to(idx, DType::I64)?;
        let k = *id.last().ok_or_else(|| self.err("indices must have at least 1 axis"))?;
        if k == 0 || k > dd.len() {
            return Err(self.err(format!("index depth {k} is not in 1..={} (the data rank)", dd.len())));
        }
        // (id has at least 1 axis, and 1 ≤ k ≤ rank of the data.)
        let u: usize = id.iter().take(id.len() - 1).product();
        let (indexed, rest) = dd.split_at(k);
        let (p, r): (usize, usize) = (indexed.iter().product(), rest.iter().product());
        let mut flat: Option<Value> = None;
        for (j, &dim) in indexed.iter().enumerate() {
            let jv = self.scalar_of(DType::I64, j as f64)?;
            let c = self.emit(Op::Gather { axis: -1 }, &[idx, jv])?;
            let c = self.wrap_index(c, dim)?;
            flat = Some(match flat {
                Some(f) => {
                    let d = self.scalar_of(DType::I64, dim as f64)?;
                    let f = self.bin(BinaryOp::Mul, f, d)?;
                    self.bin(BinaryOp::Add, f, c)?
                }
                None => c,
            });
        }
        let flat = flat.ok_or_else(|| self.err("index depth 0"))?;
        let rows = self.reshape_v(flat, vec![Dim::Known(u)])?;
        let d2 = self.reshape_v(data, vec![Dim::Known(p), Dim::Known(r)])?;
        let u2 = self.reshape_v(upd, vec![Dim::Known(u), Dim::Known(r)])?;
        let y = self.scatter_rows(d2, rows, u2, red)?;
        let y = self.reshape_v(y, dd.iter().map(|&d| Dim::Known(d)).collect())?;
        self.out(n, 0, y);
        Ok(())
    }

    pub(crate) fn scatter_elements(&mut self, n: &NodeProto) -> R<()> {
        let red = self.scatter_reduction(n)?;
        let (data, dd) = self.static_dims(n, 0)?;
        let (idx, id) = self.static_dims(n, 1)?;
        let (upd, _) = self.static_dims(n, 2)?;
        if id.len() != dd.len() {
            return Err(self.err(format!("indices have rank {}, data {}", id.len(), dd.len())));
        }
        let axis = self.axis_of(attr_i(n, "axis", 0), dd.len())?;
        let idx = self.cast_to(idx, DType::I64)?;
        let idx = self.wrap_index(idx, self.at(&dd, axis)?)?;
        let mut flat: Option<Value> = None;
        for (k, (&dim, &ik)) in dd.iter().zip(&id).enumerate() {
            let c = if k == axis { idx } else { self.iota_along(Dim::Known(ik), k, dd.len())? };
            flat = Some(match flat {
                Some(f) => {
                    let d = self.scalar_of(DType::I64, dim as f64)?;
                    let f = self.bin(BinaryOp::Mul, f, d)?;
                    self.bin(BinaryOp::Add, f, c)?
                }
                None => c,
            });
        }
        let u: usize = id.iter().product();
        let p: usize = dd.iter().product();
        let flat = flat.ok_or_else(|| self.err("data must have at least 1 axis"))?;
        let flat = self.emit(Op::Expand { shape: id.iter().map(|&d| Dim::Known(d)).collect() }, &[flat])?;
        let rows = self.reshape_v(flat, vec![Dim::Known(u)])?;
        let d2 = self.reshape_v(data, vec![Dim::Known(p), Dim::Known(1)])?;
        let u2 = self.reshape_v(upd, vec![Dim::Known(u), Dim::Known(1)])?;
        let y = self.scatter_rows(d2, rows, u2, red)?;
        let y = self.reshape_v(y, dd.iter().map(|&d| Dim::Known(d)).collect())?;
        self.out(n, 0, y);
        Ok(())
    }
}

impl Importer {
    /// Linear `TensorScatter` as one `slice_update` per batch row of the `batch`-row cache.
    fn tensor_scatter_linear(
        &mut self,
        n: &NodeProto,
        cache: Value,
        upd: Value,
        batch: usize,
        a: usize,
    ) -> R<()> {
        let starts = match inp(n, 2) {
            Some(name) => {
                let w = self.value(name)?;
                Some(self.cast_to(w, DType::I64)?)
            }
            None => None,
        };
        let mut rows = Vec::with_capacity(batch);
        for b in 0..batch {
            let start = match starts {
                Some(w) => {
                    let bv = self.scalar_of(DType::I64, b as f64)?;
                    self.emit(Op::Gather { axis: 0 }, &[w, bv])?
                }
                None => self.scalar_of(DType::I64, 0.0)?,
            };
            let (c, u) = if batch == 1 {
                (cache, upd)
            } else {
                let row = |b: usize| {
                    Op::Slice(SliceSpec {
                        axes: vec![0],
                        starts: vec![Bound::Const(b as i64)],
                        ends: vec![Bound::Const(b as i64 + 1)],
                        steps: vec![1],
                    })
                };
                (self.emit(row(b), &[cache])?, self.emit(row(b), &[upd])?)
            };
            rows.push(self.emit(Op::SliceUpdate { axis: a as i64 }, &[c, u, start])?);
        }
        let y = self.concat_or_one(rows, 0)?;
        self.out(n, 0, y);
        Ok(())
    }
}

/// The smallest (or largest) value of an integer dtype, as f64.
fn int_limit(d: DType, max: bool) -> f64 {
    match (d, max) {
        (DType::U8, false) => 0.0,
        (DType::U8, true) => 255.0,
        (DType::I8, false) => -128.0,
        (DType::I8, true) => 127.0,
        (DType::I32, false) => i32::MIN as f64,
        (DType::I32, true) => i32::MAX as f64,
        (_, false) => i64::MIN as f64,
        (_, true) => i64::MAX as f64,
    }
}

impl Importer {
    /// `TensorScatter` (ONNX's KV-cache update): for each batch `b`, `update` is written into
    /// `past_cache` along `axis` from position `write_indices[b]` (wrapping around for
    /// `circular`). Linear mode: `slice_update(cache[b], update[b], write_indices[b])` per
    /// batch row (one op for batch 1), concatenated — O(update) work, and a start that leaves
    /// no room for the update is a run-time error (the spec requires it to fit). Circular
    /// mode is composed as a gather: every cache position `p` reads update row
    /// `(p − write_indices[b]) mod max` where that is in range, and keeps the cache elsewhere —
    /// O(cache) work, no mask over updates × positions.
    pub(crate) fn tensor_scatter(&mut self, n: &NodeProto) -> R<()> {
        let (cache, cd) = self.static_dims(n, 0)?;
        let (upd, ud) = self.static_dims(n, 1)?;
        let r = cd.len();
        if r < 2 || ud.len() != r {
            return Err(self.err(format!("cache {cd:?} and update {ud:?} must have the same rank ≥ 2")));
        }
        let a = self.axis_of(attr_i(n, "axis", -2), r)?;
        if a == 0 {
            return Err(self.err("axis must not be the batch axis"));
        }
        if ud.iter().zip(&cd).enumerate().any(|(k, (u, c))| if k == a { u > c } else { u != c }) {
            return Err(self.err(format!("update {ud:?} does not fit cache {cd:?} along axis {a}")));
        }
        let circular = match attr_s(n, "mode").as_deref().unwrap_or("linear") {
            "linear" => false,
            "circular" => true,
            m => return Err(self.err(format!("unknown mode '{m}'"))),
        };
        if !circular {
            return self.tensor_scatter_linear(n, cache, upd, self.at(&cd, 0)?, a);
        }
        let (ca, ua) = (self.at(&cd, a)?, self.at(&ud, a)?);
        let (m, s) = (ca as f64, ua as f64);
        let mut bshape = vec![Dim::Known(1); r];
        *self.at_mut(&mut bshape, 0)? = Dim::Known(self.at(&cd, 0)?);
        let w = match inp(n, 2) {
            Some(name) => {
                let w = self.value(name)?;
                let w = self.cast_to(w, DType::I64)?;
                self.reshape_v(w, bshape)?
            }
            None => self.scalar_of(DType::I64, 0.0)?,
        };
        let pos = self.iota_along(Dim::Known(ca), a, r)?;
        let mut src = self.bin(BinaryOp::Sub, pos, w)?;
        if circular {
            let mv = self.scalar_of(DType::I64, m)?;
            src = self.bin(BinaryOp::Mod, src, mv)?;
        }
        let (zero, sv, last) = (
            self.scalar_of(DType::I64, 0.0)?,
            self.scalar_of(DType::I64, s)?,
            self.scalar_of(DType::I64, s - 1.0)?,
        );
        let ge = self.bin(BinaryOp::GreaterEqual, src, zero)?;
        let lt = self.bin(BinaryOp::Less, src, sv)?;
        let valid = self.bin(BinaryOp::And, ge, lt)?;
        let sc = self.bin(BinaryOp::Max, src, zero)?;
        let sc = self.bin(BinaryOp::Min, sc, last)?;
        let full: Vec<Dim> = cd.iter().map(|&d| Dim::Known(d)).collect();
        let sc = self.emit(Op::Expand { shape: full }, &[sc])?;
        let mut comps = vec![];
        for (k, &d) in cd.iter().enumerate() {
            comps.push(if k == a { sc } else { self.iota_along(Dim::Known(d), k, r)? });
        }
        let gathered = self.flat_gather(upd, comps)?;
        let y = self.emit(Op::Where, &[valid, gathered, cache])?;
        self.out(n, 0, y);
        Ok(())
    }
}
