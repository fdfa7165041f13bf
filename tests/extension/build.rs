//! Gives this crate's tests an rpath to MLX's shared library, so they run without
//! `LD_LIBRARY_PATH` (blockfuse-mlx has `links = "mlx"`; cargo passes its `DEP_MLX_LIBDIR`
//! only to the build scripts of direct dependents).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
