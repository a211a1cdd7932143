// CUDA softmax and log-softmax over the middle axis of (outer, n, inner), their backward, and the
// negative log-likelihood loss on log-probabilities. Same semantics as cpu/softmax.cpp, the
// reference.
//
// inner == 1 (rows): one block per row, rows beyond the grid taken by a grid-stride loop; each
// block reduces with CUB and broadcasts the result through shared memory. inner > 1: one thread
// per (outer, inner) slice walking n, so neighbouring threads read neighbouring columns.
//
// Softmax subtracts the slice's maximum before exponentiating, so no exponent is positive and
// nothing overflows. Sums accumulate in the element type, as on the CPU (float32 in float, by a
// tree, which rounds less than the CPU's running sum).
#include <nabla/cuda/cuda_backend.h>

#include <cub/cub.cuh>
#include <cuda/std/limits>

#include <algorithm>

namespace nabla::cuda {

namespace {

// Cap on the blocks of the one-block-per-row kernels (gridDim.x may not exceed 2^31 - 1);
// further rows are taken by the grid-stride loop over rows.
constexpr int64_t kMaxRowBlocks = 65535;

int row_grid(int64_t rows) { return static_cast<int>(std::clamp<int64_t>(rows, 1, kMaxRowBlocks)); }

__device__ inline float exp_(float x) { return ::expf(x); }
__device__ inline double exp_(double x) { return ::exp(x); }
__device__ inline float log_(float x) { return ::logf(x); }
__device__ inline double log_(double x) { return ::log(x); }

// std::max(a, b) as the CPU uses it: a NaN b is ignored (the NaN still reaches the sum, so the
// slice comes out NaN either way).
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? b : a;
  }
};

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

template <typename T>
__device__ T neg_inf() {
  return -::cuda::std::numeric_limits<T>::infinity();
}

// ---- softmax ------------------------------------------------------------------------------------

// x, y: (outer, n) contiguous. y may equal x: the last pass reads x[j] before writing y[j] in
// the same thread, and the earlier passes only read.
template <typename T, bool log>
__global__ void __launch_bounds__(kBlock) softmax_rows_kernel(T* y, const T* x, int64_t outer, int64_t n) {
  using BlockReduce = cub::BlockReduce<T, kBlock>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ T row_max, row_sum;
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* in = x + row * n;
    T* out = y + row * n;

    T m = neg_inf<T>();
    for (int64_t j = threadIdx.x; j < n; j += kBlock) m = MaxOp{}(m, in[j]);
    m = BlockReduce(tmp).Reduce(m, MaxOp{});  // valid in thread 0 only
    if (threadIdx.x == 0) row_max = m;
    __syncthreads();
    m = row_max;

    // A row of all -inf gives (-inf) - (-inf) = NaN, as on the CPU and in PyTorch.
    T s = 0;
    for (int64_t j = threadIdx.x; j < n; j += kBlock) s += exp_(in[j] - m);
    s = BlockReduce(tmp).Reduce(s, SumOp{});
    if (threadIdx.x == 0) row_sum = s;
    __syncthreads();
    s = row_sum;

    if constexpr (log) {
      // (x - max) - log(sum), not x - (max + log(sum)): the sum would round away a small
      // log(sum) when max is large.
      const T log_sum = log_(s);
      for (int64_t j = threadIdx.x; j < n; j += kBlock) out[j] = (in[j] - m) - log_sum;
    } else {
      const T inv = T(1) / s;
      for (int64_t j = threadIdx.x; j < n; j += kBlock) out[j] = exp_(in[j] - m) * inv;
    }
    __syncthreads();  // before the next row reuses tmp, row_max and row_sum
  }
}

// x, y: (outer, n, inner) contiguous. One thread per (outer, inner) slice.
template <typename T, bool log>
__global__ void softmax_columns_kernel(T* y, const T* x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* in = x + o * n * inner + i;
    T* out = y + o * n * inner + i;
    T m = neg_inf<T>();
    for (int64_t j = 0; j < n; ++j) m = MaxOp{}(m, in[j * inner]);
    T s = 0;
    for (int64_t j = 0; j < n; ++j) s += exp_(in[j * inner] - m);
    if constexpr (log) {
      const T log_sum = log_(s);
      for (int64_t j = 0; j < n; ++j) out[j * inner] = (in[j * inner] - m) - log_sum;
    } else {
      const T inv = T(1) / s;
      for (int64_t j = 0; j < n; ++j) out[j * inner] = exp_(in[j * inner] - m) * inv;
    }
  }
}

// ---- softmax backward ---------------------------------------------------------------------------
// softmax:     dx = y * (dy - sum_j dy*y)
// log-softmax: dx = dy - exp(y) * sum_j dy

// dx, dy, y: (outer, n) contiguous.
template <typename T, bool log>
__global__ void __launch_bounds__(kBlock)
    softmax_backward_rows_kernel(T* dx, const T* dy, const T* y, int64_t outer, int64_t n) {
  using BlockReduce = cub::BlockReduce<T, kBlock>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ T row_sum;
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* g = dy + row * n;
    const T* out = y + row * n;
    T* d = dx + row * n;

    T s = 0;
    for (int64_t j = threadIdx.x; j < n; j += kBlock) {
      if constexpr (log)
        s += g[j];
      else
        s += g[j] * out[j];
    }
    s = BlockReduce(tmp).Reduce(s, SumOp{});  // valid in thread 0 only
    if (threadIdx.x == 0) row_sum = s;
    __syncthreads();
    s = row_sum;

    for (int64_t j = threadIdx.x; j < n; j += kBlock) {
      if constexpr (log)
        d[j] = g[j] - exp_(out[j]) * s;
      else
        d[j] = out[j] * (g[j] - s);
    }
    __syncthreads();  // before the next row reuses tmp and row_sum
  }
}

// dx, dy, y: (outer, n, inner) contiguous. One thread per (outer, inner) slice.
template <typename T, bool log>
__global__ void softmax_backward_columns_kernel(T* dx, const T* dy, const T* y, int64_t outer, int64_t n,
                                                int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const int64_t base = o * n * inner + i;
    const T* g = dy + base;
    const T* out = y + base;
    T* d = dx + base;
    T s = 0;
    for (int64_t j = 0; j < n; ++j) {
      if constexpr (log)
        s += g[j * inner];
      else
        s += g[j * inner] * out[j * inner];
    }
    for (int64_t j = 0; j < n; ++j) {
      if constexpr (log)
        d[j * inner] = g[j * inner] - exp_(out[j * inner]) * s;
      else
        d[j * inner] = out[j * inner] * (g[j * inner] - s);
    }
  }
}

// ---- negative log-likelihood --------------------------------------------------------------------
// Labels are checked by check_labels, but on the device that check only reports at the next
// synchronization, so these kernels may see a bad label first: they never index with one (the
// loss becomes NaN, the gradient row zero) and the error is thrown at the synchronization.

// loss: (n); logp: (n, c); labels: (n).
template <typename T>
__global__ void nll_kernel(T* loss, const T* logp, const int64_t* labels, int64_t n, int64_t c) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t l = labels[i];
    loss[i] = l >= 0 && l < c ? -logp[i * c + l] : ::cuda::std::numeric_limits<T>::quiet_NaN();
  }
}

// dlogp: (n, c); dloss: (n); labels: (n). One thread per element of dlogp; every one is written.
template <typename T>
__global__ void nll_backward_kernel(T* dlogp, const T* dloss, const int64_t* labels, int64_t n, int64_t c) {
  const int64_t total = n * c;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = k / c, j = k % c;
    dlogp[k] = j == labels[i] ? -dloss[i] : T(0);
  }
}

template <typename T, bool log>
void launch_softmax(const CudaBackend& be, T* y, const T* x, int64_t outer, int64_t n, int64_t inner) {
  if (inner == 1) {
    softmax_rows_kernel<T, log><<<row_grid(outer), kBlock, 0, be.stream()>>>(y, x, outer, n);
  } else {
    softmax_columns_kernel<T, log><<<be.grid(outer * inner), kBlock, 0, be.stream()>>>(y, x, outer, n, inner);
  }
  NABLA_CUDA_CHECK_LAUNCH();
}

template <typename T, bool log>
void launch_softmax_backward(const CudaBackend& be, T* dx, const T* dy, const T* y, int64_t outer, int64_t n,
                             int64_t inner) {
  if (inner == 1) {
    softmax_backward_rows_kernel<T, log><<<row_grid(outer), kBlock, 0, be.stream()>>>(dx, dy, y, outer, n);
  } else {
    softmax_backward_columns_kernel<T, log>
        <<<be.grid(outer * inner), kBlock, 0, be.stream()>>>(dx, dy, y, outer, n, inner);
  }
  NABLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::softmax(DType dtype, void* y, const void* x, int64_t outer, int64_t n, int64_t inner, bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    auto* out = static_cast<T*>(y);
    const auto* in = static_cast<const T*>(x);
    if (log)
      launch_softmax<T, true>(*this, out, in, outer, n, inner);
    else
      launch_softmax<T, false>(*this, out, in, outer, n, inner);
  });
}

void CudaBackend::softmax_backward(DType dtype, void* dx, const void* dy, const void* y, int64_t outer, int64_t n,
                                   int64_t inner, bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    auto* g = static_cast<T*>(dx);
    const auto* gy = static_cast<const T*>(dy);
    const auto* out = static_cast<const T*>(y);
    if (log)
      launch_softmax_backward<T, true>(*this, g, gy, out, outer, n, inner);
    else
      launch_softmax_backward<T, false>(*this, g, gy, out, outer, n, inner);
  });
}

void CudaBackend::nll(DType dtype, void* loss, const void* logp, const int64_t* labels, int64_t n, int64_t c) {
  if (n == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "nll", [&](auto tag) {
    using T = decltype(tag);
    nll_kernel<T><<<grid(n), kBlock, 0, stream()>>>(static_cast<T*>(loss), static_cast<const T*>(logp), labels,
                                                      n, c);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::nll_backward(DType dtype, void* dlogp, const void* dloss, const int64_t* labels, int64_t n,
                               int64_t c) {
  if (n == 0 || c == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "nll_backward", [&](auto tag) {
    using T = decltype(tag);
    nll_backward_kernel<T><<<grid(n * c), kBlock, 0, stream()>>>(static_cast<T*>(dlogp),
                                                                  static_cast<const T*>(dloss), labels, n, c);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace nabla::cuda
