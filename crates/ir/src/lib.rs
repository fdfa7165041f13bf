//! blockfuse IR (under construction).
pub mod dtype;
pub mod tensor;
pub use dtype::DType;
pub use tensor::HostTensor;
