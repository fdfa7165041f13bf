//! Reading and writing `ModelProto`s, and opset look-ups.

use crate::error::OnnxError;
use crate::proto::{ModelProto, OperatorSetIdProto};
use prost::Message;
use std::path::Path;

/// The name ONNX also accepts for the default operator domain (`""`).
pub const AI_ONNX_DOMAIN: &str = "ai.onnx";

/// True for the default ONNX operator domain: `""` or `"ai.onnx"`.
pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == AI_ONNX_DOMAIN
}

/// Reads and decodes an `.onnx` file. Errors when the file cannot be read, is not a valid
/// `ModelProto`, or has no graph. Tensor data is not checked here (see
/// [`crate::tensor::tensor_from_proto`]).
///
/// The file is memory-mapped and decoded in place: tensor `raw_data` borrows from the map
/// (no copy of the weights; pages are read when a backend first uses them), so loading
/// holds O(graph) memory. The file must not be modified while the model or a graph imported
/// from it is alive (as with any memory map); blockfuse never writes it.
pub fn load_model(path: impl AsRef<Path>) -> Result<ModelProto, OnnxError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| OnnxError::io(path, e))?;
    let len = file.metadata().map_err(|e| OnnxError::io(path, e))?.len();
    let what = path.display().to_string();
    if len == 0 {
        return decode_model_named(&[], &what);
    }
    // SAFETY: read-only map of a file blockfuse never writes; see the doc comment above.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| OnnxError::io(path, e))?;
    let buf = prost::bytes::Bytes::from_owner(map);
    let model = ModelProto::decode(buf).map_err(|source| OnnxError::Decode { what: what.clone(), source })?;
    if model.graph.is_none() {
        return Err(OnnxError::MissingGraph { what });
    }
    Ok(model)
}

/// Decodes a serialized `ModelProto`. Errors when the bytes are not a valid `ModelProto`
/// or the model has no graph (an empty buffer, for one, decodes as an empty model).
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    decode_model_named(bytes, "ModelProto bytes")
}

fn decode_model_named(bytes: &[u8], what: &str) -> Result<ModelProto, OnnxError> {
    let model =
        ModelProto::decode(bytes).map_err(|source| OnnxError::Decode { what: what.to_string(), source })?;
    if model.graph.is_none() {
        return Err(OnnxError::MissingGraph { what: what.to_string() });
    }
    Ok(model)
}

/// Serializes a model.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Serializes a model into a file.
pub fn save_model(path: impl AsRef<Path>, model: &ModelProto) -> Result<(), OnnxError> {
    let path = path.as_ref();
    std::fs::write(path, encode_model(model)).map_err(|e| OnnxError::io(path, e))
}

/// The opset version a model imports for `domain` (`""` and `"ai.onnx"` are the same
/// domain), or `None` when it imports none.
pub fn opset_version(model: &ModelProto, domain: &str) -> Option<i64> {
    find_opset(&model.opset_import, domain).map(|o| o.version())
}

/// The opset version of the default ONNX domain. Models of IR version 2 and older have no
/// `opset_import` and are taken to use opset 1, as the ONNX spec says; `None` when a newer
/// model does not import the default domain.
pub fn default_opset_version(model: &ModelProto) -> Option<i64> {
    match opset_version(model, "") {
        Some(v) => Some(v),
        None if model.opset_import.is_empty() && model.ir_version() < 3 => Some(1),
        None => None,
    }
}

/// The entry of `opsets` for `domain` (treating `""` and `"ai.onnx"` as one domain).
pub fn find_opset<'a>(opsets: &'a [OperatorSetIdProto], domain: &str) -> Option<&'a OperatorSetIdProto> {
    let default = is_default_domain(domain);
    opsets.iter().find(|o| if default { is_default_domain(o.domain()) } else { o.domain() == domain })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{GraphProto, NodeProto};

    fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
        OperatorSetIdProto { domain: Some(domain.into()), version: Some(version) }
    }

    fn tiny() -> ModelProto {
        ModelProto {
            ir_version: Some(10),
            opset_import: vec![opset("ai.onnx", 23), opset("com.microsoft", 1)],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: Some("Neg".into()),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..NodeProto::default()
                }],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn decode_round_trip_and_opsets() {
        let m = tiny();
        let bytes = encode_model(&m);
        assert_eq!(decode_model(&bytes).unwrap(), m);
        assert_eq!(opset_version(&m, ""), Some(23));
        assert_eq!(opset_version(&m, "ai.onnx"), Some(23));
        assert_eq!(opset_version(&m, "com.microsoft"), Some(1));
        assert_eq!(opset_version(&m, "pkg.other"), None);
        assert_eq!(default_opset_version(&m), Some(23));
        let old = ModelProto { ir_version: Some(2), opset_import: vec![], ..m.clone() };
        assert_eq!(default_opset_version(&old), Some(1));
        let none = ModelProto { opset_import: vec![opset("x", 1)], ..m };
        assert_eq!(default_opset_version(&none), None);
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        // Wire type 7 does not exist.
        let e = decode_model(&[0xff; 16]).unwrap_err();
        assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
        assert!(e.to_string().starts_with("malformed protobuf in ModelProto bytes"), "{e}");
        // A truncated model.
        let bytes = encode_model(&tiny());
        for cut in 1..bytes.len() {
            // Some prefixes happen to be complete messages; none may panic.
            let _ = decode_model(&bytes[..cut]);
        }
        assert!(matches!(decode_model(&bytes[..bytes.len() - 1]), Err(OnnxError::Decode { .. })));
        // An empty buffer is a valid, empty ModelProto: no graph.
        let e = decode_model(&[]).unwrap_err();
        assert_eq!(e.to_string(), "ModelProto bytes: model has no graph");
        // Pseudo-random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_model(&bytes);
        }
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("blockfuse-onnx-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.onnx");
        save_model(&path, &tiny()).unwrap();
        assert_eq!(load_model(&path).unwrap(), tiny());
        std::fs::write(&path, b"not a model").unwrap();
        let e = load_model(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("malformed protobuf in {}", path.display())), "{e}");
        let missing = dir.join("missing.onnx");
        let e = load_model(&missing).unwrap_err();
        assert!(matches!(e, OnnxError::Io { .. }));
        assert!(e.to_string().starts_with(&missing.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
