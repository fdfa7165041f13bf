use blockfuse_ir::{DType, HostTensor};
use blockfuse_mlx::array::{BinaryOp, ReduceOp, UnaryOp};
use blockfuse_mlx::{fast, Array};

fn a(d: DType, dims: &[usize], v: &[f64]) -> Array {
    Array::from_host(&HostTensor::from_f64(d, dims.to_vec(), v)).unwrap()
}
fn show(name: &str, r: Result<Array, blockfuse_mlx::MlxError>) {
    match r {
        Ok(x) => match x.to_host() {
            Ok(h) => println!("{name}: {:?} {:?}", h, h.to_f64_vec()),
            Err(e) => println!("{name}: dtype err {e} {:?}", x),
        },
        Err(e) => println!("{name}: ERR {e}"),
    }
}

#[test]
fn probe() {
    let x = a(DType::I32, &[4], &[7.0, -7.0, 7.0, -7.0]);
    let y = a(DType::I32, &[4], &[2.0, 2.0, -2.0, -2.0]);
    show("floordiv", x.binary(BinaryOp::FloorDivide, &y));
    show("rem", x.binary(BinaryOp::Remainder, &y));
    show("div", x.binary(BinaryOp::Div, &y));
    show("pow", x.binary(BinaryOp::Pow, &y.unary(UnaryOp::Abs).unwrap()));
    let u = a(DType::U8, &[3], &[1.0, 2.0, 200.0]);
    show("neg u8", u.unary(UnaryOp::Neg));
    show("abs u8", u.unary(UnaryOp::Abs));
    let i8s = a(DType::I8, &[3], &[100.0, 100.0, 1.0]);
    show("sum i8", i8s.reduce(ReduceOp::Sum, &[0], false).map(|s| { println!("{:?}", s); s }));
    show("prod i8", i8s.reduce(ReduceOp::Prod, &[0], false));
    show("mean i32", x.reduce(ReduceOp::Mean, &[0], false));
    show("max i8", i8s.reduce(ReduceOp::Max, &[0], false));
    show("sum none", x.reduce(ReduceOp::Sum, &[], false));
    let f = a(DType::F32, &[3], &[f64::NAN, 1.0, 2.0]);
    show("max nan", f.reduce(ReduceOp::Max, &[0], false));
    show("maximum nan", f.binary(BinaryOp::Maximum, &a(DType::F32, &[], &[0.0])));
    show("neg idx take", a(DType::F32, &[3], &[1.0, 2.0, 3.0]).take(&a(DType::I64, &[2], &[-1.0, 0.0]), 0));
    show("tril bool", a(DType::Bool, &[2, 2], &[1.0, 1.0, 1.0, 1.0]).tril(0));
    show("i matmul", x.reshape(&[2, 2]).unwrap().matmul(&y.reshape(&[2, 2]).unwrap()));
    show("f16 matmul", x.astype(DType::F16).unwrap().reshape(&[2, 2]).unwrap().matmul(&y.astype(DType::F16).unwrap().reshape(&[2, 2]).unwrap()));
    show("f64 matmul", x.astype(DType::F64).unwrap().reshape(&[2, 2]).unwrap().matmul(&y.astype(DType::F64).unwrap().reshape(&[2, 2]).unwrap()));
    show("cast big", a(DType::F32, &[3], &[1e10, -1e10, f64::NAN]).astype(DType::I32));
    show("slice neg", a(DType::F32, &[3], &[1.0, 2.0, 3.0]).slice(&[2], &[-4], &[-1]));
    // sdpa: bool mask with a fully masked row
    let q = a(DType::F32, &[1, 1, 2, 2], &[0.1, 0.2, 0.3, 0.4]);
    let k = a(DType::F32, &[1, 1, 2, 2], &[0.5, 0.6, 0.7, 0.8]);
    let v = a(DType::F32, &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let m = a(DType::Bool, &[2, 2], &[0.0, 0.0, 1.0, 0.0]);
    show("sdpa bool fully masked", fast::scaled_dot_product_attention(&q, &k, &v, 1.0, false, Some(&m), None));
    let q3 = a(DType::F32, &[1, 1, 3, 2], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    show("sdpa causal tq>tk", fast::scaled_dot_product_attention(&q3, &k, &v, 1.0, true, None, None));
    let q1 = a(DType::F32, &[1, 1, 1, 2], &[0.1, 0.2]);
    let m0 = a(DType::F32, &[], &[0.0]);
    show("sdpa scalar mask", fast::scaled_dot_product_attention(&q1, &k, &v, 1.0, false, Some(&m0), None));
    show("sdpa f16 q f32 mask", fast::scaled_dot_product_attention(&q.astype(DType::F16).unwrap(), &k.astype(DType::F16).unwrap(), &v.astype(DType::F16).unwrap(), 1.0, false, Some(&m0), None));
    show("sdpa f64", fast::scaled_dot_product_attention(&q.astype(DType::F64).unwrap(), &k.astype(DType::F64).unwrap(), &v.astype(DType::F64).unwrap(), 1.0, false, None, None));
    show("rms f64", fast::rms_norm(&q.astype(DType::F64).unwrap(), None, 1e-5));
    let minm = a(DType::F32, &[], &[f32::MIN as f64]);
    show("sdpa min add all", fast::scaled_dot_product_attention(&q, &k, &v, 1.0, false, Some(&minm), None));
    let sinks = a(DType::F32, &[1], &[0.5]);
    show("sdpa bool fully masked sinks", fast::scaled_dot_product_attention(&q, &k, &v, 1.0, false, Some(&m), Some(&sinks)));
}
