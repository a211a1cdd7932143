// CPU-vs-CUDA parity of the elementwise ops (unary, binary with broadcasting, comparisons) and of
// softmax and log-softmax, forward and backward. The parity check is in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

#include <tuple>

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- elementwise: unary ------------------------------------------------------------------------

struct Geometry {
  Shape shape;
  Layout layout;
};
std::string geometry_name(const Geometry& g) { return shape_name(g.shape) + layout_suffix(g.layout); }
void PrintTo(const Geometry& g, std::ostream* os) { *os << geometry_name(g); }

const std::vector<Geometry>& elementwise_geometries() {
  static const std::vector<Geometry> g = {
      {{}, Layout::contiguous},        {{1}, Layout::contiguous},          {{7}, Layout::contiguous},
      {{3, 341}, Layout::contiguous},  {{17, 241}, Layout::contiguous},    {{kBig}, Layout::contiguous},
      {{7}, Layout::offset},           {{4097}, Layout::offset},           {{31, 33}, Layout::transposed},
      {{17, 241}, Layout::strided},    {{1025, 1023}, Layout::narrow},
  };
  return g;
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> f;
  double lo, hi;
};
void PrintTo(const UnaryCase& c, std::ostream* os) { *os << c.name; }

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> c = {
      {"neg", [](const Tensor& x) { return nb::neg(x); }, -2, 2},
      {"exp", [](const Tensor& x) { return nb::exp(x); }, -5, 5},
      {"log", [](const Tensor& x) { return nb::log(x); }, 0.05, 4},
      {"sqrt", [](const Tensor& x) { return nb::sqrt(x); }, 0.05, 4},
      {"abs", [](const Tensor& x) { return nb::abs(x); }, -2, 2},
      {"pow2p5", [](const Tensor& x) { return nb::pow(x, 2.5); }, 0.1, 3},
      {"pow3", [](const Tensor& x) { return nb::pow(x, 3); }, -2, 2},
      {"powm1p5", [](const Tensor& x) { return nb::pow(x, -1.5); }, 0.2, 3},
      {"clamp", [](const Tensor& x) { return nb::clamp(x, -0.5, 0.75); }, -2, 2},
      {"affine", [](const Tensor& x) { return nb::affine(x, -1.5, 0.25); }, -2, 2},
      {"relu", [](const Tensor& x) { return nb::relu(x); }, -2, 2},
      {"leaky_relu", [](const Tensor& x) { return nb::leaky_relu(x, 0.1); }, -2, 2},
      {"elu", [](const Tensor& x) { return nb::elu(x, 0.7); }, -3, 2},
      {"sigmoid", [](const Tensor& x) { return nb::sigmoid(x); }, -8, 8},
      {"tanh", [](const Tensor& x) { return nb::tanh(x); }, -4, 4},
      {"gelu", [](const Tensor& x) { return nb::gelu(x); }, -5, 5},
      {"softplus", [](const Tensor& x) { return nb::softplus(x); }, -20, 20},
      {"silu", [](const Tensor& x) { return nb::silu(x); }, -8, 8},
      {"hardtanh", [](const Tensor& x) { return nb::hardtanh(x); }, -2, 2},
      {"hardtanh_m0p5_0p75", [](const Tensor& x) { return nb::hardtanh(x, -0.5, 0.75); }, -2, 2},
      // Far from 0: naive formulas overflow (e^100 is inf in float32) and give inf or NaN.
      {"sigmoid_wide", [](const Tensor& x) { return nb::sigmoid(x); }, -100, 100},
      {"tanh_wide", [](const Tensor& x) { return nb::tanh(x); }, -60, 60},
      {"softplus_wide", [](const Tensor& x) { return nb::softplus(x); }, -100, 100},
      {"gelu_wide", [](const Tensor& x) { return nb::gelu(x); }, -40, 40},
      {"elu_wide", [](const Tensor& x) { return nb::elu(x); }, -100, 5},
      {"silu_wide", [](const Tensor& x) { return nb::silu(x); }, -100, 100},
  };
  return c;
}

using UnaryParam = std::tuple<UnaryCase, Geometry>;
class Unary : public CudaParamTest<UnaryParam> {};
TEST_P(Unary, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0]); }, {arg(g.shape, op.lo, op.hi, g.layout)}, f32()));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Unary, ::testing::Combine(::testing::ValuesIn(unary_cases()),
                                                         ::testing::ValuesIn(elementwise_geometries())),
                         [](const ::testing::TestParamInfo<UnaryParam>& i) {
                           return std::get<0>(i.param).name + "_" + geometry_name(std::get<1>(i.param));
                         });

class UnaryF64 : public CudaParamTest<UnaryParam> {};
TEST_P(UnaryF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0]); }, {arg(g.shape, op.lo, op.hi, g.layout)}, f64()));
}
const std::vector<UnaryCase>& unary_f64_cases() {
  static const std::vector<UnaryCase> c = [] {
    std::vector<UnaryCase> out;
    for (const auto& u : unary_cases())
      if (u.name.find("_wide") == std::string::npos) out.push_back(u);
    return out;
  }();
  return c;
}
INSTANTIATE_TEST_SUITE_P(Cuda, UnaryF64,
                         ::testing::Combine(::testing::ValuesIn(unary_f64_cases()),
                                            ::testing::Values(Geometry{{7}, Layout::contiguous},
                                                              Geometry{{17, 241}, Layout::strided},
                                                              Geometry{{kBig}, Layout::contiguous})),
                         [](const ::testing::TestParamInfo<UnaryParam>& i) {
                           return std::get<0>(i.param).name + "_" + geometry_name(std::get<1>(i.param));
                         });

// ---- elementwise: binary with broadcasting --------------------------------------------------

struct BinaryGeometry {
  std::string name;
  Shape a;
  Layout la;
  Shape b;
  Layout lb;
};
void PrintTo(const BinaryGeometry& g, std::ostream* os) { *os << g.name; }

const std::vector<BinaryGeometry>& binary_geometries() {
  using L = Layout;
  static const std::vector<BinaryGeometry> g = {
      {"same_1", {1}, L::contiguous, {1}, L::contiguous},
      {"same_7", {7}, L::contiguous, {7}, L::contiguous},
      {"same_3x341", {3, 341}, L::contiguous, {3, 341}, L::contiguous},
      {"same_big", {kBig}, L::contiguous, {kBig}, L::contiguous},
      {"row_17x241_241", {17, 241}, L::contiguous, {241}, L::contiguous},
      {"col_17x1_17x241", {17, 1}, L::contiguous, {17, 241}, L::contiguous},
      {"both_5x1x7_4x7", {5, 1, 7}, L::contiguous, {4, 7}, L::contiguous},
      {"rank4_2x3x1x5_3x4x1", {2, 3, 1, 5}, L::contiguous, {3, 4, 1}, L::contiguous},
      {"scalar_right_4097", {4097}, L::contiguous, {}, L::contiguous},
      {"scalar_left_1023", {}, L::contiguous, {1023}, L::contiguous},
      {"transposed_31x33", {31, 33}, L::transposed, {31, 33}, L::contiguous},
      {"offset_strided_4097", {4097}, L::offset, {4097}, L::strided},
      {"narrow_row_7x9_9", {7, 9}, L::narrow, {9}, L::contiguous},
      {"row_big_1025x1023_1023", {1025, 1023}, L::contiguous, {1023}, L::contiguous},
  };
  return g;
}

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
  double gap_b = 0;  // divisors stay away from 0
};
void PrintTo(const BinaryCase& c, std::ostream* os) { *os << c.name; }

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> c = {
      {"add", [](const Tensor& a, const Tensor& b) { return nb::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return nb::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return nb::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return nb::div(a, b); }, 0.5},
      {"maximum", [](const Tensor& a, const Tensor& b) { return nb::maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return nb::minimum(a, b); }},
  };
  return c;
}

const std::vector<BinaryCase>& comparison_cases() {
  static const std::vector<BinaryCase> c = {
      {"eq", [](const Tensor& a, const Tensor& b) { return nb::eq(a, b); }},
      {"ne", [](const Tensor& a, const Tensor& b) { return nb::ne(a, b); }},
      {"gt", [](const Tensor& a, const Tensor& b) { return nb::gt(a, b); }},
      {"ge", [](const Tensor& a, const Tensor& b) { return nb::ge(a, b); }},
      {"lt", [](const Tensor& a, const Tensor& b) { return nb::lt(a, b); }},
      {"le", [](const Tensor& a, const Tensor& b) { return nb::le(a, b); }},
  };
  return c;
}

using BinaryParam = std::tuple<BinaryCase, BinaryGeometry>;
std::string binary_name(const ::testing::TestParamInfo<BinaryParam>& i) {
  return std::get<0>(i.param).name + "_" + std::get<1>(i.param).name;
}

class Binary : public CudaParamTest<BinaryParam> {};
TEST_P(Binary, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  b.gap = op.gap_b;
  const int64_t out = nb::numel_of(nb::broadcast_shapes(g.a, g.b, "test"));
  // A broadcast operand's gradient is a sum over the broadcast axes.
  const int64_t r = std::max(out / std::max<int64_t>(nb::numel_of(g.a), 1), out / std::max<int64_t>(nb::numel_of(g.b), 1));
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f32({}, sum_tol(r))));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Binary,
                         ::testing::Combine(::testing::ValuesIn(binary_cases()), ::testing::ValuesIn(binary_geometries())),
                         binary_name);

// Comparisons: forward only, exact, on values on a coarse grid so that ties are common.
class Comparison : public CudaParamTest<BinaryParam> {};
TEST_P(Comparison, ForwardExact) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  a.quantum = b.quantum = 0.5;
  a.grad = b.grad = false;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, forward_only({0, 0})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Comparison,
                         ::testing::Combine(::testing::ValuesIn(comparison_cases()),
                                            ::testing::Values(binary_geometries()[2], binary_geometries()[3],
                                                              binary_geometries()[4], binary_geometries()[8],
                                                              binary_geometries()[10])),
                         binary_name);

// maximum / minimum with many ties: the gradient goes to a on ties, on both devices.
class BinaryTies : public CudaParamTest<BinaryParam> {};
TEST_P(BinaryTies, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  a.quantum = b.quantum = 0.5;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f32({0, 0}, sum_tol(17))));
}
INSTANTIATE_TEST_SUITE_P(Cuda, BinaryTies,
                         ::testing::Combine(::testing::Values(binary_cases()[4], binary_cases()[5]),
                                            ::testing::Values(binary_geometries()[2], binary_geometries()[4])),
                         binary_name);

class BinaryF64 : public CudaParamTest<BinaryParam> {};
TEST_P(BinaryF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  b.gap = op.gap_b;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f64({1e-12, 1e-14}, {1e-10, 1e-11})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, BinaryF64,
                         ::testing::Combine(::testing::ValuesIn(binary_cases()),
                                            ::testing::Values(binary_geometries()[3], binary_geometries()[6],
                                                              binary_geometries()[10])),
                         binary_name);

// ---- softmax and log-softmax ------------------------------------------------------------------

struct SoftmaxCase {
  Shape shape;
  int64_t axis;
  Layout layout;
  double lo, hi;
  bool log;
};
void PrintTo(const SoftmaxCase& c, std::ostream* os) {
  *os << (c.log ? "log_softmax " : "softmax ") << shape_name(c.shape) << layout_suffix(c.layout) << " axis " << c.axis;
}
class Softmax : public CudaParamTest<SoftmaxCase> {};

Options softmax_options(const SoftmaxCase& c, DType dtype) {
  if (dtype == DType::float64) return f64({1e-11, 1e-14}, {1e-10, 1e-12});
  const int64_t n = c.shape[static_cast<size_t>(c.axis < 0 ? c.axis + int64_t(c.shape.size()) : c.axis)];
  const bool long_row = n > 64 || c.hi > 10;
  return f32({long_row ? 1e-3 : 1e-4, 1e-6}, {long_row ? 1e-3 : 1e-4, long_row ? 1e-5 : 1e-6});
}

TEST_P(Softmax, ForwardBackward) {
  const SoftmaxCase& c = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return c.log ? nb::log_softmax(x[0], c.axis) : nb::softmax(x[0], c.axis); },
                     {arg(c.shape, c.lo, c.hi, c.layout)}, softmax_options(c, DType::float32)));
}

std::vector<SoftmaxCase> softmax_cases(bool f64_subset) {
  std::vector<SoftmaxCase> out;
  for (bool log : {false, true}) {
    auto add = [&](Shape s, int64_t axis, Layout l = Layout::contiguous, double lo = -3, double hi = 3) {
      out.push_back({std::move(s), axis, l, lo, hi, log});
    };
    for (int64_t n : {1, 7, 1023, 4097}) add({3, n}, -1);
    if (f64_subset) {
      add({3, 1023, 5}, 1);
      continue;
    }
    for (int64_t n : {1, 7, 1023, 4097}) add({3, n, 5}, 1);
    for (int64_t n : {7, 1023}) add({n, 4}, 0);
    add({4097, 7}, -1);       // many short rows
    add({70001, 5}, -1);      // more rows than one launch's 65,535 blocks (kMaxRowBlocks)
    add({1025, 1023}, -1);    // many long rows
    add({8, 1023}, -1, Layout::contiguous, -100, 100);  // needs the max subtracted
    add({1023, 6}, -1, Layout::transposed);
    add({5, 1023}, -1, Layout::narrow);
  }
  return out;
}
std::string softmax_name(const ::testing::TestParamInfo<SoftmaxCase>& i) {
  const auto& c = i.param;
  return std::string(c.log ? "log_softmax_" : "softmax_") + shape_name(c.shape) + layout_suffix(c.layout) + "_axis" +
         (c.axis < 0 ? "m1" : std::to_string(c.axis)) + (c.hi > 10 ? "_wide" : "");
}
INSTANTIATE_TEST_SUITE_P(Cuda, Softmax, ::testing::ValuesIn(softmax_cases(false)), softmax_name);

class SoftmaxF64 : public CudaParamTest<SoftmaxCase> {};
TEST_P(SoftmaxF64, ForwardBackward) {
  const SoftmaxCase& c = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return c.log ? nb::log_softmax(x[0], c.axis) : nb::softmax(x[0], c.axis); },
                     {arg(c.shape, c.lo, c.hi, c.layout)}, softmax_options(c, DType::float64)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, SoftmaxF64, ::testing::ValuesIn(softmax_cases(true)), softmax_name);

}  // namespace
