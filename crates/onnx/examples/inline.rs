//! Inlines the model-local functions of an ONNX model and writes the result.
//!
//! Usage: `cargo run -p blockfuse-onnx --example inline -- IN.onnx OUT.onnx`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: inline IN.onnx OUT.onnx");
        return ExitCode::from(2);
    };
    let run = || -> Result<blockfuse_onnx::InlineStats, blockfuse_onnx::OnnxError> {
        let mut model = blockfuse_onnx::load_model(input)?;
        let stats = blockfuse_onnx::inline_functions(&mut model)?;
        blockfuse_onnx::model::save_model(output, &model)?;
        Ok(stats)
    };
    match run() {
        Ok(stats) => {
            println!("{stats:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
