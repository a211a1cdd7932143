// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3" (SC 2011), and the mapping from its output to nabla's random numbers.
//
// Everything here is a constexpr function of plain integers and doubles with no dependency but
// <math.h>, so that the CPU backend and CUDA device code (nvcc --expt-relaxed-constexpr) call
// the same code. Element `index` of a random tensor is a pure function of (seed, index):
//   - the key is the seed, the counter is the index of a block of 4 random words;
//   - uniform float32: 4 elements per block, 24 bits each;  float64: 2 per block, 53 bits each;
//   - normal: Box-Muller on a pair of uniforms, cos for the first element of the pair and sin
//     for the second; float32 makes 2 pairs of 32-bit uniforms per block, float64 1 pair of
//     53-bit uniforms.
// The uniform bits are identical on every device. The affine map and Box-Muller are computed in
// double and rounded once to the output type, so float32 results agree across devices unless
// two libm's (or a fused multiply-add) move a double across a float rounding boundary, about
// 1 element in 2^28. Uniform float32 values lie in [lo, hi), except that with 0 < lo the
// largest draws may round up to hi itself.
#pragma once

#include <math.h>

#include <cstdint>

namespace nabla::philox {

struct Words {
  uint32_t w[4];
};

// One round's multipliers and the Weyl sequence constants that bump the key between rounds.
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

constexpr Words philox4x32_10(Words ctr, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{kMul0} * ctr.w[0];
    const uint64_t p1 = uint64_t{kMul1} * ctr.w[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = Words{{hi1 ^ ctr.w[1] ^ key0, lo1, hi0 ^ ctr.w[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The 4 random words of block `block` of the stream `seed`.
constexpr Words block(uint64_t seed, uint64_t block) {
  return philox4x32_10(Words{{uint32_t(block), uint32_t(block >> 32), 0u, 0u}}, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Elements of each dtype and distribution that one block yields.
constexpr int kUniformFloatPerBlock = 4;
constexpr int kUniformDoublePerBlock = 2;
constexpr int kNormalFloatPerBlock = 4;
constexpr int kNormalDoublePerBlock = 2;

// In [0, 1): 24 bits, exactly representable in float.
constexpr double unit_24(uint32_t w) { return double(w >> 8) * 0x1p-24; }
// In [0, 1): 53 bits, exactly representable in double.
constexpr double unit_53(uint32_t hi, uint32_t lo) {
  return double(((uint64_t{hi} << 32) | lo) >> 11) * 0x1p-53;
}

// All the elements one block yields, written to out[0, k*PerBlock). The per-element functions
// below pick one of them, so a kernel may work either way and get the same numbers.
constexpr void uniform_float_block(const Words& b, double lo, double hi, float* out) {
  for (int lane = 0; lane < kUniformFloatPerBlock; ++lane)
    out[lane] = float(lo + (hi - lo) * unit_24(b.w[lane]));
}
constexpr void uniform_double_block(const Words& b, double lo, double hi, double* out) {
  for (int lane = 0; lane < kUniformDoublePerBlock; ++lane)
    out[lane] = lo + (hi - lo) * unit_53(b.w[2 * lane], b.w[2 * lane + 1]);
}

// Box-Muller: u1 in (0, 1] (never log(0)), u2 in [0, 1) give two independent N(0, 1) draws,
// r cos(theta) and r sin(theta).
struct NormalPair {
  double first, second;
};
constexpr NormalPair box_muller(double u1, double u2) {
  const double r = ::sqrt(-2.0 * ::log(u1));
  const double theta = 6.283185307179586476925286766559 * u2;
  return {r * ::cos(theta), r * ::sin(theta)};
}
constexpr void normal_float_block(const Words& b, double mean, double stddev, float* out) {
  for (int pair = 0; pair < 2; ++pair) {
    const double u1 = (double(b.w[2 * pair]) + 1.0) * 0x1p-32;
    const double u2 = double(b.w[2 * pair + 1]) * 0x1p-32;
    const NormalPair z = box_muller(u1, u2);
    out[2 * pair] = float(mean + stddev * z.first);
    out[2 * pair + 1] = float(mean + stddev * z.second);
  }
}
constexpr void normal_double_block(const Words& b, double mean, double stddev, double* out) {
  const NormalPair z = box_muller(1.0 - unit_53(b.w[0], b.w[1]), unit_53(b.w[2], b.w[3]));
  out[0] = mean + stddev * z.first;
  out[1] = mean + stddev * z.second;
}

// Element `index` of the stream `seed`: element i of a call with offset k is index k + i.
constexpr float uniform_float_at(uint64_t seed, uint64_t index, double lo, double hi) {
  float out[kUniformFloatPerBlock] = {};
  uniform_float_block(block(seed, index / kUniformFloatPerBlock), lo, hi, out);
  return out[index % kUniformFloatPerBlock];
}
constexpr double uniform_double_at(uint64_t seed, uint64_t index, double lo, double hi) {
  double out[kUniformDoublePerBlock] = {};
  uniform_double_block(block(seed, index / kUniformDoublePerBlock), lo, hi, out);
  return out[index % kUniformDoublePerBlock];
}
constexpr float normal_float_at(uint64_t seed, uint64_t index, double mean, double stddev) {
  float out[kNormalFloatPerBlock] = {};
  normal_float_block(block(seed, index / kNormalFloatPerBlock), mean, stddev, out);
  return out[index % kNormalFloatPerBlock];
}
constexpr double normal_double_at(uint64_t seed, uint64_t index, double mean, double stddev) {
  double out[kNormalDoublePerBlock] = {};
  normal_double_block(block(seed, index / kNormalDoublePerBlock), mean, stddev, out);
  return out[index % kNormalDoublePerBlock];
}

}  // namespace nabla::philox
