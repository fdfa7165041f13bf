mod common;

use blockfuse_ir::*;
use common::rms_norm_ops;

#[test]
fn build_dump_roundtrip() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(64)]));
    let w = b.constant(HostTensor::from_f32(vec![64], &[0.5; 64]));
    let y = rms_norm_ops(&mut b, x, w, 1e-6).unwrap();
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
