// CPU-vs-CUDA parity of the random numbers: the same seed gives the same numbers on both devices.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

#include <cstring>
#include <limits>
#include <tuple>

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- random numbers: the same seed gives the same numbers on both devices --------------------

// Distance in units in the last place (0 where the bits are equal), through the sign-magnitude
// to two's-complement map that makes adjacent floats adjacent integers.
int64_t ulp_distance(double a, double b) {
  int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  if (ia < 0) ia = std::numeric_limits<int64_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int64_t>::min() - ib;
  return ia > ib ? ia - ib : ib - ia;
}

using RandomParam = std::tuple<DType, int64_t>;
class Random : public CudaParamTest<RandomParam> {};

// rand: bit-identical for both dtypes (ranges of power-of-two width keep the affine map exact).
TEST_P(Random, UniformBitIdentical) {
  const auto [t, n] = GetParam();
  const std::vector<std::pair<double, double>> ranges = {{0.0, 1.0}, {-2.0, 2.0}, {-3.0, 5.0}};
  for (const auto& [lo, hi] : ranges) {
    SCOPED_TRACE(fmt::format("[{}, {})", lo, hi));
    nb::manual_seed(1234);
    Tensor c = nb::rand({n}, {.dtype = t}, lo, hi);
    nb::manual_seed(1234);
    Tensor g = nb::rand({n}, {.dtype = t, .device = kCuda}, lo, hi);
    EXPECT_TRUE(same_bits(g, c, "rand"));
  }
}

// randn: float32 bit-identical but for the rare element whose double result lands across a float
// rounding boundary (core/philox.h: about 1 in 2^28); float64 within a few ulps, because CUDA's
// log/sin/cos are not glibc's.
// How far a CUDA normal draw may be from the CPU's. Both compute mean + stddev * z in double from
// the same Philox words, but z = sqrt(-2 log u1) * cos(2 pi u2) goes through log, sin and cos,
// which CUDA's libdevice and glibc round differently (each within 1-2 ulps). That puts an
// error of a few ulps *of z* into the result; near z = -mean / stddev the sum cancels, and the
// same absolute error is hundreds of ulps of the (tiny) result. So the bound is on the size of
// the terms: 16 ulps of |mean| + |stddev * z| (log 1 ulp, halved by the sqrt; cos 2 ulps; the
// product and the sum 1/2 ulp each: about 4, with room), z read back from the CPU's value. For
// float32, rounding the double to float adds at most 1 ulp of the float result.
double normal_allowed_error(DType t, double mean, double cpu_value) {
  const double terms = std::abs(mean) + std::abs(cpu_value - mean);
  double allowed = 16 * std::numeric_limits<double>::epsilon() * terms;
  if (t == DType::float32) {
    const float f = static_cast<float>(cpu_value);
    allowed += std::nextafter(std::abs(f), std::numeric_limits<float>::infinity()) - std::abs(f);
  }
  return allowed;
}

// The bound itself (runs without a GPU): a 1-ulp change of z at the cancellation point passes, an
// error of a thousand ulps of the terms does not, and far from it 16 ulps of the result pass.
TEST(NormalTolerance, BoundedByTheTermsNotTheResult) {
  const double mean = -1.0, stddev = 0.5;
  const double z = 2.0 + 0x1p-40;  // mean + stddev * z = 2^-41: cancellation
  const double cpu = mean + stddev * z;
  const double gpu = mean + stddev * std::nextafter(z, 3.0);  // z one ulp off
  EXPECT_GT(ulp_distance(gpu, cpu), 1000) << "the case must cancel, or it tests nothing";
  EXPECT_LE(std::abs(gpu - cpu), normal_allowed_error(DType::float64, mean, cpu));
  EXPECT_GT(1000 * std::numeric_limits<double>::epsilon() * 2, normal_allowed_error(DType::float64, mean, cpu));
  const double far = mean + stddev * 0.3;
  double off = far;
  for (int i = 0; i < 8; ++i) off = std::nextafter(off, 0.0);
  EXPECT_LE(std::abs(off - far), normal_allowed_error(DType::float64, mean, far));
  EXPECT_LE(std::abs(double(std::nextafter(float(far), 0.f)) - double(float(far))),
            normal_allowed_error(DType::float32, mean, double(float(far))));
}

TEST_P(Random, NormalMatches) {
  const auto [t, n] = GetParam();
  const std::vector<std::pair<double, double>> params = {{0.0, 1.0}, {-1.0, 0.5}};
  for (const auto& [mean, stddev] : params) {
    SCOPED_TRACE(fmt::format("mean {}, stddev {}", mean, stddev));
    nb::manual_seed(4321);
    Tensor c = nb::randn({n}, {.dtype = t}, mean, stddev);
    nb::manual_seed(4321);
    Tensor g = nb::randn({n}, {.dtype = t, .device = kCuda}, mean, stddev);
    const auto cv = c.to_vector<double>(), gv = g.to_vector<double>();
    int64_t differ = 0, bad = 0, at = -1;
    double worst = 0;  // error over allowed
    for (size_t i = 0; i < cv.size(); ++i) {
      const double err = std::isnan(gv[i]) ? std::numeric_limits<double>::infinity() : std::abs(gv[i] - cv[i]);
      if (err > 0) ++differ;
      const double r = err / normal_allowed_error(t, mean, cv[i]);
      if (r > 1) ++bad;
      if (r > worst) {
        worst = r;
        at = static_cast<int64_t>(i);
      }
    }
    EXPECT_EQ(bad, 0) << bad << " elements over the bound; worst at element " << at << ": cuda "
                      << fmt::format("{:.17g}, cpu {:.17g}, {:.3g}x allowed", gv[at], cv[at], worst);
    // In float32 the double results round to the same float almost always.
    if (t == DType::float32) {
      EXPECT_LE(differ, 1 + n / (1 << 22)) << differ << " of " << n << " elements differ";
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Random,
                         ::testing::Combine(::testing::Values(DType::float32, DType::float64),
                                            ::testing::Values(int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<RandomParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_n" +
                                  std::to_string(std::get<1>(i.param));
                         });

// A sequence of calls of odd sizes advances the generator the same way on both devices.
TEST_F(CudaTest, RandomSequenceAdvancesAlike) {
  auto draw = [](nb::Device d) {
    nb::manual_seed(77);
    std::vector<Tensor> out;
    out.push_back(nb::rand({7}, {.device = d}));
    out.push_back(nb::rand({3, 5}, {.dtype = DType::float64, .device = d}, -1, 1));
    out.push_back(nb::rand({1023}, {.device = d}, -2, 2));
    out.push_back(nb::rand({1}, {.device = d}));
    out.push_back(nb::rand({4097}, {.dtype = DType::float64, .device = d}));
    return out;
  };
  auto c = draw(nb::Device::cpu());
  const uint64_t offset_cpu = nb::rng_state().offset;
  auto g = draw(kCuda);
  EXPECT_EQ(nb::rng_state().offset, offset_cpu) << "the CUDA draws consumed a different count of numbers";
  for (size_t i = 0; i < c.size(); ++i) EXPECT_TRUE(same_bits(g[i], c[i], fmt::format("draw {}", i)));
}

// The same seed gives the same initial weights on both devices (DESIGN: Numbers).
TEST_F(CudaTest, SameSeedSameDenseWeights) {
  nb::manual_seed(3);
  nb::Dense cpu(37, 23);
  nb::manual_seed(3);
  nb::Dense gpu(37, 23, {.device = kCuda});
  EXPECT_TRUE(same_bits(gpu.weight(), cpu.weight(), "weight"));
  EXPECT_TRUE(same_bits(gpu.bias(), cpu.bias(), "bias"));
  nb::manual_seed(4);
  nb::Dense cpu_normal(257, 129, {.weight_init = nb::Init::he_normal});
  nb::manual_seed(4);
  nb::Dense gpu_normal(257, 129, {.weight_init = nb::Init::he_normal, .device = kCuda});
  EXPECT_TRUE(same_bits(gpu_normal.weight(), cpu_normal.weight(), "he_normal weight"));
}

}  // namespace
