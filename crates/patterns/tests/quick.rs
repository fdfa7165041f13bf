use blockfuse_ir::*;
use blockfuse_patterns::*;

#[test]
fn rms_norm_llama_legacy() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::new(DType::F16, [Dim::sym("batch"), Dim::sym("seq"), Dim::Known(64)]));
    let w = b.constant(HostTensor::from_f64(DType::F16, vec![64], &[0.5; 64]));
    let xf = b.cast(x, DType::F32).unwrap();
    let two = b.scalar(DType::F32, 2.0);
    let sq = b.binary(BinaryOp::Pow, xf, two).unwrap();
    let m = b.mean_last(sq).unwrap();
    let eps = b.scalar(DType::F32, 1e-6);
    let a = b.add2(m, eps).unwrap();
    let s = b.unary(UnaryOp::Sqrt, a).unwrap();
    let one = b.scalar(DType::F32, 1.0);
    let r = b.div(one, s).unwrap();
    let y = b.mul(xf, r).unwrap();
    let y = b.cast(y, DType::F16).unwrap();
    let y = b.mul(w, y).unwrap();
    g.add_output("y", y);
    println!("{}", text::dump(&g).unwrap());
    let rep = optimize(&mut g, &default_rules()).unwrap();
    println!("{}", text::dump(&g).unwrap());
    println!("{rep:?}");
    assert_eq!(rep.blocks.get("rms_norm"), Some(&1));
}
