// Per-channel reductions over x (n, c, m) contiguous, the layout of batch-norm inputs and of
// convolution outputs (m = oh * ow). Internal to cuda/ (norm.cu, conv.cu through channel_sum).
//
// Two launches. The first splits each channel's n * m elements into `pieces` and writes one
// partial accumulator per piece; the caller's second kernel merges a channel's partials in
// piece order. Every piece is reduced in a fixed order (a thread's own elements in sequence,
// then CUB's fixed tree over the block), so results are deterministic: no atomics anywhere.
//
// Two ways to split, chosen by m:
//   planes  (m >= kMinPlane): a channel's elements are runs of m contiguous values, one run per
//           sample. Its flattened range [0, n m) is cut into `pieces` equal spans, one block per
//           span, threads striding through it (coalesced within each run).
//   columns (m <  kMinPlane): the runs are too short for a block. x is read as n rows of c m
//           columns; one thread per (column, row chunk), so neighbouring threads read
//           neighbouring columns. A channel has m columns times `row_chunks` partials.
// Both spread a channel over many blocks when n m is large and c small, so a few channels of
// many elements still fill the device.
//
// An Op provides: `Acc` (plain data), `static __device__ Acc identity()`,
// `static __device__ Acc merge(const Acc&, const Acc&)` (associative up to rounding; merged
// in a fixed order), and `__device__ void push(Acc&, int64_t idx, int64_t ch) const`, which adds
// element idx (the flat index into x) of channel ch.
#pragma once

#include <nabla/cuda/cuda_backend.h>

#include <cub/cub.cuh>

#include <algorithm>
#include <cstdint>

namespace nabla::cuda::channel {

constexpr int64_t kMinPlane = 32;           // shortest run handled by the planes split
constexpr int64_t kMinPerBlock = 4096;      // elements a block should get at least (planes)
constexpr int64_t kMinRowsPerThread = 64;   // rows a thread should get at least (columns)
constexpr int64_t kMaxPieces = 1024;        // partials per channel, merged by one thread
constexpr int64_t kMaxGrid = 65535;         // blocks of one launch; more work is looped over

struct Split {
  bool columns = false;
  int64_t pieces = 1;      // partials per channel
  int64_t span = 0;        // planes: elements per piece; columns: rows per chunk
  int64_t row_chunks = 1;  // columns only
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// n * m >= 1 and c >= 1.
inline Split split_for(const CudaBackend& be, int64_t n, int64_t c, int64_t m) {
  Split s;
  const int64_t nm = n * m;
  if (m >= kMinPlane) {
    const int64_t per_channel_blocks = std::max<int64_t>(1, be.max_blocks() / c);
    s.pieces = std::clamp<int64_t>(ceil_div(nm, kMinPerBlock), 1, std::min(per_channel_blocks, kMaxPieces));
    s.span = ceil_div(nm, s.pieces);
    s.pieces = ceil_div(nm, s.span);  // no empty piece
  } else {
    s.columns = true;
    const int64_t cols = c * m;
    const int64_t want_threads = be.max_blocks() * kBlock;
    const int64_t chunks_for_device = std::max<int64_t>(1, want_threads / cols);
    s.row_chunks = std::clamp<int64_t>(ceil_div(n, kMinRowsPerThread), 1,
                                       std::min(chunks_for_device, std::max<int64_t>(1, kMaxPieces / m)));
    s.span = ceil_div(n, s.row_chunks);
    s.row_chunks = ceil_div(n, s.span);
    s.pieces = s.row_chunks * m;
  }
  return s;
}

template <class Op>
struct Merge {
  __device__ typename Op::Acc operator()(const typename Op::Acc& a, const typename Op::Acc& b) const {
    return Op::merge(a, b);
  }
};

// partials: (c, pieces). One block per (channel, piece), looped when there are more.
template <class Op>
__global__ void __launch_bounds__(kBlock)
    planes_kernel(typename Op::Acc* partials, Op op, int64_t n, int64_t c, int64_t m, int64_t pieces, int64_t span) {
  using Acc = typename Op::Acc;
  using BlockReduce = cub::BlockReduce<Acc, kBlock>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t nm = n * m;
  for (int64_t item = blockIdx.x; item < c * pieces; item += gridDim.x) {
    const int64_t ch = item / pieces, p = item - ch * pieces;
    const int64_t begin = p * span, end = begin + span < nm ? begin + span : nm;
    Acc acc = Op::identity();
    for (int64_t e = begin + threadIdx.x; e < end; e += kBlock) {
      const int64_t i = e / m, j = e - i * m;
      op.push(acc, (i * c + ch) * m + j, ch);
    }
    acc = BlockReduce(tmp).Reduce(acc, Merge<Op>{});  // valid in thread 0 only
    if (threadIdx.x == 0) partials[item] = acc;
    __syncthreads();  // before the next item reuses tmp
  }
}

// partials: (c, row_chunks, m). One thread per (row chunk, column).
template <class Op>
__global__ void columns_kernel(typename Op::Acc* partials, Op op, int64_t n, int64_t c, int64_t m,
                               int64_t row_chunks, int64_t span) {
  using Acc = typename Op::Acc;
  const int64_t cols = c * m, total = cols * row_chunks;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / cols, col = t - r * cols;
    const int64_t ch = col / m, j = col - ch * m;
    const int64_t begin = r * span, end = begin + span < n ? begin + span : n;
    Acc acc = Op::identity();
    for (int64_t i = begin; i < end; ++i) op.push(acc, i * cols + col, ch);
    partials[(ch * row_chunks + r) * m + j] = acc;
  }
}

// Writes partials (c, s.pieces) for op over x (n, c, m).
template <class Op>
void launch_partials(const CudaBackend& be, typename Op::Acc* partials, const Op& op, const Split& s, int64_t n,
                     int64_t c, int64_t m) {
  if (s.columns) {
    const int grid = be.grid(c * m * s.row_chunks);
    columns_kernel<Op><<<grid, kBlock, 0, be.stream()>>>(partials, op, n, c, m, s.row_chunks, s.span);
  } else {
    const int grid = static_cast<int>(std::min<int64_t>(c * s.pieces, kMaxGrid));
    planes_kernel<Op><<<grid, kBlock, 0, be.stream()>>>(partials, op, n, c, m, s.pieces, s.span);
  }
  NABLA_CUDA_CHECK_LAUNCH();
}

// The merge of one channel's partials (pieces of them), in order.
template <class Op>
__device__ typename Op::Acc merge_pieces(const typename Op::Acc* p, int64_t pieces) {
  typename Op::Acc acc = p[0];
  for (int64_t i = 1; i < pieces; ++i) acc = Op::merge(acc, p[i]);
  return acc;
}

// A sum of the elements of T in double.
template <typename T>
struct SumOp {
  struct Acc {
    double s;
  };
  const T* x;  // (n, c, m)
  static __device__ Acc identity() { return {0.0}; }
  static __device__ Acc merge(const Acc& a, const Acc& b) { return {a.s + b.s}; }
  __device__ void push(Acc& a, int64_t idx, int64_t) const { a.s += static_cast<double>(x[idx]); }
};

}  // namespace nabla::cuda::channel
