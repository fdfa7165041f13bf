//! Mask classification for the `sdpa` rule: what an attention mask can hold.
//!
//! The block attends uniformly on a row whose keys are all masked (it clamps additive masks
//! to `finfo.min`), while a composed graph whose mask holds −∞ gives NaN there. The rule may
//! leave such rows to the block only when the mask provably holds no −∞: [`never_neg_inf`]
//! proves it with interval bounds (constants, `full`, `where`, sums and products of bounded
//! values, casts that cannot overflow, layout ops). Anything unknown (a graph input, an
//! exporter's `trilu(full(−inf))`) may hold −∞, and the rule reproduces the NaN rows.

use blockfuse_ir::{BinaryOp, DType, Graph, Op, UnaryOp, Value};

/// How deep the bounds follow producers.
const MAX_DEPTH: usize = 24;

/// A closed interval `[lo, hi]` of finite numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Bounds {
    fn hull(self, o: Bounds) -> Bounds {
        Bounds { lo: self.lo.min(o.lo), hi: self.hi.max(o.hi) }
    }

    fn finite(self) -> Option<Bounds> {
        (self.lo.is_finite() && self.hi.is_finite()).then_some(self)
    }
}

/// The largest finite value of a float dtype (`None` for other dtypes).
pub fn finfo_max(d: DType) -> Option<f64> {
    match d {
        DType::F16 => Some(half::f16::MAX.to_f64()),
        DType::BF16 => Some(half::bf16::MAX.to_f64()),
        DType::F32 => Some(f32::MAX as f64),
        DType::F64 => Some(f64::MAX),
        _ => None,
    }
}

/// Bounds that every element of `v` provably lies in, all finite and representable in v's
/// dtype without overflow; `None` when unknown (inputs, NaN, infinities, overflow).
pub fn bounds(g: &Graph, v: Value) -> Option<Bounds> {
    bounds_at(g, v, 0)
}

fn bounds_at(g: &Graph, v: Value, depth: usize) -> Option<Bounds> {
    if depth > MAX_DEPTH {
        return None;
    }
    let n = g.node(v.node);
    let arg = |i: usize| bounds_at(g, n.operands[i], depth + 1);
    let dtype = g.value_type(v).dtype;
    let b = match &n.op {
        Op::Constant(t) if !t.is_empty() => {
            let vals = (0..t.len()).map(|i| t.get_f64(i));
            let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                if x.is_nan() {
                    (f64::NAN, f64::NAN)
                } else {
                    (l.min(x), h.max(x))
                }
            });
            Bounds { lo, hi }
        }
        Op::Full { value, .. } => Bounds { lo: *value, hi: *value },
        Op::Cast(_) if g.value_type(n.operands[0]).dtype == DType::Bool => Bounds { lo: 0.0, hi: 1.0 },
        Op::Cast(_) => arg(0)?,
        Op::Expand { .. } | Op::Reshape { .. } | Op::Transpose { .. } | Op::Slice(_) | Op::Trilu { .. } => {
            let x = arg(0)?;
            // Trilu zeroes what it drops.
            if matches!(n.op, Op::Trilu { .. }) {
                x.hull(Bounds { lo: 0.0, hi: 0.0 })
            } else {
                x
            }
        }
        Op::Where => arg(1)?.hull(arg(2)?),
        Op::Unary(UnaryOp::Neg) => {
            let x = arg(0)?;
            Bounds { lo: -x.hi, hi: -x.lo }
        }
        Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)) => {
            binary_bounds(*op, arg(0)?, arg(1)?)
        }
        _ => return None,
    };
    let b = b.finite()?;
    // Overflow in the value's own dtype (e.g. finfo.min + finfo.min = −∞, or f32's minimum
    // cast to f16) makes infinities.
    match finfo_max(dtype) {
        Some(m) if b.lo >= -m && b.hi <= m => Some(b),
        Some(_) => None,
        None => Some(b),
    }
}

/// Interval arithmetic for the binary ops [`bounds`] follows.
fn binary_bounds(op: BinaryOp, x: Bounds, y: Bounds) -> Bounds {
    match op {
        BinaryOp::Add => Bounds { lo: x.lo + y.lo, hi: x.hi + y.hi },
        BinaryOp::Sub => Bounds { lo: x.lo - y.hi, hi: x.hi - y.lo },
        BinaryOp::Max => Bounds { lo: x.lo.max(y.lo), hi: x.hi.max(y.hi) },
        BinaryOp::Min => Bounds { lo: x.lo.min(y.lo), hi: x.hi.min(y.hi) },
        _ => {
            let p = [x.lo * y.lo, x.lo * y.hi, x.hi * y.lo, x.hi * y.hi];
            let lo = p.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Bounds { lo, hi }
        }
    }
}

/// True when the float tensor `v` provably holds no −∞ (nor NaN).
pub fn never_neg_inf(g: &Graph, v: Value) -> bool {
    bounds(g, v).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, Dim, HostTensor, TensorType};

    fn mask_graph(f: impl FnOnce(&mut Builder<'_>, Value) -> Value) -> (Graph, Value) {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let m = b.input("m", TensorType::known(DType::Bool, &[1, 1, 4, 4]));
        let y = f(&mut b, m);
        g.add_output("y", y);
        (g, y)
    }

    #[test]
    fn finfo_min_where_mask_is_finite() {
        let (g, y) = mask_graph(|b, m| {
            let zero = b.scalar(DType::F32, 0.0);
            let min = b.scalar(DType::F32, f32::MIN as f64);
            b.select(m, zero, min).unwrap()
        });
        assert!(never_neg_inf(&g, y));
        assert_eq!(bounds(&g, y), Some(Bounds { lo: f32::MIN as f64, hi: 0.0 }));
    }

    #[test]
    fn neg_inf_masks_and_inputs_may_hold_neg_inf() {
        let (g, y) = mask_graph(|b, m| {
            let zero = b.scalar(DType::F32, 0.0);
            let ninf = b.scalar(DType::F32, f64::NEG_INFINITY);
            b.select(m, zero, ninf).unwrap()
        });
        assert!(!never_neg_inf(&g, y));
        // trilu(full(−inf), 0): the off-by-one mask of issue 17.
        let (g, y) = mask_graph(|b, _| {
            let full = b
                .add(
                    Op::Full {
                        shape: vec![Dim::Known(4), Dim::Known(4)],
                        value: f64::NEG_INFINITY,
                        dtype: DType::F32,
                    },
                    &[],
                )
                .unwrap();
            b.add(Op::Trilu { upper: true, k: 0 }, &[full]).unwrap()
        });
        assert!(!never_neg_inf(&g, y));
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::known(DType::F32, &[4, 4]));
        assert!(!never_neg_inf(&g, x));
    }

    #[test]
    fn sums_that_overflow_are_not_finite() {
        // HF's padding + causal masks added in f32: finfo.min + finfo.min = −∞.
        let (g, y) = mask_graph(|b, m| {
            let zero = b.scalar(DType::F32, 0.0);
            let min = b.scalar(DType::F32, f32::MIN as f64);
            let a = b.select(m, zero, min).unwrap();
            b.add2(a, a).unwrap()
        });
        assert!(!never_neg_inf(&g, y));
        // (1 − mask) · −1e9 stays finite.
        let (g, y) = mask_graph(|b, m| {
            let f = b.cast(m, DType::F32).unwrap();
            let one = b.scalar(DType::F32, 1.0);
            let inv = b.sub(one, f).unwrap();
            let big = b.scalar(DType::F32, -1e9);
            b.mul(inv, big).unwrap()
        });
        assert_eq!(bounds(&g, y), Some(Bounds { lo: -1e9, hi: 0.0 }));
    }

    #[test]
    fn casts_to_a_narrower_float_can_overflow() {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let c = b.constant(HostTensor::from_f64(DType::F32, vec![2], &[0.0, f32::MIN as f64]));
        let h = b.cast(c, DType::F16).unwrap();
        assert!(never_neg_inf(&g, c));
        assert!(!never_neg_inf(&g, h));
    }
}
