//! Batched matrix products with numpy broadcasting of the batch axes, through the
//! `matrixmultiply` kernels (f32 accumulation for f32/f16/bf16, f64 for f64).

use crate::strided::{broadcast_dims, broadcast_strides, contiguous_strides, walk};
use crate::tensor::{round_slice, wrap_slice, Buf, Tensor};

/// One `m×k · k×n` product on row-major blocks at the given offsets.
trait Gemm: Copy + Default {
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        oa: usize,
        b: &[Self],
        ob: usize,
        c: &mut [Self],
        oc: usize,
    );
}

macro_rules! gemm_float {
    ($t:ty, $kernel:path) => {
        impl Gemm for $t {
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: &[Self],
                oa: usize,
                b: &[Self],
                ob: usize,
                c: &mut [Self],
                oc: usize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                assert!(oa + m * k <= a.len() && ob + k * n <= b.len() && oc + m * n <= c.len());
                // SAFETY: the asserts above keep every access of the row-major blocks
                // (strides k/1, n/1, n/1) inside the slices.
                unsafe {
                    $kernel(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr().add(oa),
                        k as isize,
                        1,
                        b.as_ptr().add(ob),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr().add(oc),
                        n as isize,
                        1,
                    );
                }
            }
        }
    };
}
gemm_float!(f32, matrixmultiply::sgemm);
gemm_float!(f64, matrixmultiply::dgemm);

impl Gemm for i64 {
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        oa: usize,
        b: &[Self],
        ob: usize,
        c: &mut [Self],
        oc: usize,
    ) {
        for i in 0..m {
            for p in 0..k {
                let av = a[oa + i * k + p];
                let brow = &b[ob + p * n..ob + (p + 1) * n];
                let crow = &mut c[oc + i * n..oc + (i + 1) * n];
                for (cv, bv) in crow.iter_mut().zip(brow) {
                    *cv = cv.wrapping_add(av.wrapping_mul(*bv));
                }
            }
        }
    }
}

struct Plan {
    batch: Vec<usize>,
    sa: Vec<isize>,
    sb: Vec<isize>,
    m: usize,
    k: usize,
    n: usize,
    out: Vec<usize>,
    /// `b` has no batch to walk and `a`'s batch is not broadcast: fold the batch into m.
    fold_batch: bool,
}

fn plan(ad: &[usize], bd: &[usize]) -> Result<Plan, String> {
    if ad.is_empty() || bd.is_empty() {
        return Err("matmul operands need at least 1 axis".into());
    }
    let a2: Vec<usize> = if ad.len() == 1 { vec![1, ad[0]] } else { ad.to_vec() };
    let b2: Vec<usize> = if bd.len() == 1 { vec![bd[0], 1] } else { bd.to_vec() };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    if k != k2 {
        return Err(format!("contracted dims differ: {ad:?} @ {bd:?} ({k} vs {k2})"));
    }
    let (ba, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast_dims(ba, bb)?;
    // Strides in units of whole matrices.
    let sa: Vec<isize> = broadcast_strides(ba, &batch).iter().map(|s| s * (m * k) as isize).collect();
    let sb: Vec<isize> = broadcast_strides(bb, &batch).iter().map(|s| s * (k * n) as isize).collect();
    let mut out = batch.clone();
    if ad.len() >= 2 {
        out.push(m);
    }
    if bd.len() >= 2 {
        out.push(n);
    }
    let fold_batch = sb.iter().all(|&s| s == 0) && ba == &batch[..];
    Ok(Plan { batch, sa, sb, m, k, n, out, fold_batch })
}

fn run<T: Gemm>(p: &Plan, a: &[T], b: &[T]) -> Vec<T> {
    let (m, k, n) = (p.m, p.k, p.n);
    let count: usize = p.batch.iter().product();
    let mut c = vec![T::default(); count * m * n];
    if p.fold_batch {
        T::gemm(count * m, k, n, a, 0, b, 0, &mut c, 0);
        return c;
    }
    let sc: Vec<isize> = contiguous_strides(&p.batch).iter().map(|s| s * (m * n) as isize).collect();
    walk(&p.batch, [&p.sa, &p.sb, &sc], [0, 0, 0], |[oa, ob, oc]| T::gemm(m, k, n, a, oa, b, ob, &mut c, oc));
    c
}

/// numpy `matmul`: 1-D operands are promoted (and the added axis dropped), batch axes
/// broadcast.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    if a.dtype != b.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype));
    }
    let p = plan(&a.dims, &b.dims)?;
    let dtype = a.dtype;
    let buf = match (&*a.buf, &*b.buf) {
        (Buf::F32(x), Buf::F32(y)) => {
            let mut v = run(&p, x, y);
            round_slice(dtype, &mut v);
            Buf::F32(v)
        }
        (Buf::F64(x), Buf::F64(y)) => Buf::F64(run(&p, x, y)),
        (Buf::I64(x), Buf::I64(y)) => {
            let mut v = run(&p, x, y);
            wrap_slice(dtype, &mut v);
            Buf::I64(v)
        }
        _ => return Err(format!("matmul needs numbers, got {dtype}")),
    };
    Ok(Tensor::new(dtype, p.out, buf))
}
