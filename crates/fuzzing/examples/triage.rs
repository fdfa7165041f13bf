//! Replays `optimize_eval` inputs one by one and says what each does: the program (text dump),
//! and whether the optimized graph agrees with the original on the fallback evaluator (the
//! differential's panic message when it does not). For triaging `fuzz/findings/`:
//!
//!   cargo run -p blockfuse-fuzzing --example triage -- fuzz/findings/optimize_eval/*
use arbitrary::Unstructured;

fn main() {
    for path in std::env::args().skip(1) {
        println!("== {path}");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                println!("cannot read: {e}");
                continue;
            }
        };
        let Ok((g, inputs)) = blockfuse_fuzzing::program::program(&mut Unstructured::new(&data)) else {
            println!("not a program (the bytes run out before one is built)");
            continue;
        };
        println!("{}", blockfuse_ir::text::dump(&g).unwrap_or_default());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            blockfuse_fuzzing::program::differential(&g, &inputs)
        })) {
            Ok(Some(report)) => println!("agrees; blocks {:?}", report.blocks),
            Ok(None) => println!("skipped: the evaluator cannot run the original"),
            Err(_) => println!("DISAGREES (message above)"),
        }
    }
}
