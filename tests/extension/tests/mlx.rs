//! The extension crate on the MLX backend, through blockfuse-mlx's public API only: its own
//! block through its fallback subgraph (whose nested GELU block takes MLX's lowering), through
//! an MLX lowering written here, and through one that declines at run time; and an override
//! of one of blockfuse's own blocks.

mod common;

use blockfuse_extension_test::ClampedGelu;
use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::RmsNorm;
use blockfuse_ir::dispatch::{Call, Fallback, LowerResult};
use blockfuse_ir::{Builder, DType, Dim, Graph, HostTensor, TensorType};
use blockfuse_mlx::array::{BinaryOp, UnaryOp};
use blockfuse_mlx::{Array, Device, MlxBackend, MlxError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{clamped_graph, ramp};

/// The largest `|a − b| / max(1, |b|)`.
fn max_err(a: &HostTensor, b: &HostTensor) -> f64 {
    assert_eq!((a.dtype(), a.dims()), (b.dtype(), b.dims()));
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// [`ClampedGelu`] as MLX ops: exact GELU in f32, rounded to x's dtype, then the clamp in
/// x's dtype — the block's fallback, op for op.
fn clamped_gelu_mlx(
    blk: &ClampedGelu,
    call: &Call<'_, Array>,
    _fallback: &mut dyn Fallback<Array>,
) -> LowerResult<Array> {
    let x = &call.args[0];
    let t = x.dtype()?;
    let x32 = x.astype(DType::F32)?;
    let s = |v: f64, d: DType| Array::scalar(v, d);
    let e = x32
        .binary(BinaryOp::Mul, &s(std::f64::consts::FRAC_1_SQRT_2, DType::F32)?)?
        .unary(UnaryOp::Erf)?
        .binary(BinaryOp::Add, &s(1.0, DType::F32)?)?;
    let g = x32.binary(BinaryOp::Mul, &s(0.5, DType::F32)?)?.binary(BinaryOp::Mul, &e)?.astype(t)?;
    let limit = blk.limit as f64;
    let y = g.binary(BinaryOp::Maximum, &s(-limit, t)?)?.binary(BinaryOp::Minimum, &s(limit, t)?)?;
    Ok(vec![y])
}

#[test]
fn custom_block_on_mlx_via_its_fallback_and_via_a_lowering() {
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F16, 1e-3), (DType::BF16, 1e-2)] {
        let g = clamped_graph(dtype);
        for rows in [1, 5] {
            let x = ramp(dtype, rows);
            let want = FallbackBackend::new().run(&g, std::slice::from_ref(&x)).unwrap();
            // Nothing registered for ClampedGelu: its fallback subgraph runs on MLX, and its
            // nested Gelu block takes blockfuse-mlx's default lowering.
            let via_fallback = MlxBackend::with_default_lowerings(Device::Cpu)
                .unwrap()
                .run(&g, std::slice::from_ref(&x))
                .unwrap();
            // An MLX lowering of the extension's block.
            let calls = Arc::new(AtomicUsize::new(0));
            let mut be = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
            let c = calls.clone();
            be.register::<ClampedGelu>(move |blk, call, fb| {
                c.fetch_add(1, Ordering::SeqCst);
                clamped_gelu_mlx(blk, call, fb)
            });
            let via_lowering = be.run(&g, std::slice::from_ref(&x)).unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "the lowering ran");
            for (what, got) in [("fallback", &via_fallback[0]), ("lowering", &via_lowering[0])] {
                let d = max_err(got, &want[0]);
                assert!(d <= tol, "{dtype} {rows} rows via the {what}: differs by {d:e}");
            }
            let y = via_lowering[0].to_f64_vec();
            assert!(y.iter().all(|v| (-1.5..=1.5).contains(v)));
        }
    }
}

#[test]
fn a_lowering_that_declines_at_run_time() {
    // Handles f32 only; other dtypes go to the fallback handle.
    let declined = Arc::new(AtomicUsize::new(0));
    let mut be = MlxBackend::new(Device::Cpu).unwrap();
    let d = declined.clone();
    be.register::<ClampedGelu>(move |blk, call, fb| {
        if call.args[0].dtype()? != DType::F32 {
            d.fetch_add(1, Ordering::SeqCst);
            return fb.run(call.args);
        }
        clamped_gelu_mlx(blk, call, fb)
    });
    for (dtype, declines) in [(DType::F32, 0), (DType::F16, 1)] {
        let g = clamped_graph(dtype);
        let x = ramp(dtype, 3);
        let got = be.run(&g, std::slice::from_ref(&x)).unwrap();
        let want = FallbackBackend::new().run(&g, &[x]).unwrap();
        assert!(max_err(&got[0], &want[0]) <= 1e-3, "{dtype}");
        assert_eq!(declined.load(Ordering::SeqCst), declines, "{dtype}");
    }
}

#[test]
fn overriding_a_builtin_block_on_mlx() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(32)]));
    let y = b.block(RmsNorm::new(1e-6), &[x]).unwrap()[0];
    let z = b.block(ClampedGelu { limit: 1.0 }, &[y]).unwrap()[0];
    g.add_output("z", z);
    let x = ramp(DType::F32, 2).reshaped(vec![1, 32]).unwrap();
    let want = FallbackBackend::new().run(&g, std::slice::from_ref(&x)).unwrap();
    // A spy that counts and delegates to MLX's own rms_norm lowering.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut be = MlxBackend::with_default_lowerings(Device::Cpu).unwrap();
    let c = calls.clone();
    be.register::<RmsNorm>(move |blk, call, fb| {
        c.fetch_add(1, Ordering::SeqCst);
        blockfuse_mlx::lowerings::rms_norm(blk, call, fb)
    });
    let got = be.run(&g, &[x]).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(max_err(&got[0], &want[0]) <= 1e-6);
}

#[test]
fn errors_name_the_extension_block() {
    // A lowering that fails inside MLX: the error names the block node, no abort.
    let mut be = MlxBackend::new(Device::Cpu).unwrap();
    be.register::<ClampedGelu>(|_, call, _| Ok(vec![call.args[0].reshape(&[3])?]));
    let g = clamped_graph(DType::F32);
    let e = be.run(&g, &[ramp(DType::F32, 2)]).unwrap_err();
    assert!(e.to_string().contains("block.clamped_gelu"), "{e}");
    assert!(matches!(e.root(), MlxError::Mlx(m) if m.contains("reshape")), "{e}");
}
