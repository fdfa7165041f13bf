//! ONNX `AffineGrid`: the normalized base grid of the (constant) output size as a constant,
//! multiplied by each `theta`.

use crate::import::prelude::*;

/// The most grid points made.
const MAX_POINTS: usize = 1 << 22;

/// The normalized coordinates of `n` points on `[-1, 1]`: the corners, or the cell centres.
fn coords(n: usize, align_corners: bool) -> Vec<f64> {
    (0..n)
        .map(|i| match (align_corners, n) {
            (true, 1) => -1.0,
            (true, _) => -1.0 + 2.0 * i as f64 / (n - 1) as f64,
            (false, _) => -1.0 + (2 * i + 1) as f64 / n as f64,
        })
        .collect()
}

/// The homogeneous base grid `[points, r + 1]` of spatial size `size` (`[H, W]` or
/// `[D, H, W]`): per point `(x, y[, z], 1)`, `x` along the last axis.
fn base_grid(size: &[usize], align_corners: bool) -> Vec<f64> {
    let axes: Vec<Vec<f64>> = size.iter().map(|&n| coords(n, align_corners)).collect();
    let points: usize = size.iter().product();
    let mut out = Vec::with_capacity(points * (size.len() + 1));
    let mut idx = vec![0usize; size.len()];
    for _ in 0..points {
        // (idx[a] < size[a], the length of axes[a]: the counter below wraps there.)
        out.extend(idx.iter().zip(&axes).rev().map(|(&i, c)| c.get(i).copied().unwrap_or(0.0)));
        out.push(1.0);
        for (i, &n) in idx.iter_mut().zip(size).rev() {
            *i += 1;
            if *i < n {
                break;
            }
            *i = 0;
        }
    }
    out
}

impl Importer {
    /// ONNX `AffineGrid`: `theta` `[N, 2, 3]` (2-D) or `[N, 3, 4]` (3-D) and a constant
    /// `size` `[N, C, H, W]` / `[N, C, D, H, W]` give the grid `[N, H, W, 2]` /
    /// `[N, D, H, W, 3]`: the base grid times `thetaᵀ`.
    pub(crate) fn affine_grid(&mut self, n: &NodeProto) -> R<()> {
        let theta = self.input_v(n, 0)?;
        let tt = self.g.value_type(theta).clone();
        let size = self.known_req(&self.in_req(n, 1)?, "size")?;
        let size = size.consts().ok_or_else(|| self.err("size must be constant"))?;
        let size: Vec<usize> = size
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
            .collect::<Option<_>>()
            .filter(|s: &Vec<usize>| s.len() == 4 || s.len() == 5)
            .ok_or_else(|| self.err(format!("size {size:?} must be 4 or 5 positive dims")))?;
        let Some((&batch, [_, spatial @ ..])) = size.split_first() else {
            return Err(self.err(format!("size {size:?} must be 4 or 5 positive dims")));
        };
        let r = spatial.len();
        let want = [Dim::Known(batch), Dim::Known(r), Dim::Known(r + 1)];
        if tt.shape.as_slice() != want.as_slice() || !tt.dtype.is_float() {
            return Err(self.err(format!("theta is {tt}, expected a float [{batch}, {r}, {}]", r + 1)));
        }
        let points: usize = spatial.iter().product();
        if points > MAX_POINTS {
            return Err(self.unsupported(format!("an AffineGrid of {points} points (at most {MAX_POINTS})")));
        }
        let base = base_grid(spatial, attr_i(n, "align_corners", 0) != 0);
        let base =
            self.emit(Op::Constant(HostTensor::from_f64(tt.dtype, vec![points, r + 1], &base)), &[])?;
        let t = self.emit(Op::Transpose { perm: vec![0, 2, 1] }, &[theta])?;
        let g = self.emit(Op::MatMul, &[base, t])?;
        let mut shape = vec![Dim::Known(batch)];
        shape.extend(spatial.iter().map(|&d| Dim::Known(d)));
        shape.push(Dim::Known(r));
        let g = self.reshape_v(g, shape)?;
        self.out(n, 0, g);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_grid_orders_x_fastest() {
        // H = 2, W = 3, cell centres: x ∈ {−2/3, 0, 2/3}, y ∈ {−1/2, 1/2}.
        let g = base_grid(&[2, 3], false);
        assert_eq!(g.len(), 6 * 3);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(g[0], -2.0 / 3.0) && close(g[1], -0.5) && g[2] == 1.0);
        assert!(close(g[3], 0.0) && close(g[4], -0.5));
        assert!(close(g[15], 2.0 / 3.0) && close(g[16], 0.5));
        assert_eq!(coords(3, true), vec![-1.0, 0.0, 1.0]);
        assert_eq!(coords(1, true), vec![-1.0]);
    }
}
