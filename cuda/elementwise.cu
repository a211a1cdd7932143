// CUDA elementwise kernels: fill, copy_strided, cast, unary (forward and backward), binary.
//
// Every kernel is a grid-stride loop over int64 indices on the backend's stream. The unary
// formulas are the CPU's own, written once in core/unary_ops.h (which also says how they keep
// nvcc from fusing what the CPU rounds twice); the binary ones mirror cpu/elementwise.cpp, the
// reference, operation for operation: the same comparisons, so NaN goes where it goes on the CPU.
//
// Strided loops take the layout as the caller built it (core/ops/util.cpp has already dropped
// size-1 dimensions and merged contiguous ones), decomposing each linear index over its shape.
#include <nabla/cuda/cuda_backend.h>

#include <cstdint>
#include <type_traits>

namespace nabla::cuda {

namespace {

// ---- shared device helpers --------------------------------------------------------------------

__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// Offsets of element i (linear, row-major over l.shape) in out, a and, when kWithB, b. Host code
// too, so that the index math can be tested without a GPU.
struct Offsets {
  int64_t out = 0, a = 0, b = 0;
};
template <bool kWithB>
__host__ __device__ __forceinline__ Offsets offsets_of(const StridedLayout& l, int64_t i) {
  Offsets o;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t q = i / l.shape[d];
    const int64_t idx = i - q * l.shape[d];
    i = q;
    o.out += idx * l.out_stride[d];
    o.a += idx * l.a_stride[d];
    if constexpr (kWithB) o.b += idx * l.b_stride[d];
  }
  return o;
}

// Elements a layout covers: the product of its shape, 1 for ndim 0.
int64_t layout_numel(const StridedLayout& l) {
  NABLA_ASSERT(l.ndim >= 0 && l.ndim <= kMaxDims);
  int64_t n = 1;
  for (int d = 0; d < l.ndim; ++d) {
    NABLA_ASSERT(l.shape[d] >= 0);
    n *= l.shape[d];
  }
  return n;
}

// Any dtype: f(float{}), f(double{}), f(int32_t{}) or f(int64_t{}).
template <typename F>
void dispatch_any(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::float32: f(float{}); return;
    case DType::float64: f(double{}); return;
    case DType::int32: f(int32_t{}); return;
    case DType::int64: f(int64_t{}); return;
  }
  fail("cuda {}: unknown dtype code {}", op, static_cast<int>(dtype));
}

// ---- fill, copy_strided, cast -----------------------------------------------------------------

// out: (n)
template <typename T>
__global__ void fill_kernel(T* out, int64_t n, T value) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = value;
}

// out: (n) with stride so; a: (n) with stride sa (0 broadcasts a[0]). Also a layout of ndim 0
// (n == 1, only index 0 is touched).
template <typename T>
__global__ void copy_1d_kernel(T* out, int64_t so, const T* a, int64_t sa, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i * so] = a[i * sa];
}

// out, a: l.shape with l.out_stride, l.a_stride; n = numel of l.shape.
template <typename T>
__global__ void copy_strided_kernel(T* out, const T* a, StridedLayout l, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const Offsets o = offsets_of<false>(l, i);
    out[o.out] = a[o.a];
  }
}

// out: (n) To; a: (n) From. Float to integer truncates toward zero (cvt.rzi, as static_cast).
template <typename To, typename From>
__global__ void cast_kernel(To* out, const From* a, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = static_cast<To>(a[i]);
}

// Copies by element size, as the CPU: any dtype of that size moves the same bits.
template <typename T>
void copy_strided_launch(const CudaBackend& be, T* out, const T* a, const StridedLayout& l,
                         int64_t n) {
  if (l.ndim <= 1) {
    const int64_t so = l.ndim == 1 ? l.out_stride[0] : 0, sa = l.ndim == 1 ? l.a_stride[0] : 0;
    copy_1d_kernel<T><<<be.grid(n), kBlock, 0, be.stream()>>>(out, so, a, sa, n);
  } else {
    copy_strided_kernel<T><<<be.grid(n), kBlock, 0, be.stream()>>>(out, a, l, n);
  }
  NABLA_CUDA_CHECK_LAUNCH();
}

// ---- unary ------------------------------------------------------------------------------------
// The formulas are those of core/unary_ops.h (Op is one of its unary_ops structs).

// y, x: (n); y may equal x.
template <typename T, typename Op>
__global__ void unary_kernel(T* y, const T* x, int64_t n, T a, T b) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = Op::value(x[i], a, b);
}

// dx, dy, x, y: (n); y is read only where Op::reads is y, x only where it is x (the other may be
// null).
template <typename T, typename Op>
__global__ void unary_backward_kernel(T* dx, const T* dy, const T* x, const T* y, int64_t n, T a,
                                      T b) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    T v = T(0);
    if constexpr (Op::reads == UnaryReads::y) v = y[i];
    if constexpr (Op::reads == UnaryReads::x) v = x[i];
    dx[i] = Op::grad(dy[i], v, a, b);
  }
}

// ---- binary -----------------------------------------------------------------------------------

template <BinaryOp Op>
using BinaryTag = std::integral_constant<BinaryOp, Op>;

template <typename F>
void dispatch_binary(BinaryOp op, const char* name, F&& f) {
  switch (op) {
    case BinaryOp::add: f(BinaryTag<BinaryOp::add>{}); return;
    case BinaryOp::sub: f(BinaryTag<BinaryOp::sub>{}); return;
    case BinaryOp::mul: f(BinaryTag<BinaryOp::mul>{}); return;
    case BinaryOp::div: f(BinaryTag<BinaryOp::div>{}); return;
    case BinaryOp::maximum: f(BinaryTag<BinaryOp::maximum>{}); return;
    case BinaryOp::minimum: f(BinaryTag<BinaryOp::minimum>{}); return;
    case BinaryOp::eq: f(BinaryTag<BinaryOp::eq>{}); return;
    case BinaryOp::ne: f(BinaryTag<BinaryOp::ne>{}); return;
    case BinaryOp::gt: f(BinaryTag<BinaryOp::gt>{}); return;
    case BinaryOp::ge: f(BinaryTag<BinaryOp::ge>{}); return;
    case BinaryOp::lt: f(BinaryTag<BinaryOp::lt>{}); return;
    case BinaryOp::le: f(BinaryTag<BinaryOp::le>{}); return;
  }
  fail("cuda {}: unknown op code {}", name, static_cast<int>(op));
}

template <BinaryOp Op, typename T>
__device__ __forceinline__ T binary_value(T p, T q) {
  if constexpr (Op == BinaryOp::add)
    return p + q;
  else if constexpr (Op == BinaryOp::sub)
    return p - q;
  else if constexpr (Op == BinaryOp::mul)
    return p * q;
  else if constexpr (Op == BinaryOp::div)
    return p / q;
  // NaN in either operand gives NaN, as torch.maximum/minimum.
  else if constexpr (Op == BinaryOp::maximum)
    return p > q || p != p ? p : q;
  else if constexpr (Op == BinaryOp::minimum)
    return p < q || p != p ? p : q;
  else if constexpr (Op == BinaryOp::eq)
    return T(p == q);
  else if constexpr (Op == BinaryOp::ne)
    return T(p != q);
  else if constexpr (Op == BinaryOp::gt)
    return T(p > q);
  else if constexpr (Op == BinaryOp::ge)
    return T(p >= q);
  else if constexpr (Op == BinaryOp::lt)
    return T(p < q);
  else if constexpr (Op == BinaryOp::le)
    return T(p <= q);
  else
    static_assert(Op == BinaryOp::add, "binary op without a formula");
}

// out, a, b: (n), contiguous. out may equal a (each element is read before it is written, by
// the same thread).
template <typename T, BinaryOp Op>
__global__ void binary_flat_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = binary_value<Op>(a[i], b[i]);
}

// out, a: (n), contiguous; b: one element (a scalar, or a row broadcast along the only dim).
template <typename T, BinaryOp Op>
__global__ void binary_scalar_kernel(T* out, const T* a, const T* b, int64_t n) {
  const T q = *b;
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = binary_value<Op>(a[i], q);
}

// out, a, b: l.shape with l's strides (0 broadcasts); n = numel of l.shape.
template <typename T, BinaryOp Op>
__global__ void binary_strided_kernel(T* out, const T* a, const T* b, StridedLayout l, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const Offsets o = offsets_of<true>(l, i);
    out[o.out] = binary_value<Op>(a[o.a], b[o.b]);
  }
}

}  // namespace

// ---- the Backend methods ----------------------------------------------------------------------

void CudaBackend::fill(DType dtype, void* out, int64_t n, double value) {
  if (n <= 0) return;
  DeviceGuard guard(device());
  dispatch_any(dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<T>
        <<<grid(n), kBlock, 0, stream()>>>(static_cast<T*>(out), n, static_cast<T>(value));
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::copy_strided(DType dtype, void* out, const void* a, const StridedLayout& l) {
  const int64_t n = layout_numel(l);
  if (n == 0) return;
  DeviceGuard guard(device());
  switch (dtype_size(dtype)) {
    case 4:
      return copy_strided_launch(*this, static_cast<uint32_t*>(out),
                                 static_cast<const uint32_t*>(a), l, n);
    case 8:
      return copy_strided_launch(*this, static_cast<uint64_t*>(out),
                                 static_cast<const uint64_t*>(a), l, n);
  }
  fail("cuda copy_strided: dtype {} is not supported", dtype_name(dtype));
}

void CudaBackend::cast(DType out_dtype, void* out, DType a_dtype, const void* a, int64_t n) {
  if (n <= 0) return;
  if (out_dtype == a_dtype && out == a) return;
  DeviceGuard guard(device());
  dispatch_any(out_dtype, "cast", [&](auto out_tag) {
    using To = decltype(out_tag);
    dispatch_any(a_dtype, "cast", [&](auto a_tag) {
      using From = decltype(a_tag);
      cast_kernel<To, From>
          <<<grid(n), kBlock, 0, stream()>>>(static_cast<To*>(out), static_cast<const From*>(a), n);
      NABLA_CUDA_CHECK_LAUNCH();
    });
  });
}

void CudaBackend::unary(UnaryOp op, DType dtype, void* y, const void* x, int64_t n, double a,
                        double b) {
  if (n <= 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    const bool known = visit_unary(op, [&](auto formula) {
      using Op = decltype(formula);
      unary_kernel<T, Op><<<grid(n), kBlock, 0, stream()>>>(
          static_cast<T*>(y), static_cast<const T*>(x), n, T(a), T(b));
      NABLA_CUDA_CHECK_LAUNCH();
    });
    if (!known) fail("cuda unary: unknown op code {}", static_cast<int>(op));
  });
}

void CudaBackend::unary_backward(UnaryOp op, DType dtype, void* dx, const void* dy, const void* x,
                                 const void* y, int64_t n, double a, double b) {
  if (n <= 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    const bool known = visit_unary(op, [&](auto formula) {
      using Op = decltype(formula);
      unary_backward_kernel<T, Op><<<grid(n), kBlock, 0, stream()>>>(
          static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(x),
          static_cast<const T*>(y), n, T(a), T(b));
      NABLA_CUDA_CHECK_LAUNCH();
    });
    if (!known) fail("cuda unary_backward: unknown op code {}", static_cast<int>(op));
  });
}

void CudaBackend::binary(BinaryOp op, DType dtype, void* out, const void* a, const void* b,
                         const StridedLayout& l) {
  const int64_t n = layout_numel(l);
  if (n == 0) return;
  DeviceGuard guard(device());
  // One contiguous run in out and a: b either runs along (flat) or stays put (scalar).
  const bool run = l.ndim == 1 && l.out_stride[0] == 1 && l.a_stride[0] == 1;
  dispatch_floating(dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    dispatch_binary(op, "binary", [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if (run && l.b_stride[0] == 1) {
        binary_flat_kernel<T, kOp><<<grid(n), kBlock, 0, stream()>>>(o, pa, pb, n);
      } else if (run && l.b_stride[0] == 0) {
        binary_scalar_kernel<T, kOp><<<grid(n), kBlock, 0, stream()>>>(o, pa, pb, n);
      } else {
        binary_strided_kernel<T, kOp><<<grid(n), kBlock, 0, stream()>>>(o, pa, pb, l, n);
      }
      NABLA_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace nabla::cuda
