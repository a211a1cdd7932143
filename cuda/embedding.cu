// CUDA embedding lookup and its deterministic backward. Semantics: core/backend.h; the CPU backend
// (cpu/embedding.cpp) is the reference.
//
// Forward: one thread per element of y (grid-stride), a row gathered from the table.
//
// Backward, without floating-point atomics (same bits every run, and the same sums in the same
// order as the CPU):
//   1. keys[i] = indices[i], or the sentinel `num` for padding_idx and for an index out of range
//      (possible here: check_indices reports only at the next synchronization); vals[i] = i;
//   2. CUB's radix sort of the (key, position) pairs on the bits that `num` needs. The sort is
//      stable, so the positions of one row stay in increasing order;
//   3. one block per row r of dweight (grid-stride over rows): a binary search gives the run of
//      sorted keys equal to r, and each thread sums its columns of dy over that run in order,
//      then writes them: every row is written exactly once, rows never indexed (and padding_idx,
//      whose key is the sentinel) get 0, so no memset is needed.
// The sort's buffers and CUB's temporary storage come from the pool (ScratchLease).
#include <nabla/cuda/cuda_backend.h>

#include <cub/cub.cuh>

#include <climits>
#include <limits>

namespace nabla::cuda {

namespace {

constexpr int kRowBlock = 128;  // threads per row of dweight in the backward

// y: (n, dim); weight: (num, dim); indices: (n). A bad index gives a NaN row (never a read out
// of bounds); the pending check throws at the next synchronization.
template <typename T>
__global__ void embedding_forward_kernel(T* y, const T* weight, const int64_t* indices, int64_t n, int64_t num,
                                         int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / dim, j = e - i * dim;
    const int64_t r = indices[i];
    y[e] = r >= 0 && r < num ? weight[r * dim + j] : std::numeric_limits<T>::quiet_NaN();
  }
}

// keys, vals: (n); indices: (n). The sort's input: row (or the sentinel num) and position.
__global__ void embedding_keys_kernel(uint64_t* keys, int64_t* vals, const int64_t* indices, int64_t n, int64_t num,
                                      int64_t padding_idx) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = indices[i];
    const bool skip = r < 0 || r >= num || r == padding_idx;
    keys[i] = static_cast<uint64_t>(skip ? num : r);
    vals[i] = i;
  }
}

// First position p in sorted (n) with sorted[p] >= key.
__device__ int64_t lower_bound(const uint64_t* sorted, int64_t n, uint64_t key) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// dweight: (num, dim); dy: (n, dim); sorted_keys, sorted_pos: (n), the sort's output. Row r of
// dweight = sum over the run of keys equal to r of dy[pos], in run order.
template <typename T>
__global__ void embedding_segment_sum_kernel(T* dweight, const T* dy, const uint64_t* sorted_keys,
                                             const int64_t* sorted_pos, int64_t n, int64_t num, int64_t dim) {
  for (int64_t r = blockIdx.x; r < num; r += gridDim.x) {
    // Every thread of the block searches (the same cached lines): no shared memory, no barrier.
    const int64_t begin = lower_bound(sorted_keys, n, static_cast<uint64_t>(r));
    const int64_t end = lower_bound(sorted_keys, n, static_cast<uint64_t>(r) + 1);
    T* dst = dweight + r * dim;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      T acc = T(0);
      for (int64_t k = begin; k < end; ++k) acc += dy[sorted_pos[k] * dim + j];
      dst[j] = acc;
    }
  }
}

// Bits that hold every value in [0, v].
int bits_for(int64_t v) {
  int b = 1;
  while (b < 63 && (int64_t{1} << b) <= v) ++b;
  return b;
}

size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

void CudaBackend::embedding_forward(DType dtype, void* y, const void* weight, const int64_t* indices, int64_t n,
                                    int64_t num, int64_t dim) {
  if (n == 0 || dim == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "embedding_forward", [&](auto tag) {
    using T = decltype(tag);
    embedding_forward_kernel<T><<<grid(n * dim), kBlock, 0, stream()>>>(static_cast<T*>(y), static_cast<const T*>(weight),
                                                                       indices, n, num, dim);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::embedding_backward(DType dtype, void* dweight, const void* dy, const int64_t* indices, int64_t n,
                                     int64_t num, int64_t dim, int64_t padding_idx) {
  if (num == 0 || dim == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) {
      fill(dtype, dweight, num * dim, 0.0);
      return;
    }
    if (n > INT_MAX) fail("cuda embedding_backward: {} indices exceed the sort's limit of {}", n, INT_MAX);
    const int items = static_cast<int>(n);
    const int end_bit = bits_for(num);  // keys lie in [0, num]
    size_t temp_bytes = 0;
    NABLA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const uint64_t*>(nullptr),
                                                     static_cast<uint64_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                                     static_cast<int64_t*>(nullptr), items, 0, end_bit, stream()));
    // One lease: keys in/out, positions in/out (8 bytes each per index), then CUB's storage.
    const size_t part = align_up(size_t(n) * 8);
    ScratchLease scratch(*this, 4 * part + align_up(temp_bytes));
    char* base = static_cast<char*>(scratch.get());
    auto* keys_in = reinterpret_cast<uint64_t*>(base);
    auto* keys_out = reinterpret_cast<uint64_t*>(base + part);
    auto* pos_in = reinterpret_cast<int64_t*>(base + 2 * part);
    auto* pos_out = reinterpret_cast<int64_t*>(base + 3 * part);
    void* temp = base + 4 * part;
    embedding_keys_kernel<<<grid(n), kBlock, 0, stream()>>>(keys_in, pos_in, indices, n, num, padding_idx);
    NABLA_CUDA_CHECK_LAUNCH();
    NABLA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, pos_in, pos_out, items, 0,
                                                     end_bit, stream()));
    const int blocks = static_cast<int>(std::min<int64_t>(num, max_blocks() * (kBlock / kRowBlock)));
    embedding_segment_sum_kernel<T><<<blocks, kRowBlock, 0, stream()>>>(
        static_cast<T*>(dweight), static_cast<const T*>(dy), keys_out, pos_out, n, num, dim);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace nabla::cuda
