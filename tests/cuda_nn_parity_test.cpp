// CPU-vs-CUDA parity of the convolution, pooling and batch-norm ops, forward and backward, plus
// the properties of the CUDA convolution that the CPU cannot show: its per-shape algorithm cache
// gives the same bits on reuse, TF32 is a separate plan, and steps don't grow device memory.
//
// The CPU backend is the reference. Each check makes random CPU inputs (batch > 1, odd sizes,
// contiguous or a transposed / sliced view), copies them to cuda:0, runs the same op on both,
// compares outputs with |cuda - cpu| <= atol + rtol * |cpu|, then runs backward of sum(out * w)
// with one random w on both and compares every input's gradient. New device allocations are
// filled with NaN (cuda::test_hooks::set_poison_allocations), so an element a kernel never writes shows up
// as NaN, and NaN on the CUDA side always fails (unless the test expects it).
//
// Tolerances, float32: 1e-3 relative, absolute terms growing with sqrt(length of the longest
// sum). float64: 1e-10. TF32: 5e-3 relative, 2e-3 * sqrt(length) absolute.
//
// Every test skips itself without a CUDA device. NABLA_TEST_POISON=0 turns the NaN fill off (for
// compute-sanitizer's initcheck). CudaNnMemory.* reads the device's free memory: run it alone
// (scripts/gpu-check.sh runs it serially and leaves it out under the sanitizer).
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include "cuda_test_util.h"

#include <nabla/cuda/conv_fallback.cuh>
#include <nabla/cuda/test_hooks.cuh>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;

namespace {

using nabla::test::CudaParamTest;
using nabla::test::kCuda;
using nabla::test::Tf32Guard;

class CudaNn : public nabla::test::CudaTest {};
template <typename P>
class CudaNnParam : public CudaParamTest<P> {};

// ---- inputs and the parity check (cuda_test_util.h) -------------------------------------------

using nabla::test::parity::allclose;
using nabla::test::parity::Arg;
using nabla::test::parity::Layout;
using nabla::test::parity::layout_suffix;
using nabla::test::parity::Options;
using nabla::test::parity::parity;
using nabla::test::parity::same_bits;
using nabla::test::parity::Tol;
using nabla::test::shape_name;

// An input of `shape` with values in [-1, 1], the range the tolerances below are derived for.
Arg unit(Shape shape, Layout layout = Layout::contiguous) {
  return Arg{.shape = std::move(shape), .layout = layout, .lo = -1, .hi = 1};
}

enum class Precision { f32, f64, tf32 };

// For sums of up to `len` products of terms in [-1, 1].
Options options_for(int64_t len, Precision p) {
  const double s = std::sqrt(double(std::max<int64_t>(len, 1)));
  switch (p) {
    case Precision::f64: return {DType::float64, {1e-10, 1e-12 * s}, {1e-10, 1e-12 * s}};
    case Precision::tf32: return {DType::float32, {5e-3, 2e-3 * s}, {5e-3, 2e-3 * s}};
    case Precision::f32: break;
  }
  return {DType::float32, {1e-3, 1e-5 * s}, {1e-3, 1e-5 * s}};
}

// ---- convolution ---------------------------------------------------------------------------------

struct ConvCase {
  std::string name;
  Shape x;  // (n, c, h, w)
  int64_t k;
  nb::Size2 kernel;
  nb::Conv2dParams p;
  bool bias = true;
  Layout layout = Layout::contiguous;
};
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

ConvCase conv(Shape x, int64_t k, nb::Size2 kernel, nb::Conv2dParams p, const std::string& what, bool bias = true,
              Layout layout = Layout::contiguous) {
  const std::string name = fmt::format("{}_to_{}_k{}x{}_{}{}{}", shape_name(x), k, kernel.h, kernel.w, what,
                                       bias ? "" : "_nobias", layout_suffix(layout));
  return {name, std::move(x), k, kernel, p, bias, layout};
}

const std::vector<ConvCase>& conv_cases() {
  using P = nb::Conv2dParams;
  using L = Layout;
  static const std::vector<ConvCase> c = {
      conv({2, 3, 7, 9}, 4, 1, P{}, "s1_p0"),
      conv({2, 3, 7, 9}, 4, 1, P{.stride = 2}, "s2_p0"),
      conv({2, 3, 11, 13}, 5, 3, P{.padding = 1}, "s1_p1"),
      conv({2, 3, 11, 13}, 5, 3, P{.padding = 1}, "s1_p1", false),
      conv({2, 4, 9, 8}, 6, 5, P{.padding = 2}, "s1_p2"),
      conv({3, 3, 13, 11}, 4, 3, P{.stride = 2, .padding = 1}, "s2_p1"),
      conv({2, 2, 17, 15}, 3, 5, P{.stride = 2}, "s2_p0"),
      conv({2, 3, 10, 9}, 4, 3, P{.padding = "same"}, "same"),
      conv({2, 3, 9, 10}, 4, 4, P{.padding = "same"}, "same_even_kernel"),
      conv({2, 3, 11, 10}, 4, 3, P{.stride = 2, .padding = "same"}, "s2_same"),
      conv({2, 3, 10, 9}, 4, 3, P{.padding = "valid"}, "valid"),
      conv({2, 3, 12, 11}, 4, 3, P{.padding = 2, .dilation = 2}, "dil2_p2"),
      conv({2, 3, 13, 12}, 4, {3, 2}, P{.stride = {2, 1}, .dilation = {2, 3}}, "dil2x3_s2x1"),
      conv({2, 4, 9, 9}, 6, 3, P{.padding = 1, .groups = 2}, "groups2"),
      conv({2, 8, 10, 10}, 8, 3, P{.padding = 1, .groups = 8}, "depthwise"),
      conv({2, 8, 10, 10}, 16, 3, P{.stride = 2, .padding = 1, .groups = 8}, "depthwise_x2_s2"),
      conv({2, 3, 9, 12}, 4, {3, 5}, P{.stride = {2, 1}, .padding = {1, 2}}, "rect_s2x1_p1x2"),
      conv({5, 3, 7, 5}, 2, 3, P{}, "odd_batch5"),
      conv({2, 3, 9, 11}, 4, 3, P{.padding = 1}, "s1_p1", true, L::transposed),
      conv({2, 3, 9, 11}, 4, 3, P{.stride = 2}, "s2_p0", true, L::narrow),
      conv({2, 64, 8, 8}, 64, 3, P{.padding = 1}, "wide"),
      // The benchmark's convolutions (batch 8 here, to keep the CPU side quick).
      conv({8, 3, 32, 32}, 32, 3, P{.padding = "valid"}, "bench_cifar"),
      conv({8, 1, 28, 28}, 32, 3, P{.padding = 1}, "bench_mnist1"),
      conv({8, 32, 14, 14}, 64, 3, P{.padding = 1}, "bench_mnist2"),
  };
  return c;
}

std::vector<ConvCase> pick(const std::vector<ConvCase>& all, const std::vector<std::string>& names) {
  std::vector<ConvCase> out;
  for (const auto& c : all)
    if (std::find(names.begin(), names.end(), c.name) != names.end()) out.push_back(c);
  return out;
}

// Longest sum: forward c/groups*kh*kw; dx k/groups*kh*kw; dweight n*oh*ow; dbias n*oh*ow.
int64_t conv_longest_sum(const ConvCase& c) {
  const int64_t g = c.p.groups, per_out = c.x[1] / g * c.kernel.h * c.kernel.w;
  return std::max({per_out, c.k / g * c.kernel.h * c.kernel.w, c.x[0] * c.x[2] * c.x[3]});
}

class Conv : public CudaNnParam<ConvCase> {
 protected:
  void run(Precision prec) {
    const ConvCase& c = GetParam();
    Tf32Guard tf32(prec == Precision::tf32);
    std::vector<Arg> args = {unit(c.x, c.layout), unit({c.k, c.x[1] / c.p.groups, c.kernel.h, c.kernel.w})};
    if (c.bias) args.push_back(unit({c.k}));
    auto f = [&](const std::vector<Tensor>& t) { return nb::conv2d(t[0], t[1], c.bias ? t[2] : Tensor(), c.p); };
    EXPECT_TRUE(parity(f, args, options_for(conv_longest_sum(c), prec)));
  }
};
std::string conv_name(const ::testing::TestParamInfo<ConvCase>& i) { return i.param.name; }

class Conv2dF32 : public Conv {};
TEST_P(Conv2dF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, Conv2dF32, ::testing::ValuesIn(conv_cases()), conv_name);

class Conv2dF64 : public Conv {};
TEST_P(Conv2dF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, Conv2dF64,
                         ::testing::ValuesIn(pick(conv_cases(), {"2x3x11x13_to_5_k3x3_s1_p1", "2x3x9x10_to_4_k4x4_same_even_kernel",
                                                                 "2x3x12x11_to_4_k3x3_dil2_p2", "2x4x9x9_to_6_k3x3_groups2",
                                                                 "2x8x10x10_to_8_k3x3_depthwise",
                                                                 "2x3x9x11_to_4_k3x3_s1_p1_transposed",
                                                                 "8x1x28x28_to_32_k3x3_bench_mnist1"})),
                         conv_name);

class Conv2dTf32 : public Conv {};
TEST_P(Conv2dTf32, ForwardBackward) { run(Precision::tf32); }
INSTANTIATE_TEST_SUITE_P(Cuda, Conv2dTf32,
                         ::testing::ValuesIn(pick(conv_cases(), {"2x3x11x13_to_5_k3x3_s1_p1", "2x64x8x8_to_64_k3x3_wide",
                                                                 "8x3x32x32_to_32_k3x3_bench_cifar",
                                                                 "8x32x14x14_to_64_k3x3_bench_mnist2",
                                                                 "2x8x10x10_to_16_k3x3_depthwise_x2_s2"})),
                         conv_name);

struct Conv1dCase {
  std::string name;
  Shape x;  // (n, c, l)
  int64_t k, kernel;
  nb::Conv1dParams p;
};
void PrintTo(const Conv1dCase& c, std::ostream* os) { *os << c.name; }

class Conv1d : public CudaNnParam<Conv1dCase> {};
TEST_P(Conv1d, ForwardBackwardF32) {
  const Conv1dCase& c = GetParam();
  const std::vector<Arg> args = {unit(c.x), unit({c.k, c.x[1] / c.p.groups, c.kernel}), unit({c.k})};
  auto f = [&](const std::vector<Tensor>& t) { return nb::conv1d(t[0], t[1], t[2], c.p); };
  EXPECT_TRUE(parity(f, args, options_for(std::max(c.x[1] * c.kernel, c.x[0] * c.x[2]), Precision::f32)));
}
INSTANTIATE_TEST_SUITE_P(
    Cuda, Conv1d,
    ::testing::Values(Conv1dCase{"3x4x17_to_5_k3_p1", {3, 4, 17}, 5, 3, {.padding = 1}},
                      Conv1dCase{"3x4x17_to_5_k3_s2_dil2", {3, 4, 17}, 5, 3, {.stride = 2, .dilation = 2}},
                      Conv1dCase{"2x4x16_to_6_k5_groups2_same", {2, 4, 16}, 6, 5, {.padding = "same", .groups = 2}},
                      Conv1dCase{"4x6x33_to_6_k4_depthwise_valid", {4, 6, 33}, 6, 4, {.padding = "valid", .groups = 6}}),
    [](const ::testing::TestParamInfo<Conv1dCase>& i) { return i.param.name; });

// ---- the algorithm cache -----------------------------------------------------------------------

struct ConvRun {
  Tensor y, dx, dw, db;
};

ConvRun conv_step(const Tensor& x0, const Tensor& w0, const Tensor& b0, const nb::Conv2dParams& p, const Tensor& g) {
  Tensor x = x0.detach().clone().requires_grad_(true), w = w0.detach().clone().requires_grad_(true);
  Tensor b = b0.detach().clone().requires_grad_(true);
  Tensor y = nb::conv2d(x, w, b, p);
  nb::sum(nb::mul(y, g)).backward();
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

// The second call of a shape reuses the first's descriptors and algorithms: same bits, in every
// direction. A TF32 call in between has its own plan (the key holds the TF32 flag) and leaves
// the strict one as it was.
TEST_F(CudaNn, ConvPlanReuseGivesIdenticalResults_8x16x15x13_to_24_k3_p1) {
  const nb::Conv2dParams p{.padding = 1};
  Tensor x = nb::rand({8, 16, 15, 13}, {.device = kCuda}, -1, 1), w = nb::rand({24, 16, 3, 3}, {.device = kCuda}, -1, 1);
  Tensor b = nb::rand({24}, {.device = kCuda}, -1, 1), g = nb::rand({8, 24, 15, 13}, {.device = kCuda}, 0.5, 1.5);
  const ConvRun first = conv_step(x, w, b, p, g);
  const ConvRun second = conv_step(x, w, b, p, g);
  {
    Tf32Guard on(true);
    (void)conv_step(x, w, b, p, g);
  }
  const ConvRun third = conv_step(x, w, b, p, g);
  for (const ConvRun* r : {&second, &third}) {
    EXPECT_TRUE(same_bits(r->y, first.y, "y"));
    EXPECT_TRUE(same_bits(r->dx, first.dx, "dx"));
    EXPECT_TRUE(same_bits(r->dw, first.dw, "dweight"));
    EXPECT_TRUE(same_bits(r->db, first.db, "dbias"));
  }
}

// ---- the fallback when an algorithm cannot run ----------------------------------------------------

// The walk over the ranked candidates (cuda/conv_fallback.cuh) with a fake runner: runs without a
// GPU. Candidate 1 cannot get its workspace, 2 fails in cuDNN, 3 runs.
TEST(ConvFallbackWalk, TriesTheNextCandidateUntilOneRuns) {
  namespace cd = nabla::cuda::conv_detail;
  std::vector<size_t> tried;
  auto fake = [&](size_t i) -> cd::Attempt {
    tried.push_back(i);
    if (i == 1) return {false, "workspace of 1073741824 bytes: out of memory"};
    if (i == 2) return {false, "CUDNN_STATUS_EXECUTION_FAILED"};
    return {true, {}};
  };
  EXPECT_EQ(cd::run_first_that_works(1, 5, fake, "conv"), 3u);
  EXPECT_EQ(tried, (std::vector<size_t>{1, 2, 3}));
  tried.clear();
  EXPECT_EQ(cd::run_first_that_works(0, 5, [&](size_t i) { return fake(i == 0 ? 3 : i); }, "conv"), 0u);
}

TEST(ConvFallbackWalk, NoneRunsIsAnErrorListingEveryAttempt) {
  namespace cd = nabla::cuda::conv_detail;
  int calls = 0;
  std::string what;
  try {
    cd::run_first_that_works(
        1, 3,
        [&](size_t i) -> cd::Attempt {
          ++calls;
          return {false, fmt::format("reason {}", i)};
        },
        "cuda conv2d forward for x (1, 2, 3, 4)", "candidate 0: reason 0");
  } catch (const nb::Error& e) {
    what = e.what();
  }
  EXPECT_EQ(calls, 2);
  for (const char* part : {"cuda conv2d forward for x (1, 2, 3, 4)", "3 candidates", "candidate 0: reason 0",
                           "candidate 1: reason 1", "candidate 2: reason 2"})
    EXPECT_NE(what.find(part), std::string::npos) << part << " missing from: " << what;
  // Nothing left to try after the first: still an error naming it.
  what.clear();
  try {
    cd::run_first_that_works(1, 1, [](size_t) { return cd::Attempt{true, {}}; }, "conv", "candidate 0: refused");
  } catch (const nb::Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("candidate 0: refused"), std::string::npos) << what;
}

// On the GPU, with failures injected (cuda/test_hooks.cuh): the first algorithm of each direction
// "fails to run" (round 0), or its workspace "cannot be had" (round 1, fresh plans); the
// convolution still gives the CPU's numbers, and the plan keeps the algorithm that ran. With more failures than candidates,
// a nabla::Error that names the direction and lists the attempts.
TEST_F(CudaNn, ConvFallsBackToTheNextAlgorithm_3x5x11x9_to_7_k3_p1) {
  namespace hooks = nabla::cuda::test_hooks;
  struct Reset {
    ~Reset() { nabla::cuda::test_hooks::inject_conv_failures(0, 0); }
  } reset;
  const nb::Conv2dParams p{.padding = 1};
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "run failures" : "workspace failures");
    // A batch size of its own per round, so that each round starts from a fresh plan whose first
    // candidate fails (one failure per direction: forward, backward data, backward filter).
    const int64_t n = 3 + round;
    Tensor x = nb::rand({n, 5, 11, 9}, {}, -1, 1), w = nb::rand({7, 5, 3, 3}, {}, -1, 1);
    Tensor b = nb::rand({7}, {}, -1, 1), g = nb::rand({n, 7, 11, 9}, {}, 0.5, 1.5);
    const ConvRun cpu = conv_step(x, w, b, p, g);
    if (round == 0) hooks::inject_conv_failures(3, 0);
    if (round == 1) hooks::inject_conv_failures(0, 3);
    const ConvRun gpu = conv_step(x.to(kCuda), w.to(kCuda), b.to(kCuda), p, g.to(kCuda));
    const Tol t{1e-4, 1e-5};
    EXPECT_TRUE(allclose(gpu.y, cpu.y, t, "y"));
    EXPECT_TRUE(allclose(gpu.dx, cpu.dx, t, "dx"));
    EXPECT_TRUE(allclose(gpu.dw, cpu.dw, {1e-4, 1e-4}, "dweight"));
    EXPECT_TRUE(allclose(gpu.db, cpu.db, {1e-4, 1e-4}, "dbias"));
    // The plan kept the algorithm that ran: the same call again, no failures left, same bits.
    const ConvRun again = conv_step(x.to(kCuda), w.to(kCuda), b.to(kCuda), p, g.to(kCuda));
    EXPECT_TRUE(same_bits(again.y, gpu.y, "y, second call"));
  }
  // Every candidate failing: an error, not a crash or a wrong result. A fresh shape (fresh plan).
  hooks::inject_conv_failures(1000, 0);
  Tensor x2 = nb::rand({2, 3, 6, 6}, {.device = kCuda}, -1, 1), w2 = nb::rand({4, 3, 3, 3}, {.device = kCuda}, -1, 1);
  std::string what;
  try {
    nb::conv2d(x2, w2, {}, p);
  } catch (const nb::Error& e) {
    what = e.what();
  }
  hooks::inject_conv_failures(0, 0);
  EXPECT_NE(what.find("conv2d forward"), std::string::npos) << what;
  EXPECT_NE(what.find("CUDNN_STATUS_EXECUTION_FAILED"), std::string::npos) << what;
  // And the device is usable afterwards: the same shape now runs.
  Tensor y2;
  ASSERT_NO_THROW(y2 = nb::conv2d(x2, w2, {}, p));
  EXPECT_TRUE(allclose(y2, nb::conv2d(x2.to(nb::Device::cpu()), w2.to(nb::Device::cpu()), {}, p), {1e-4, 1e-5}, "y"));
}

// ---- pooling -------------------------------------------------------------------------------------

struct PoolCase {
  std::string name;
  bool max;
  Shape x;
  nb::Size2 kernel;
  nb::Pool2dParams p;
  Layout layout = Layout::contiguous;
  double quantum = 0;
};
void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

PoolCase pool(bool max, Shape x, nb::Size2 kernel, nb::Pool2dParams p, const std::string& what,
              Layout layout = Layout::contiguous, double quantum = 0) {
  const std::string name = fmt::format("{}_{}_k{}x{}_{}{}{}", max ? "max" : "avg", shape_name(x), kernel.h, kernel.w, what,
                                       max || p.count_include_pad ? "" : "_exclude_pad", layout_suffix(layout));
  return {name, max, std::move(x), kernel, p, layout, quantum};
}

std::vector<PoolCase> pool_cases() {
  using P = nb::Pool2dParams;
  std::vector<PoolCase> c;
  for (bool max : {true, false}) {
    c.push_back(pool(max, {2, 3, 8, 10}, 2, P{}, "s2"));
    c.push_back(pool(max, {2, 3, 7, 9}, 3, P{.stride = 1, .padding = 1}, "s1_p1"));
    c.push_back(pool(max, {2, 3, 9, 11}, 3, P{.stride = 2}, "s2_overlap"));
    c.push_back(pool(max, {3, 2, 10, 7}, 3, P{.stride = 2, .padding = 1}, "s2_p1"));
    c.push_back(pool(max, {2, 3, 9, 10}, {2, 3}, P{.stride = {1, 2}, .padding = {1, 1}}, "s1x2_p1"));
    c.push_back(pool(max, {2, 3, 9, 11}, 3, P{.stride = 2}, "s2", Layout::transposed));
    c.push_back(pool(max, {4, 16, 33, 31}, 2, P{}, "s2_big"));
  }
  c.push_back(pool(false, {2, 3, 7, 9}, 3, P{.stride = 1, .padding = 1, .count_include_pad = false}, "s1_p1"));
  c.push_back(pool(false, {3, 2, 10, 7}, 3, P{.stride = 2, .padding = 1, .count_include_pad = false}, "s2_p1"));
  // Ties: values on a grid of 0.25, so windows hold equal maxima; the first one must win on both.
  c.push_back(pool(true, {2, 3, 9, 11}, 3, P{.stride = 1, .padding = 1}, "s1_p1_ties", Layout::contiguous, 0.25));
  c.push_back(pool(true, {2, 3, 9, 11}, 3, P{.stride = 2}, "s2_overlap_ties", Layout::contiguous, 0.5));
  return c;
}

class Pool : public CudaNnParam<PoolCase> {
 protected:
  void run(Precision prec) {
    const PoolCase& c = GetParam();
    Arg a = unit(c.x, c.layout);
    a.quantum = c.quantum;
    auto f = [&](const std::vector<Tensor>& t) {
      return c.max ? nb::max_pool2d(t[0], c.kernel, c.p) : nb::avg_pool2d(t[0], c.kernel, c.p);
    };
    EXPECT_TRUE(parity(f, {a}, options_for(c.kernel.h * c.kernel.w, prec)));
  }
};
std::string pool_name(const ::testing::TestParamInfo<PoolCase>& i) { return i.param.name; }

class Pool2dF32 : public Pool {};
TEST_P(Pool2dF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, Pool2dF32, ::testing::ValuesIn(pool_cases()), pool_name);

class Pool2dF64 : public Pool {};
TEST_P(Pool2dF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, Pool2dF64, ::testing::ValuesIn(pool_cases()), pool_name);

// A window holding a NaN gives NaN on both, and its gradient goes to the same (first NaN) element.
TEST_F(CudaNn, MaxPoolPropagatesNaN_2x2x6x6_k3_s2) {
  Tensor base = nb::rand({2, 2, 6, 6}, {}, -1, 1);
  std::vector<double> v = base.to_vector<double>();
  v[7] = std::numeric_limits<double>::quiet_NaN();   // plane 0, (1, 1)
  v[8] = std::numeric_limits<double>::quiet_NaN();   // plane 0, (1, 2): the second NaN of a window
  v[36 + 35] = std::numeric_limits<double>::quiet_NaN();  // plane 1, (5, 5)
  Tensor xc = nb::from_vector(v, {2, 2, 6, 6}, {.dtype = DType::float32}).requires_grad_(true);
  Tensor xg = xc.detach().to(kCuda).requires_grad_(true);
  const nb::Pool2dParams p{.stride = 2};
  Tensor yc = nb::max_pool2d(xc, 3, p), yg = nb::max_pool2d(xg, 3, p);
  EXPECT_TRUE(allclose(yg, yc, {0, 0}, "forward", /*nan_ok=*/true));
  nb::sum(nb::mul(nb::ones(yc.shape()), yc)).backward();
  nb::sum(nb::mul(nb::ones(yg.shape(), {.device = kCuda}), yg)).backward();
  EXPECT_TRUE(allclose(xg.grad(), xc.grad(), {0, 0}, "dx"));
}

TEST_F(CudaNn, GlobalAvgPool_4x5x7x9) {
  EXPECT_TRUE(parity([](const auto& t) { return nb::global_avg_pool2d(t[0]); }, {unit({4, 5, 7, 9})},
                     options_for(63, Precision::f32)));
}

// ---- batch norm ------------------------------------------------------------------------------------

struct BnCase {
  std::string name;
  Shape x;  // (n, c, ...)
  bool affine = true;
  double lo = -1, hi = 1;
  Layout layout = Layout::contiguous;
};
void PrintTo(const BnCase& c, std::ostream* os) { *os << c.name; }

BnCase bn(Shape x, const std::string& what = "", bool affine = true, double lo = -1, double hi = 1,
          Layout layout = Layout::contiguous) {
  return {fmt::format("{}{}{}{}", shape_name(x), what, affine ? "" : "_noaffine", layout_suffix(layout)), std::move(x),
          affine, lo, hi, layout};
}

// m = 1 and m < 32 take the columns split, m >= 32 the planes split; large n*m spreads a channel
// over many blocks (pieces).
const std::vector<BnCase>& bn_cases() {
  static const std::vector<BnCase> c = {
      bn({8, 3}),
      bn({4096, 3}, "_many_rows"),
      bn({4, 5, 7}),
      bn({4, 3, 6, 6}),
      bn({2, 4, 33, 31}),
      bn({3, 4, 9, 11}, "", true, -1, 1, Layout::transposed),
      bn({16, 2, 64, 64}, "_many_pieces"),
      bn({2, 1, 512, 513}, "_one_channel_big"),
      bn({4, 3, 6, 6}, "", false),
      bn({8, 5}, "", false),
      bn({4, 3, 8, 8}, "_offset_mean_100", true, 99, 101),
      // planes split with c * pieces > 65,535 blocks (kMaxGrid in cuda/channel_reduce.cuh): the
      // planes kernel loops over (channel, piece) items
      bn({1, 66000, 32}, "_planes_over_65535_blocks"),
  };
  return c;
}

class BatchNorm : public CudaNnParam<BnCase> {
 protected:
  // Training forward and backward (x, weight, bias), then the running statistics both sides
  // updated.
  void train(Precision prec) {
    const BnCase& c = GetParam();
    const Options o = options_for(1, prec);
    const int64_t ch = c.x[1];
    const int64_t count = nb::numel_of(c.x) / ch;
    const DType dt = o.dtype;
    Tensor rm_c = nb::rand({ch}, {.dtype = dt}, -0.5, 0.5), rv_c = nb::rand({ch}, {.dtype = dt}, 0.5, 1.5);
    Tensor rm_g = rm_c.to(kCuda), rv_g = rv_c.to(kCuda);
    std::vector<Arg> args = {Arg{c.x, c.layout, c.lo, c.hi}};
    if (c.affine) {
      args.push_back(Arg{{ch}, Layout::contiguous, 0.5, 1.5});
      args.push_back(unit({ch}));
    }
    auto f = [&](const std::vector<Tensor>& t) {
      const bool gpu = t[0].device().is_cuda();
      return nb::batch_norm(t[0], c.affine ? t[1] : Tensor(), c.affine ? t[2] : Tensor(), gpu ? rm_g : rm_c,
                            gpu ? rv_g : rv_c, /*training=*/true, 0.1, 1e-5);
    };
    // The gradient of x sums over the channel: tolerance grows with it.
    Options po = o;
    const double s = std::sqrt(double(count));
    po.bwd.atol *= s;
    if (prec == Precision::f32) po.fwd = {1e-3, 1e-4};
    EXPECT_TRUE(parity(f, args, po));
    EXPECT_TRUE(allclose(rm_g, rm_c, {o.fwd.rtol, o.fwd.atol * s}, "running_mean"));
    EXPECT_TRUE(allclose(rv_g, rv_c, {o.fwd.rtol, o.fwd.atol * s}, "running_var"));
  }
  void eval(Precision prec) {
    const BnCase& c = GetParam();
    const Options o = options_for(1, prec);
    const int64_t ch = c.x[1];
    Tensor rm = nb::rand({ch}, {.dtype = o.dtype}, -0.5, 0.5), rv = nb::rand({ch}, {.dtype = o.dtype}, 0.5, 1.5);
    std::vector<Arg> args = {Arg{c.x, c.layout, c.lo, c.hi}};
    if (c.affine) {
      args.push_back(Arg{{ch}, Layout::contiguous, 0.5, 1.5});
      args.push_back(unit({ch}));
    }
    Tensor rm_g = rm.to(kCuda), rv_g = rv.to(kCuda);
    auto f = [&](const std::vector<Tensor>& t) {
      const bool gpu = t[0].device().is_cuda();
      return nb::batch_norm(t[0], c.affine ? t[1] : Tensor(), c.affine ? t[2] : Tensor(), gpu ? rm_g : rm,
                            gpu ? rv_g : rv, /*training=*/false, 0.1, 1e-5);
    };
    Options po = o;
    po.bwd.atol *= std::sqrt(double(nb::numel_of(c.x) / ch));
    EXPECT_TRUE(parity(f, args, po));
  }
};
std::string bn_name(const ::testing::TestParamInfo<BnCase>& i) { return i.param.name; }

class BatchNormTrainF32 : public BatchNorm {};
TEST_P(BatchNormTrainF32, ForwardBackwardRunningStats) { train(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, BatchNormTrainF32, ::testing::ValuesIn(bn_cases()), bn_name);

class BatchNormTrainF64 : public BatchNorm {};
TEST_P(BatchNormTrainF64, ForwardBackwardRunningStats) { train(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, BatchNormTrainF64, ::testing::ValuesIn(bn_cases()), bn_name);

class BatchNormEvalF32 : public BatchNorm {};
TEST_P(BatchNormEvalF32, ForwardBackward) { eval(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, BatchNormEvalF32, ::testing::ValuesIn(bn_cases()), bn_name);

class BatchNormEvalF64 : public BatchNorm {};
TEST_P(BatchNormEvalF64, ForwardBackward) { eval(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, BatchNormEvalF64, ::testing::ValuesIn(bn_cases()), bn_name);

// ---- a small CNN step, twice the same and without memory growth ---------------------------------

// conv -> batch norm -> relu -> max pool -> conv -> avg pool -> global pool -> loss: every kernel
// of this file in one step, forward and backward.
Tensor cnn_loss(const std::vector<Tensor>& p, const Tensor& x, const Tensor& rm, const Tensor& rv) {
  Tensor h = nb::conv2d(x, p[0], p[1], {.padding = 1});
  h = nb::relu(nb::batch_norm(h, p[2], p[3], rm, rv, true));
  h = nb::max_pool2d(h, 2);
  h = nb::conv2d(h, p[4], Tensor(), {.stride = 1, .padding = "same"});
  h = nb::avg_pool2d(h, 3, {.stride = 2, .padding = 1, .count_include_pad = false});
  return nb::sum(nb::mul(nb::global_avg_pool2d(h), nb::global_avg_pool2d(h)));
}

std::vector<Tensor> cnn_params(nb::Device d) {
  std::vector<Tensor> p = {nb::rand({8, 3, 3, 3}, {}, -0.5, 0.5), nb::rand({8}, {}, -0.5, 0.5),
                           nb::rand({8}, {}, 0.5, 1.5), nb::rand({8}, {}, -0.5, 0.5),
                           nb::rand({12, 8, 3, 3}, {}, -0.5, 0.5)};
  for (Tensor& t : p) t = t.to(d).requires_grad_(true);
  return p;
}

TEST_F(CudaNn, CnnStepMatchesCpu_16x3x20x20) {
  Tensor x = nb::rand({16, 3, 20, 20}, {}, -1, 1);
  std::vector<Tensor> pc = cnn_params(nb::Device::cpu()), pg;
  for (const Tensor& t : pc) pg.push_back(t.detach().to(kCuda).requires_grad_(true));
  Tensor rmc = nb::zeros({8}), rvc = nb::ones({8}), rmg = rmc.to(kCuda), rvg = rvc.to(kCuda);
  Tensor lc = cnn_loss(pc, x, rmc, rvc), lg = cnn_loss(pg, x.to(kCuda), rmg, rvg);
  EXPECT_TRUE(allclose(lg, lc, {1e-3, 1e-5}, "loss"));
  lc.backward();
  lg.backward();
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_TRUE(allclose(pg[i].grad(), pc[i].grad(), {2e-3, 1e-4}, fmt::format("gradient of parameter {}", i)));
  EXPECT_TRUE(allclose(rmg, rmc, {1e-3, 1e-5}, "running_mean"));
  EXPECT_TRUE(allclose(rvg, rvc, {1e-3, 1e-5}, "running_var"));
}

class CudaNnMemory : public CudaNn {};

size_t free_bytes() {
  nb::cuda::synchronize();
  return nb::cuda::device_info(0).free_memory;
}

// Steady-state steps allocate and free the same blocks (activations, cuDNN workspaces, batch-norm
// partials): device memory in use must not grow.
TEST_F(CudaNnMemory, CnnStepsDoNotGrowMemory_32x3x32x32) {
  Tensor x = nb::rand({32, 3, 32, 32}, {.device = kCuda}, -1, 1);
  std::vector<Tensor> p = cnn_params(kCuda);
  Tensor rm = nb::zeros({8}, {.device = kCuda}), rv = nb::ones({8}, {.device = kCuda});
  auto step = [&] {
    for (Tensor& t : p) t.set_grad(Tensor());
    cnn_loss(p, x, rm, rv).backward();
  };
  for (int i = 0; i < 5; ++i) step();
  const size_t warm = free_bytes();
  for (int i = 0; i < 300; ++i) step();
  const size_t after = free_bytes();
  constexpr size_t kSlack = size_t{32} << 20;
  EXPECT_GE(after + kSlack, warm) << (double(warm) - double(after)) / 1048576.0 << " MiB more in use after 300 steps";
  EXPECT_EQ(nb::tape_size(), 0u);
}

}  // namespace
