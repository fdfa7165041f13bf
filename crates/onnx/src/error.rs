//! The error type of the ONNX frontend.

use std::path::PathBuf;

/// Why an ONNX model, tensor or test data set could not be read, transformed or written.
///
/// Variants name the tensor, node or file concerned, so that a message alone locates the
/// problem in a model of thousands of nodes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Bytes are not a valid protobuf encoding of the expected message.
    #[error("malformed protobuf in {what}: {source}")]
    Decode {
        /// What was being decoded (a file path, or "bytes" and the message name).
        what: String,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },

    /// A `ModelProto` has no `graph`.
    #[error("{what}: model has no graph")]
    MissingGraph {
        /// The model (its file path, or "bytes").
        what: String,
    },

    /// A tensor's element type has no blockfuse dtype (uint16, string, float8, ...).
    #[error(
        "tensor '{tensor}': unsupported element type {} ({data_type})",
        crate::tensor::data_type_name(*data_type)
    )]
    UnsupportedDtype {
        /// The tensor's name.
        tensor: String,
        /// The ONNX `TensorProto.DataType` value.
        data_type: i32,
    },

    /// A tensor's data lives in an external file (`data_location = EXTERNAL`), and the
    /// model's directory is not known (a model decoded from bytes: import it with
    /// [`import_file`](crate::import_file) or
    /// [`import_model_in`](crate::import::import_model_in)).
    #[error(
        "tensor '{tensor}': data stored in an external file ('{location}') needs the model's directory; \
         import the model from its file"
    )]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// The `location` entry of its `external_data`, or empty when absent.
        location: String,
    },

    /// The external data of a tensor cannot be used: its location is refused (absolute, with
    /// `..`, or leaving the model's directory through a symlink), the file cannot be read,
    /// or `offset`/`length` do not fit the tensor or the file.
    #[error("tensor '{tensor}': external data location '{location}': {reason}")]
    ExternalDataLocation {
        /// The tensor's name.
        tensor: String,
        /// The `location` entry.
        location: String,
        /// What is wrong.
        reason: String,
    },

    /// A tensor's dims and data disagree, or its data is otherwise unusable.
    #[error("tensor '{tensor}': {reason}")]
    MalformedTensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },

    /// A node lacks an attribute it needs.
    #[error("node '{node}' ({op_type}): missing attribute '{attribute}'")]
    MissingAttribute {
        /// The node's name (or a description when it has none).
        node: String,
        /// The node's op type.
        op_type: String,
        /// The attribute's name.
        attribute: String,
    },

    /// A node's attribute has the wrong type or an unusable value.
    #[error("node '{node}' ({op_type}): attribute '{attribute}': {reason}")]
    BadAttribute {
        /// The node's name (or a description when it has none).
        node: String,
        /// The node's op type.
        op_type: String,
        /// The attribute's name.
        attribute: String,
        /// What is wrong.
        reason: String,
    },

    /// A call of a model-local function cannot be inlined.
    #[error("node '{node}' calls function '{function}': {reason}")]
    FunctionCall {
        /// The calling node's name (or a description when it has none).
        node: String,
        /// The function, as `domain:name`.
        function: String,
        /// What is wrong.
        reason: String,
    },

    /// A model uses a feature that the frontend does not support.
    #[error("node '{node}' ({op_type}): {reason}")]
    Unsupported {
        /// The node's name (or a description when it has none).
        node: String,
        /// The node's op type.
        op_type: String,
        /// What is not supported.
        reason: String,
    },

    /// Some nodes use ops that the IR importer does not support (every one is listed:
    /// op type and the names of the nodes using it).
    #[error("unsupported ops: {}", fmt_unsupported(ops))]
    UnsupportedOps {
        /// `(op type, node names)`, sorted by op type.
        ops: Vec<(String, Vec<String>)>,
    },

    /// A node could not be imported into the IR.
    #[error("node '{node}' ({op_type}): {reason}")]
    Import {
        /// The node's name (or a description when it has none).
        node: String,
        /// The node's op type.
        op_type: String,
        /// What is wrong.
        reason: String,
    },

    /// A tensor (an initializer, a constant, or a value of the graph whose dims are all
    /// known) would take more bytes than [`ImportOptions`](crate::import::ImportOptions)
    /// allow, or all constants together would. Checked before anything is allocated.
    #[error(
        "node '{node}' ({op_type}): {what} needs {bytes} bytes, over the limit of {limit} bytes ({option})"
    )]
    ResourceLimit {
        /// The node (or initializer, or graph input) concerned.
        node: String,
        /// The node's op type (`initializer`, `input` for those).
        op_type: String,
        /// What would be too large.
        what: String,
        /// The bytes it needs (saturated at `u64::MAX` when the count overflows).
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The option that sets the limit.
        option: &'static str,
    },

    /// The model's shapes depend on the values of some graph inputs (a shape operand computed
    /// from them: a `Reshape` target, the `axes` of a reduction, `TopK`'s `k`, …), and no
    /// value was given for these (see [`crate::specialize::Model::import_with_values`]).
    #[error("the graph's shapes depend on the values of inputs {}: give their values to specialize the graph on them ({source})", inputs.join(", "))]
    NeedsInputValues {
        /// The graph inputs that need a value.
        inputs: Vec<String>,
        /// The import's refusal that names the shape operand.
        #[source]
        source: Box<OnnxError>,
    },

    /// A test data directory does not have the ONNX backend-test layout.
    #[error("test data {}: {reason}", path.display())]
    TestData {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl OnnxError {
    /// The value named by a refusal because a shape operand is not known at import time
    /// ("`Reshape 'r': shape 'shape' is not computable at import time …`"): the operand
    /// whose graph inputs [`crate::specialize::Model::import_with_values`] binds. `None` for
    /// every other error.
    pub fn uncomputable_operand(&self) -> Option<String> {
        match self {
            OnnxError::Unsupported { reason, .. } => crate::specialize::uncomputable_value(reason),
            OnnxError::NeedsInputValues { source, .. } => source.uncomputable_operand(),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OnnxError::Io { path: path.into(), source }
    }

    pub(crate) fn malformed(tensor: &str, reason: impl Into<String>) -> Self {
        OnnxError::MalformedTensor { tensor: tensor.to_string(), reason: reason.into() }
    }
}

fn fmt_unsupported(ops: &[(String, Vec<String>)]) -> String {
    ops.iter()
        .map(|(op, nodes)| {
            let word = if nodes.len() == 1 { "node" } else { "nodes" };
            format!("{op} ({word} {})", nodes.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
