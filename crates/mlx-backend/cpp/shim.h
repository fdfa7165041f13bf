/* C ABI over MLX's C++ API (mlx/mlx.h, mlx/fast.h), used by blockfuse-mlx.
 *
 * Conventions
 * - `bfm_array` is an opaque, heap-allocated `mlx::core::array`; free it with `bfm_free`.
 * - Every function except `bfm_free` and `bfm_last_error` returns 0 on success and nonzero
 *   when MLX (or the shim) threw; the exception's message is then kept in a thread-local
 *   string that `bfm_last_error` returns. No C++ exception ever crosses this boundary.
 * - Outputs go through out-params, written only on success.
 * - Dtype codes: see BFM_DTYPE_*; the first nine follow blockfuse_ir::DType's order.
 * - Ops run on the stream of the calling thread's device set with `bfm_set_thread_device`
 *   (-1: MLX's process-wide default device).
 */
#ifndef BLOCKFUSE_MLX_SHIM_H
#define BLOCKFUSE_MLX_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bfm_array bfm_array;
typedef struct bfm_vec bfm_vec;
typedef struct bfm_compiled bfm_compiled;

/* A traced function's body, implemented by the caller: reads `n` input handles (borrowed,
 * valid during the call), pushes its results to `out` with bfm_vec_push and returns 0, or
 * nonzero when it failed (the caller keeps its own error in `ctx`). */
typedef int (*bfm_trace_fn)(void* ctx, bfm_array* const* inputs, size_t n, bfm_vec* out);

enum {
  BFM_DTYPE_F32 = 0,
  BFM_DTYPE_F16 = 1,
  BFM_DTYPE_BF16 = 2,
  BFM_DTYPE_F64 = 3,
  BFM_DTYPE_I64 = 4,
  BFM_DTYPE_I32 = 5,
  BFM_DTYPE_I8 = 6,
  BFM_DTYPE_U8 = 7,
  BFM_DTYPE_BOOL = 8,
  /* MLX dtypes blockfuse has no DType for (reported, never accepted as input). */
  BFM_DTYPE_U16 = 9,
  BFM_DTYPE_U32 = 10,
  BFM_DTYPE_U64 = 11,
  BFM_DTYPE_I16 = 12,
  BFM_DTYPE_C64 = 13
};

/* Device codes: -1 MLX default, 0 cpu, 1 gpu. */

const char* bfm_last_error(void);
const char* bfm_version(void);

int bfm_device_available(int device, int* out);
int bfm_set_default_device(int device);
int bfm_default_device(int* out);
int bfm_set_thread_device(int device);
int bfm_synchronize(void);

void bfm_free(bfm_array* a);
int bfm_clone(const bfm_array* a, bfm_array** out);

/* Copies `nbytes` little-endian bytes (must equal prod(shape) * itemsize). */
int bfm_from_bytes(const void* data, size_t nbytes, const int32_t* shape, size_t ndim,
                   int dtype, bfm_array** out);
/* Evaluates `a` and copies its row-major bytes into `out` (exactly `nbytes`). */
int bfm_to_bytes(const bfm_array* a, void* out, size_t nbytes);
/* Dtype code and rank; `shape` (rank entries) may be NULL. Never throws. */
int bfm_info(const bfm_array* a, int* dtype, size_t* ndim);
int bfm_shape(const bfm_array* a, int32_t* shape);
int bfm_eval(const bfm_array* const* arrays, size_t n);

int bfm_unary(int op, const bfm_array* a, bfm_array** out);
int bfm_binary(int op, const bfm_array* a, const bfm_array* b, bfm_array** out);
int bfm_where(const bfm_array* cond, const bfm_array* a, const bfm_array* b, bfm_array** out);
int bfm_astype(const bfm_array* a, int dtype, bfm_array** out);
int bfm_reduce(int op, const bfm_array* a, const int32_t* axes, size_t naxes, int keepdims,
               bfm_array** out);
int bfm_softmax(const bfm_array* a, const int32_t* axes, size_t naxes, int precise,
                bfm_array** out);
/* Shape ops taking one int vector: see BfmShapeOp in shim.cpp. */
int bfm_shape_op(int op, const bfm_array* a, const int32_t* v, size_t n, bfm_array** out);
int bfm_slice(const bfm_array* a, const int32_t* start, const int32_t* stop,
              const int32_t* strides, size_t n, bfm_array** out);
int bfm_concatenate(const bfm_array* const* arrays, size_t n, int axis, bfm_array** out);
/* Writes nidx + 1 arrays to `outs`. */
int bfm_split(const bfm_array* a, const int32_t* indices, size_t nidx, int axis, bfm_array** outs);
int bfm_take(const bfm_array* a, const bfm_array* indices, int axis, bfm_array** out);
/* `src` with `update` written along `axis` from `start` (an integer array of one element,
 * known at run time: MLX's dynamic slice_update; no bounds check, clamp it first). */
int bfm_slice_update(const bfm_array* src, const bfm_array* update, const bfm_array* start, int axis,
                     bfm_array** out);
int bfm_arange(double start, double stop, double step, int dtype, bfm_array** out);
int bfm_full(const int32_t* shape, size_t ndim, double value, int dtype, bfm_array** out);
int bfm_tri(int upper, const bfm_array* a, int k, bfm_array** out);

int bfm_rms_norm(const bfm_array* x, const bfm_array* weight, float eps, bfm_array** out);
int bfm_layer_norm(const bfm_array* x, const bfm_array* weight, const bfm_array* bias, float eps,
                   bfm_array** out);
/* `offset_array` NULL: use `offset`. `has_base` 0: base is std::nullopt. */
int bfm_rope(const bfm_array* x, int dims, int traditional, int has_base, float base, float scale,
             int offset, const bfm_array* offset_array, const bfm_array* freqs, bfm_array** out);
int bfm_sdpa(const bfm_array* q, const bfm_array* k, const bfm_array* v, float scale,
             const char* mask_mode, const bfm_array* mask, const bfm_array* sinks,
             bfm_array** out);

/* Elementwise blocks as one kernel (mlx::core::compile, compiled once per variant, output
 * dtype and device, then cached). Operands are cast to f32, the block computed in f32 and
 * rounded once to `out_dtype`. `kind`: 0 swiglu(a = gate, b = up), 1 geglu erf, 2 geglu
 * tanh, 3 gelu erf (a; b unused, may be NULL), 4 gelu tanh, 5 gelu quick. Gated kinds
 * broadcast a and b. */
int bfm_fused_elementwise(int kind, const bfm_array* a, const bfm_array* b, int out_dtype,
                          bfm_array** out);

/* RoPE of the first `dims` features of x's last axis with given cos and sin (the rope
 * block's cos/sin form) as one compiled function: cos/sin (last axis dims, or dims/2 shared
 * by each pair) times mscale, cast to x's dtype, broadcast against x; split halves, or
 * interleaved pairs when `traditional`; the tail x[..., dims:] passes through. */
int bfm_rope_cos_sin(const bfm_array* x, const bfm_array* cos, const bfm_array* sin, int dims,
                     int traditional, float mscale, bfm_array** out);

/* Affine-quantized matmul, MLX's `quantized_matmul(x, w, scales, biases, transpose = true)`:
 * `w` holds the packed weight as uint8 bytes {N, K·bits/8} in MLX's little-endian packing and
 * is viewed as uint32 {N, K·bits/32}; x, scales and biases are cast to `dtype` first. */
int bfm_quantized_matmul(const bfm_array* x, const bfm_array* w, const bfm_array* scales,
                         const bfm_array* biases, int group_size, int bits, int dtype,
                         bfm_array** out);

/* Array lists. */
int bfm_vec_new(bfm_vec** out);
void bfm_vec_free(bfm_vec* v);
int bfm_vec_push(bfm_vec* v, const bfm_array* a);
size_t bfm_vec_len(const bfm_vec* v);
int bfm_vec_get(const bfm_vec* v, size_t i, bfm_array** out);

/* mx::compile of a function whose body is `fn`: traced on the first call per input shapes and
 * dtypes (every shape with `shapeless`), replayed from MLX's compile cache after that. */
int bfm_compile(bfm_trace_fn fn, int shapeless, bfm_compiled** out);
void bfm_compiled_free(bfm_compiled* f);
/* Calls the compiled function on `n` inputs; results replace `out`'s contents. `ctx` is what
 * `fn` gets if this call traces. Serialized with the other compiled functions of the shim. */
int bfm_compiled_call(bfm_compiled* f, void* ctx, const bfm_array* const* inputs, size_t n,
                      bfm_vec* out);

#ifdef __cplusplus
}
#endif

#endif
