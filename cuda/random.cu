// CUDA random fills: uniform and normal, from the counter-based Philox generator in
// core/philox.h, element for element the numbers of the CPU backend (cpu/random.cpp).
//
// As on the CPU, element i of a call is element offset + i of the stream `seed`, which is lane
// (offset + i) % P of Philox block (offset + i) / P, P being the dtype's and distribution's
// elements per block. One thread computes one whole block and writes the lanes of it that fall
// inside [offset, offset + n), so a block cut by either end of the range is handled like any
// other.
//
// The random words (philox::block), their conversion to uniforms (philox::unit_24, unit_53) and
// Box-Muller (philox::box_muller) are core/philox.h's own functions. The last step, lo + (hi -
// lo) * u or mean + stddev * z, is written out here with _rn intrinsics: nvcc would contract
// philox.h's expression into one fma (rounded once) where the CPU rounds the product and then
// the sum, and float64 uniforms would then differ in the last bit. Each *_block function below
// copies the lane layout of its namesake in core/philox.h; keep the two in step.
#include <nabla/core/philox.h>
#include <nabla/cuda/cuda_backend.h>

#include <cstdint>

namespace nabla::cuda {

namespace {

// base + scale * u with the product rounded before the sum, as the CPU computes it. This and
// the block functions below are host code too, so that a test without a GPU can compare them with
// core/philox.h bit for bit.
__host__ __device__ __forceinline__ double add_product(double base, double scale, double u) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(base, __dmul_rn(scale, u));
#else
  return base + scale * u;
#endif
}

// Each distribution: the element type, the elements one Philox block yields, and the block's
// values from its 4 words (as philox::<name>_block).
struct UniformFloat {
  using T = float;
  static constexpr int kPerBlock = philox::kUniformFloatPerBlock;
  __host__ __device__ static void block(const philox::Words& b, double lo, double hi, float* out) {
    for (int lane = 0; lane < kPerBlock; ++lane)
      out[lane] = float(add_product(lo, hi - lo, philox::unit_24(b.w[lane])));
  }
};

struct UniformDouble {
  using T = double;
  static constexpr int kPerBlock = philox::kUniformDoublePerBlock;
  __host__ __device__ static void block(const philox::Words& b, double lo, double hi, double* out) {
    for (int lane = 0; lane < kPerBlock; ++lane)
      out[lane] = add_product(lo, hi - lo, philox::unit_53(b.w[2 * lane], b.w[2 * lane + 1]));
  }
};

struct NormalFloat {
  using T = float;
  static constexpr int kPerBlock = philox::kNormalFloatPerBlock;
  __host__ __device__ static void block(const philox::Words& b, double mean, double stddev,
                                        float* out) {
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 = (double(b.w[2 * pair]) + 1.0) * 0x1p-32;  // (0, 1]
      const double u2 = double(b.w[2 * pair + 1]) * 0x1p-32;      // [0, 1)
      const philox::NormalPair z = philox::box_muller(u1, u2);
      out[2 * pair] = float(add_product(mean, stddev, z.first));
      out[2 * pair + 1] = float(add_product(mean, stddev, z.second));
    }
  }
};

struct NormalDouble {
  using T = double;
  static constexpr int kPerBlock = philox::kNormalDoublePerBlock;
  __host__ __device__ static void block(const philox::Words& b, double mean, double stddev,
                                        double* out) {
    const philox::NormalPair z =
        philox::box_muller(1.0 - philox::unit_53(b.w[0], b.w[1]), philox::unit_53(b.w[2], b.w[3]));
    out[0] = add_product(mean, stddev, z.first);
    out[1] = add_product(mean, stddev, z.second);
  }
};

// Writes the lanes of Philox block `blk` that lie in [offset, end) to out[index - offset].
template <typename Dist>
__host__ __device__ __forceinline__ void write_block(typename Dist::T* out, uint64_t blk,
                                                     uint64_t seed, uint64_t offset, uint64_t end,
                                                     double p0, double p1) {
  typename Dist::T values[Dist::kPerBlock];
  Dist::block(philox::block(seed, blk), p0, p1, values);
  for (int lane = 0; lane < Dist::kPerBlock; ++lane) {
    const uint64_t index = blk * Dist::kPerBlock + lane;
    if (index >= offset && index < end) out[index - offset] = values[lane];
  }
}

// out: (end - offset); blocks first .. first + blocks - 1 cover [offset, end).
template <typename Dist>
__global__ void random_kernel(typename Dist::T* out, uint64_t seed, uint64_t offset, uint64_t end,
                              uint64_t first, int64_t blocks, double p0, double p1) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < blocks; k += stride)
    write_block<Dist>(out, first + uint64_t(k), seed, offset, end, p0, p1);
}

// Fills out[0, n) with elements offset .. offset + n - 1 of the stream `seed`; (p0, p1) is
// (lo, hi) or (mean, stddev).
template <typename Dist>
void launch_random(const CudaBackend& be, void* out, int64_t n, uint64_t seed, uint64_t offset,
                   double p0, double p1) {
  const uint64_t end = offset + uint64_t(n);
  const uint64_t first = offset / Dist::kPerBlock, last = (end - 1) / Dist::kPerBlock;
  const int64_t blocks = int64_t(last - first + 1);
  random_kernel<Dist><<<be.grid(blocks), kBlock, 0, be.stream()>>>(
      static_cast<typename Dist::T*>(out), seed, offset, end, first, blocks, p0, p1);
  NABLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::rand_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                               double lo, double hi) {
  if (n <= 0) return;
  DeviceGuard guard(device());
  switch (dtype) {
    case DType::float32: return launch_random<UniformFloat>(*this, out, n, seed, offset, lo, hi);
    case DType::float64: return launch_random<UniformDouble>(*this, out, n, seed, offset, lo, hi);
    default: break;
  }
  fail("cuda rand_uniform: dtype {} is not supported (float32 or float64 expected)",
       dtype_name(dtype));
}

void CudaBackend::rand_normal(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                              double mean, double stddev) {
  if (n <= 0) return;
  DeviceGuard guard(device());
  switch (dtype) {
    case DType::float32:
      return launch_random<NormalFloat>(*this, out, n, seed, offset, mean, stddev);
    case DType::float64:
      return launch_random<NormalDouble>(*this, out, n, seed, offset, mean, stddev);
    default: break;
  }
  fail("cuda rand_normal: dtype {} is not supported (float32 or float64 expected)",
       dtype_name(dtype));
}

}  // namespace nabla::cuda
