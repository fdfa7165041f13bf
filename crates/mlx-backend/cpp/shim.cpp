// C ABI over MLX's C++ API for blockfuse-mlx. See shim.h for the conventions.
//
// The op codes below must match the `#[repr(i32)]` enums in src/array.rs.

#include "shim.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <mlx/compile.h>
#include <mlx/device.h>
#include <mlx/fast.h>
#include <mlx/ops.h>
#include <mlx/stream.h>
#include <mlx/transforms.h>
#include <mlx/version.h>

namespace mx = mlx::core;

struct bfm_array {
  mx::array a;
};

// A list of arrays the Rust side fills (a traced function's results) or reads (a compiled
// call's results).
struct bfm_vec {
  std::vector<mx::array> v;
};

// A function compiled with mx::compile whose body is a Rust callback (see bfm_compile).
struct bfm_compiled {
  std::function<std::vector<mx::array>(const std::vector<mx::array>&)> f;
};

namespace {

thread_local std::string last_error;
thread_local int thread_device = -1;

void set_error(const char* msg) noexcept {
  try {
    last_error = msg ? msg : "(null message)";
  } catch (...) {
    // Out of memory while storing the message: keep whatever is there.
  }
}

template <class F>
int guard(F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    set_error(e.what());
    return 1;
  } catch (...) {
    set_error("unknown C++ exception in the MLX shim");
    return 1;
  }
}

template <class T>
T* need(T* p, const char* what) {
  if (p == nullptr) {
    throw std::invalid_argument(std::string("[blockfuse-mlx shim] null ") + what);
  }
  return p;
}

const mx::array& arr(const bfm_array* p, const char* what = "array") {
  return need(p, what)->a;
}

std::optional<mx::array> opt(const bfm_array* p) {
  if (p == nullptr) return std::nullopt;
  return p->a;
}

bfm_array* wrap(mx::array a) {
  return new bfm_array{std::move(a)};
}

mx::StreamOrDevice sd() {
  switch (thread_device) {
    case 0:
      return mx::Device(mx::Device::cpu);
    case 1:
      return mx::Device(mx::Device::gpu);
    default:
      return {};
  }
}

mx::Device device_of(int code) {
  switch (code) {
    case 0:
      return mx::Device(mx::Device::cpu);
    case 1:
      return mx::Device(mx::Device::gpu);
    default:
      throw std::invalid_argument("[blockfuse-mlx shim] bad device code " + std::to_string(code));
  }
}

mx::Dtype to_mlx(int code) {
  switch (code) {
    case BFM_DTYPE_F32: return mx::float32;
    case BFM_DTYPE_F16: return mx::float16;
    case BFM_DTYPE_BF16: return mx::bfloat16;
    case BFM_DTYPE_F64: return mx::float64;
    case BFM_DTYPE_I64: return mx::int64;
    case BFM_DTYPE_I32: return mx::int32;
    case BFM_DTYPE_I8: return mx::int8;
    case BFM_DTYPE_U8: return mx::uint8;
    case BFM_DTYPE_BOOL: return mx::bool_;
    default:
      throw std::invalid_argument("[blockfuse-mlx shim] bad dtype code " + std::to_string(code));
  }
}

int from_mlx(mx::Dtype d) {
  switch (d.val()) {
    case mx::Dtype::Val::float32: return BFM_DTYPE_F32;
    case mx::Dtype::Val::float16: return BFM_DTYPE_F16;
    case mx::Dtype::Val::bfloat16: return BFM_DTYPE_BF16;
    case mx::Dtype::Val::float64: return BFM_DTYPE_F64;
    case mx::Dtype::Val::int64: return BFM_DTYPE_I64;
    case mx::Dtype::Val::int32: return BFM_DTYPE_I32;
    case mx::Dtype::Val::int8: return BFM_DTYPE_I8;
    case mx::Dtype::Val::uint8: return BFM_DTYPE_U8;
    case mx::Dtype::Val::bool_: return BFM_DTYPE_BOOL;
    case mx::Dtype::Val::uint16: return BFM_DTYPE_U16;
    case mx::Dtype::Val::uint32: return BFM_DTYPE_U32;
    case mx::Dtype::Val::uint64: return BFM_DTYPE_U64;
    case mx::Dtype::Val::int16: return BFM_DTYPE_I16;
    case mx::Dtype::Val::complex64: return BFM_DTYPE_C64;
  }
  return -1;
}

mx::Shape shape_of(const int32_t* v, size_t n) {
  if (n > 0) need(v, "shape");
  return mx::Shape(v, v + n);
}

std::vector<int> ints(const int32_t* v, size_t n) {
  if (n > 0) need(v, "int vector");
  return std::vector<int>(v, v + n);
}

// Op codes; keep in sync with src/array.rs.
enum UnaryOp {
  U_NEG, U_ABS, U_SQRT, U_RSQRT, U_RECIPROCAL, U_EXP, U_LOG, U_ERF, U_TANH, U_SIGMOID,
  U_SIN, U_COS, U_FLOOR, U_CEIL, U_ROUND, U_SIGN, U_LOGICAL_NOT, U_SQUARE, U_LOG1P, U_EXPM1,
  U_ISNAN, U_ISINF,
};
enum BinaryOp {
  B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAXIMUM, B_MINIMUM, B_EQUAL, B_NOT_EQUAL, B_LESS,
  B_LESS_EQUAL, B_GREATER, B_GREATER_EQUAL, B_LOGICAL_AND, B_LOGICAL_OR, B_LOGICAL_XOR,
  B_REMAINDER, B_FLOOR_DIVIDE, B_MATMUL,
};
enum ReduceOp { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_ALL, R_ANY, R_ARGMAX, R_ARGMIN };
enum ShapeOp { S_RESHAPE, S_TRANSPOSE, S_BROADCAST_TO, S_EXPAND_DIMS, S_SQUEEZE };

mx::array unary(int op, const mx::array& a) {
  auto s = sd();
  switch (op) {
    case U_NEG: return mx::negative(a, s);
    case U_ABS: return mx::abs(a, s);
    case U_SQRT: return mx::sqrt(a, s);
    case U_RSQRT: return mx::rsqrt(a, s);
    case U_RECIPROCAL: return mx::reciprocal(a, s);
    case U_EXP: return mx::exp(a, s);
    case U_LOG: return mx::log(a, s);
    case U_ERF: return mx::erf(a, s);
    case U_TANH: return mx::tanh(a, s);
    case U_SIGMOID: return mx::sigmoid(a, s);
    case U_SIN: return mx::sin(a, s);
    case U_COS: return mx::cos(a, s);
    case U_FLOOR: return mx::floor(a, s);
    case U_CEIL: return mx::ceil(a, s);
    case U_ROUND: return mx::round(a, 0, s);
    case U_SIGN: return mx::sign(a, s);
    case U_LOGICAL_NOT: return mx::logical_not(a, s);
    case U_SQUARE: return mx::square(a, s);
    case U_LOG1P: return mx::log1p(a, s);
    case U_EXPM1: return mx::expm1(a, s);
    case U_ISNAN: return mx::isnan(a, s);
    case U_ISINF: return mx::isinf(a, s);
  }
  throw std::invalid_argument("[blockfuse-mlx shim] bad unary op " + std::to_string(op));
}

mx::array binary(int op, const mx::array& a, const mx::array& b) {
  auto s = sd();
  switch (op) {
    case B_ADD: return mx::add(a, b, s);
    case B_SUB: return mx::subtract(a, b, s);
    case B_MUL: return mx::multiply(a, b, s);
    case B_DIV: return mx::divide(a, b, s);
    case B_POW: return mx::power(a, b, s);
    case B_MAXIMUM: return mx::maximum(a, b, s);
    case B_MINIMUM: return mx::minimum(a, b, s);
    case B_EQUAL: return mx::equal(a, b, s);
    case B_NOT_EQUAL: return mx::not_equal(a, b, s);
    case B_LESS: return mx::less(a, b, s);
    case B_LESS_EQUAL: return mx::less_equal(a, b, s);
    case B_GREATER: return mx::greater(a, b, s);
    case B_GREATER_EQUAL: return mx::greater_equal(a, b, s);
    case B_LOGICAL_AND: return mx::logical_and(a, b, s);
    case B_LOGICAL_OR: return mx::logical_or(a, b, s);
    case B_LOGICAL_XOR: return mx::logical_xor(a, b, s);
    case B_REMAINDER: return mx::remainder(a, b, s);
    case B_FLOOR_DIVIDE: return mx::floor_divide(a, b, s);
    case B_MATMUL: return mx::matmul(a, b, s);
  }
  throw std::invalid_argument("[blockfuse-mlx shim] bad binary op " + std::to_string(op));
}

mx::array reduce(int op, const mx::array& a, const std::vector<int>& axes, bool keep) {
  auto s = sd();
  switch (op) {
    case R_SUM: return mx::sum(a, axes, keep, s);
    case R_MEAN: return mx::mean(a, axes, keep, s);
    case R_MAX: return mx::max(a, axes, keep, s);
    case R_MIN: return mx::min(a, axes, keep, s);
    case R_PROD: return mx::prod(a, axes, keep, s);
    case R_ALL: return mx::all(a, axes, keep, s);
    case R_ANY: return mx::any(a, axes, keep, s);
    case R_ARGMAX:
    case R_ARGMIN: {
      if (axes.size() != 1) {
        throw std::invalid_argument(
            "[blockfuse-mlx shim] argmax/argmin take exactly one axis, got " +
            std::to_string(axes.size()));
      }
      auto r = op == R_ARGMAX ? mx::argmax(a, axes[0], keep, s) : mx::argmin(a, axes[0], keep, s);
      return mx::astype(r, mx::int64, s);  // MLX gives uint32; blockfuse has no u32
    }
  }
  throw std::invalid_argument("[blockfuse-mlx shim] bad reduce op " + std::to_string(op));
}

mx::array shape_op(int op, const mx::array& a, const int32_t* v, size_t n) {
  auto s = sd();
  switch (op) {
    case S_RESHAPE: return mx::reshape(a, shape_of(v, n), s);
    case S_TRANSPOSE: return n == 0 ? mx::transpose(a, s) : mx::transpose(a, ints(v, n), s);
    case S_BROADCAST_TO: return mx::broadcast_to(a, shape_of(v, n), s);
    case S_EXPAND_DIMS: return mx::expand_dims(a, ints(v, n), s);
    case S_SQUEEZE: return n == 0 ? mx::squeeze(a, s) : mx::squeeze(a, ints(v, n), s);
  }
  throw std::invalid_argument("[blockfuse-mlx shim] bad shape op " + std::to_string(op));
}


// Fused elementwise blocks (bfm_fused_elementwise): each variant is one function compiled
// with mx::compile once per (kind, output dtype, device, shapeless) and kept for the life
// of the process. MLX fuses its elementwise graph into a single kernel (GPU and CPU).
enum FusedKind {
  F_SWIGLU, F_GEGLU_ERF, F_GEGLU_TANH, F_GELU_ERF, F_GELU_TANH, F_GELU_QUICK,
};

using ArrayFn = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;

// gelu of an f32 array, op for op as lowerings/activation.rs spelled it before compiling.
mx::array gelu_f32(int kind, const mx::array& x, mx::StreamOrDevice s) {
  auto c = [](double v) { return mx::array(static_cast<float>(v), mx::float32); };
  switch (kind) {
    case F_GEGLU_ERF:
    case F_GELU_ERF: {
      auto e = mx::add(mx::erf(mx::multiply(x, c(0.70710678118654752440), s), s), c(1.0), s);
      return mx::multiply(mx::multiply(x, c(0.5), s), e, s);
    }
    case F_GEGLU_TANH:
    case F_GELU_TANH: {
      auto x3 = mx::multiply(mx::square(x, s), x, s);
      auto inner = mx::add(x, mx::multiply(x3, c(0.044715), s), s);
      auto t = mx::tanh(mx::multiply(inner, c(0.79788456080286535588), s), s);
      t = mx::add(t, c(1.0), s);
      return mx::multiply(mx::multiply(x, c(0.5), s), t, s);
    }
    case F_GELU_QUICK:
      return mx::multiply(x, mx::sigmoid(mx::multiply(x, c(1.702), s), s), s);
  }
  throw std::invalid_argument("[blockfuse-mlx shim] bad fused kind " + std::to_string(kind));
}

// The uncompiled function of one variant: operands cast to f32, the block's math, one
// rounding to `out`.
ArrayFn fused_fn(int kind, mx::Dtype out, mx::StreamOrDevice s) {
  return [kind, out, s](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    auto x = mx::astype(in.at(0), mx::float32, s);
    mx::array y = x;
    switch (kind) {
      case F_SWIGLU: {
        auto u = mx::astype(in.at(1), mx::float32, s);
        y = mx::multiply(mx::multiply(x, mx::sigmoid(x, s), s), u, s);
        break;
      }
      case F_GEGLU_ERF:
      case F_GEGLU_TANH: {
        auto u = mx::astype(in.at(1), mx::float32, s);
        y = mx::multiply(gelu_f32(kind, x, s), u, s);
        break;
      }
      default:
        y = gelu_f32(kind, x, s);
    }
    return {mx::astype(y, out, s)};
  };
}

// MLX's compile cache is not thread-safe: building (tracing, looking up) a compiled graph
// is serialized here. Evaluation is not.
// Recursive: a whole-graph compile (bfm_compiled_call) traces Rust lowerings that call the
// fused functions on the same thread.
std::recursive_mutex fused_mutex;

std::vector<mx::array> run_fused(int kind, mx::Dtype out, const std::vector<mx::array>& in,
                                 bool shapeless) {
  std::lock_guard<std::recursive_mutex> lock(fused_mutex);
  static std::map<std::tuple<int, int, int, bool>, ArrayFn> compiled;
  auto key = std::make_tuple(kind, static_cast<int>(out.val()), thread_device, shapeless);
  auto it = compiled.find(key);
  if (it == compiled.end()) {
    it = compiled.emplace(key, mx::compile(fused_fn(kind, out, sd()), shapeless)).first;
  }
  return it->second(in);
}

// The cos/sin form of RoPE (bfm_rope_cos_sin): `x·cos + rotate(x)·sin` on the first `dims`
// features of the last axis, op for op as the block's fallback spells it (cos and sin times
// mscale in their dtype, cast to x's dtype, rotation in x's dtype), compiled once per
// (dims, traditional, mscale, device) and traced per shape.
mx::array last_axis(const mx::array& a, int start, int stop, int step, mx::StreamOrDevice s) {
  mx::Shape st(a.ndim(), 0), en(a.shape()), str(a.ndim(), 1);
  st.back() = start;
  en.back() = stop;
  str.back() = step;
  return mx::slice(a, st, en, str, s);
}

ArrayFn rope_cos_sin_fn(int dims, bool traditional, float mscale, mx::StreamOrDevice s) {
  return [=](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    const auto& x = in.at(0);
    auto c = in.at(1), sn = in.at(2);
    if (mscale != 1.0f) {
      c = mx::multiply(c, mx::array(mscale, c.dtype()), s);
      sn = mx::multiply(sn, mx::array(mscale, sn.dtype()), s);
    }
    c = mx::astype(c, x.dtype(), s);
    sn = mx::astype(sn, x.dtype(), s);
    int h = dims / 2, d = x.shape(-1);
    auto first = [&](const mx::array& a) {
      return traditional ? last_axis(a, 0, dims, 2, s) : last_axis(a, 0, h, 1, s);
    };
    auto second = [&](const mx::array& a) {
      return traditional ? last_axis(a, 1, dims, 2, s) : last_axis(a, h, dims, 1, s);
    };
    bool per_pair = c.shape(-1) == h;
    auto c1 = per_pair ? c : first(c), c2 = per_pair ? c : second(c);
    auto s1 = per_pair ? sn : first(sn), s2 = per_pair ? sn : second(sn);
    auto x1 = first(x), x2 = second(x);
    auto o1 = mx::subtract(mx::multiply(x1, c1, s), mx::multiply(x2, s1, s), s);
    auto o2 = mx::add(mx::multiply(x1, s2, s), mx::multiply(x2, c2, s), s);
    mx::array rot = o1;
    if (traditional) {
      auto both = mx::concatenate({mx::expand_dims(o1, -1, s), mx::expand_dims(o2, -1, s)}, -1, s);
      auto shape = o1.shape();
      shape.back() = dims;
      rot = mx::reshape(both, shape, s);
    } else {
      rot = mx::concatenate({o1, o2}, -1, s);
    }
    if (dims < d) rot = mx::concatenate({rot, last_axis(x, dims, d, 1, s)}, -1, s);
    return {rot};
  };
}

std::vector<mx::array> run_rope_cos_sin(int dims, bool traditional, float mscale,
                                        const std::vector<mx::array>& in) {
  std::lock_guard<std::recursive_mutex> lock(fused_mutex);
  static std::map<std::tuple<int, bool, float, int>, ArrayFn> compiled;
  auto key = std::make_tuple(dims, traditional, mscale, thread_device);
  auto it = compiled.find(key);
  if (it == compiled.end()) {
    it = compiled.emplace(key, mx::compile(rope_cos_sin_fn(dims, traditional, mscale, sd()), false)).first;
  }
  return it->second(in);
}

// The context of the bfm_compiled_call running on this thread: what its callback gets.
thread_local void* trace_ctx = nullptr;

}  // namespace

extern "C" {

int bfm_vec_new(bfm_vec** out) {
  return guard([&] { *need(out, "out") = new bfm_vec{}; });
}

void bfm_vec_free(bfm_vec* v) {
  delete v;
}

int bfm_vec_push(bfm_vec* v, const bfm_array* a) {
  return guard([&] { need(v, "vec")->v.push_back(arr(a)); });
}

size_t bfm_vec_len(const bfm_vec* v) {
  return v == nullptr ? 0 : v->v.size();
}

int bfm_vec_get(const bfm_vec* v, size_t i, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(need(v, "vec")->v.at(i)); });
}

int bfm_compile(bfm_trace_fn fn, int shapeless, bfm_compiled** out) {
  return guard([&] {
    need(out, "out");
    if (fn == nullptr) throw std::invalid_argument("[blockfuse-mlx shim] null trace function");
    auto body = [fn](const std::vector<mx::array>& in) -> std::vector<mx::array> {
      std::vector<bfm_array*> handles;
      handles.reserve(in.size());
      for (const auto& a : in) handles.push_back(wrap(a));
      bfm_vec results;
      int rc = fn(trace_ctx, handles.data(), handles.size(), &results);
      for (auto* h : handles) delete h;
      if (rc != 0) throw std::runtime_error("[blockfuse-mlx shim] the traced function failed");
      return std::move(results.v);
    };
    *out = new bfm_compiled{mx::compile(body, shapeless != 0)};
  });
}

void bfm_compiled_free(bfm_compiled* f) {
  if (f == nullptr) return;
  std::lock_guard<std::recursive_mutex> lock(fused_mutex);
  delete f;
}

int bfm_compiled_call(bfm_compiled* f, void* ctx, const bfm_array* const* inputs, size_t n,
                      bfm_vec* out) {
  return guard([&] {
    need(f, "compiled function");
    need(out, "out");
    std::vector<mx::array> in;
    in.reserve(n);
    for (size_t i = 0; i < n; ++i) in.push_back(arr(inputs[i], "input"));
    std::lock_guard<std::recursive_mutex> lock(fused_mutex);
    void* saved = trace_ctx;
    trace_ctx = ctx;
    try {
      out->v = f->f(in);
    } catch (...) {
      trace_ctx = saved;
      throw;
    }
    trace_ctx = saved;
  });
}

const char* bfm_last_error(void) {
  return last_error.c_str();
}

const char* bfm_version(void) {
  try {
    return mx::version();
  } catch (...) {
    return "unknown";
  }
}

int bfm_device_available(int device, int* out) {
  return guard([&] { *need(out, "out") = mx::is_available(device_of(device)) ? 1 : 0; });
}

int bfm_set_default_device(int device) {
  return guard([&] { mx::set_default_device(device_of(device)); });
}

int bfm_default_device(int* out) {
  return guard([&] {
    *need(out, "out") = mx::default_device().type == mx::Device::gpu ? 1 : 0;
  });
}

int bfm_set_thread_device(int device) {
  return guard([&] {
    if (device != -1) {
      auto d = device_of(device);
      if (!mx::is_available(d)) {
        throw std::invalid_argument(std::string("[blockfuse-mlx] device ") +
                                    (device == 1 ? "gpu" : "cpu") +
                                    " is not available in this MLX build");
      }
    }
    thread_device = device;
  });
}

int bfm_synchronize(void) {
  return guard([&] { mx::synchronize(mx::to_stream(sd())); });
}

void bfm_free(bfm_array* a) {
  try {
    delete a;
  } catch (...) {
  }
}

int bfm_clone(const bfm_array* a, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(arr(a)); });
}

int bfm_from_bytes(const void* data, size_t nbytes, const int32_t* shape, size_t ndim, int dtype,
                   bfm_array** out) {
  return guard([&] {
    need(out, "out");
    auto dt = to_mlx(dtype);
    auto sh = shape_of(shape, ndim);
    size_t count = 1;
    for (auto d : sh) {
      if (d < 0) throw std::invalid_argument("[blockfuse-mlx shim] negative dimension");
      count *= static_cast<size_t>(d);
    }
    if (count * mx::size_of(dt) != nbytes) {
      throw std::invalid_argument("[blockfuse-mlx shim] " + std::to_string(nbytes) +
                                  " bytes do not fill the shape");
    }
    if (nbytes == 0) {
      *out = wrap(mx::zeros(sh, dt));
      return;
    }
    // MLX takes ownership of the copy (or copies it again to device memory and frees it).
    void* buf = std::malloc(nbytes);
    if (buf == nullptr) throw std::bad_alloc();
    std::memcpy(buf, need(data, "data"), nbytes);
    *out = wrap(mx::array(buf, std::move(sh), dt, [](void* p) { std::free(p); }));
  });
}

int bfm_to_bytes(const bfm_array* a, void* out, size_t nbytes) {
  return guard([&] {
    auto c = mx::contiguous(arr(a), false, sd());
    c.eval();
    if (c.nbytes() != nbytes) {
      throw std::invalid_argument("[blockfuse-mlx shim] array has " + std::to_string(c.nbytes()) +
                                  " bytes, buffer " + std::to_string(nbytes));
    }
    if (nbytes == 0) return;
    if (!c.flags().row_contiguous || c.data_size() != c.size()) {
      throw std::runtime_error("[blockfuse-mlx shim] contiguous() gave a non-contiguous array");
    }
    std::memcpy(need(out, "out"), c.data<uint8_t>(), nbytes);
  });
}

int bfm_info(const bfm_array* a, int* dtype, size_t* ndim) {
  return guard([&] {
    *need(dtype, "dtype") = from_mlx(arr(a).dtype());
    *need(ndim, "ndim") = arr(a).ndim();
  });
}

int bfm_shape(const bfm_array* a, int32_t* shape) {
  return guard([&] {
    const auto& sh = arr(a).shape();
    if (!sh.empty()) std::copy(sh.begin(), sh.end(), need(shape, "shape"));
  });
}

int bfm_eval(const bfm_array* const* arrays, size_t n) {
  return guard([&] {
    std::vector<mx::array> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) v.push_back(arr(need(arrays, "arrays")[i]));
    mx::eval(std::move(v));
  });
}

int bfm_unary(int op, const bfm_array* a, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(unary(op, arr(a))); });
}

int bfm_binary(int op, const bfm_array* a, const bfm_array* b, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(binary(op, arr(a), arr(b))); });
}

int bfm_where(const bfm_array* cond, const bfm_array* a, const bfm_array* b, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(mx::where(arr(cond), arr(a), arr(b), sd())); });
}

int bfm_astype(const bfm_array* a, int dtype, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(mx::astype(arr(a), to_mlx(dtype), sd())); });
}

int bfm_reduce(int op, const bfm_array* a, const int32_t* axes, size_t naxes, int keepdims,
               bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(reduce(op, arr(a), ints(axes, naxes), keepdims != 0));
  });
}

int bfm_softmax(const bfm_array* a, const int32_t* axes, size_t naxes, int precise,
                bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::softmax(arr(a), ints(axes, naxes), precise != 0, sd()));
  });
}

int bfm_shape_op(int op, const bfm_array* a, const int32_t* v, size_t n, bfm_array** out) {
  return guard([&] { *need(out, "out") = wrap(shape_op(op, arr(a), v, n)); });
}

int bfm_slice(const bfm_array* a, const int32_t* start, const int32_t* stop,
              const int32_t* strides, size_t n, bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::slice(arr(a), shape_of(start, n), shape_of(stop, n),
                                       shape_of(strides, n), sd()));
  });
}

int bfm_concatenate(const bfm_array* const* arrays, size_t n, int axis, bfm_array** out) {
  return guard([&] {
    std::vector<mx::array> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) v.push_back(arr(need(arrays, "arrays")[i]));
    *need(out, "out") = wrap(mx::concatenate(std::move(v), axis, sd()));
  });
}

int bfm_split(const bfm_array* a, const int32_t* indices, size_t nidx, int axis,
              bfm_array** outs) {
  return guard([&] {
    need(outs, "outs");
    auto parts = mx::split(arr(a), shape_of(indices, nidx), axis, sd());
    if (parts.size() != nidx + 1) {
      throw std::runtime_error("[blockfuse-mlx shim] split gave " + std::to_string(parts.size()) +
                               " parts, expected " + std::to_string(nidx + 1));
    }
    std::vector<std::unique_ptr<bfm_array>> owned;
    owned.reserve(parts.size());
    for (auto& p : parts) owned.emplace_back(wrap(std::move(p)));
    for (size_t i = 0; i < owned.size(); ++i) outs[i] = owned[i].release();
  });
}

int bfm_take(const bfm_array* a, const bfm_array* indices, int axis, bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::take(arr(a), arr(indices, "indices"), axis, sd()));
  });
}

int bfm_slice_update(const bfm_array* src, const bfm_array* update, const bfm_array* start, int axis,
                     bfm_array** out) {
  return guard([&] {
    auto st = mx::reshape(mx::astype(arr(start, "start"), mx::int32, sd()), {1}, sd());
    *need(out, "out") = wrap(mx::slice_update(arr(src), arr(update, "update"), st, {axis}, sd()));
  });
}

int bfm_arange(double start, double stop, double step, int dtype, bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::arange(start, stop, step, to_mlx(dtype), sd()));
  });
}

int bfm_full(const int32_t* shape, size_t ndim, double value, int dtype, bfm_array** out) {
  return guard([&] {
    auto dt = to_mlx(dtype);
    *need(out, "out") = wrap(mx::full(shape_of(shape, ndim), mx::array(value, dt), dt, sd()));
  });
}

int bfm_tri(int upper, const bfm_array* a, int k, bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(upper ? mx::triu(arr(a), k, sd()) : mx::tril(arr(a), k, sd()));
  });
}

int bfm_rms_norm(const bfm_array* x, const bfm_array* weight, float eps, bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::fast::rms_norm(arr(x), opt(weight), eps, sd()));
  });
}

int bfm_layer_norm(const bfm_array* x, const bfm_array* weight, const bfm_array* bias, float eps,
                   bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::fast::layer_norm(arr(x), opt(weight), opt(bias), eps, sd()));
  });
}

int bfm_rope(const bfm_array* x, int dims, int traditional, int has_base, float base, float scale,
             int offset, const bfm_array* offset_array, const bfm_array* freqs, bfm_array** out) {
  return guard([&] {
    std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
    auto r = offset_array == nullptr
        ? mx::fast::rope(arr(x), dims, traditional != 0, b, scale, offset, opt(freqs), sd())
        : mx::fast::rope(arr(x), dims, traditional != 0, b, scale, offset_array->a, opt(freqs),
                         sd());
    *need(out, "out") = wrap(std::move(r));
  });
}

int bfm_sdpa(const bfm_array* q, const bfm_array* k, const bfm_array* v, float scale,
             const char* mask_mode, const bfm_array* mask, const bfm_array* sinks,
             bfm_array** out) {
  return guard([&] {
    *need(out, "out") = wrap(mx::fast::scaled_dot_product_attention(
        arr(q, "q"), arr(k, "k"), arr(v, "v"), scale, std::string(mask_mode ? mask_mode : ""),
        opt(mask), opt(sinks), false, sd()));
  });
}

int bfm_fused_elementwise(int kind, const bfm_array* a, const bfm_array* b, int out_dtype,
                          bfm_array** out) {
  return guard([&] {
    need(out, "out");
    if (kind < F_SWIGLU || kind > F_GELU_QUICK) {
      throw std::invalid_argument("[blockfuse-mlx shim] bad fused kind " + std::to_string(kind));
    }
    bool gated = kind <= F_GEGLU_TANH;
    std::vector<mx::array> in{arr(a, "a")};
    if (gated) in.push_back(arr(b, "b"));
    // Shapeless when no operand broadcasts (MLX's Broadcast primitive keeps its traced shape).
    bool shapeless = !gated || in[0].shape() == in[1].shape();
    auto r = run_fused(kind, to_mlx(out_dtype), in, shapeless);
    if (r.size() != 1) throw std::runtime_error("[blockfuse-mlx shim] fused block gave no result");
    *out = wrap(std::move(r[0]));
  });
}

int bfm_rope_cos_sin(const bfm_array* x, const bfm_array* cos, const bfm_array* sin, int dims,
                     int traditional, float mscale, bfm_array** out) {
  return guard([&] {
    need(out, "out");
    std::vector<mx::array> in{arr(x, "x"), arr(cos, "cos"), arr(sin, "sin")};
    int d = in[0].ndim() == 0 ? 0 : in[0].shape(-1);
    if (dims <= 0 || dims % 2 != 0 || dims > d) {
      throw std::invalid_argument("[blockfuse-mlx shim] rope_cos_sin: bad dims " + std::to_string(dims));
    }
    int w = in[1].ndim() == 0 ? 0 : in[1].shape(-1);
    if (w != dims && w != dims / 2) {
      throw std::invalid_argument("[blockfuse-mlx shim] rope_cos_sin: cos has " + std::to_string(w) +
                                  " entries per row, not dims or dims/2");
    }
    auto r = run_rope_cos_sin(dims, traditional != 0, mscale, in);
    *out = wrap(std::move(r.at(0)));
  });
}

int bfm_quantized_matmul(const bfm_array* x, const bfm_array* w, const bfm_array* scales,
                         const bfm_array* biases, int group_size, int bits, int dtype,
                         bfm_array** out) {
  return guard([&] {
    need(out, "out");
    auto t = to_mlx(dtype);
    auto packed = mx::view(arr(w, "w"), mx::uint32, sd());
    *out = wrap(mx::quantized_matmul(mx::astype(arr(x, "x"), t, sd()), packed,
                                     mx::astype(arr(scales, "scales"), t, sd()),
                                     mx::astype(arr(biases, "biases"), t, sd()), true,
                                     group_size, bits, "affine", sd()));
  });
}

}  // extern "C"
