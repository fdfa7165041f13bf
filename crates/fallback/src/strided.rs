//! Strided iteration: how broadcasting, transposes, slices and reductions read their
//! operands without materializing intermediate index arrays.

/// Row-major strides of `dims`.
pub(crate) fn contiguous_strides(dims: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; dims.len()];
    let mut acc = 1isize;
    for i in (0..dims.len()).rev() {
        s[i] = acc;
        acc *= dims[i] as isize;
    }
    s
}

/// Numpy broadcasting of concrete dims.
pub(crate) fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = (i + a.len()).checked_sub(r).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(r).map_or(1, |j| b[j]);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => return Err(format!("cannot broadcast {a:?} with {b:?}: axis {i} has {x} vs {y}")),
        };
    }
    Ok(out)
}

/// The strides with which a contiguous tensor of `dims` is read as the (broadcast) shape
/// `out`: 0 on broadcast axes. `dims` must broadcast to `out`.
pub(crate) fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<isize> {
    let own = contiguous_strides(dims);
    let skip = out.len() - dims.len();
    (0..out.len()).map(|i| if i < skip || dims[i - skip] == 1 { 0 } else { own[i - skip] }).collect()
}

/// Merges adjacent axes that every operand walks contiguously, and drops axes of size 1, so
/// that the inner loop of [`walk`] is as long as possible.
pub(crate) fn coalesce<const N: usize>(
    dims: &[usize],
    strides: [&[isize]; N],
) -> (Vec<usize>, [Vec<isize>; N]) {
    let mut d: Vec<usize> = Vec::with_capacity(dims.len());
    let mut s: [Vec<isize>; N] = std::array::from_fn(|_| Vec::with_capacity(dims.len()));
    for (i, &n) in dims.iter().enumerate() {
        if n == 1 {
            continue;
        }
        if let Some(&last) = d.last() {
            let mergeable = (0..N).all(|k| s[k][s[k].len() - 1] == strides[k][i] * n as isize);
            if mergeable {
                let l = d.len() - 1;
                d[l] = last * n;
                // The merged axis keeps the inner stride of the new axis.
                for (k, sk) in s.iter_mut().enumerate() {
                    let l = sk.len() - 1;
                    sk[l] = strides[k][i];
                }
                continue;
            }
        }
        d.push(n);
        for (k, sk) in s.iter_mut().enumerate() {
            sk.push(strides[k][i]);
        }
    }
    (d, s)
}

/// Calls `f` with the offsets of every position of `dims` in row-major order, for `N`
/// operands read with `strides` from `base`.
#[inline]
pub(crate) fn walk<const N: usize>(
    dims: &[usize],
    strides: [&[isize]; N],
    base: [isize; N],
    mut f: impl FnMut([usize; N]),
) {
    if dims.contains(&0) {
        return;
    }
    let (dims, strides) = coalesce(dims, strides);
    let r = dims.len();
    if r == 0 {
        f(base.map(|b| b as usize));
        return;
    }
    let inner = dims[r - 1];
    let step: [isize; N] = std::array::from_fn(|k| strides[k][r - 1]);
    let mut idx = vec![0usize; r - 1];
    let mut off = base;
    loop {
        let mut o = off;
        for _ in 0..inner {
            f(o.map(|x| x as usize));
            for k in 0..N {
                o[k] += step[k];
            }
        }
        // Advance the outer index, odometer style.
        let mut ax = r - 1;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            for k in 0..N {
                off[k] += strides[k][ax];
            }
            if idx[ax] < dims[ax] {
                break;
            }
            for k in 0..N {
                off[k] -= strides[k][ax] * dims[ax] as isize;
            }
            idx[ax] = 0;
        }
    }
}

/// Copies the elements of `src` read with `strides` from `base` as shape `dims`.
pub(crate) fn gather_strided<T: Copy>(src: &[T], dims: &[usize], strides: &[isize], base: isize) -> Vec<T> {
    let mut out = Vec::with_capacity(dims.iter().product());
    walk(dims, [strides], [base], |[i]| out.push(src[i]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_by_strides() {
        // [[0, 1, 2], [3, 4, 5]] transposed.
        let src = [0, 1, 2, 3, 4, 5];
        let out = gather_strided(&src, &[3, 2], &[1, 3], 0);
        assert_eq!(out, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn coalesce_merges_contiguous_axes() {
        let (d, [s]) = coalesce(&[2, 3, 4], [&[12, 4, 1]]);
        assert_eq!(d, vec![24]);
        assert_eq!(s, vec![1]);
        let (d, [a, b]) = coalesce(&[2, 3, 4], [&[12, 4, 1], &[0, 4, 1]]);
        assert_eq!(d, vec![2, 12]);
        assert_eq!(a, vec![12, 1]);
        assert_eq!(b, vec![0, 1]);
    }

    #[test]
    fn broadcast_reads() {
        let src = [10, 20, 30];
        let s = broadcast_strides(&[3], &[2, 3]);
        assert_eq!(gather_strided(&src, &[2, 3], &s, 0), vec![10, 20, 30, 10, 20, 30]);
        let s = broadcast_strides(&[3, 1], &[3, 2]);
        assert_eq!(gather_strided(&src, &[3, 2], &s, 0), vec![10, 10, 20, 20, 30, 30]);
    }

    #[test]
    fn negative_strides() {
        let src = [0, 1, 2, 3, 4];
        assert_eq!(gather_strided(&src, &[3], &[-2], 4), vec![4, 2, 0]);
    }
}
