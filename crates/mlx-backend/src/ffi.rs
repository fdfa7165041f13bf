//! Raw declarations of the C ABI in `cpp/shim.h`. Every `c_int` return is 0 on success.

use std::ffi::{c_char, c_int, c_void};

/// Opaque `bfm_array` (a heap-allocated `mlx::core::array`).
#[repr(C)]
pub(crate) struct RawArray {
    _private: [u8; 0],
    // Not Send/Sync/Unpin: MLX arrays are tied to the creating thread's stream.
    _marker: std::marker::PhantomData<(*mut u8, std::marker::PhantomPinned)>,
}

/// Opaque `bfm_vec` (a list of arrays).
#[repr(C)]
pub(crate) struct RawVec {
    _private: [u8; 0],
    _marker: std::marker::PhantomData<(*mut u8, std::marker::PhantomPinned)>,
}

/// Opaque `bfm_compiled` (an `mx::compile`d function with a Rust body).
#[repr(C)]
pub(crate) struct RawCompiled {
    _private: [u8; 0],
    _marker: std::marker::PhantomData<(*mut u8, std::marker::PhantomPinned)>,
}

/// `bfm_trace_fn`: the body of a compiled function.
pub(crate) type TraceFn =
    unsafe extern "C" fn(ctx: *mut c_void, inputs: *const *mut RawArray, n: usize, out: *mut RawVec) -> c_int;

extern "C" {
    pub(crate) fn bfm_vec_new(out: *mut *mut RawVec) -> c_int;
    pub(crate) fn bfm_vec_free(v: *mut RawVec);
    pub(crate) fn bfm_vec_push(v: *mut RawVec, a: *const RawArray) -> c_int;
    pub(crate) fn bfm_vec_len(v: *const RawVec) -> usize;
    pub(crate) fn bfm_vec_get(v: *const RawVec, i: usize, out: *mut *mut RawArray) -> c_int;
    pub(crate) fn bfm_compile(f: TraceFn, shapeless: c_int, out: *mut *mut RawCompiled) -> c_int;
    pub(crate) fn bfm_compiled_free(f: *mut RawCompiled);
    pub(crate) fn bfm_compiled_call(
        f: *mut RawCompiled,
        ctx: *mut c_void,
        inputs: *const *const RawArray,
        n: usize,
        out: *mut RawVec,
    ) -> c_int;

    pub(crate) fn bfm_last_error() -> *const c_char;
    pub(crate) fn bfm_version() -> *const c_char;

    pub(crate) fn bfm_device_available(device: c_int, out: *mut c_int) -> c_int;
    pub(crate) fn bfm_set_default_device(device: c_int) -> c_int;
    pub(crate) fn bfm_default_device(out: *mut c_int) -> c_int;
    pub(crate) fn bfm_set_thread_device(device: c_int) -> c_int;
    pub(crate) fn bfm_synchronize() -> c_int;

    pub(crate) fn bfm_free(a: *mut RawArray);
    pub(crate) fn bfm_clone(a: *const RawArray, out: *mut *mut RawArray) -> c_int;

    pub(crate) fn bfm_from_bytes(
        data: *const u8,
        nbytes: usize,
        shape: *const i32,
        ndim: usize,
        dtype: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_to_bytes(a: *const RawArray, out: *mut u8, nbytes: usize) -> c_int;
    pub(crate) fn bfm_info(a: *const RawArray, dtype: *mut c_int, ndim: *mut usize) -> c_int;
    pub(crate) fn bfm_shape(a: *const RawArray, shape: *mut i32) -> c_int;
    pub(crate) fn bfm_eval(arrays: *const *const RawArray, n: usize) -> c_int;

    pub(crate) fn bfm_unary(op: c_int, a: *const RawArray, out: *mut *mut RawArray) -> c_int;
    pub(crate) fn bfm_binary(
        op: c_int,
        a: *const RawArray,
        b: *const RawArray,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_where(
        cond: *const RawArray,
        a: *const RawArray,
        b: *const RawArray,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_astype(a: *const RawArray, dtype: c_int, out: *mut *mut RawArray) -> c_int;
    pub(crate) fn bfm_reduce(
        op: c_int,
        a: *const RawArray,
        axes: *const i32,
        naxes: usize,
        keepdims: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_softmax(
        a: *const RawArray,
        axes: *const i32,
        naxes: usize,
        precise: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_shape_op(
        op: c_int,
        a: *const RawArray,
        v: *const i32,
        n: usize,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_slice(
        a: *const RawArray,
        start: *const i32,
        stop: *const i32,
        strides: *const i32,
        n: usize,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_concatenate(
        arrays: *const *const RawArray,
        n: usize,
        axis: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_split(
        a: *const RawArray,
        indices: *const i32,
        nidx: usize,
        axis: c_int,
        outs: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_take(
        a: *const RawArray,
        indices: *const RawArray,
        axis: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_slice_update(
        src: *const RawArray,
        update: *const RawArray,
        start: *const RawArray,
        axis: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_arange(
        start: f64,
        stop: f64,
        step: f64,
        dtype: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_full(
        shape: *const i32,
        ndim: usize,
        value: f64,
        dtype: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_tri(upper: c_int, a: *const RawArray, k: c_int, out: *mut *mut RawArray) -> c_int;

    pub(crate) fn bfm_rms_norm(
        x: *const RawArray,
        weight: *const RawArray,
        eps: f32,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_layer_norm(
        x: *const RawArray,
        weight: *const RawArray,
        bias: *const RawArray,
        eps: f32,
        out: *mut *mut RawArray,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bfm_rope(
        x: *const RawArray,
        dims: c_int,
        traditional: c_int,
        has_base: c_int,
        base: f32,
        scale: f32,
        offset: c_int,
        offset_array: *const RawArray,
        freqs: *const RawArray,
        out: *mut *mut RawArray,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bfm_sdpa(
        q: *const RawArray,
        k: *const RawArray,
        v: *const RawArray,
        scale: f32,
        mask_mode: *const c_char,
        mask: *const RawArray,
        sinks: *const RawArray,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_fused_elementwise(
        kind: c_int,
        a: *const RawArray,
        b: *const RawArray,
        out_dtype: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
    pub(crate) fn bfm_rope_cos_sin(
        x: *const RawArray,
        cos: *const RawArray,
        sin: *const RawArray,
        dims: c_int,
        traditional: c_int,
        mscale: f32,
        out: *mut *mut RawArray,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bfm_quantized_matmul(
        x: *const RawArray,
        w: *const RawArray,
        scales: *const RawArray,
        biases: *const RawArray,
        group_size: c_int,
        bits: c_int,
        dtype: c_int,
        out: *mut *mut RawArray,
    ) -> c_int;
}
