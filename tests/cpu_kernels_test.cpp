// Tests of the CPU backend's kernels, called directly through nabla::Backend on host buffers:
// values against formulas written out here, derivatives against central differences in double,
// and the random generator's determinism and counter properties.
#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/core/philox.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace nb = nabla;
using nb::BinaryOp;
using nb::DType;
using nb::ReduceOp;
using nb::StridedLayout;
using nb::UnaryOp;

namespace {

nb::Backend& cpu() { return nb::backend_for(nb::Device::Kind::CPU); }

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> random_values(size_t n, double lo, double hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

StridedLayout layout(std::vector<int64_t> shape, std::vector<int64_t> out, std::vector<int64_t> a,
                     std::vector<int64_t> b = {}) {
  StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    l.shape[d] = shape[d];
    l.out_stride[d] = out[d];
    l.a_stride[d] = a[d];
    l.b_stride[d] = b.empty() ? 0 : b[d];
  }
  return l;
}

std::vector<int64_t> contiguous(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

// Calls f(out_offset, a_offset, b_offset) for every index of l, in row-major order.
void for_each_index(const StridedLayout& l,
                    const std::function<void(int64_t, int64_t, int64_t)>& f) {
  int64_t total = 1;
  for (int d = 0; d < l.ndim; ++d) total *= l.shape[d];
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t rest = flat, o = 0, a = 0, b = 0;
    for (int d = l.ndim - 1; d >= 0; --d) {
      const int64_t i = rest % l.shape[d];
      rest /= l.shape[d];
      o += i * l.out_stride[d];
      a += i * l.a_stride[d];
      b += i * l.b_stride[d];
    }
    f(o, a, b);
  }
}

void expect_close(double got, double want, double rtol, double atol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": got " << got << ", want NaN";
    return;
  }
  EXPECT_LE(std::abs(got - want), atol + rtol * std::abs(want))
      << what << ": got " << got << ", want " << want;
}

// ---- memory and backend identity ----------------------------------------------------------------

TEST(CpuBackend, NameAndDeviceCount) {
  EXPECT_STREQ(cpu().name(), "cpu");
  EXPECT_EQ(cpu().device_count(), 1);
  EXPECT_THROW(nb::backend_for(nb::Device::Kind::CPU, 1), nb::Error);
}

TEST(CpuBackend, AllocateIs64ByteAlignedIncludingZeroBytes) {
  for (size_t bytes :
       {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{1} << 20}) {
    void* p = cpu().allocate(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    if (bytes > 0) std::memset(p, 0xab, bytes);
    cpu().deallocate(p, bytes);
  }
}

TEST(CpuBackend, AllocateTooMuchThrowsNamingTheSize) {
  const size_t huge = std::numeric_limits<size_t>::max() / 2;
  try {
    cpu().allocate(huge);
    FAIL() << "no exception";
  } catch (const nb::Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(huge)), std::string::npos) << e.what();
  }
}

TEST(CpuBackend, CopiesRoundTrip) {
  std::vector<float> host{1, 2, 3, 4, 5}, back(5, 0);
  void* dev = cpu().allocate(host.size() * 4);
  void* dev2 = cpu().allocate(host.size() * 4);
  cpu().copy_from_host(dev, host.data(), host.size() * 4);
  cpu().copy(dev2, dev, host.size() * 4);
  cpu().copy_to_host(back.data(), dev2, back.size() * 4);
  cpu().synchronize();
  EXPECT_EQ(back, host);
  cpu().copy(dev2, dev, 0);
  cpu().deallocate(dev, 20);
  cpu().deallocate(dev2, 20);
}

// ---- fill, copy_strided, cast -------------------------------------------------------------------

TEST(CpuFill, AllDtypes_n1000) {
  std::vector<float> f(1000);
  std::vector<double> d(1000);
  std::vector<int32_t> i32(1000);
  std::vector<int64_t> i64(1000);
  cpu().fill(DType::float32, f.data(), 1000, 2.5);
  cpu().fill(DType::float64, d.data(), 1000, -1.25);
  cpu().fill(DType::int32, i32.data(), 1000, 7);
  cpu().fill(DType::int64, i64.data(), 1000, -3);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(f[i], 2.5f);
    ASSERT_EQ(d[i], -1.25);
    ASSERT_EQ(i32[i], 7);
    ASSERT_EQ(i64[i], -3);
  }
}

TEST(CpuFill, Large_n100000_ParallelPath) {
  std::vector<float> f(100000, 0.f);
  cpu().fill(DType::float32, f.data(), 100000, 1.5);
  for (float v : f) ASSERT_EQ(v, 1.5f);
}

TEST(CpuCopyStrided, Transpose_3x4_float32_and_int64) {
  // a: (3, 4) contiguous; out: (4, 3) = a^T, iterated over out's shape.
  std::vector<float> a(12);
  std::vector<int64_t> ai(12);
  for (int i = 0; i < 12; ++i) a[i] = float(i), ai[i] = i * 10;
  std::vector<float> out(12, -1);
  std::vector<int64_t> outi(12, -1);
  auto l = layout({4, 3}, {3, 1}, {1, 4});
  cpu().copy_strided(DType::float32, out.data(), a.data(), l);
  cpu().copy_strided(DType::int64, outi.data(), ai.data(), l);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(out[r * 3 + c], a[c * 4 + r]);
      EXPECT_EQ(outi[r * 3 + c], ai[c * 4 + r]);
    }
}

TEST(CpuCopyStrided, BroadcastRow_5x7_float64) {
  std::vector<double> row{1, 2, 3, 4, 5, 6, 7}, out(35, 0);
  cpu().copy_strided(DType::float64, out.data(), row.data(), layout({5, 7}, {7, 1}, {0, 1}));
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) EXPECT_EQ(out[r * 7 + c], row[c]);
}

TEST(CpuCopyStrided, BroadcastColumn_Permuted3d_4x5x6_int32) {
  // out is written through a permuted layout: out strides (1, 4, 20) for shape (4, 5, 6).
  std::vector<int32_t> a(4 * 6);
  std::iota(a.begin(), a.end(), 0);
  std::vector<int32_t> out(120, -1);
  auto l = layout({4, 5, 6}, {1, 4, 20}, {6, 0, 1});
  cpu().copy_strided(DType::int32, out.data(), a.data(), l);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j)
      for (int k = 0; k < 6; ++k) EXPECT_EQ(out[i + 4 * j + 20 * k], a[i * 6 + k]);
}

TEST(CpuCopyStrided, ScalarAndEmpty) {
  double a = 3.5, out = 0;
  StridedLayout scalar;  // ndim 0: one element
  cpu().copy_strided(DType::float64, &out, &a, scalar);
  EXPECT_EQ(out, 3.5);
  double untouched = -1;
  cpu().copy_strided(DType::float64, &untouched, &a, layout({3, 0}, {0, 1}, {0, 1}));
  EXPECT_EQ(untouched, -1);
}

TEST(CpuCopyStrided, LargeTranspose_300x257_ParallelPath) {
  const int R = 300, C = 257;
  std::vector<float> a(R * C), out(R * C);
  for (int i = 0; i < R * C; ++i) a[i] = float(i);
  cpu().copy_strided(DType::float32, out.data(), a.data(), layout({C, R}, {R, 1}, {1, C}));
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < R; ++c) ASSERT_EQ(out[r * R + c], a[c * C + r]);
}

TEST(CpuCast, FloatToIntTruncatesAndIntToFloat_n4) {
  std::vector<double> d{2.7, -2.7, 0.0, 1e6};
  std::vector<int32_t> i32(4);
  cpu().cast(DType::int32, i32.data(), DType::float64, d.data(), 4);
  EXPECT_EQ(i32, (std::vector<int32_t>{2, -2, 0, 1000000}));
  std::vector<int64_t> i64{-5, 0, 3, int64_t{1} << 40};
  std::vector<float> f(4);
  cpu().cast(DType::float32, f.data(), DType::int64, i64.data(), 4);
  EXPECT_EQ(f, (std::vector<float>{-5.f, 0.f, 3.f, float(int64_t{1} << 40)}));
  std::vector<double> back(4);
  std::vector<float> fs{0.1f, -1.5f, 3.f, 1e30f};
  cpu().cast(DType::float64, back.data(), DType::float32, fs.data(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], double(fs[i]));
  std::vector<int64_t> same(4);
  cpu().cast(DType::int64, same.data(), DType::int64, i64.data(), 4);
  EXPECT_EQ(same, i64);
}

// ---- unary --------------------------------------------------------------------------------------

struct UnaryCase {
  std::string name;
  UnaryOp op;
  double a, b;
  double lo, hi;                      // input range
  std::vector<double> kinks;          // inputs kept 0.05 away from these for differences
  std::function<double(double)> ref;  // f(x) written out
};

double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", UnaryOp::neg, 0, 0, -3, 3, {}, [](double x) { return -x; }},
      {"exp", UnaryOp::exp, 0, 0, -3, 3, {}, [](double x) { return std::exp(x); }},
      {"log", UnaryOp::log, 0, 0, 0.1, 4, {}, [](double x) { return std::log(x); }},
      {"sqrt", UnaryOp::sqrt, 0, 0, 0.1, 4, {}, [](double x) { return std::sqrt(x); }},
      {"abs", UnaryOp::abs, 0, 0, -3, 3, {0}, [](double x) { return x < 0 ? -x : x; }},
      {"relu", UnaryOp::relu, 0, 0, -3, 3, {0}, [](double x) { return x > 0 ? x : 0; }},
      {"leaky_relu_a0p1",
       UnaryOp::leaky_relu,
       0.1,
       0,
       -3,
       3,
       {0},
       [](double x) { return x > 0 ? x : 0.1 * x; }},
      {"elu_a1p5",
       UnaryOp::elu,
       1.5,
       0,
       -3,
       3,
       {0},
       [](double x) { return x > 0 ? x : 1.5 * (std::exp(x) - 1); }},
      {"sigmoid", UnaryOp::sigmoid, 0, 0, -6, 6, {}, ref_sigmoid},
      {"tanh",
       UnaryOp::tanh,
       0,
       0,
       -3,
       3,
       {},
       [](double x) { return (std::exp(2 * x) - 1) / (std::exp(2 * x) + 1); }},
      {"gelu",
       UnaryOp::gelu,
       0,
       0,
       -4,
       4,
       {},
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
      {"pow_a2p5", UnaryOp::pow, 2.5, 0, 0.1, 3, {}, [](double x) { return x * x * std::sqrt(x); }},
      {"pow_a3_negative_base", UnaryOp::pow, 3, 0, -2, 2, {}, [](double x) { return x * x * x; }},
      {"pow_am1", UnaryOp::pow, -1, 0, 0.2, 3, {}, [](double x) { return 1 / x; }},
      {"clamp_m1_1",
       UnaryOp::clamp,
       -1,
       1,
       -3,
       3,
       {-1, 1},
       [](double x) { return x < -1  ? -1
                             : x > 1 ? 1
                                     : x; }},
      {"affine_a2_b0p5", UnaryOp::affine, 2, 0.5, -3, 3, {}, [](double x) { return 2 * x + 0.5; }},
      {"softplus",
       UnaryOp::softplus,
       0,
       0,
       -10,
       10,
       {},
       [](double x) { return std::log(1 + std::exp(x)); }},
  };
}

class CpuUnary : public ::testing::TestWithParam<UnaryCase> {};

std::vector<double> unary_inputs(const UnaryCase& c, size_t n) {
  auto x = random_values(n, c.lo, c.hi, 17);
  for (auto& v : x)
    for (double k : c.kinks)
      if (std::abs(v - k) < 0.05) v = k + (v < k ? -0.05 : 0.05);
  return x;
}

TEST_P(CpuUnary, ForwardMatchesFormula_float64_n257) {
  const auto& c = GetParam();
  auto x = unary_inputs(c, 257);
  std::vector<double> y(x.size());
  cpu().unary(c.op, DType::float64, y.data(), x.data(), int64_t(x.size()), c.a, c.b);
  for (size_t i = 0; i < x.size(); ++i)
    expect_close(y[i], c.ref(x[i]), 1e-12, 1e-14, c.name + " at " + std::to_string(x[i]));
}

TEST_P(CpuUnary, ForwardMatchesFormula_float32_n40000) {
  // Large enough to take the parallel path.
  const auto& c = GetParam();
  auto xd = unary_inputs(c, 40000);
  auto x = to_float(xd);
  std::vector<float> y(x.size());
  cpu().unary(c.op, DType::float32, y.data(), x.data(), int64_t(x.size()), c.a, c.b);
  for (size_t i = 0; i < x.size(); ++i)
    expect_close(y[i], c.ref(double(x[i])), 2e-6, 1e-6, c.name + " at " + std::to_string(x[i]));
}

TEST_P(CpuUnary, InPlace_float64_n64) {
  const auto& c = GetParam();
  auto x = unary_inputs(c, 64);
  auto y = x;
  cpu().unary(c.op, DType::float64, y.data(), y.data(), int64_t(y.size()), c.a, c.b);
  for (size_t i = 0; i < x.size(); ++i) expect_close(y[i], c.ref(x[i]), 1e-12, 1e-14, c.name);
}

TEST_P(CpuUnary, BackwardMatchesCentralDifferences_float64_n101) {
  const auto& c = GetParam();
  auto x = unary_inputs(c, 101);
  auto dy = random_values(x.size(), -2, 2, 5);
  const int64_t n = int64_t(x.size());
  std::vector<double> y(n), dx(n, kNaN);
  cpu().unary(c.op, DType::float64, y.data(), x.data(), n, c.a, c.b);
  cpu().unary_backward(c.op, DType::float64, dx.data(), dy.data(), x.data(), y.data(), n, c.a, c.b);
  const double h = 1e-6;
  std::vector<double> xp(n), xm(n), yp(n), ym(n);
  for (int64_t i = 0; i < n; ++i) xp[i] = x[i] + h, xm[i] = x[i] - h;
  cpu().unary(c.op, DType::float64, yp.data(), xp.data(), n, c.a, c.b);
  cpu().unary(c.op, DType::float64, ym.data(), xm.data(), n, c.a, c.b);
  for (int64_t i = 0; i < n; ++i) {
    const double numeric = dy[i] * (yp[i] - ym[i]) / (2 * h);
    expect_close(dx[i], numeric, 1e-6, 1e-7, c.name + "' at " + std::to_string(x[i]));
  }
}

TEST_P(CpuUnary, Backward_float32_AgreesWith_float64_n300) {
  const auto& c = GetParam();
  auto xd = unary_inputs(c, 300);
  auto dyd = random_values(xd.size(), -2, 2, 6);
  const int64_t n = int64_t(xd.size());
  std::vector<double> yd(n), dxd(n);
  cpu().unary(c.op, DType::float64, yd.data(), xd.data(), n, c.a, c.b);
  cpu().unary_backward(c.op, DType::float64, dxd.data(), dyd.data(), xd.data(), yd.data(), n, c.a,
                       c.b);
  auto x = to_float(xd), dy = to_float(dyd);
  std::vector<float> y(n), dx(n);
  cpu().unary(c.op, DType::float32, y.data(), x.data(), n, c.a, c.b);
  cpu().unary_backward(c.op, DType::float32, dx.data(), dy.data(), x.data(), y.data(), n, c.a, c.b);
  for (int64_t i = 0; i < n; ++i) expect_close(dx[i], dxd[i], 1e-4, 1e-5, c.name);
}

INSTANTIATE_TEST_SUITE_P(AllOps, CpuUnary, ::testing::ValuesIn(unary_cases()),
                         [](const auto& info) { return info.param.name; });

// Derivative of op at the single point x, with dy = 1.
double derivative_at(UnaryOp op, double x, double a = 0, double b = 0) {
  double y = 0, dx = kNaN, dy = 1;
  cpu().unary(op, DType::float64, &y, &x, 1, a, b);
  cpu().unary_backward(op, DType::float64, &dx, &dy, &x, &y, 1, a, b);
  return dx;
}

TEST(CpuUnaryKinks, DerivativesAtKinksTakeTheNegativeSide) {
  EXPECT_EQ(derivative_at(UnaryOp::relu, 0.0), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::abs, 0.0), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::abs, -2.0), -1.0);
  EXPECT_EQ(derivative_at(UnaryOp::leaky_relu, 0.0, 0.2), 0.2);
  EXPECT_EQ(derivative_at(UnaryOp::elu, 0.0, 1.5), 1.5);
}

TEST(CpuUnaryKinks, ClampDerivativeIsOneStrictlyInside_m1_2) {
  EXPECT_EQ(derivative_at(UnaryOp::clamp, -1.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::clamp, 2.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::clamp, -3.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::clamp, 0.5, -1, 2), 1.0);
}

TEST(CpuUnaryKinks, PowDerivativeFormulaAndZeroExponent) {
  EXPECT_DOUBLE_EQ(derivative_at(UnaryOp::pow, 3.0, 2.0), 6.0);
  EXPECT_DOUBLE_EQ(derivative_at(UnaryOp::pow, 2.0, 0.5), 0.5 / std::sqrt(2.0));
  EXPECT_EQ(derivative_at(UnaryOp::pow, 0.0, 0.0), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::pow, 0.0, 2.0), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::affine, 5.0, -3.0, 7.0), -3.0);
}

TEST(CpuUnaryKinks, HandValues) {
  auto f = [](UnaryOp op, double x, double a = 0, double b = 0) {
    double y = kNaN;
    cpu().unary(op, DType::float64, &y, &x, 1, a, b);
    return y;
  };
  EXPECT_NEAR(f(UnaryOp::gelu, 1.0), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(f(UnaryOp::gelu, -1.0), -0.15865525393145707, 1e-15);
  EXPECT_NEAR(f(UnaryOp::sigmoid, 0.0), 0.5, 0);
  EXPECT_NEAR(f(UnaryOp::softplus, 0.0), std::log(2.0), 1e-15);
  EXPECT_EQ(f(UnaryOp::relu, -0.5), 0.0);
  EXPECT_TRUE(std::isnan(f(UnaryOp::relu, kNaN)));
  EXPECT_EQ(f(UnaryOp::clamp, 5.0, -1, 2), 2.0);
  EXPECT_NEAR(derivative_at(UnaryOp::gelu, 0.0), 0.5, 1e-15);
  EXPECT_NEAR(derivative_at(UnaryOp::sigmoid, 0.0), 0.25, 1e-15);
  EXPECT_NEAR(derivative_at(UnaryOp::tanh, 0.0), 1.0, 1e-15);
}

TEST(CpuUnaryKinks, SigmoidAndSoftplusStableAtLargeMagnitude_float32) {
  std::vector<float> x{-1000.f, -100.f, 100.f, 1000.f}, y(4), dx(4), dy(4, 1.f);
  // sigmoid(-100) = e^-100 = 3.7e-44 is a float32 denormal.
  cpu().unary(UnaryOp::sigmoid, DType::float32, y.data(), x.data(), 4, 0, 0);
  EXPECT_EQ(y[0], 0.f);
  EXPECT_NEAR(y[1], 3.7835e-44, 1e-47);
  EXPECT_EQ(y[2], 1.f);
  EXPECT_EQ(y[3], 1.f);
  cpu().unary_backward(UnaryOp::sigmoid, DType::float32, dx.data(), dy.data(), x.data(), y.data(),
                       4, 0, 0);
  EXPECT_EQ(dx[0], 0.f);
  EXPECT_NEAR(dx[1], 3.7835e-44, 1e-47);
  EXPECT_EQ(dx[2], 0.f);
  EXPECT_EQ(dx[3], 0.f);
  cpu().unary(UnaryOp::softplus, DType::float32, y.data(), x.data(), 4, 0, 0);
  EXPECT_EQ(y[0], 0.f);
  EXPECT_NEAR(y[1], 3.7835e-44, 1e-47);
  EXPECT_EQ(y[2], 100.f);
  EXPECT_EQ(y[3], 1000.f);
  cpu().unary_backward(UnaryOp::softplus, DType::float32, dx.data(), dy.data(), x.data(), y.data(),
                       4, 0, 0);
  EXPECT_EQ(dx[0], 0.f);
  EXPECT_NEAR(dx[1], 3.7835e-44, 1e-47);
  EXPECT_EQ(dx[2], 1.f);
  EXPECT_EQ(dx[3], 1.f);
}

TEST(CpuUnaryKinks, IntegerDtypeIsAnErrorNamingKernelAndDtype) {
  std::vector<int32_t> x(4), y(4);
  try {
    cpu().unary(UnaryOp::relu, DType::int32, y.data(), x.data(), 4, 0, 0);
    FAIL() << "no exception";
  } catch (const nb::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unary"), std::string::npos) << msg;
    EXPECT_NE(msg.find("int32"), std::string::npos) << msg;
  }
  int64_t out = 0;
  EXPECT_THROW(cpu().reduce(ReduceOp::sum, DType::int64, &out, &out, 1, 1, 1), nb::Error);
  EXPECT_THROW(cpu().rand_uniform(DType::int32, y.data(), 4, 0, 0, 0, 1), nb::Error);
}

// ---- binary -------------------------------------------------------------------------------------

struct BinaryRef {
  const char* name;
  BinaryOp op;
  double (*f)(double, double);
};

const BinaryRef kBinaryOps[] = {
    {"add", BinaryOp::add, [](double p, double q) { return p + q; }},
    {"sub", BinaryOp::sub, [](double p, double q) { return p - q; }},
    {"mul", BinaryOp::mul, [](double p, double q) { return p * q; }},
    {"div", BinaryOp::div, [](double p, double q) { return p / q; }},
    {"maximum", BinaryOp::maximum, [](double p, double q) { return p > q ? p : q; }},
    {"minimum", BinaryOp::minimum, [](double p, double q) { return p < q ? p : q; }},
    {"eq", BinaryOp::eq, [](double p, double q) { return p == q ? 1.0 : 0.0; }},
    {"ne", BinaryOp::ne, [](double p, double q) { return p != q ? 1.0 : 0.0; }},
    {"gt", BinaryOp::gt, [](double p, double q) { return p > q ? 1.0 : 0.0; }},
    {"ge", BinaryOp::ge, [](double p, double q) { return p >= q ? 1.0 : 0.0; }},
    {"lt", BinaryOp::lt, [](double p, double q) { return p < q ? 1.0 : 0.0; }},
    {"le", BinaryOp::le, [](double p, double q) { return p <= q ? 1.0 : 0.0; }},
};

struct BinaryLayoutCase {
  std::string name;
  StridedLayout l;
  int64_t a_size, b_size, out_size;  // buffer sizes in elements
};

BinaryLayoutCase make_case(std::string name, std::vector<int64_t> shape, std::vector<int64_t> a,
                           std::vector<int64_t> b, std::vector<int64_t> out = {}) {
  if (out.empty()) out = contiguous(shape);
  auto extent = [&](const std::vector<int64_t>& s) {
    int64_t e = 1;
    for (size_t d = 0; d < shape.size(); ++d) e += (shape[d] - 1) * s[d];
    return e;
  };
  return {std::move(name), layout(shape, out, a, b), extent(a), extent(b), extent(out)};
}

std::vector<BinaryLayoutCase> binary_layouts() {
  return {
      make_case("contiguous_37", {37}, {1}, {1}),
      make_case("contiguous_3x4x5", {3, 4, 5}, {20, 5, 1}, {20, 5, 1}),
      make_case("row_broadcast_2x3_plus_3", {2, 3}, {3, 1}, {0, 1}),
      make_case("column_broadcast_2x3_plus_2x1", {2, 3}, {3, 1}, {1, 0}),
      make_case("scalar_b_4x5", {4, 5}, {5, 1}, {0, 0}),
      make_case("scalar_a_4x5", {4, 5}, {0, 0}, {5, 1}),
      make_case("both_broadcast_4x1_and_1x5", {4, 5}, {1, 0}, {0, 1}),
      make_case("transposed_a_middle_broadcast_b_4x3x5", {4, 3, 5}, {1, 20, 4}, {5, 0, 1}),
      make_case("transposed_out_3x4", {3, 4}, {4, 1}, {4, 1}, {1, 3}),
      make_case("size1_dims_1x6x1", {1, 6, 1}, {6, 1, 1}, {0, 1, 0}),
      make_case("large_contiguous_70001", {70001}, {1}, {1}),
      make_case("large_scalar_b_70001", {70001}, {1}, {0}),
      make_case("large_scalar_a_70001", {70001}, {0}, {1}),
      make_case("large_bias_300x257", {300, 257}, {257, 1}, {0, 1}),
      make_case("large_strided_257x300", {257, 300}, {1, 257}, {300, 1}),
  };
}

class CpuBinary : public ::testing::TestWithParam<BinaryLayoutCase> {};

template <typename T>
void check_binary(const BinaryLayoutCase& c, DType dtype, double rtol) {
  // Small integers make ties, so comparisons and maximum/minimum see equal operands.
  auto a_d = random_values(c.a_size, -3, 3, 1), b_d = random_values(c.b_size, -3, 3, 2);
  for (auto& v : a_d) v = std::round(v * 2) / 2;
  for (auto& v : b_d) v = std::round(v * 2) / 2;
  for (auto& v : b_d)
    if (v == 0) v = 0.5;  // keep div finite
  std::vector<T> a(a_d.begin(), a_d.end()), b(b_d.begin(), b_d.end());
  for (const auto& op : kBinaryOps) {
    std::vector<T> out(c.out_size, T(-999));
    cpu().binary(op.op, dtype, out.data(), a.data(), b.data(), c.l);
    for_each_index(c.l, [&](int64_t o, int64_t ia, int64_t ib) {
      const double want = op.f(double(a[ia]), double(b[ib]));
      if (std::abs(double(out[o]) - want) > rtol * std::abs(want))
        ADD_FAILURE() << op.name << " " << c.name << ": out[" << o << "] = " << out[o] << ", want "
                      << want;
    });
  }
}

TEST_P(CpuBinary, AllOps_float64) { check_binary<double>(GetParam(), DType::float64, 1e-15); }
TEST_P(CpuBinary, AllOps_float32) { check_binary<float>(GetParam(), DType::float32, 1e-7); }

INSTANTIATE_TEST_SUITE_P(Layouts, CpuBinary, ::testing::ValuesIn(binary_layouts()),
                         [](const auto& info) { return info.param.name; });

TEST(CpuBinaryExtra, InPlaceOutEqualsA_BiasAdd_8x16) {
  auto a = random_values(128, -1, 1, 3), b = random_values(16, -1, 1, 4);
  auto out = a;
  cpu().binary(BinaryOp::add, DType::float64, out.data(), out.data(), b.data(),
               layout({8, 16}, {16, 1}, {16, 1}, {0, 1}));
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[i], a[i] + b[i % 16]);
}

TEST(CpuBinaryExtra, MaximumMinimumPropagateNaN) {
  std::vector<double> a{kNaN, 1.0, 2.0}, b{1.0, kNaN, 2.0}, out(3);
  auto l = layout({3}, {1}, {1}, {1});
  cpu().binary(BinaryOp::maximum, DType::float64, out.data(), a.data(), b.data(), l);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[2], 2.0);
  cpu().binary(BinaryOp::minimum, DType::float64, out.data(), a.data(), b.data(), l);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[2], 2.0);
}

// ---- reduce and argmax --------------------------------------------------------------------------

struct ReduceShape {
  int64_t outer, r, inner;
};

std::string shape_name(const ReduceShape& s) {
  return std::to_string(s.outer) + "x" + std::to_string(s.r) + "x" + std::to_string(s.inner);
}

class CpuReduce : public ::testing::TestWithParam<ReduceShape> {};

TEST_P(CpuReduce, SumMaxMinMatchNaive_float64) {
  const auto s = GetParam();
  auto x = random_values(size_t(s.outer * s.r * s.inner), -5, 5, 9);
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
    std::vector<double> out(size_t(s.outer * s.inner), kNaN);
    cpu().reduce(op, DType::float64, out.data(), x.data(), s.outer, s.r, s.inner);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        double want = op == ReduceOp::sum ? 0 : op == ReduceOp::max ? -kInf : kInf;
        for (int64_t j = 0; j < s.r; ++j) {
          const double v = x[(o * s.r + j) * s.inner + i];
          want = op == ReduceOp::sum   ? want + v
                 : op == ReduceOp::max ? std::max(want, v)
                                       : std::min(want, v);
        }
        expect_close(
            out[o * s.inner + i], want, 1e-12, 1e-9,
            "op " + std::to_string(int(op)) + " at " + std::to_string(o) + "," + std::to_string(i));
      }
  }
}

TEST_P(CpuReduce, ArgmaxIsFirstMaximum_float32) {
  const auto s = GetParam();
  // Few distinct values, so most slices have ties.
  auto xd = random_values(size_t(s.outer * s.r * s.inner), 0, 4, 10);
  std::vector<float> x(xd.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::floor(float(xd[i]));
  std::vector<int64_t> out(size_t(s.outer * s.inner), -1);
  cpu().argmax(DType::float32, out.data(), x.data(), s.outer, s.r, s.inner);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      int64_t want = 0;
      for (int64_t j = 1; j < s.r; ++j)
        if (x[(o * s.r + j) * s.inner + i] > x[(o * s.r + want) * s.inner + i]) want = j;
      ASSERT_EQ(out[o * s.inner + i], want) << o << "," << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuReduce,
                         ::testing::Values(ReduceShape{1, 1, 1}, ReduceShape{2, 3, 4},
                                           ReduceShape{3, 5, 1}, ReduceShape{1, 7, 13},
                                           ReduceShape{4, 7, 300}, ReduceShape{1, 100003, 1},
                                           ReduceShape{3, 40000, 1}, ReduceShape{64, 600, 1},
                                           ReduceShape{2, 500, 70}, ReduceShape{5, 1, 3}),
                         [](const auto& info) { return shape_name(info.param); });

TEST(CpuReduceExtra, Float32SumIsAccurate_1x1048576x1) {
  const int64_t n = int64_t{1} << 20;
  std::vector<float> x(n, 0.1f);
  float out = 0;
  cpu().reduce(ReduceOp::sum, DType::float32, &out, x.data(), 1, n, 1);
  EXPECT_NEAR(out, double(0.1f) * double(n), 0.01);  // a float running sum is off by ~1e3 here
}

TEST(CpuReduceExtra, MaxPropagatesNaNAndEmptyReduceGivesIdentity) {
  std::vector<double> x{1.0, kNaN, 3.0};
  double out = 0;
  cpu().reduce(ReduceOp::max, DType::float64, &out, x.data(), 1, 3, 1);
  EXPECT_TRUE(std::isnan(out));
  cpu().reduce(ReduceOp::sum, DType::float64, &out, x.data(), 1, 0, 1);
  EXPECT_EQ(out, 0.0);
  int64_t arg = -1;
  cpu().argmax(DType::float64, &arg, x.data(), 1, 3, 1);
  EXPECT_EQ(arg, 1);  // NaN counts as the maximum, as torch.argmax
}

// ---- gemm ---------------------------------------------------------------------------------------

// C[m, n] = alpha * op(A) op(B) + beta * C on row-major buffers with leading dimensions.
void naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
    }
}

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k, batch;
  bool broadcast_a;  // stride_a = 0
};

std::string gemm_name(const GemmCase& c) {
  return std::string(c.ta ? "T" : "N") + (c.tb ? "T" : "N") + "_m" + std::to_string(c.m) + "_n" +
         std::to_string(c.n) + "_k" + std::to_string(c.k) + "_batch" + std::to_string(c.batch) +
         (c.broadcast_a ? "_broadcastA" : "");
}

class CpuGemm : public ::testing::TestWithParam<GemmCase> {};

template <typename T>
void check_gemm(const GemmCase& c, DType dtype, double tol) {
  // Leading dimensions padded by 2 so that they differ from the row length.
  const int64_t lda = (c.ta ? c.m : c.k) + 2, ldb = (c.tb ? c.k : c.n) + 2, ldc = c.n + 1;
  const int64_t a_rows = c.ta ? c.k : c.m, b_rows = c.tb ? c.n : c.k;
  const int64_t stride_a = c.broadcast_a ? 0 : a_rows * lda, stride_b = b_rows * ldb,
                stride_c = c.m * ldc;
  auto a_d = random_values(size_t(std::max<int64_t>(stride_a * c.batch, a_rows * lda)), -1, 1, 11);
  auto b_d = random_values(size_t(stride_b * c.batch), -1, 1, 12);
  auto c_d = random_values(size_t(stride_c * c.batch), -1, 1, 13);
  const double alpha = 1.5, beta = 0.5;
  std::vector<T> a(a_d.begin(), a_d.end()), b(b_d.begin(), b_d.end()), cc(c_d.begin(), c_d.end());
  cpu().gemm(dtype, c.ta, c.tb, c.m, c.n, c.k, alpha, a.data(), lda, stride_a, b.data(), ldb,
             stride_b, beta, cc.data(), ldc, stride_c, c.batch);
  // Reference on the values as rounded to T.
  std::vector<double> ar(a.begin(), a.end()), br(b.begin(), b.end()), cr(cc.size());
  for (size_t i = 0; i < cr.size(); ++i) cr[i] = double(T(c_d[i]));
  for (int64_t i = 0; i < c.batch; ++i)
    naive_gemm(c.ta, c.tb, c.m, c.n, c.k, alpha, ar.data() + i * stride_a, lda,
               br.data() + i * stride_b, ldb, beta, cr.data() + i * stride_c, ldc);
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        const int64_t at = bi * stride_c + i * ldc + j;
        ASSERT_NEAR(double(cc[at]), cr[at], tol * (1 + c.k)) << bi << "," << i << "," << j;
      }
  // Padding between rows of C is untouched.
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t i = 0; i < c.m; ++i) {
      const int64_t at = bi * stride_c + i * ldc + c.n;
      ASSERT_EQ(cc[at], T(c_d[at]));
    }
}

TEST_P(CpuGemm, MatchesNaive_float64) { check_gemm<double>(GetParam(), DType::float64, 1e-14); }
TEST_P(CpuGemm, MatchesNaive_float32) { check_gemm<float>(GetParam(), DType::float32, 1e-6); }

INSTANTIATE_TEST_SUITE_P(Transposes, CpuGemm,
                         ::testing::Values(GemmCase{false, false, 3, 4, 5, 1, false},
                                           GemmCase{true, false, 3, 4, 5, 1, false},
                                           GemmCase{false, true, 3, 4, 5, 1, false},
                                           GemmCase{true, true, 3, 4, 5, 1, false},
                                           GemmCase{false, false, 64, 48, 80, 1, false},
                                           GemmCase{true, true, 33, 17, 65, 1, false},
                                           GemmCase{false, false, 3, 4, 5, 3, true},
                                           GemmCase{true, false, 2, 3, 4, 5, false},
                                           GemmCase{false, true, 16, 16, 16, 256, false},
                                           GemmCase{true, true, 8, 9, 10, 300, true}),
                         [](const auto& info) { return gemm_name(info.param); });

TEST(CpuGemmExtra, K0ScalesCAndBeta0IgnoresNaN_m2_n3) {
  std::vector<double> c(6, kNaN);
  cpu().gemm(DType::float64, false, false, 2, 3, 0, 1.0, nullptr, 0, 0, nullptr, 3, 0, 0.0,
             c.data(), 3, 0, 1);
  for (double v : c) EXPECT_EQ(v, 0.0);
  std::vector<double> c2(6, 2.0);
  cpu().gemm(DType::float64, false, false, 2, 3, 0, 1.0, nullptr, 0, 0, nullptr, 3, 0, 0.5,
             c2.data(), 3, 0, 1);
  for (double v : c2) EXPECT_EQ(v, 1.0);
  // beta == 0 with k > 0: NaN in C must not leak into the result.
  std::vector<double> a{1, 2}, b{3, 4, 5, 6, 7, 8}, c3(3, kNaN);
  cpu().gemm(DType::float64, false, false, 1, 3, 2, 1.0, a.data(), 2, 0, b.data(), 3, 0, 0.0,
             c3.data(), 3, 0, 1);
  EXPECT_EQ(c3, (std::vector<double>{1 * 3 + 2 * 6, 1 * 4 + 2 * 7, 1 * 5 + 2 * 8}));
}

// ---- softmax ------------------------------------------------------------------------------------

struct SoftmaxCase {
  int64_t outer, n, inner;
  bool log;
};

std::string softmax_name(const SoftmaxCase& c) {
  return std::string(c.log ? "log_softmax_" : "softmax_") + std::to_string(c.outer) + "x" +
         std::to_string(c.n) + "x" + std::to_string(c.inner);
}

class CpuSoftmax : public ::testing::TestWithParam<SoftmaxCase> {};

TEST_P(CpuSoftmax, ForwardMatchesFormula_float64) {
  const auto c = GetParam();
  const int64_t total = c.outer * c.n * c.inner;
  auto x = random_values(size_t(total), -4, 4, 21);
  for (auto& v : x) v += 800;  // exp(x) without the max subtracted would overflow double
  std::vector<double> y(size_t(total), kNaN);
  cpu().softmax(DType::float64, y.data(), x.data(), c.outer, c.n, c.inner, c.log);
  for (int64_t o = 0; o < c.outer; ++o)
    for (int64_t i = 0; i < c.inner; ++i) {
      double mx = -kInf, sum = 0;
      for (int64_t j = 0; j < c.n; ++j) mx = std::max(mx, x[(o * c.n + j) * c.inner + i]);
      for (int64_t j = 0; j < c.n; ++j) sum += std::exp(x[(o * c.n + j) * c.inner + i] - mx);
      double total_p = 0;
      for (int64_t j = 0; j < c.n; ++j) {
        const int64_t at = (o * c.n + j) * c.inner + i;
        const double p = std::exp(x[at] - mx) / sum;
        // x is near 800, so log-softmax carries absolute error of a few ulp of 800.
        expect_close(y[at], c.log ? std::log(p) : p, 1e-12, 1e-12, softmax_name(c));
        total_p += c.log ? std::exp(y[at]) : y[at];
      }
      EXPECT_NEAR(total_p, 1.0, 1e-12);
    }
}

TEST_P(CpuSoftmax, BackwardMatchesCentralDifferences_float64) {
  // L = sum(w * y(x)); dL/dx from softmax_backward(dy = w) against differences of L.
  const auto c = GetParam();
  const int64_t total = c.outer * c.n * c.inner;
  auto x = random_values(size_t(total), -2, 2, 22);
  auto w = random_values(size_t(total), -1, 1, 23);
  std::vector<double> y(total), dx(total, kNaN);
  cpu().softmax(DType::float64, y.data(), x.data(), c.outer, c.n, c.inner, c.log);
  cpu().softmax_backward(DType::float64, dx.data(), w.data(), y.data(), c.outer, c.n, c.inner,
                         c.log);
  // Moving x[i] changes only its own slice, so the difference of L is summed over that slice,
  // term by term: differencing two sums of a long slice would round away what h resolves.
  auto dloss = [&](const std::vector<double>& xp, const std::vector<double>& xm, int64_t i) {
    std::vector<double> yp(total), ym(total);
    cpu().softmax(DType::float64, yp.data(), xp.data(), c.outer, c.n, c.inner, c.log);
    cpu().softmax(DType::float64, ym.data(), xm.data(), c.outer, c.n, c.inner, c.log);
    const int64_t o = i / (c.n * c.inner), col = i % c.inner;
    double s = 0;
    for (int64_t j = 0; j < c.n; ++j) {
      const int64_t at = (o * c.n + j) * c.inner + col;
      s += w[at] * (yp[at] - ym[at]);
    }
    return s;
  };
  const double h = 1e-5;
  // Every element for small cases, a sample of them for the large one.
  const int64_t step = total > 200 ? total / 97 : 1;
  for (int64_t i = 0; i < total; i += step) {
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    expect_close(dx[i], dloss(xp, xm, i) / (2 * h), 1e-6, 1e-8,
                 softmax_name(c) + " element " + std::to_string(i));
  }
}

TEST_P(CpuSoftmax, Float32AgreesWithFloat64) {
  const auto c = GetParam();
  const int64_t total = c.outer * c.n * c.inner;
  auto xd = random_values(size_t(total), -4, 4, 24);
  auto x = to_float(xd);
  std::vector<double> yd(total);
  std::vector<float> y(total);
  cpu().softmax(DType::float64, yd.data(), xd.data(), c.outer, c.n, c.inner, c.log);
  cpu().softmax(DType::float32, y.data(), x.data(), c.outer, c.n, c.inner, c.log);
  for (int64_t i = 0; i < total; ++i) expect_close(y[i], yd[i], 1e-5, 1e-6, softmax_name(c));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuSoftmax,
                         ::testing::Values(SoftmaxCase{2, 5, 1, false}, SoftmaxCase{2, 5, 1, true},
                                           SoftmaxCase{3, 4, 6, false}, SoftmaxCase{3, 4, 6, true},
                                           SoftmaxCase{2, 3, 300, false},
                                           SoftmaxCase{2, 3, 300, true},
                                           SoftmaxCase{1, 1, 1, false}, SoftmaxCase{1, 1, 1, true},
                                           SoftmaxCase{128, 300, 1, false},
                                           SoftmaxCase{128, 300, 1, true}),
                         [](const auto& info) { return softmax_name(info.param); });

TEST(CpuSoftmaxExtra, HugeLogitsStayFinite_float32) {
  std::vector<float> x{1000.f, 0.f, -1000.f, 1000.f}, y(4);
  cpu().softmax(DType::float32, y.data(), x.data(), 1, 4, 1, false);
  EXPECT_EQ(y, (std::vector<float>{0.5f, 0.f, 0.f, 0.5f}));
  cpu().softmax(DType::float32, y.data(), x.data(), 1, 4, 1, true);
  EXPECT_NEAR(y[0], -std::log(2.f), 1e-6);
  EXPECT_NEAR(y[2], -2000.f - std::log(2.f), 1e-3);
}

// ---- losses -------------------------------------------------------------------------------------

TEST(CpuNll, ForwardBackward_n3_c4) {
  std::vector<double> logp{-1, -2, -3, -4, -0.5, -1.5, -2.5, -3.5, -9, -8, -7, -6};
  std::vector<int64_t> labels{2, 0, 3};
  std::vector<double> loss(3);
  cpu().nll(DType::float64, loss.data(), logp.data(), labels.data(), 3, 4);
  EXPECT_EQ(loss, (std::vector<double>{3, 0.5, 6}));
  std::vector<double> dloss{1, 2, 0.5}, dlogp(12, kNaN);
  cpu().nll_backward(DType::float64, dlogp.data(), dloss.data(), labels.data(), 3, 4);
  EXPECT_EQ(dlogp, (std::vector<double>{0, 0, -1, 0, -2, 0, 0, 0, 0, 0, 0, -0.5}));
  std::vector<float> logpf(logp.begin(), logp.end()), lossf(3);
  cpu().nll(DType::float32, lossf.data(), logpf.data(), labels.data(), 3, 4);
  EXPECT_EQ(lossf, (std::vector<float>{3, 0.5, 6}));
}

TEST(CpuNll, CheckLabels_c4) {
  std::vector<int64_t> labels{0, 3, 4, 100, -1, 2};
  try {
    cpu().check_labels(labels.data(), 6, 4, "cross_entropy");
    ADD_FAILURE() << "no error for labels 4, 100, -1 with 4 classes";
  } catch (const nabla::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cross_entropy: label 4 at index 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 bad labels"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(cpu().check_labels(labels.data(), 2, 4, "nll"));
  EXPECT_NO_THROW(cpu().check_labels(labels.data(), 0, 4, "nll"));
}

// ---- optimizers ---------------------------------------------------------------------------------
// Each runs 3 steps in float64 against torch.optim's documented update written out per element,
// and in float32 against the float64 result.

// A ParamGroup of one tensor (the optimizers of optim/ put all their tensors in one group).
struct OneTensor {
  void* p;
  const void* g;
  void* s0 = nullptr;
  void* s1 = nullptr;
  void* s2 = nullptr;
  int64_t n = 0, step = 1;
  nabla::ParamGroup group() const {
    nabla::ParamGroup pg;
    pg.count = 1;
    pg.params = &p;
    pg.grads = &g;
    pg.state0 = &s0;
    pg.state1 = &s1;
    pg.state2 = &s2;
    pg.sizes = &n;
    pg.steps = &step;
    return pg;
  }
};

const std::vector<double> kParam0{0.5, -1.0, 2.0, 0.0, -0.25};
const std::vector<std::vector<double>> kGrads{
    {0.1, -0.2, 0.3, 0.0, 1.0}, {-0.4, 0.5, 0.1, 0.2, -1.0}, {0.3, 0.3, -0.6, -0.1, 0.5}};

struct SgdCase {
  std::string name;
  double lr, momentum, dampening, wd;
  bool nesterov;
};

class CpuSgd : public ::testing::TestWithParam<SgdCase> {};

template <typename T>
std::vector<T> run_sgd(const SgdCase& c, DType dtype) {
  std::vector<T> p(kParam0.begin(), kParam0.end()), buf(p.size(), T(0));
  for (size_t t = 0; t < kGrads.size(); ++t) {
    std::vector<T> g(kGrads[t].begin(), kGrads[t].end());
    OneTensor one{p.data(), g.data(), buf.data(), nullptr, nullptr, int64_t(p.size()), int64_t(t + 1)};
    cpu().sgd_step(dtype, one.group(), c.lr, c.momentum, c.dampening, c.wd, c.nesterov);
  }
  return p;
}

TEST_P(CpuSgd, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, buf(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i] + c.wd * p[i];
      if (c.momentum != 0) {
        buf[i] = t == 0 ? g : c.momentum * buf[i] + (1 - c.dampening) * g;
        g = c.nesterov ? g + c.momentum * buf[i] : buf[i];
      }
      p[i] -= c.lr * g;
    }
  auto got = run_sgd<double>(c, DType::float64);
  auto got32 = run_sgd<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-14) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuSgd,
                         ::testing::Values(SgdCase{"plain_lr0p1", 0.1, 0, 0, 0, false},
                                           SgdCase{"momentum0p9", 0.1, 0.9, 0, 0, false},
                                           SgdCase{"momentum0p9_dampening0p3", 0.1, 0.9, 0.3, 0,
                                                   false},
                                           SgdCase{"nesterov0p9", 0.05, 0.9, 0, 0, true},
                                           SgdCase{"weight_decay0p01", 0.1, 0, 0, 0.01, false},
                                           SgdCase{"all", 0.2, 0.8, 0.1, 0.05, true}),
                         [](const auto& info) { return info.param.name; });

TEST(CpuSgdExtra, NoMomentumBufferNeededWithoutMomentum_n5) {
  std::vector<double> p = kParam0, g = kGrads[0];
  OneTensor one{p.data(), g.data(), nullptr, nullptr, nullptr, 5, 1};
  cpu().sgd_step(DType::float64, one.group(), 0.5, 0, 0, 0, false);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_DOUBLE_EQ(p[i], kParam0[i] - 0.5 * g[i]);
}

struct AdamCase {
  std::string name;
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
};

class CpuAdam : public ::testing::TestWithParam<AdamCase> {};

template <typename T>
std::vector<T> run_adam(const AdamCase& c, DType dtype) {
  std::vector<T> p(kParam0.begin(), kParam0.end()), m(p.size(), T(0)), v(p.size(), T(0));
  for (size_t t = 0; t < kGrads.size(); ++t) {
    std::vector<T> g(kGrads[t].begin(), kGrads[t].end());
    OneTensor one{p.data(), g.data(), m.data(), v.data(), nullptr, int64_t(p.size()), int64_t(t + 1)};
    cpu().adam_step(dtype, one.group(), c.lr, c.beta1, c.beta2, c.eps, c.wd, c.decoupled);
  }
  return p;
}

TEST_P(CpuAdam, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, m(p.size()), v(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t) {
    const double step = double(t + 1);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i];
      if (c.decoupled)
        p[i] *= 1 - c.lr * c.wd;
      else
        g += c.wd * p[i];
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(c.beta1, step));
      const double v_hat = v[i] / (1 - std::pow(c.beta2, step));
      p[i] -= c.lr * m_hat / (std::sqrt(v_hat) + c.eps);
    }
  }
  auto got = run_adam<double>(c, DType::float64);
  auto got32 = run_adam<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-13) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, CpuAdam,
    ::testing::Values(AdamCase{"adam_default", 1e-3, 0.9, 0.999, 1e-8, 0, false},
                      AdamCase{"adam_lr0p1_wd0p1", 0.1, 0.9, 0.999, 1e-8, 0.1, false},
                      AdamCase{"adamw_lr0p1_wd0p1", 0.1, 0.9, 0.999, 1e-8, 0.1, true},
                      AdamCase{"adam_beta1_0p3_beta2_0p5_eps0p1", 0.05, 0.3, 0.5, 0.1, 0, false}),
    [](const auto& info) { return info.param.name; });

struct AdagradCase {
  std::string name;
  double lr, lr_decay, wd, eps;
};

class CpuAdagrad : public ::testing::TestWithParam<AdagradCase> {};

template <typename T>
std::vector<T> run_adagrad(const AdagradCase& c, DType dtype) {
  std::vector<T> p(kParam0.begin(), kParam0.end()), sum(p.size(), T(0));
  for (size_t t = 0; t < kGrads.size(); ++t) {
    std::vector<T> g(kGrads[t].begin(), kGrads[t].end());
    OneTensor one{p.data(), g.data(), sum.data(), nullptr, nullptr, int64_t(p.size()), int64_t(t + 1)};
    cpu().adagrad_step(dtype, one.group(), c.lr, c.lr_decay, c.wd, c.eps);
  }
  return p;
}

TEST_P(CpuAdagrad, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, sum(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t) {
    const double clr = c.lr / (1 + double(t) * c.lr_decay);  // step - 1 == t
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t][i] + c.wd * p[i];
      sum[i] += g * g;
      p[i] -= clr * g / (std::sqrt(sum[i]) + c.eps);
    }
  }
  auto got = run_adagrad<double>(c, DType::float64);
  auto got32 = run_adagrad<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-14) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuAdagrad,
                         ::testing::Values(AdagradCase{"default_lr0p01", 0.01, 0, 0, 1e-10},
                                           AdagradCase{"lr_decay0p5", 0.1, 0.5, 0, 1e-10},
                                           AdagradCase{"wd0p1_eps0p01", 0.1, 0.1, 0.1, 1e-2}),
                         [](const auto& info) { return info.param.name; });

struct RmspropCase {
  std::string name;
  double lr, alpha, eps, wd, momentum;
  bool centered;
};

class CpuRmsprop : public ::testing::TestWithParam<RmspropCase> {};

template <typename T>
std::vector<T> run_rmsprop(const RmspropCase& c, DType dtype) {
  std::vector<T> p(kParam0.begin(), kParam0.end()), sq(p.size(), T(0)), buf(p.size(), T(0)),
      gavg(p.size(), T(0));
  for (size_t t = 0; t < kGrads.size(); ++t) {
    std::vector<T> g(kGrads[t].begin(), kGrads[t].end());
    OneTensor one{p.data(), g.data(), sq.data(), c.momentum > 0 ? buf.data() : nullptr,
                  c.centered ? gavg.data() : nullptr, int64_t(p.size()), int64_t(t + 1)};
    cpu().rmsprop_step(dtype, one.group(), c.lr, c.alpha, c.eps, c.wd, c.momentum, c.centered);
  }
  return p;
}

TEST_P(CpuRmsprop, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, sq(p.size()), buf(p.size()), gavg(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t][i] + c.wd * p[i];
      sq[i] = c.alpha * sq[i] + (1 - c.alpha) * g * g;
      double avg;
      if (c.centered) {
        gavg[i] = c.alpha * gavg[i] + (1 - c.alpha) * g;
        avg = std::sqrt(sq[i] - gavg[i] * gavg[i]) + c.eps;
      } else {
        avg = std::sqrt(sq[i]) + c.eps;
      }
      if (c.momentum > 0) {
        buf[i] = c.momentum * buf[i] + g / avg;
        p[i] -= c.lr * buf[i];
      } else {
        p[i] -= c.lr * g / avg;
      }
    }
  auto got = run_rmsprop<double>(c, DType::float64);
  auto got32 = run_rmsprop<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-12) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-5) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, CpuRmsprop,
    ::testing::Values(RmspropCase{"default_lr0p01", 0.01, 0.99, 1e-8, 0, 0, false},
                      RmspropCase{"centered", 0.01, 0.9, 1e-8, 0, 0, true},
                      RmspropCase{"momentum0p9", 0.01, 0.99, 1e-8, 0, 0.9, false},
                      RmspropCase{"centered_momentum0p5_wd0p1", 0.02, 0.8, 1e-3, 0.1, 0.5, true}),
    [](const auto& info) { return info.param.name; });

// ---- random -------------------------------------------------------------------------------------

TEST(Philox, Random123KnownAnswers) {
  using nb::philox::philox4x32_10;
  using nb::philox::Words;
  auto check = [](Words ctr, uint32_t k0, uint32_t k1, Words want) {
    const Words got = philox4x32_10(ctr, k0, k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.w[i], want.w[i]) << "word " << i;
  };
  check({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  check({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
        {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  check({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
        {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
  static_assert(philox4x32_10(Words{{0, 0, 0, 0}}, 0, 0).w[0] == 0x6627e8d5u,
                "Philox is usable in constant expressions");
}

enum class Dist { uniform, normal };

struct RandCase {
  Dist dist;
  DType dtype;
};

std::string rand_name(const RandCase& c) {
  return std::string(c.dist == Dist::uniform ? "uniform_" : "normal_") + nb::dtype_name(c.dtype);
}

// Runs the kernel and returns its output as doubles.
std::vector<double> draw(const RandCase& c, int64_t n, uint64_t seed, uint64_t offset, double p0,
                         double p1) {
  std::vector<double> out(n);
  if (c.dtype == DType::float32) {
    std::vector<float> f(n, -12345.f);
    if (c.dist == Dist::uniform)
      cpu().rand_uniform(c.dtype, f.data(), n, seed, offset, p0, p1);
    else
      cpu().rand_normal(c.dtype, f.data(), n, seed, offset, p0, p1);
    out.assign(f.begin(), f.end());
  } else {
    std::fill(out.begin(), out.end(), -12345.0);
    if (c.dist == Dist::uniform)
      cpu().rand_uniform(c.dtype, out.data(), n, seed, offset, p0, p1);
    else
      cpu().rand_normal(c.dtype, out.data(), n, seed, offset, p0, p1);
  }
  return out;
}

class CpuRandom : public ::testing::TestWithParam<RandCase> {};

TEST_P(CpuRandom, SameSeedAndOffsetGiveSameNumbers_n1000) {
  const auto c = GetParam();
  auto a = draw(c, 1000, 42, 7, 0, 1), b = draw(c, 1000, 42, 7, 0, 1);
  EXPECT_EQ(a, b);
  auto other = draw(c, 1000, 43, 7, 0, 1);
  int same = 0;
  for (int i = 0; i < 1000; ++i) same += a[i] == other[i];
  EXPECT_LT(same, 5);
}

TEST_P(CpuRandom, OffsetShiftsTheStream_n301) {
  // Element i of a call with offset k is element i + k of a call with offset 0.
  const auto c = GetParam();
  const int64_t n = 301;
  auto base = draw(c, n + 16, 5, 0, -2, 3);
  for (uint64_t k : {1u, 2u, 3u, 4u, 5u, 11u}) {
    auto shifted = draw(c, n, 5, k, -2, 3);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(shifted[i], base[i + k]) << "offset " << k << " i " << i;
  }
}

TEST_P(CpuRandom, KernelMatchesElementFunctions_n50_offset3) {
  const auto c = GetParam();
  auto got = draw(c, 50, 99, 3, 1.5, 0.5);
  for (uint64_t i = 0; i < 50; ++i) {
    const uint64_t index = 3 + i;
    double want = 0;
    if (c.dist == Dist::uniform)
      want = c.dtype == DType::float32 ? nb::philox::uniform_float_at(99, index, 1.5, 0.5)
                                       : nb::philox::uniform_double_at(99, index, 1.5, 0.5);
    else
      want = c.dtype == DType::float32 ? nb::philox::normal_float_at(99, index, 1.5, 0.5)
                                       : nb::philox::normal_double_at(99, index, 1.5, 0.5);
    ASSERT_EQ(got[i], want) << i;
  }
}

TEST_P(CpuRandom, ShortRangesCutAnywhereInABlock_n1to9_offset0to7) {
  const auto c = GetParam();
  for (int64_t n = 1; n <= 9; ++n)
    for (uint64_t offset = 0; offset < 8; ++offset) {
      auto got = draw(c, n, 7, offset, -1, 2);
      auto whole = draw(c, 24, 7, 0, -1, 2);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[i], whole[offset + i]) << "n " << n << " offset " << offset << " i " << i;
    }
}

TEST_P(CpuRandom, MomentsAndRange_n1048576) {
  const auto c = GetParam();
  const int64_t n = int64_t{1} << 20;  // also the parallel path
  const double p0 = c.dist == Dist::uniform ? -1.0 : 2.0, p1 = c.dist == Dist::uniform ? 3.0 : 0.5;
  auto x = draw(c, n, 1234, 0, p0, p1);
  double sum = 0, sq = 0, lo = kInf, hi = -kInf;
  for (double v : x) {
    sum += v;
    sq += v * v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double mean = sum / double(n), stddev = std::sqrt(sq / double(n) - mean * mean);
  if (c.dist == Dist::uniform) {
    EXPECT_NEAR(mean, 1.0, 0.01);
    EXPECT_NEAR(stddev, 4.0 / std::sqrt(12.0), 0.01);
    EXPECT_GE(lo, -1.0);
    EXPECT_LT(hi, 3.0);
    EXPECT_LT(lo, -0.999);
    EXPECT_GT(hi, 2.999);
  } else {
    EXPECT_NEAR(mean, 2.0, 0.005);
    EXPECT_NEAR(stddev, 0.5, 0.005);
    EXPECT_TRUE(std::isfinite(lo) && std::isfinite(hi));
    // About 1 in 15800 draws is beyond 4 sigma: a 2^20 sample has some on each side.
    EXPECT_LT(lo, 2.0 - 4 * 0.5);
    EXPECT_GT(hi, 2.0 + 4 * 0.5);
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CpuRandom,
                         ::testing::Values(RandCase{Dist::uniform, DType::float32},
                                           RandCase{Dist::uniform, DType::float64},
                                           RandCase{Dist::normal, DType::float32},
                                           RandCase{Dist::normal, DType::float64}),
                         [](const auto& info) { return rand_name(info.param); });

}  // namespace

// Two tensors of different sizes and step counts in one group update as two separate calls.
TEST(CpuAdamGroup, TwoTensorsInOneCallEqualTwoCalls_n5_n3) {
  std::vector<double> pa = kParam0, pb{1.0, -2.0, 0.5}, ga = kGrads[0], gb{0.3, 0.1, -0.2};
  std::vector<double> ma(5, 0.1), va(5, 0.2), mb(3, 0.0), vb(3, 0.0);
  auto pa2 = pa, pb2 = pb, ma2 = ma, va2 = va, mb2 = mb, vb2 = vb;
  void* params[2] = {pa.data(), pb.data()};
  const void* grads[2] = {ga.data(), gb.data()};
  void* m[2] = {ma.data(), mb.data()};
  void* v[2] = {va.data(), vb.data()};
  void* none[2] = {nullptr, nullptr};
  int64_t sizes[2] = {5, 3}, steps[2] = {4, 1};
  nabla::ParamGroup g{2, params, grads, m, v, none, sizes, steps};
  cpu().adam_step(DType::float64, g, 0.01, 0.9, 0.99, 1e-8, 0.1, true);
  OneTensor a{pa2.data(), ga.data(), ma2.data(), va2.data(), nullptr, 5, 4};
  OneTensor b{pb2.data(), gb.data(), mb2.data(), vb2.data(), nullptr, 3, 1};
  cpu().adam_step(DType::float64, a.group(), 0.01, 0.9, 0.99, 1e-8, 0.1, true);
  cpu().adam_step(DType::float64, b.group(), 0.01, 0.9, 0.99, 1e-8, 0.1, true);
  EXPECT_EQ(pa, pa2);
  EXPECT_EQ(pb, pb2);
  EXPECT_EQ(ma, ma2);
  EXPECT_EQ(vb, vb2);
  EXPECT_NE(pa, kParam0);
}
