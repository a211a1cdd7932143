// CPU-vs-CUDA parity of the reductions (sum, mean, max, min, argmax, sum_to), forward and backward.
// The parity check is in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

#include <tuple>

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- reductions --------------------------------------------------------------------------------

struct ReduceGeometry {
  Shape shape;
  std::vector<int64_t> axes;
  bool keepdim;
  Layout layout;
};
std::string reduce_geometry_name(const ReduceGeometry& g) {
  return shape_name(g.shape) + layout_suffix(g.layout) + "_" + axes_name(g.axes) + (g.keepdim ? "_keep" : "");
}
void PrintTo(const ReduceGeometry& g, std::ostream* os) { *os << reduce_geometry_name(g); }
int64_t reduced_count(const ReduceGeometry& g) {
  if (g.axes.empty()) return nb::numel_of(g.shape);
  int64_t r = 1;
  for (int64_t a : g.axes) r *= g.shape[static_cast<size_t>(a < 0 ? a + int64_t(g.shape.size()) : a)];
  return r;
}

const std::vector<ReduceGeometry>& reduce_geometries() {
  using L = Layout;
  static const std::vector<ReduceGeometry> g = {
      {{4, 1}, {1}, false, L::contiguous},          {{6, 7}, {1}, false, L::contiguous},
      {{4, 1023}, {1}, false, L::contiguous},       {{3, 4097}, {1}, true, L::contiguous},
      {{2, 7, 5}, {1}, true, L::contiguous},        {{2, 1023, 3}, {1}, false, L::contiguous},
      {{4097, 3}, {0}, false, L::contiguous},       {{1023, 7}, {0}, true, L::contiguous},
      {{2, 3, 4, 5}, {0, 2}, false, L::contiguous}, {{2, 3, 4, 5}, {1, 2}, true, L::contiguous},
      {{2, 3, 4, 5}, {-1}, false, L::contiguous},   {{5, 4097}, {}, false, L::contiguous},
      {{kBig}, {}, false, L::contiguous},           {{1025, 1023}, {1}, false, L::contiguous},
      {{1025, 1023}, {0}, true, L::contiguous},     {{33, 31}, {1}, false, L::transposed},
      {{17, 241}, {0, 1}, true, L::strided},        {{1}, {}, false, L::contiguous},
      {{}, {}, false, L::contiguous},               {{4097}, {0}, false, L::offset},
      // more rows than one launch's 65,535 blocks (kMaxRowBlocks): the grid-stride loop over rows
      {{70001, 5}, {1}, false, L::contiguous},      {{70001, 3, 2}, {1}, true, L::contiguous},
  };
  return g;
}

struct ReduceCase {
  std::string name;
  std::function<Tensor(const Tensor&, const std::vector<int64_t>&, bool)> f;
};
void PrintTo(const ReduceCase& c, std::ostream* os) { *os << c.name; }
const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> c = {
      {"sum", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::sum(x, a, k); }},
      {"mean", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::mean(x, a, k); }},
      {"max", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::max(x, a, k); }},
      {"min", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::min(x, a, k); }},
  };
  return c;
}

Options reduce_options(const std::string& op, int64_t r, DType dtype) {
  if (dtype == DType::float64) return f64({1e-11, 1e-12 * std::sqrt(double(r) + 1)}, {1e-11, 1e-13});
  if (op == "max" || op == "min") return f32({0, 0}, {1e-6, 1e-7});  // the extremum is one of the inputs
  Tol t = sum_tol(r);
  if (op == "mean") t.atol = t.atol / double(r) + 1e-7;
  return f32(t, {1e-6, 1e-7});
}

using ReduceParam = std::tuple<ReduceCase, ReduceGeometry>;
std::string reduce_name(const ::testing::TestParamInfo<ReduceParam>& i) {
  return std::get<0>(i.param).name + "_" + reduce_geometry_name(std::get<1>(i.param));
}
class Reduce : public CudaParamTest<ReduceParam> {};
TEST_P(Reduce, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {arg(g.shape, -2, 2, g.layout)},
                     reduce_options(op.name, reduced_count(g), DType::float32)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Reduce,
                         ::testing::Combine(::testing::ValuesIn(reduce_cases()), ::testing::ValuesIn(reduce_geometries())),
                         reduce_name);

class ReduceF64 : public CudaParamTest<ReduceParam> {};
TEST_P(ReduceF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {arg(g.shape, -2, 2, g.layout)},
                     reduce_options(op.name, reduced_count(g), DType::float64)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, ReduceF64,
                         ::testing::Combine(::testing::ValuesIn(reduce_cases()),
                                            ::testing::Values(reduce_geometries()[3], reduce_geometries()[5],
                                                              reduce_geometries()[9], reduce_geometries()[12])),
                         reduce_name);

// max with ties: the gradient is shared equally among the tied maxima.
class ReduceTies : public CudaParamTest<ReduceParam> {};
TEST_P(ReduceTies, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.shape, -2, 2, g.layout);
  a.quantum = 1;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {a}, f32({0, 0}, {1e-6, 1e-7})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, ReduceTies,
                         ::testing::Combine(::testing::Values(reduce_cases()[2], reduce_cases()[3]),
                                            ::testing::Values(reduce_geometries()[2], reduce_geometries()[7],
                                                              reduce_geometries()[8])),
                         reduce_name);

// argmax: exact, the first maximum on ties.
struct ArgmaxCase {
  Shape shape;
  int64_t axis;
  bool keepdim;
  Layout layout;
  double quantum;
};
void PrintTo(const ArgmaxCase& c, std::ostream* os) {
  *os << shape_name(c.shape) << layout_suffix(c.layout) << " axis " << c.axis;
}
class Argmax : public CudaParamTest<ArgmaxCase> {};
TEST_P(Argmax, Exact) {
  const ArgmaxCase& c = GetParam();
  Arg a = arg(c.shape, -2, 2, c.layout);
  a.quantum = c.quantum;
  a.grad = false;
  EXPECT_TRUE(parity([&](const auto& x) { return nb::argmax(x[0], c.axis, c.keepdim); }, {a}, forward_only({0, 0})));
}
INSTANTIATE_TEST_SUITE_P(
    Cuda, Argmax,
    ::testing::Values(ArgmaxCase{{6, 7}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{4, 4097}, -1, false, Layout::contiguous, 0},
                      ArgmaxCase{{3, 1023, 5}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{4097, 3}, 0, true, Layout::contiguous, 0},
                      ArgmaxCase{{1025, 1023}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{64, 33}, 1, false, Layout::contiguous, 1},  // ties
                      ArgmaxCase{{7, 1025}, 0, false, Layout::contiguous, 1},
                      ArgmaxCase{{5, 9}, 0, true, Layout::contiguous, 0}, ArgmaxCase{{1}, 0, false, Layout::contiguous, 0},
                      ArgmaxCase{{33, 31}, 1, false, Layout::transposed, 0},
                      ArgmaxCase{{kBig}, 0, false, Layout::contiguous, 0},
                      // more rows than one launch's 65,535 blocks: the loop over rows
                      ArgmaxCase{{70001, 5}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{70001, 6}, -1, false, Layout::contiguous, 1}),
    [](const ::testing::TestParamInfo<ArgmaxCase>& i) {
      const auto& c = i.param;
      return shape_name(c.shape) + layout_suffix(c.layout) + "_axis" + (c.axis < 0 ? "m1" : std::to_string(c.axis)) +
             (c.keepdim ? "_keep" : "") + (c.quantum > 0 ? "_ties" : "");
    });

// sum_to: the inverse of broadcasting, differentiable.
std::vector<Case> sum_to_cases() {
  return {
      {"sum_to_4x3x5_to_3x1", {arg({4, 3, 5})}, [](const auto& x) { return nb::sum_to(x[0], {3, 1}); }, f32(sum_tol(20))},
      {"sum_to_1025x1023_to_1023", {arg({1025, 1023})}, [](const auto& x) { return nb::sum_to(x[0], {1023}); },
       f32(sum_tol(1025))},
      {"sum_to_7x9_to_scalar", {arg({7, 9})}, [](const auto& x) { return nb::sum_to(x[0], {}); }, f32(sum_tol(63))},
  };
}
INSTANTIATE_TEST_SUITE_P(SumTo, Parity, ::testing::ValuesIn(sum_to_cases()), case_name);

}  // namespace
