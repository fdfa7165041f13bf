//! Seeded random tensors and graph inputs. Every function is deterministic in its seed.

use blockfuse_ir::tensor::push_le;
use blockfuse_ir::{Bindings, DType, Graph, HostTensor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `n` deterministic values in [-1, 1) from `seed` (xorshift): cheap, and the same on every
/// platform and `rand` version.
pub fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// A tensor of any `dtype` holding `scale · noise(seed)`, converted as
/// [`HostTensor::from_f64`] converts (integers truncate, bools are `x != 0`).
pub fn rand(dtype: DType, dims: &[usize], seed: u64, scale: f64) -> HostTensor {
    let v: Vec<f64> = noise(dims.iter().product(), seed).into_iter().map(|x| x * scale).collect();
    HostTensor::from_f64(dtype, dims.to_vec(), &v)
}

/// A uniform random tensor in `[-scale, scale)` (`scale` > 0) from `seed`, written straight
/// into `dtype`'s bytes (a float dtype; fast enough for model-sized inputs).
pub fn random_tensor(dtype: DType, dims: &[usize], scale: f64, seed: u64) -> HostTensor {
    let mut rng = SmallRng::seed_from_u64(seed);
    let bytes = random_bytes(&mut rng, dtype, dims.iter().product(), scale);
    HostTensor::from_bytes(dtype, dims.to_vec(), bytes).expect("the byte count matches dims")
}

/// `n` values uniform in `[-scale, scale)` as `dtype`'s little-endian bytes. The f32 and
/// bf16 loops (the common and the large cases) avoid a per-element dtype dispatch.
pub fn random_bytes(rng: &mut SmallRng, dtype: DType, n: usize, scale: f64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * dtype.size_bytes());
    let mut sample = || rng.gen_range(-scale..scale);
    match dtype {
        DType::F32 => (0..n).for_each(|_| bytes.extend_from_slice(&(sample() as f32).to_le_bytes())),
        DType::BF16 => {
            (0..n).for_each(|_| bytes.extend_from_slice(&bf16_bits(sample() as f32).to_le_bytes()))
        }
        _ => (0..n).for_each(|_| push_le(&mut bytes, dtype, sample())),
    }
    bytes
}

/// The bf16 nearest to finite `x` (ties to even), as bits.
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Random inputs for `g`: symbols bound to `sym_size`, floats uniform in [-2, 2), integers
/// in `0..2` (valid token ids and mask values), bools random.
pub fn random_inputs(g: &Graph, sym_size: usize, seed: u64) -> Vec<HostTensor> {
    random_inputs_with(g, &Bindings::new(), sym_size, seed)
}

/// [`random_inputs`] with some symbols bound (`--bind batch=2,seq=7`); the others are
/// bound to `sym_size`. An input whose dims do not evaluate gets no elements.
pub fn random_inputs_with(g: &Graph, bind: &Bindings, sym_size: usize, seed: u64) -> Vec<HostTensor> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut bindings = bind.clone();
    g.inputs()
        .iter()
        .map(|&id| {
            let ty = &g.node(id).types[0];
            for d in &ty.shape {
                for s in d.symbols() {
                    bindings.entry(s.clone()).or_insert(sym_size);
                }
            }
            let dims = ty.eval_dims(&bindings).unwrap_or_default();
            let n: usize = dims.iter().product();
            let values: Vec<f64> =
                (0..n)
                    .map(|_| {
                        if ty.dtype.is_float() {
                            rng.gen_range(-2.0..2.0)
                        } else {
                            rng.gen_range(0..2) as f64
                        }
                    })
                    .collect();
            HostTensor::from_f64(ty.dtype, dims, &values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfuse_ir::{Builder, Dim, TensorType};

    #[test]
    fn bf16_rounding_matches_push_le() {
        // 1 + 2⁻⁸ and 1 + 3·2⁻⁸ are ties (to even: down, then up).
        let ties = [1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0];
        for x in ties.into_iter().chain([0.0f32, -0.0, 1.0, -1.5, 0.1, 3.3e38, -3.3e38, 1e-40, 0.019_999]) {
            let mut want = Vec::new();
            push_le(&mut want, DType::BF16, x as f64);
            assert_eq!(bf16_bits(x).to_le_bytes().to_vec(), want, "{x}");
        }
    }

    #[test]
    fn tensors_are_seeded_and_in_range_in_every_dtype() {
        for dtype in DType::ALL {
            let t = rand(dtype, &[3, 5], 9, 4.0);
            assert_eq!((t.dtype(), t.dims()), (dtype, &[3usize, 5][..]));
            assert_eq!(t, rand(dtype, &[3, 5], 9, 4.0), "{dtype}");
            assert!(t.to_f64_vec().iter().all(|v| (-4.0..=4.0).contains(v)), "{dtype}");
        }
        assert_ne!(noise(8, 1), noise(8, 2));
        assert!(noise(1000, 3).iter().all(|v| (-1.0..1.0).contains(v)));
        for dtype in [DType::F32, DType::BF16, DType::F16, DType::F64] {
            let t = random_tensor(dtype, &[3, 5], 0.5, 1);
            assert_eq!((t.dtype(), t.dims()), (dtype, &[3usize, 5][..]));
            assert!(t.to_f64_vec().iter().all(|v| (-0.5..=0.5).contains(v)), "{dtype}");
            assert_eq!(t, random_tensor(dtype, &[3, 5], 0.5, 1));
        }
    }

    #[test]
    fn graph_inputs_follow_types_and_bindings() {
        let mut g = Graph::new();
        let mut b = Builder::new(&mut g);
        let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), 4.into()]));
        let ids = b.input("ids", TensorType::new(DType::I64, [Dim::sym("seq")]));
        g.add_output("x", x);
        g.add_output("ids", ids);
        let bind: Bindings = [("batch".into(), 2)].into_iter().collect();
        let inputs = random_inputs_with(&g, &bind, 3, 5);
        assert_eq!(inputs[0].dims(), &[2, 3, 4]);
        assert_eq!(inputs[1].dims(), &[3]);
        assert!(inputs[0].to_f64_vec().iter().all(|v| (-2.0..2.0).contains(v)));
        assert!(inputs[1].to_i64_vec().iter().all(|v| (0..2).contains(v)));
        assert_eq!(inputs, random_inputs_with(&g, &bind, 3, 5));
        assert_eq!(random_inputs(&g, 3, 5)[0].dims(), &[3, 3, 4]);
    }
}
