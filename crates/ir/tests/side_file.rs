//! JSON with a side file: large constants as raw bytes beside the document.

use blockfuse_ir::json::{
    from_json, read_json_file, to_json, to_json_with_side_file, write_json_file, SIDE_FILE_ALIGN,
};
use blockfuse_ir::{BinaryOp, DType, Graph, HostTensor, Op, TensorType, Value};

fn graph() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::known(DType::F32, &[100]));
    let big: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 3.0).collect();
    let w = g.add_node(Op::Constant(HostTensor::from_f32(vec![100], &big)), &[], Some("w".into())).unwrap();
    let b = g.add_node(Op::Constant(HostTensor::from_f32(vec![1], &[2.0])), &[], Some("b".into())).unwrap();
    let m = g.add_node(Op::Binary(BinaryOp::Mul), &[x, Value { node: w, output: 0 }], None).unwrap();
    let a = g
        .add_node(
            Op::Binary(BinaryOp::Add),
            &[Value { node: m, output: 0 }, Value { node: b, output: 0 }],
            None,
        )
        .unwrap();
    let w2 =
        g.add_node(Op::Constant(HostTensor::from_i64(vec![9], &[7; 9])), &[], Some("w2".into())).unwrap();
    g.add_output("y", Value { node: a, output: 0 });
    g.add_output("z", Value { node: w2, output: 0 });
    g
}

#[test]
fn large_constants_go_to_the_side_file_and_come_back() {
    let g = graph();
    let (text, side) = to_json_with_side_file(&g, "g.json.data", 64).unwrap();
    assert!(text.contains("\"data_file\": \"g.json.data\""), "{text}");
    assert_eq!(text.matches("\"data_ref\"").count(), 2, "w (400 bytes) and w2 (72 bytes)");
    assert_eq!(side.len(), 7 * SIDE_FILE_ALIGN + 72, "w at 0 (400 → 448 aligned), w2 at 448");
    assert!(from_json(&text).unwrap_err().to_string().contains("read_json_file"));

    let dir = std::env::temp_dir().join(format!("blockfuse-side-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.json");
    write_json_file(&g, &path, 64).unwrap();
    assert!(dir.join("g.json.data").is_file());
    let back = read_json_file(&path).unwrap();
    assert_eq!(to_json(&back).unwrap(), to_json(&g).unwrap(), "same graph, constants inline again");
    let shared =
        back.node_ids().filter(|&id| matches!(&back.node(id).op, Op::Constant(t) if t.is_shared())).count();
    assert_eq!(shared, 2);

    // Without large constants there is no side file.
    let small = dir.join("small.json");
    write_json_file(&g, &small, 1 << 20).unwrap();
    assert!(!dir.join("small.json.data").exists());
    assert_eq!(to_json(&read_json_file(&small).unwrap()).unwrap(), to_json(&g).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn side_file_names_must_stay_in_the_directory() {
    let g = graph();
    for bad in ["../x.data", "/etc/passwd", "sub/x.data", ""] {
        assert!(to_json_with_side_file(&g, bad, 64).is_err(), "{bad}");
    }
    let (text, _) = to_json_with_side_file(&g, "g.data", 64).unwrap();
    let dir = std::env::temp_dir().join(format!("blockfuse-side-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("g.json");
    std::fs::write(&p, text.replace("\"g.data\"", "\"../g.data\"")).unwrap();
    assert!(read_json_file(&p).unwrap_err().to_string().contains("plain file name"));
    // A data_ref past the end of the side file is an error, not a panic.
    std::fs::write(&p, &text).unwrap();
    std::fs::write(dir.join("g.data"), [0u8; 10]).unwrap();
    assert!(read_json_file(&p).unwrap_err().to_string().contains("data_ref"));
    let _ = std::fs::remove_dir_all(&dir);
}
