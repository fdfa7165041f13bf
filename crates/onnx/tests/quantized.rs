//! Quantized weights at import: int4/uint4 initializers (two values a byte), blocked
//! `DequantizeLinear`, and `com.microsoft` `MatMulNBits` with what it refuses. The value tests
//! against ONNX Runtime are `tests/quantized_onnx.rs` of the facade.

use blockfuse_fallback::FallbackBackend;
use blockfuse_ir::blocks::{Dequantize, Int4};
use blockfuse_ir::{DType, HostTensor, Op};
use blockfuse_onnx::build::{self, attr_int, opset, tensor_raw, value_info_fixed};
use blockfuse_onnx::proto::tensor_proto::DataType;
use blockfuse_onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use blockfuse_onnx::{import_model, OnnxError};

/// A node named `<op>_0` in `domain`, writing `y`.
fn node(domain: &str, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    build::node(op, &format!("{op}_0"), inputs, &["y"]).with_domain(domain).with_attributes(attrs)
}

/// An IR 10 model (opset 21 and `com.microsoft` 1) from `x: f32[x]` to `y: f32[y]`.
fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, x: &[i64], y: &[i64]) -> ModelProto {
    let graph = GraphProto {
        name: Some("g".into()),
        node: nodes,
        initializer: inits,
        input: vec![value_info_fixed("x", DataType::Float, x)],
        output: vec![value_info_fixed("y", DataType::Float, y)],
        ..Default::default()
    };
    build::model(10, vec![opset("", 21), opset("com.microsoft", 1)], graph)
}

/// `MatMulNBits` of K = 32, N = 2, 4 bits, blocks of 32, with extra inputs and attributes.
fn nbits(extra_inputs: &[&str], bits: i64, inits: Vec<TensorProto>) -> ModelProto {
    let mut ins = vec!["x", "b", "s"];
    ins.extend_from_slice(extra_inputs);
    let attrs = vec![attr_int("K", 32), attr_int("N", 2), attr_int("bits", bits), attr_int("block_size", 32)];
    let mut all = vec![
        tensor_raw("b", DataType::Uint8, &[2, 1, 16], (0..32u8).collect()),
        tensor_raw("s", DataType::Float, &[2], [0.5f32, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect()),
    ];
    all.extend(inits);
    model(vec![node("com.microsoft", "MatMulNBits", &ins, attrs)], all, &[1, 32], &[1, 2])
}

#[test]
fn matmul_nbits_imports_as_a_dequantized_matmul_with_the_default_zero_point() {
    let g = import_model(&nbits(&[], 4, vec![])).unwrap();
    let blocks: Vec<&str> =
        g.node_ids().filter_map(|id| g.node(id).op.as_block().map(|b| b.kind())).collect();
    assert_eq!(blocks, ["int4", "dequantize"]);
    let x = HostTensor::from_f32(vec![1, 32], &[1.0; 32]);
    let y = FallbackBackend::new().run(&g, &[x]).unwrap().remove(0);
    // Row n holds bytes 16n..16n+16, two nibbles each; zero point 8.
    let want: Vec<f64> = (0..2)
        .map(|n| {
            let s = [0.5, 0.25][n];
            (16 * n as u32..16 * n as u32 + 16)
                .map(|b| ((b & 15) as f64 - 8.0 + (b >> 4) as f64 - 8.0) * s)
                .sum()
        })
        .collect();
    assert_eq!(y.to_f64_vec(), want);
}

#[test]
fn matmul_nbits_refusals_name_what_is_not_supported() {
    let g_idx = tensor_raw("gi", DataType::Int32, &[32], vec![0; 128]);
    let cases = [
        (nbits(&["", "gi"], 4, vec![g_idx]), "g_idx"),
        (nbits(&[], 2, vec![]), "bits = 2"),
        (nbits(&["zf"], 4, vec![tensor_raw("zf", DataType::Float, &[2], vec![0; 8])]), "f32 zero_points"),
    ];
    for (m, want) in cases {
        let err = import_model(&m).unwrap_err();
        assert!(matches!(err, OnnxError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    // Attributes that would overflow the sizes are errors, not panics.
    let mut m = nbits(&[], 4, vec![]);
    m.graph.as_mut().unwrap().node[0].attribute[1] = attr_int("N", i64::MAX);
    assert!(import_model(&m).unwrap_err().to_string().contains("B must be uint8"));
    let mut m = nbits(&[], 4, vec![]);
    m.graph.as_mut().unwrap().node[0].attribute[3] = attr_int("block_size", 1 << 40);
    assert!(import_model(&m).unwrap_err().to_string().contains("block_size"));
    let mut m = nbits(&[], 4, vec![]);
    m.graph.as_mut().unwrap().node[0].op_type = Some("FusedMatMul".into());
    let err = import_model(&m).unwrap_err().to_string();
    assert_eq!(err, "unsupported ops: com.microsoft:FusedMatMul (node MatMulNBits_0)");
    let mut m = nbits(&[], 4, vec![]);
    m.graph.as_mut().unwrap().node[0].domain = Some("com.example".into());
    assert!(import_model(&m).unwrap_err().to_string().contains("com.example:MatMulNBits"));
}

#[test]
fn int4_initializers_stay_packed_and_blocked_dequantize_is_one_block() {
    // q int4 [4, 2] = -8..7 step 2, packed low nibble first; blocks of 2 along axis 0.
    let vals: Vec<i32> = (0..8).map(|i| 2 * i - 8).collect();
    let packed: Vec<u8> = vals.chunks(2).map(|p| (p[0] as u8 & 15) | ((p[1] as u8 & 15) << 4)).collect();
    let q = tensor_raw("q", DataType::Int4, &[4, 2], packed.clone());
    let s = tensor_raw(
        "s",
        DataType::Float,
        &[2, 2],
        [1.0f32, 2.0, 0.5, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let zp = TensorProto {
        name: Some("zp".into()),
        data_type: Some(DataType::Int4 as i32),
        dims: vec![2, 2],
        int32_data: vec![0x21, 0xF0],
        ..Default::default()
    };
    let dq =
        node("", "DequantizeLinear", &["q", "s", "zp"], vec![attr_int("axis", 0), attr_int("block_size", 2)]);
    let mut dq = dq;
    dq.output = vec!["w".into()];
    let mm = NodeProto { output: vec!["y".into()], ..node("", "MatMul", &["x", "w"], vec![]) };
    let g = import_model(&model(vec![dq, mm], vec![q, s, zp], &[1, 4], &[1, 2])).unwrap();
    let int4 = g.node_ids().find(|&id| g.node(id).op.as_block().is_some_and(|b| b.is::<Int4>())).unwrap();
    let c = g.node(g.node(int4).operands[0].node).op.as_constant().unwrap();
    assert_eq!((c.dtype(), c.bytes()), (DType::U8, &packed[..]));
    assert!(g.node_ids().any(|id| g.node(id).op.as_block().is_some_and(|b| b.is::<Dequantize>())));
    assert!(!g.node_ids().any(|id| matches!(g.node(id).op, Op::Cast(_))), "no composed dequantization");
    let x = HostTensor::from_f32(vec![1, 4], &[1.0, 10.0, 100.0, 1000.0]);
    let y = FallbackBackend::new().run(&g, &[x]).unwrap().remove(0);
    // zp = [[1, 2], [0, -1]]; w[k, n] = (q[k, n] − zp[k/2, n]) · s[k/2, n].
    let (zp, s) = ([1.0, 2.0, 0.0, -1.0], [1.0, 2.0, 0.5, 0.25]);
    let want: Vec<f64> = (0..2)
        .map(|n| {
            (0..4)
                .map(|k| {
                    [1.0, 10.0, 100.0, 1000.0][k]
                        * (vals[k * 2 + n] as f64 - zp[k / 2 * 2 + n])
                        * s[k / 2 * 2 + n]
                })
                .sum()
        })
        .collect();
    assert_eq!(y.to_f64_vec(), want);
}

#[test]
fn gather_block_quantized_refusals() {
    let table =
        |dims: &[i64]| tensor_raw("d", DataType::Uint8, dims, vec![0; dims.iter().product::<i64>() as usize]);
    let scales = tensor_raw("s", DataType::Float, &[4, 1], vec![0; 16]);
    let cases = [(2, vec![4, 16], "u8 'd' with bits = 2"), (4, vec![2, 2, 16], "rank 3 (2-D tables only)")];
    for (bits, dims, want) in cases {
        let attrs = vec![attr_int("bits", bits), attr_int("block_size", 32)];
        let n = node("com.microsoft", "GatherBlockQuantized", &["d", "x", "s"], attrs);
        let err =
            import_model(&model(vec![n], vec![table(&dims), scales.clone()], &[1, 32], &[1, 2])).unwrap_err();
        assert!(matches!(err, OnnxError::Unsupported { .. }) && err.to_string().contains(want), "{err}");
    }
}
