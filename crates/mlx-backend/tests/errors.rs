//! Errors of the MLX backend: unavailable devices, inputs that do not fit, run-time shapes
//! and data a node rejects — each an `Err` naming the input or the node, never an abort.

mod common;

use blockfuse_ir::blocks::{RmsNorm, Rope, RopePosition};
use blockfuse_ir::{
    BinaryOp, Bound, Builder, DType, Dim, Graph, HostTensor, Op, SliceSpec, TensorType, Value,
};
use blockfuse_mlx::{Device, MlxBackend, MlxError};
use blockfuse_testkit::blocks::IntRatio;
use common::*;
use std::sync::Arc;

#[test]
fn gpu_on_the_cpu_build_is_an_error() {
    if Device::Gpu.is_available() {
        // a GPU build of libmlx.so was swapped in
        assert!(MlxBackend::new(Device::Gpu).is_ok());
        return;
    }
    for r in [MlxBackend::new(Device::Gpu), MlxBackend::with_default_lowerings(Device::Gpu)] {
        match r {
            Err(MlxError::DeviceUnavailable { device: Device::Gpu, version }) => {
                assert!(version.starts_with("0.32"), "{version}")
            }
            other => panic!("expected DeviceUnavailable, got {other:?}"),
        }
    }
    assert!(MlxBackend::new(Device::Cpu).is_ok());
}

fn two_inputs() -> Graph {
    let seq = Dim::sym("seq");
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [seq.clone(), Dim::Known(4)]));
    let y = b.input("y", TensorType::new(DType::F32, [seq, Dim::Known(1)]));
    let s = b.add2(x, y).unwrap();
    g.add_output("s", s);
    g
}

#[test]
fn inputs_that_do_not_fit_name_the_input() {
    let g = two_inputs();
    let m = mlx();
    let ok = m.run(&g, &[rand(DType::F32, &[3, 4], 1, 1.0), rand(DType::F32, &[3, 1], 2, 1.0)]);
    assert_eq!(ok.unwrap()[0].dims(), &[3, 4]);
    let cases = [
        (vec![rand(DType::F32, &[3, 4], 1, 1.0)], usize::MAX, "2 input(s), 1 were given"),
        (
            vec![rand(DType::F16, &[3, 4], 1, 1.0), rand(DType::F32, &[3, 1], 2, 1.0)],
            0,
            "expected f32[seq, 4], got f16[3, 4]",
        ),
        (vec![rand(DType::F32, &[3, 5], 1, 1.0), rand(DType::F32, &[3, 1], 2, 1.0)], 0, "axis 1 must be 4"),
        (vec![rand(DType::F32, &[3, 4], 1, 1.0), rand(DType::F32, &[2, 1], 2, 1.0)], 1, "seq = 3"),
        (
            vec![rand(DType::F32, &[3, 4], 1, 1.0), rand(DType::F32, &[3], 2, 1.0)],
            1,
            "expected f32[seq, 1], got f32[3]",
        ),
    ];
    for (inputs, index, text) in cases {
        match m.run(&g, &inputs) {
            Err(e @ MlxError::Input { index: i, .. }) => {
                assert_eq!(i, index, "{e}");
                assert!(e.to_string().contains(text), "{e} lacks {text}");
                if index == 1 {
                    assert!(e.to_string().contains("\"y\""), "{e}");
                }
            }
            other => panic!("expected an input error, got {other:?}"),
        }
    }
}

/// The error is a `Node` error whose label (outermost) contains `name`.
#[track_caller]
fn assert_names_node(e: &MlxError, name: &str, text: &str) {
    let path = e.node_path();
    assert!(!path.is_empty(), "not a node error: {e}");
    assert_eq!(path[0].name.as_deref(), Some(name), "{e}");
    assert!(e.to_string().contains(text), "{e} lacks {text}");
}

#[test]
fn a_runtime_shape_a_block_rejects_names_the_block() {
    // positions {p} must match x's sequence axis {seq}: only the run can tell.
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, [Dim::Known(1), Dim::Known(2), Dim::sym("seq"), Dim::Known(8)]),
    );
    let p = g.add_input("p", TensorType::new(DType::I64, [Dim::sym("p")]));
    let rope = Rope::new(8, 1e4).with_position(RopePosition::Positions);
    let id = g.add_node(Op::Block(Arc::new(rope)), &[x, p], Some("layers.0/rope".into())).unwrap();
    g.add_output("y", Value::first(id));
    let x = rand(DType::F32, &[1, 2, 3, 8], 1, 1.0);
    for m in [mlx(), mlx_plain()] {
        let ok = m.run(&g, &[x.clone(), HostTensor::from_i64(vec![3], &[0, 4, 9])]);
        assert!(ok.is_ok(), "{ok:?}");
        let e = m.run(&g, &[x.clone(), HostTensor::from_i64(vec![5], &[0, 1, 2, 3, 4])]).unwrap_err();
        assert_names_node(&e, "layers.0/rope", "rope: positions must be");
        assert!(matches!(e.root(), MlxError::Mismatch(_)), "{e}");
    }
}

#[test]
fn a_runtime_shape_that_disagrees_with_the_graph_names_the_node() {
    // x[:, 0:n] over a symbolic axis has length n, unless n exceeds the axis.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::F32, [Dim::Known(2), Dim::sym("seq")]));
    let _n = g.add_input("n", TensorType::new(DType::F32, [Dim::sym("n")]));
    let spec = SliceSpec {
        axes: vec![1],
        starts: vec![Bound::Const(0)],
        ends: vec![Bound::Dim(Dim::sym("n"))],
        steps: vec![1],
    };
    let id = g.add_node(Op::Slice(spec), &[x], Some("head".into())).unwrap();
    g.add_output("y", Value::first(id));
    let x = rand(DType::F32, &[2, 5], 1, 1.0);
    let m = mlx();
    assert_eq!(m.run(&g, &[x.clone(), rand(DType::F32, &[3], 2, 1.0)]).unwrap()[0].dims(), &[2, 3]);
    let e = m.run(&g, &[x, rand(DType::F32, &[7], 2, 1.0)]).unwrap_err();
    assert_names_node(&e, "head", "the graph's type is f32[2, n]");
}

fn binary_graph(op: BinaryOp, d: DType, name: &str) -> Graph {
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::known(d, &[3]));
    let b = g.add_input("b", TensorType::known(d, &[3]));
    let id = g.add_node(Op::Binary(op), &[a, b], Some(name.into())).unwrap();
    g.add_output("y", Value::first(id));
    g
}

#[test]
fn integer_division_by_zero_is_an_error_not_a_trap() {
    for d in [DType::I64, DType::I32, DType::I8, DType::U8] {
        for (op, text) in
            [(BinaryOp::Div, "integer division by zero"), (BinaryOp::Mod, "integer modulo by zero")]
        {
            let g = binary_graph(op, d, "ratio");
            let a = tensor(d, &[3], &[7.0, 8.0, 9.0]);
            let e = mlx().run(&g, &[a.clone(), tensor(d, &[3], &[1.0, 0.0, 2.0])]).unwrap_err();
            assert_names_node(&e, "ratio", text);
            assert!(matches!(e.root(), MlxError::Check(_)));
            assert!(mlx().run(&g, &[a, tensor(d, &[3], &[1.0, 3.0, 2.0])]).is_ok());
        }
    }
    let g = binary_graph(BinaryOp::Pow, DType::I32, "power");
    let a = tensor(DType::I32, &[3], &[2.0, 2.0, 2.0]);
    let e = mlx().run(&g, &[a, tensor(DType::I32, &[3], &[1.0, -1.0, 2.0])]).unwrap_err();
    assert_names_node(&e, "power", "negative exponent");
}

#[test]
fn gather_out_of_range_is_an_error() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::known(DType::F32, &[4, 2]));
    let i = g.add_input("i", TensorType::known(DType::I64, &[3]));
    let id = g.add_node(Op::Gather { axis: 0 }, &[x, i], Some("embed".into())).unwrap();
    g.add_output("y", Value::first(id));
    let x = rand(DType::F32, &[4, 2], 1, 1.0);
    for bad in [[0, 4, 1], [-5, 0, 0]] {
        let e = mlx().run(&g, &[x.clone(), HostTensor::from_i64(vec![3], &bad)]).unwrap_err();
        assert_names_node(&e, "embed", "out of range for axis 0 of size 4");
    }
    assert!(mlx().run(&g, &[x, HostTensor::from_i64(vec![3], &[-4, 3, 0])]).is_ok());
}

fn rms_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::known(DType::F32, &[2, 8]));
    let id = g.add_node(Op::Block(Arc::new(RmsNorm::new(1e-6))), &[x], Some("norm".into())).unwrap();
    g.add_output("y", Value::first(id));
    g
}

#[test]
fn lowering_errors_and_wrong_results_name_the_block() {
    let g = rms_graph();
    let x = rand(DType::F32, &[2, 8], 1, 1.0);
    // a lowering whose MLX call fails
    let mut m = mlx();
    m.register::<RmsNorm>(|_, call, _| Ok(vec![call.args[0].reshape(&[7])?]));
    let e = m.run(&g, std::slice::from_ref(&x)).unwrap_err();
    assert_names_node(&e, "norm", "[reshape]");
    assert!(matches!(e.root(), MlxError::Mlx(_)));
    // a lowering with a result of the wrong dtype
    m.register::<RmsNorm>(|_, call, _| Ok(vec![call.args[0].astype(DType::F16)?]));
    let e = m.run(&g, std::slice::from_ref(&x)).unwrap_err();
    assert_names_node(&e, "norm", "output 0 came out f16[2, 8], the graph's type is f32[2, 8]");
    // a lowering that declines with other arguments: errors inside the fallback subgraph
    // name the fallback's node inside the block's
    m.register::<RmsNorm>(|_, call, fb| {
        let bad = call.args[0].astype(DType::I32)?;
        fb.run(&[bad])
    });
    let e = m.run(&g, std::slice::from_ref(&x)).unwrap_err();
    assert_names_node(&e, "norm", "rms_norm: x must be a float tensor");
    // still usable afterwards
    m.unregister::<RmsNorm>();
    assert!(m.run(&g, &[x]).is_ok());
}

#[test]
fn errors_inside_a_fallback_subgraph_name_both_nodes() {
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::known(DType::I32, &[3]));
    let b = g.add_input("b", TensorType::known(DType::I32, &[3]));
    let id = g.add_node(Op::Block(Arc::new(IntRatio)), &[a, b], Some("ratio".into())).unwrap();
    g.add_output("y", Value::first(id));
    let a = tensor(DType::I32, &[3], &[-7.0, 8.0, 9.0]);
    let ok = mlx().run(&g, &[a.clone(), tensor(DType::I32, &[3], &[2.0, 3.0, 2.0])]).unwrap();
    assert_eq!(ok[0].to_f64_vec(), [-3.0, 2.0, 4.0]);
    let e = mlx().run(&g, &[a, tensor(DType::I32, &[3], &[2.0, 0.0, 2.0])]).unwrap_err();
    let path = e.node_path();
    assert_eq!(path.len(), 2, "{e}");
    assert_eq!(path[0].name.as_deref(), Some("ratio"));
    assert_eq!(path[1].name.as_deref(), Some("int_ratio.fallback/div"));
    assert!(matches!(e.root(), MlxError::Check(m) if m == "integer division by zero"), "{e}");
}

#[test]
fn a_failing_fused_elementwise_call_is_an_mlx_error() {
    use blockfuse_mlx::array::with_device;
    use blockfuse_mlx::fast::{fused_elementwise, Fused};
    use blockfuse_mlx::Array;
    with_device(Device::Cpu, || {
        let a = Array::from_host(&HostTensor::from_f32(vec![2, 3], &[1.0; 6])).unwrap();
        let b = Array::from_host(&HostTensor::from_f32(vec![4], &[1.0; 4])).unwrap();
        // Shapes that do not broadcast: MLX throws inside the compiled function.
        let e = fused_elementwise(Fused::SwiGlu, &a, Some(&b), DType::F32).unwrap_err();
        assert!(matches!(e, MlxError::Mlx(_)), "{e}");
        // A missing operand is refused before MLX.
        let e = fused_elementwise(Fused::GeGluErf, &a, None, DType::F32).unwrap_err();
        assert!(matches!(e, MlxError::Binding(_)), "{e}");
        // The fused function still works afterwards.
        let y = fused_elementwise(Fused::SwiGlu, &a, Some(&a), DType::BF16).unwrap();
        assert_eq!(y.dtype().unwrap(), DType::BF16);
        assert_eq!(y.to_host().unwrap().dims(), &[2, 3]);
    })
    .unwrap();
}
