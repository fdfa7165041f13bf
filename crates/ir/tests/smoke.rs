use blockfuse_ir::*;

#[test]
fn build_dump_roundtrip() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(64)]));
    let w = b.constant(HostTensor::from_f32(vec![64], &[0.5; 64]));
    let sq = b.unary(UnaryOp::Square, x).unwrap();
    let m = b.mean_last(sq).unwrap();
    let eps = b.scalar(DType::F32, 1e-6);
    let a = b.add2(m, eps).unwrap();
    let r = b.unary(UnaryOp::Rsqrt, a).unwrap();
    let y = b.mul(x, r).unwrap();
    let y = b.mul(y, w).unwrap();
    let y2 = b.reshape(y, vec![Dim::sym("batch").mul(&Dim::sym("seq")), Dim::Known(64)]).unwrap();
    g.add_output("y", y2);
    g.validate().unwrap();
    let text = text::dump(&g).unwrap();
    println!("{text}");
    let js = json::to_json(&g).unwrap();
    let g2 = json::from_json(&js).unwrap();
    assert_eq!(text::dump(&g2).unwrap(), text);
    assert_eq!(json::to_json(&g2).unwrap(), js);
}
