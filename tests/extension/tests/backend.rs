//! The third backend, registered from outside blockfuse, used by `run`, `bench`,
//! `optimize --verify --against` and listed by `backends` of a binary that links it.

use blockfuse_extension_test::KernelBackend;
use blockfuse_ir::backend::Backend;
use blockfuse_ir::blocks::RmsNorm;
use blockfuse_ir::{json, Builder, DType, Graph, HostTensor, TensorType};
use std::process::{Command, Output};

fn ext(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockfuse-ext")).args(args).output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// RMSNorm over `width` in exporter spelling (fuses into an `rms_norm` block).
fn rms_graph(width: usize) -> Graph {
    blockfuse_models::rms_norm_graph(width).unwrap()
}

fn write(name: &str, g: &Graph) -> String {
    let dir = std::env::temp_dir().join(format!("blockfuse-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, json::to_json(g).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn the_backend_works_through_the_trait() {
    let mut g = Graph::new();
    let mut b = Builder::new(&mut g);
    let x = b.input("x", TensorType::known(DType::F32, &[2, 8]));
    let y = b.block(RmsNorm::new(1e-6), &[x]).unwrap()[0];
    g.add_output("y", y);
    let backend = KernelBackend::new();
    assert_eq!(backend.name(), "kernels");
    assert!(backend.capabilities().native_blocks.contains(&"RmsNorm".to_string()));
    let y = backend.run(&g, &[HostTensor::from_f32(vec![2, 8], &[2.0; 16])]).unwrap();
    assert!((y[0].get_f64(0) - 1.0).abs() < 1e-6);
    assert_eq!(backend.counts(), (1, 0));
}

#[test]
fn run_bench_and_verify_use_the_registered_backend() {
    let o = ext(&["backends"]);
    assert!(o.status.success());
    let listing = text(&o.stdout);
    let row = listing.lines().find(|l| l.starts_with("kernels")).expect("kernels listed");
    assert!(row.contains("ClampedGelu") && row.contains("RmsNorm"), "{row}");
    assert!(listing.lines().any(|l| l.starts_with("fallback")), "{listing}");

    // Width 8: the optimized graph's rms_norm block runs on the kernel.
    let fits = write("rms8.json", &rms_graph(8));
    let o = ext(&["run", &fits, "--optimize", "--backend", "kernels", "--bind", "batch=3"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "y: f32[3, 8]");
    assert!(
        text(&o.stderr).contains("kernels: 1 run(s), rms_norm kernel 1 call(s), declined 0"),
        "{}",
        text(&o.stderr)
    );

    // Width 6: the kernel declines at run time and the block's fallback runs.
    let declines = write("rms6.json", &rms_graph(6));
    let o = ext(&["optimize", &declines, "--verify", "--against", "kernels"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("verify (kernels)"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("rms_norm kernel 0 call(s), declined 1"), "{}", text(&o.stderr));
    let o = ext(&["optimize", &fits, "--verify", "--against", "kernels"]);
    assert!(
        o.status.success() && text(&o.stderr).contains("rms_norm kernel 1 call(s)"),
        "{}",
        text(&o.stderr)
    );

    let o = ext(&["bench", &fits, "--backend", "kernels", "--runs", "2", "--sym-size", "4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("backend: kernels") && text(&o.stdout).contains("optimized"));
    // Two sessions (unoptimized and optimized), each 3 rounds of 1 warm-up + 2 runs.
    assert_eq!(text(&o.stderr).matches("kernels: 9 run(s)").count(), 2, "{}", text(&o.stderr));
}
