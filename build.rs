//! Gives the `blockfuse` binary and tests an rpath to MLX's shared library, so they run
//! without `LD_LIBRARY_PATH` (cargo passes `DEP_MLX_LIBDIR` only to direct dependents).
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
