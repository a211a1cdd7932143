// CPU-vs-CUDA parity of matmul and linear in float32, float64 and TF32, forward and backward.
// The parity check and the product tolerances (gemm_options) are in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- matrix products ---------------------------------------------------------------------------

struct MatmulCase {
  std::string name;
  Shape a;
  Layout la;
  Shape b;
  Layout lb;
};
void PrintTo(const MatmulCase& c, std::ostream* os) { *os << c.name; }

int64_t matmul_longest_sum(const MatmulCase& c) {
  const int64_t k = c.a.back();
  const Shape a2 = c.a.size() == 1 ? Shape{1, k} : c.a;
  const Shape b2 = c.b.size() == 1 ? Shape{k, 1} : c.b;
  Shape ba(a2.begin(), a2.end() - 2), bb(b2.begin(), b2.end() - 2);
  Shape batch = nb::broadcast_shapes(ba, bb, "test");
  const int64_t m = a2[a2.size() - 2], n = b2.back(), out = nb::numel_of(batch) * m * n;
  // forward: k terms; da: n (times b's broadcast); db: rows of a (times a's broadcast)
  return std::max({k, n, out / std::max<int64_t>(m, 1), out / std::max<int64_t>(n, 1)});
}

const std::vector<MatmulCase>& matmul_cases() {
  using L = Layout;
  static const std::vector<MatmulCase> c = {
      {"2d_7x5_5x3", {7, 5}, L::contiguous, {5, 3}, L::contiguous},
      {"2d_1x1_1x1", {1, 1}, L::contiguous, {1, 1}, L::contiguous},
      {"2d_33x65_65x17", {33, 65}, L::contiguous, {65, 17}, L::contiguous},
      {"2d_long_k_128x4097_4097x64", {128, 4097}, L::contiguous, {4097, 64}, L::contiguous},
      {"2d_257x129_129x1023", {257, 129}, L::contiguous, {129, 1023}, L::contiguous},
      {"2d_512x512_512x512", {512, 512}, L::contiguous, {512, 512}, L::contiguous},
      {"gemv_1x4097_4097x1", {1, 4097}, L::contiguous, {4097, 1}, L::contiguous},
      {"vec_9_mat_9x5", {9}, L::contiguous, {9, 5}, L::contiguous},
      {"stack_2x3x4_vec_4", {2, 3, 4}, L::contiguous, {4}, L::contiguous},
      {"batched_4x7x9_4x9x5", {4, 7, 9}, L::contiguous, {4, 9, 5}, L::contiguous},
      {"broadcast_3x1x7x9_4x9x5", {3, 1, 7, 9}, L::contiguous, {4, 9, 5}, L::contiguous},
      {"stack_5x7x9_mat_9x11", {5, 7, 9}, L::contiguous, {9, 11}, L::contiguous},
      {"mat_7x9_stack_5x9x11", {7, 9}, L::contiguous, {5, 9, 11}, L::contiguous},
      {"aT_7x9_9x5", {7, 9}, L::transposed, {9, 5}, L::contiguous},
      {"bT_7x9_9x5", {7, 9}, L::contiguous, {9, 5}, L::transposed},
      {"abT_33x65_65x17", {33, 65}, L::transposed, {65, 17}, L::transposed},
      {"batched_abT_4x7x9_4x9x5", {4, 7, 9}, L::transposed, {4, 9, 5}, L::transposed},
      {"narrow_ld_gap_7x9_9x5", {7, 9}, L::narrow, {9, 5}, L::narrow},
      {"strided_copy_7x9_9x5", {7, 9}, L::strided, {9, 5}, L::contiguous},
      {"k0_3x0_0x4", {3, 0}, L::contiguous, {0, 4}, L::contiguous},
      {"batched_long_k_2x16x4097_2x4097x8", {2, 16, 4097}, L::contiguous, {2, 4097, 8}, L::contiguous},
  };
  return c;
}

std::vector<MatmulCase> pick(const std::vector<MatmulCase>& all, const std::vector<std::string>& names) {
  std::vector<MatmulCase> out;
  for (const auto& c : all)
    if (std::find(names.begin(), names.end(), c.name) != names.end()) out.push_back(c);
  return out;
}

class Matmul : public CudaParamTest<MatmulCase> {
 protected:
  void run(Precision p) {
    const MatmulCase& c = GetParam();
    Tf32Guard tf32(p == Precision::tf32);
    EXPECT_TRUE(parity([](const auto& x) { return nb::matmul(x[0], x[1]); },
                       {arg(c.a, -1, 1, c.la), arg(c.b, -1, 1, c.lb)}, gemm_options(matmul_longest_sum(c), p)));
  }
};
std::string matmul_name(const ::testing::TestParamInfo<MatmulCase>& i) { return i.param.name; }

class MatmulF32 : public Matmul {};
TEST_P(MatmulF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulF32, ::testing::ValuesIn(matmul_cases()), matmul_name);

class MatmulF64 : public Matmul {};
TEST_P(MatmulF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulF64,
                         ::testing::ValuesIn(pick(matmul_cases(), {"2d_7x5_5x3", "2d_33x65_65x17",
                                                                   "2d_long_k_128x4097_4097x64", "batched_4x7x9_4x9x5",
                                                                   "broadcast_3x1x7x9_4x9x5", "aT_7x9_9x5",
                                                                   "batched_abT_4x7x9_4x9x5", "narrow_ld_gap_7x9_9x5",
                                                                   "k0_3x0_0x4"})),
                         matmul_name);

class MatmulTf32 : public Matmul {};
TEST_P(MatmulTf32, ForwardBackward) { run(Precision::tf32); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulTf32,
                         ::testing::ValuesIn(pick(matmul_cases(), {"2d_33x65_65x17", "2d_long_k_128x4097_4097x64",
                                                                   "2d_257x129_129x1023", "2d_512x512_512x512",
                                                                   "batched_4x7x9_4x9x5", "aT_7x9_9x5",
                                                                   "batched_long_k_2x16x4097_2x4097x8"})),
                         matmul_name);

// TF32 off (the default) must really be full float32, and on must really reach the tensor cores:
// on a 512^3 product they differ by far more than float32 rounding.
TEST_F(CudaTest, Tf32SwitchChangesProductsAndDefaultsOff) {
  EXPECT_FALSE(nb::tf32_enabled());
  Tensor a = nb::rand({512, 512}, {}, -1, 1), b = nb::rand({512, 512}, {}, -1, 1);
  Tensor ref = nb::matmul(a, b);
  Tensor ag = a.to(kCuda), bg = b.to(kCuda);
  Tensor strict = nb::matmul(ag, bg);
  EXPECT_TRUE(allclose(strict, ref, {1e-4, 1e-5 * std::sqrt(512.0)}, "TF32 off"));
  Tensor fast;
  {
    Tf32Guard on(true);
    fast = nb::matmul(ag, bg);
  }
  EXPECT_FALSE(nb::tf32_enabled()) << "the guard restores TF32 off";
  EXPECT_TRUE(allclose(fast, ref, {5e-3, 2e-3 * std::sqrt(512.0)}, "TF32 on"));
  const double diff = nb::max(nb::abs(nb::sub(fast, strict))).item();
  EXPECT_GT(diff, 1e-5) << "set_tf32(true) left the product bit-for-bit the float32 one: TF32 is not used";
}

// ---- linear ------------------------------------------------------------------------------------

struct LinearCase {
  std::string name;
  Shape x;
  Layout lx;
  int64_t out;
  bool bias;
};
void PrintTo(const LinearCase& c, std::ostream* os) { *os << c.name; }
const std::vector<LinearCase>& linear_cases() {
  using L = Layout;
  static const std::vector<LinearCase> c = {
      {"32x37_to_23_bias", {32, 37}, L::contiguous, 23, true},
      {"32x37_to_23_nobias", {32, 37}, L::contiguous, 23, false},
      {"4x5x37_to_23_bias", {4, 5, 37}, L::contiguous, 23, true},
      {"1x784_to_256_bias", {1, 784}, L::contiguous, 256, true},
      {"128x4097_to_33_bias", {128, 4097}, L::contiguous, 33, true},
      {"3x7_to_1_bias", {3, 7}, L::contiguous, 1, true},
      {"17x64T_to_10_bias", {17, 64}, L::transposed, 10, true},
      {"9x13narrow_to_5_bias", {9, 13}, L::narrow, 5, true},
      {"1025x129_to_257_bias", {1025, 129}, L::contiguous, 257, true},
  };
  return c;
}

class Linear : public CudaParamTest<LinearCase> {
 protected:
  void run(Precision p) {
    const LinearCase& c = GetParam();
    Tf32Guard tf32(p == Precision::tf32);
    const int64_t in = c.x.back(), rows = nb::numel_of(c.x) / in;
    std::vector<Arg> args = {arg(c.x, -1, 1, c.lx), arg({c.out, in}, -1, 1)};
    if (c.bias) args.push_back(arg({c.out}, -1, 1));
    auto f = [&](const std::vector<Tensor>& x) { return nb::linear(x[0], x[1], c.bias ? x[2] : Tensor()); };
    EXPECT_TRUE(parity(f, args, gemm_options(std::max({in, c.out, rows}), p)));
  }
};
std::string linear_name(const ::testing::TestParamInfo<LinearCase>& i) { return i.param.name; }

class LinearF32 : public Linear {};
TEST_P(LinearF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearF32, ::testing::ValuesIn(linear_cases()), linear_name);

class LinearF64 : public Linear {};
TEST_P(LinearF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearF64,
                         ::testing::Values(linear_cases()[0], linear_cases()[2], linear_cases()[4], linear_cases()[6]),
                         linear_name);

class LinearTf32 : public Linear {};
TEST_P(LinearTf32, ForwardBackward) { run(Precision::tf32); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearTf32,
                         ::testing::Values(linear_cases()[0], linear_cases()[3], linear_cases()[4], linear_cases()[8]),
                         linear_name);

}  // namespace
