//! Writes the generated seeds of the committed corpora: for `onnx_model`, each seed model
//! as protobuf bytes behind a 0 byte (the target's byte-level mode); for `json_ir`, each seed
//! model imported and written as a JSON document. Run from the repository root:
//! `cargo run -p blockfuse-fuzzing --example write_seeds`.

use blockfuse_fuzzing::onnx_model::{seeds, LIMITS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (i, m) in seeds().iter().enumerate() {
        let mut pb = vec![0u8];
        pb.extend(blockfuse_onnx::model::encode_model(m));
        std::fs::write(format!("fuzz/corpus/onnx_model/proto_{i}"), pb)?;
        let g = blockfuse_onnx::import_model_with(m, &LIMITS)?;
        std::fs::write(format!("fuzz/corpus/json_ir/seed_{i}.json"), blockfuse_ir::json::to_json(&g)?)?;
    }
    Ok(())
}
