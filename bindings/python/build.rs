//! Gives the native module an rpath to MLX's shared library (cargo passes `DEP_MLX_LIBDIR`
//! only to direct dependents of `blockfuse-mlx`, and a dependency's link arguments do not
//! reach this cdylib), so `import blockfuse` finds `libmlx.so` without `LD_LIBRARY_PATH`.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
