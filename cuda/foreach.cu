// CUDA multi-tensor arithmetic (Backend::foreach): one ForeachOp over a list of tensors, in place.
// Same arithmetic as cpu/foreach.cpp, the reference, operation for operation: its lerp, its order
// of products and sums, its scalars computed in double by the caller and rounded to T. Every
// product goes through mul_rn, so that nvcc does not fuse it with the following sum into one fma
// (the CPU rounds twice). With nvcc's defaults (IEEE division and sqrt, denormals kept) every
// operation is rounded as on the CPU, so the two backends should agree bit for bit.
//
// Multi-tensor launches (the idea of PyTorch's multi_tensor_apply, simplified): the list's host
// arrays of device pointers are packed into one kernel argument, TensorChunks, holding up to
// kMaxTensors tensors: their pointers, sizes, scalars and a prefix sum of their chunk counts (a
// chunk is kChunk consecutive elements of one tensor). Blocks take chunks in a grid-stride loop
// over the launch's chunks and find a chunk's tensor by walking the prefix sums forward from the
// previous chunk's tensor, so the grid is sized by the device, never by the tensors, and any
// sizes fit in one launch. A list of up to kMaxTensors tensors is one launch; a longer one takes
// ceil(count / kMaxTensors) launches, in stream order. Nothing is allocated, nothing waits.
#include <nabla/cuda/cuda_backend.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace nabla::cuda {

namespace {

// Tensors per launch: TensorChunks<double> stays under 4 KB, the kernel-parameter limit of every
// toolkit (static_assert in launch_foreach).
constexpr int kMaxTensors = 48;
constexpr size_t kMaxParamBytes = 4096;
// Elements of one tensor that one block processes per step of its grid-stride loop.
constexpr int64_t kChunk = 4 * kBlock;

// Tensors [0, count) of one launch. first_chunk[t] is the launch-wide index of tensor t's first
// chunk; first_chunk[count] is the number of chunks in the launch.
template <typename T>
struct TensorChunks {
  int count;
  T* x[kMaxTensors];
  const T* y[kMaxTensors];  // null where the op reads no y
  const T* z[kMaxTensors];  // null where the op reads no z
  int64_t size[kMaxTensors];
  int64_t first_chunk[kMaxTensors + 1];
  T a[kMaxTensors];
};

// Launch chunk c: its tensor and its element range [begin, end) there. `t` is the tensor of an
// earlier chunk (or 0): chunks of a tensor are consecutive and tensors in order, so the walk
// only moves forward, past tensors without chunks (size 0) too. Requires c < first_chunk[count].
struct ChunkRange {
  int tensor;
  int64_t begin, end;
};
template <typename T>
__host__ __device__ __forceinline__ ChunkRange chunk_range(const TensorChunks<T>& tl, int64_t c, int t) {
  while (c >= tl.first_chunk[t + 1]) ++t;
  const int64_t begin = (c - tl.first_chunk[t]) * kChunk;
  const int64_t end = begin + kChunk < tl.size[t] ? begin + kChunk : tl.size[t];
  return {t, begin, end};
}

// Tensors [begin, end) of l (end - begin <= kMaxTensors).
template <typename T>
TensorChunks<T> pack_tensors(const ForeachLists& l, int64_t begin, int64_t end) {
  NABLA_ASSERT(begin >= 0 && begin < end && end - begin <= kMaxTensors && end <= l.count);
  TensorChunks<T> tl{};
  tl.count = static_cast<int>(end - begin);
  int64_t chunks = 0;
  for (int j = 0; j < tl.count; ++j) {
    const int64_t i = begin + j;
    NABLA_ASSERT(l.sizes[i] >= 0);
    tl.x[j] = static_cast<T*>(l.x[i]);
    tl.y[j] = l.y ? static_cast<const T*>(l.y[i]) : nullptr;
    tl.z[j] = l.z ? static_cast<const T*>(l.z[i]) : nullptr;
    tl.size[j] = l.sizes[i];
    tl.first_chunk[j] = chunks;
    chunks += (l.sizes[i] + kChunk - 1) / kChunk;
    tl.a[j] = l.a ? T(l.a[i]) : T(0);
  }
  tl.first_chunk[tl.count] = chunks;
  return tl;
}

// ---- device arithmetic ------------------------------------------------------------------------

template <typename T>
constexpr bool kIsFloat = std::is_same_v<T, float>;

// A separately rounded product: never fused into an fma with the sum that uses it.
template <typename T> __device__ __forceinline__ T mul_rn(T p, T q) { if constexpr (kIsFloat<T>) return __fmul_rn(p, q); else return __dmul_rn(p, q); }
template <typename T> __device__ __forceinline__ T d_sqrt(T v) { if constexpr (kIsFloat<T>) return ::sqrtf(v); else return ::sqrt(v); }
template <typename T> __device__ __forceinline__ T d_abs(T v) { if constexpr (kIsFloat<T>) return ::fabsf(v); else return ::fabs(v); }

// a + w * (b - a), as torch.lerp (and cpu/foreach.cpp) evaluates it.
template <typename T>
__device__ __forceinline__ T lerp(T a, T b, T w) {
  return d_abs(w) < T(0.5) ? a + mul_rn(w, b - a) : b - mul_rn(b - a, T(1) - w);
}

// Element i of one tensor (cpu/foreach.cpp's loop, one element).
template <ForeachOp kOp, typename T>
__device__ __forceinline__ void apply(T* x, const T* y, const T* z, T a, int64_t i) {
  if constexpr (kOp == ForeachOp::copy) {
    x[i] = y[i];
  } else if constexpr (kOp == ForeachOp::sqrt) {
    x[i] = d_sqrt(y[i]);
  } else if constexpr (kOp == ForeachOp::mul) {
    x[i] = mul_rn(x[i], a);
  } else if constexpr (kOp == ForeachOp::div) {
    x[i] = x[i] / a;
  } else if constexpr (kOp == ForeachOp::add) {
    x[i] = x[i] + a;
  } else if constexpr (kOp == ForeachOp::axpy) {
    x[i] = x[i] + mul_rn(a, y[i]);
  } else if constexpr (kOp == ForeachOp::addcmul) {
    x[i] = x[i] + mul_rn(mul_rn(a, y[i]), z[i]);
  } else if constexpr (kOp == ForeachOp::addcdiv) {
    x[i] = x[i] + mul_rn(a, y[i] / z[i]);
  } else {
    static_assert(kOp == ForeachOp::lerp);
    x[i] = lerp(x[i], y[i], a);
  }
}

template <ForeachOp kOp, typename T>
__global__ void __launch_bounds__(kBlock) multi_tensor_kernel(const TensorChunks<T> tl) {
  const int64_t chunks = tl.first_chunk[tl.count];
  int t = 0;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(tl, c, t);
    t = r.tensor;
    T* x = tl.x[t];
    const T* y = tl.y[t];
    const T* z = tl.z[t];
    const T a = tl.a[t];
    for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kBlock) apply<kOp, T>(x, y, z, a, i);
  }
}

// One launch per kMaxTensors tensors of l.
template <ForeachOp kOp, typename T>
void launch_foreach(const CudaBackend& be, const ForeachLists& l) {
  static_assert(sizeof(TensorChunks<T>) <= kMaxParamBytes, "kernel arguments over 4 KB");
  for (int64_t begin = 0; begin < l.count; begin += kMaxTensors) {
    const int64_t end = std::min<int64_t>(l.count, begin + kMaxTensors);
    const TensorChunks<T> tl = pack_tensors<T>(l, begin, end);
    const int64_t chunks = tl.first_chunk[tl.count];
    if (chunks == 0) continue;
    // grid(chunks * kBlock): one block per chunk, at most what fills the device.
    multi_tensor_kernel<kOp, T><<<be.grid(chunks * kBlock), kBlock, 0, be.stream()>>>(tl);
    NABLA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void CudaBackend::foreach(ForeachOp op, DType dtype, const ForeachLists& l) {
  if (l.count == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "foreach", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ForeachOp::copy: return launch_foreach<ForeachOp::copy, T>(*this, l);
      case ForeachOp::sqrt: return launch_foreach<ForeachOp::sqrt, T>(*this, l);
      case ForeachOp::mul: return launch_foreach<ForeachOp::mul, T>(*this, l);
      case ForeachOp::div: return launch_foreach<ForeachOp::div, T>(*this, l);
      case ForeachOp::add: return launch_foreach<ForeachOp::add, T>(*this, l);
      case ForeachOp::axpy: return launch_foreach<ForeachOp::axpy, T>(*this, l);
      case ForeachOp::addcmul: return launch_foreach<ForeachOp::addcmul, T>(*this, l);
      case ForeachOp::addcdiv: return launch_foreach<ForeachOp::addcdiv, T>(*this, l);
      case ForeachOp::lerp: return launch_foreach<ForeachOp::lerp, T>(*this, l);
    }
    fail("cuda foreach: unknown op code {}", static_cast<int>(op));
  });
}

}  // namespace nabla::cuda
