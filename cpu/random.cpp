// CPU random fills: uniform and normal, from the counter-based Philox generator in
// core/philox.h. The loop runs over Philox blocks and writes every element a block yields, so
// each block is computed once; the values come from the block functions of core/philox.h, so
// they equal those of its element-by-element functions (and of the CUDA kernels).
#include <nabla/core/philox.h>
#include <nabla/cpu/cpu_backend.h>

namespace nabla::cpu {

namespace {

// out: (n); element i is element offset + i of the stream. block_values(words, T* dst) writes
// the kPerBlock elements of one block. Whole blocks are written straight into out; a block cut
// by either end of the range goes through a small buffer.
template <int kPerBlock, typename T, typename BlockValues>
void fill_blocks(T* out, int64_t n, uint64_t seed, uint64_t offset, BlockValues block_values) {
  if (n <= 0) return;
  uint64_t end = 0;
  // A range past 2^64 would wrap and write nothing (core's rng_take never hands one out).
  if (__builtin_add_overflow(offset, uint64_t(n), &end))
    fail("cpu random: elements {} .. {} + {} of the stream pass 2^64", offset, offset, n);
  const uint64_t first = offset / kPerBlock, last = (end - 1) / kPerBlock;
  auto partial = [&](uint64_t blk) {
    T values[kPerBlock];
    block_values(philox::block(seed, blk), values);
    for (int lane = 0; lane < kPerBlock; ++lane) {
      const uint64_t index = blk * kPerBlock + lane;
      if (index >= offset && index < end) out[index - offset] = values[lane];
    }
  };
  // Blocks [full_begin, full_end) lie wholly inside the range.
  const uint64_t full_begin = offset % kPerBlock == 0 ? first : first + 1;
  const uint64_t full_end = end % kPerBlock == 0 ? last + 1 : last;
  if (full_begin >= full_end) {
    for (uint64_t blk = first; blk <= last; ++blk) partial(blk);
    return;
  }
  if (full_begin != first) partial(first);
  if (full_end != last + 1) partial(last);
  T* base = out + (full_begin * kPerBlock - offset);
  parallel_for(int64_t(full_end - full_begin), kPerBlock * 8, [&](int64_t begin, int64_t stop) {
    for (int64_t k = begin; k < stop; ++k)
      block_values(philox::block(seed, full_begin + uint64_t(k)), base + k * kPerBlock);
  });
}

}  // namespace

void CpuBackend::rand_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                              double lo, double hi) {
  switch (dtype) {
    case DType::float32:
      return fill_blocks<philox::kUniformFloatPerBlock>(
          static_cast<float*>(out), n, seed, offset,
          [=](const philox::Words& w, float* dst) { philox::uniform_float_block(w, lo, hi, dst); });
    case DType::float64:
      return fill_blocks<philox::kUniformDoublePerBlock>(
          static_cast<double*>(out), n, seed, offset, [=](const philox::Words& w, double* dst) {
            philox::uniform_double_block(w, lo, hi, dst);
          });
    default: break;
  }
  fail("cpu rand_uniform: dtype {} is not supported (float32 or float64 expected)",
       dtype_name(dtype));
}

void CpuBackend::rand_normal(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                             double mean, double stddev) {
  switch (dtype) {
    case DType::float32:
      return fill_blocks<philox::kNormalFloatPerBlock>(
          static_cast<float*>(out), n, seed, offset, [=](const philox::Words& w, float* dst) {
            philox::normal_float_block(w, mean, stddev, dst);
          });
    case DType::float64:
      return fill_blocks<philox::kNormalDoublePerBlock>(
          static_cast<double*>(out), n, seed, offset, [=](const philox::Words& w, double* dst) {
            philox::normal_double_block(w, mean, stddev, dst);
          });
    default: break;
  }
  fail("cpu rand_normal: dtype {} is not supported (float32 or float64 expected)",
       dtype_name(dtype));
}

}  // namespace nabla::cpu
