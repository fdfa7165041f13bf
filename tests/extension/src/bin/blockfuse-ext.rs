//! blockfuse's command line with one more backend: the extension crate's `kernels`,
//! registered in one line next to the default ones.

fn main() -> std::process::ExitCode {
    let mut registry = blockfuse::default_registry();
    blockfuse_extension_test::register_backend(&mut registry);
    blockfuse::cli::main(registry)
}
