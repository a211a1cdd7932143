// CUDA reductions over the middle axis of a contiguous (outer, r, inner) tensor: sum, max, min,
// and argmax. Same semantics as cpu/reduce.cpp, the reference.
//
// inner == 1 (rows): one block per row, each thread striding over the row, then a CUB block
// reduction; rows beyond the grid are taken by a grid-stride loop over rows. inner > 1: one
// thread per (outer, inner) output walking r, so neighbouring threads read neighbouring
// columns (coalesced). No temporary buffers, so nothing is allocated per call.
//
// Sums accumulate in double for both dtypes, as the CPU does, so the two backends differ only
// by summation order. max and min let NaN win; argmax gives the first maximum, NaN counting as
// the largest value (first NaN wins).
#include <nabla/cuda/cuda_backend.h>

#include <cub/cub.cuh>
#include <cuda/std/limits>

#include <algorithm>

namespace nabla::cuda {

namespace {

// Cap on the blocks of the one-block-per-row kernels (gridDim.x may not exceed 2^31 - 1);
// further rows are taken by the grid-stride loop over rows.
constexpr int64_t kMaxRowBlocks = 65535;

template <ReduceOp op, typename T>
struct Reducer;

template <typename T>
struct Reducer<ReduceOp::sum, T> {
  using Acc = double;
  static __device__ Acc init() { return 0; }
  __device__ Acc operator()(Acc a, Acc b) const { return a + b; }
};

// NaN wins, as torch.amax/amin and the CPU backend.
template <typename T>
struct Reducer<ReduceOp::max, T> {
  using Acc = T;
  static __device__ Acc init() { return -::cuda::std::numeric_limits<T>::infinity(); }
  __device__ Acc operator()(Acc a, Acc b) const { return b > a || b != b ? b : a; }
};

template <typename T>
struct Reducer<ReduceOp::min, T> {
  using Acc = T;
  static __device__ Acc init() { return ::cuda::std::numeric_limits<T>::infinity(); }
  __device__ Acc operator()(Acc a, Acc b) const { return b < a || b != b ? b : a; }
};

// x: (outer, r) contiguous; out: (outer).
template <ReduceOp op, typename T>
__global__ void __launch_bounds__(kBlock) reduce_rows_kernel(T* out, const T* x, int64_t outer, int64_t r) {
  using R = Reducer<op, T>;
  using Acc = typename R::Acc;
  using BlockReduce = cub::BlockReduce<Acc, kBlock>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const R combine{};
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* in = x + row * r;
    Acc acc = R::init();
    for (int64_t j = threadIdx.x; j < r; j += kBlock) acc = combine(acc, static_cast<Acc>(in[j]));
    acc = BlockReduce(tmp).Reduce(acc, combine);  // valid in thread 0 only
    if (threadIdx.x == 0) out[row] = static_cast<T>(acc);
    __syncthreads();  // before the next row reuses tmp
  }
}

// x: (outer, r, inner) contiguous; out: (outer, inner). One thread per output.
template <ReduceOp op, typename T>
__global__ void reduce_columns_kernel(T* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  using R = Reducer<op, T>;
  using Acc = typename R::Acc;
  const R combine{};
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* in = x + o * r * inner + i;
    Acc acc = R::init();
    for (int64_t j = 0; j < r; ++j) acc = combine(acc, static_cast<Acc>(in[j * inner]));
    out[k] = static_cast<T>(acc);
  }
}

// A candidate for argmax: a value and its index along r.
template <typename T>
struct ArgBest {
  T value;
  int64_t index;
};

// The better of two candidates: NaN above everything, then the larger value, then (on a tie,
// or two NaNs) the smaller index, so the result is the first maximum whatever the order of
// combination.
template <typename T>
struct ArgMaxOp {
  __device__ ArgBest<T> operator()(const ArgBest<T>& a, const ArgBest<T>& b) const {
    const bool a_nan = a.value != a.value, b_nan = b.value != b.value;
    if (a_nan != b_nan) return a_nan ? a : b;
    if (!a_nan) {
      if (a.value > b.value) return a;
      if (b.value > a.value) return b;
    }
    return a.index <= b.index ? a : b;
  }
};

// x: (outer, r) contiguous; out: (outer).
template <typename T>
__global__ void __launch_bounds__(kBlock) argmax_rows_kernel(int64_t* out, const T* x, int64_t outer, int64_t r) {
  using BlockReduce = cub::BlockReduce<ArgBest<T>, kBlock>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const ArgMaxOp<T> better{};
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* in = x + row * r;
    // A thread with no element keeps this sentinel, which loses to any real candidate: its
    // index is past every real one, so even a row of -inf picks a real index.
    ArgBest<T> best{-::cuda::std::numeric_limits<T>::infinity(), ::cuda::std::numeric_limits<int64_t>::max()};
    for (int64_t j = threadIdx.x; j < r; j += kBlock) best = better(best, ArgBest<T>{in[j], j});
    best = BlockReduce(tmp).Reduce(best, better);  // valid in thread 0 only
    if (threadIdx.x == 0) out[row] = best.index;
    __syncthreads();  // before the next row reuses tmp
  }
}

// x: (outer, r, inner) contiguous; out: (outer, inner). One thread per output, the CPU's loop.
template <typename T>
__global__ void argmax_columns_kernel(int64_t* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* in = x + o * r * inner + i;
    T best = in[0];
    int64_t arg = 0;
    for (int64_t j = 1; j < r; ++j) {
      const T v = in[j * inner];
      if (v > best || (v != v && best == best)) {
        best = v;
        arg = j;
      }
    }
    out[k] = arg;
  }
}

int row_grid(int64_t rows) { return static_cast<int>(std::clamp<int64_t>(rows, 1, kMaxRowBlocks)); }

template <ReduceOp op, typename T>
void launch_reduce(const CudaBackend& be, T* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  if (inner == 1) {
    reduce_rows_kernel<op, T><<<row_grid(outer), kBlock, 0, be.stream()>>>(out, x, outer, r);
  } else {
    reduce_columns_kernel<op, T><<<be.grid(outer * inner), kBlock, 0, be.stream()>>>(out, x, outer, r, inner);
  }
  NABLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, DType dtype, void* out, const void* x, int64_t outer, int64_t r,
                         int64_t inner) {
  // r == 0 does not reach here (the caller fills the sum of nothing with 0); if it did, the
  // kernels would write each op's identity (0, -inf, +inf), as the CPU does.
  if (outer == 0 || inner == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    auto* y = static_cast<T*>(out);
    const auto* in = static_cast<const T*>(x);
    switch (op) {
      case ReduceOp::sum: return launch_reduce<ReduceOp::sum>(*this, y, in, outer, r, inner);
      case ReduceOp::max: return launch_reduce<ReduceOp::max>(*this, y, in, outer, r, inner);
      case ReduceOp::min: return launch_reduce<ReduceOp::min>(*this, y, in, outer, r, inner);
    }
    fail("cuda reduce: unknown op code {}", static_cast<int>(op));
  });
}

void CudaBackend::argmax(DType dtype, int64_t* out, const void* x, int64_t outer, int64_t r, int64_t inner) {
  if (outer == 0 || inner == 0) return;
  DeviceGuard guard(device());
  if (r == 0) {  // as the CPU: index 0 (the caller rejects an empty axis before getting here)
    NABLA_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(outer * inner) * sizeof(int64_t), stream()));
    return;
  }
  dispatch_floating(dtype, "argmax", [&](auto tag) {
    using T = decltype(tag);
    const auto* in = static_cast<const T*>(x);
    if (inner == 1) {
      argmax_rows_kernel<T><<<row_grid(outer), kBlock, 0, stream()>>>(out, in, outer, r);
    } else {
      argmax_columns_kernel<T><<<grid(outer * inner), kBlock, 0, stream()>>>(out, in, outer, r, inner);
    }
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace nabla::cuda
