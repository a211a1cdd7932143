// CPU-vs-CUDA parity of tensors themselves: the NaN fill of new allocations that the parity
// suites rely on, casts among all four dtypes, factories, fill and copies across devices.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

#include <random>
#include <tuple>

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- the premise: new allocations read as NaN ----------------------------------------------

TEST_F(CudaTest, PoisonedAllocationsReadAsNanOrMinusOne) {
  if (!poison_wanted()) GTEST_SKIP() << "NABLA_TEST_POISON=0";
  for (DType t : {DType::float32, DType::float64}) {
    for (double v : Tensor::empty({kBig}, {.dtype = t, .device = kCuda}).to_vector<double>())
      ASSERT_TRUE(std::isnan(v)) << nb::dtype_name(t) << ": poisoning is off, so the parity checks cannot see "
                                 << "unwritten outputs";
  }
  for (DType t : {DType::int32, DType::int64})
    for (int64_t v : Tensor::empty({1023}, {.dtype = t, .device = kCuda}).to_vector<int64_t>()) ASSERT_EQ(v, -1);
}

// ---- casts among all four dtypes ------------------------------------------------------------

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> d = {DType::float32, DType::float64, DType::int32, DType::int64};
  return d;
}

// Values every dtype pair converts the same way on both devices: floats on a 1/4 grid in
// [-1000, 1000] (truncation toward zero to integers), int32 over its whole range, int64 up to
// 2^62 (rounding to float), with the usual edge values first.
Tensor cast_source(DType t, int64_t n) {
  std::mt19937_64 gen(static_cast<uint64_t>(n) * 31 + static_cast<int>(t));
  std::vector<double> fv;
  std::vector<int64_t> iv;
  for (int64_t i = 0; i < n; ++i) {
    if (nb::is_floating(t)) {
      static const double edge[] = {0.0, -0.0, 0.25, -0.75, 999.75, -1000.0, 1.5, -2.5};
      fv.push_back(i < 8 ? edge[i] : std::round(std::uniform_real_distribution<double>(-1000, 1000)(gen) * 4) / 4);
    } else if (t == DType::int32) {
      static const int64_t edge[] = {0, -1, 1, INT32_MAX, INT32_MIN, 16777217, -16777217, 12345};
      iv.push_back(i < 8 ? edge[i] : std::uniform_int_distribution<int64_t>(INT32_MIN, INT32_MAX)(gen));
    } else {
      static const int64_t edge[] = {0, -1, (int64_t{1} << 53) + 1, -(int64_t{1} << 62), int64_t{1} << 62,
                                     16777217, int64_t{1} << 40, INT32_MIN - int64_t{5}};
      iv.push_back(i < 8 ? edge[i] : std::uniform_int_distribution<int64_t>(-(int64_t{1} << 62), int64_t{1} << 62)(gen));
    }
  }
  return nb::is_floating(t) ? nb::from_vector(fv, {n}, {.dtype = t}) : nb::from_vector(iv, {n}, {.dtype = t});
}

using CastParam = std::tuple<DType, DType, int64_t>;
class Cast : public CudaParamTest<CastParam> {};
TEST_P(Cast, BitExact) {
  const auto [from, to, n] = GetParam();
  Tensor src = cast_source(from, n);
  EXPECT_TRUE(same_bits(src.to(kCuda).to(to), src.to(to), "contiguous"));
  // A strided source goes through the strided copy first.
  if (n > 2) {
    Tensor strided = src.slice(0, 1, n, 2);
    EXPECT_TRUE(same_bits(src.to(kCuda).slice(0, 1, n, 2).to(to), strided.to(to), "strided source"));
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Cast,
                         ::testing::Combine(::testing::ValuesIn(all_dtypes()), ::testing::ValuesIn(all_dtypes()),
                                            ::testing::Values(int64_t{7}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<CastParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_to_" +
                                  nb::dtype_name(std::get<1>(i.param)) + "_n" + std::to_string(std::get<2>(i.param));
                         });

// ---- factories, fill and copy -----------------------------------------------------------------

using FactoryParam = std::tuple<DType, int64_t>;
class Factory : public CudaParamTest<FactoryParam> {};
TEST_P(Factory, ZerosOnesFullFillMatchCpu) {
  const auto [t, n] = GetParam();
  const Shape s = n == 1 ? Shape{1} : Shape{n};
  const nb::TensorOptions c{.dtype = t}, g{.dtype = t, .device = kCuda};
  EXPECT_TRUE(same_bits(nb::zeros(s, g), nb::zeros(s, c), "zeros"));
  EXPECT_TRUE(same_bits(nb::ones(s, g), nb::ones(s, c), "ones"));
  EXPECT_TRUE(same_bits(nb::full(s, -2.75, g), nb::full(s, -2.75, c), "full(-2.75)"));  // integers truncate
  const double big = nb::is_floating(t) ? 3.0e38 : 2147483647.0;
  EXPECT_TRUE(same_bits(nb::full(s, big, g), nb::full(s, big, c), "full(big)"));
  Tensor a = Tensor::empty(s, g);
  a.fill_(7.5);
  EXPECT_TRUE(same_bits(a, nb::full(s, 7.5, c), "fill_"));
  // In place on views: an odd offset (contiguous, misaligned) and a step-2 slice.
  if (n > 2) {
    Tensor gd = nb::zeros(s, g), cd = nb::zeros(s, c);
    gd.slice(0, 1, n).fill_(3);
    cd.slice(0, 1, n).fill_(3);
    gd.slice(0, 0, n, 2).fill_(-4);
    cd.slice(0, 0, n, 2).fill_(-4);
    EXPECT_TRUE(same_bits(gd, cd, "fill_ on views"));
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Factory,
                         ::testing::Combine(::testing::ValuesIn(all_dtypes()),
                                            ::testing::Values(int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<FactoryParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_n" +
                                  std::to_string(std::get<1>(i.param));
                         });

TEST_F(CudaTest, ArangeScalarFromVectorMatchCpu) {
  for (DType t : all_dtypes()) {
    SCOPED_TRACE(nb::dtype_name(t));
    const nb::TensorOptions c{.dtype = t}, g{.dtype = t, .device = kCuda};
    EXPECT_TRUE(same_bits(nb::arange(4097, g), nb::arange(4097, c), "arange(n)"));
    EXPECT_TRUE(same_bits(nb::arange(-3.0, 1000.5, 0.7, g), nb::arange(-3.0, 1000.5, 0.7, c), "arange(start, end, step)"));
    EXPECT_TRUE(same_bits(nb::scalar(-6.25, g), nb::scalar(-6.25, c), "scalar"));
    EXPECT_TRUE(same_bits(nb::from_vector({1.5, -2, 3.25, 4e6}, {2, 2}, g), nb::from_vector({1.5, -2, 3.25, 4e6}, {2, 2}, c),
                          "from_vector"));
  }
}

TEST_F(CudaTest, CopyIntoStridedViewsAcrossDevices) {
  Tensor src = nb::rand({5, 9}, {}, -2, 2);
  Tensor g = nb::zeros({5, 20}, {.device = kCuda}), c = nb::zeros({5, 20});
  g.slice(1, 1, 19, 2).copy_(src);           // host to a strided device view
  c.slice(1, 1, 19, 2).copy_(src);
  EXPECT_TRUE(same_bits(g, c, "host to strided device view"));
  Tensor back = nb::zeros({9, 5});
  back.copy_(g.slice(1, 1, 19, 2).transpose(0, 1));  // strided device view to host
  EXPECT_TRUE(same_bits(back, src.transpose(0, 1).contiguous(), "strided device view to host"));
  Tensor g2 = nb::zeros({9, 5}, {.device = kCuda});
  g2.copy_(g.slice(1, 1, 19, 2).transpose(0, 1));  // device to device, transposing
  EXPECT_TRUE(same_bits(g2, back, "device to device"));
  Tensor bcast = nb::zeros({4, 9}, {.device = kCuda, .requires_grad = false});
  bcast.copy_(src.slice(0, 2, 3));  // a [1, 9] row broadcast into [4, 9]
  EXPECT_TRUE(same_bits(bcast, src.slice(0, 2, 3).expand({4, 9}).contiguous(), "broadcast copy"));
}

}  // namespace
