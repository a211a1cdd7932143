// Reductions (sum, mean, max, min over any axes, argmax, sum_to): float64 gradient checks,
// hand-computed values and errors.
#include "test_util.h"

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

using ReduceFn = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);

// x = arange(24) as [2, 3, 4]: x[a, j, k] = 12a + 4j + k
Tensor x234() { return nb::arange(0.0, 24.0, 1.0, kF64).reshape({2, 3, 4}); }

// ---- gradient checks ---------------------------------------------------------------------------

std::vector<GradCase> reduce_cases() {
  struct Op {
    const char* name;
    ReduceFn fn;
  };
  const Op ops[] = {{"sum", nb::sum}, {"mean", nb::mean}, {"max", nb::max}, {"min", nb::min}};
  struct Axes {
    Shape shape;
    std::vector<int64_t> axes;
    const char* label;
  };
  const Axes axes[] = {
      {{3, 4}, {}, "all"},
      {{2, 3, 4}, {0}, "axis0"},
      {{2, 3, 4}, {1}, "axis1"},
      {{2, 3, 4}, {-1}, "axis-1"},
      {{2, 3, 4}, {0, 2}, "axes0,2"},
      {{2, 3, 4}, {2, 0}, "axes2,0"},
      {{2, 3, 4}, {1, 2}, "axes1,2"},
      {{2, 3, 2, 3}, {1, 3}, "axes1,3"},
      {{2, 3, 2, 3}, {0, 2, 3}, "axes0,2,3"},
      {{5}, {0}, "axis0"},
      {{}, {}, "all"},
  };
  std::vector<GradCase> cases;
  for (const Op& op : ops) {
    for (const Axes& a : axes) {
      for (bool keepdim : {false, true}) {
        ReduceFn fn = op.fn;
        std::vector<int64_t> ax = a.axes;
        Shape s = a.shape;
        cases.push_back({fmt::format("{}_{}_{}_{}", op.name, a.label, shape_name(s), keepdim ? "keepdim" : "nokeep"),
                         [fn, ax, keepdim](const Tensors& x) { return fn(x[0], ax, keepdim); },
                         // distinct values (ties in max/min have probability zero)
                         [s] { return Tensors{input(s, -3, 3, {})}; }});
      }
    }
  }
  // reductions of a non-contiguous view
  cases.push_back({"sum_axis0_of_transposed_3x4", [](const Tensors& x) { return nb::sum(x[0].t(), {0}); },
                   [] { return Tensors{input({3, 4})}; }});
  cases.push_back({"max_axis1_of_transposed_3x4", [](const Tensors& x) { return nb::max(x[0].t(), {1}); },
                   [] { return Tensors{input({3, 4}, -3, 3, {})}; }});
  cases.push_back({"mean_all_of_slice_step2_4x6",
                   [](const Tensors& x) { return x[0].slice(1, 0, 6, 2).mean(); },
                   [] { return Tensors{input({4, 6})}; }});
  cases.push_back({"shorthand_sum_max_mean_3x4",
                   [](const Tensors& x) { return x[0].sum({0}) * x[0].max({0}) + x[0].mean({0}, true); },
                   [] { return Tensors{input({3, 4}, -3, 3, {})}; }});
  // shapes the table above does not cover
  auto one = [](Shape s) { return [=] { return Tensors{input(s)}; }; };
  cases.push_back({"mean_axis-1_3x4", [](const Tensors& x) { return nb::mean(x[0], {-1}); }, one({3, 4})});
  cases.push_back({"mean_all_2x2x2", [](const Tensors& x) { return nb::mean(x[0]); }, one({2, 2, 2})});
  cases.push_back({"max_axis1_3x4", [](const Tensors& x) { return nb::max(x[0], {1}); }, one({3, 4})});
  cases.push_back({"max_all_keepdim_2x3", [](const Tensors& x) { return nb::max(x[0], {}, true); }, one({2, 3})});
  cases.push_back({"min_axes01_2x3x2", [](const Tensors& x) { return nb::min(x[0], {0, 1}); }, one({2, 3, 2})});
  return cases;
}

std::vector<GradCase> sum_to_cases() {
  struct C {
    Shape from, to;
  };
  const C cs[] = {{{2, 3, 4}, {3, 1}}, {{2, 3, 4}, {4}},       {{2, 3, 4}, {}},     {{2, 3, 4}, {1, 3, 1}},
                  {{2, 3, 4}, {2, 1, 4}}, {{3, 4}, {3, 4}},    {{3, 4}, {1, 1}},    {{5}, {1}}};
  std::vector<GradCase> cases;
  for (const C& c : cs) {
    Shape from = c.from, to = c.to;
    cases.push_back({fmt::format("sum_to_{}_to_{}", shape_name(from), shape_name(to)),
                     [to](const Tensors& x) { return nb::sum_to(x[0], to); },
                     [from] { return Tensors{input(from)}; }});
  }
  return cases;
}

class ReduceGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(ReduceGrad, CentralDifferenceFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(7);
  EXPECT_TRUE(gradcheck(c.f, c.make_inputs(), c.options));
}

TEST_P(ReduceGrad, Float32AgreesWithFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(7);
  EXPECT_TRUE(float32_agrees(c.f, c.make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(Reduce, ReduceGrad, ::testing::ValuesIn(reduce_cases()), grad_case_name);
INSTANTIATE_TEST_SUITE_P(SumTo, ReduceGrad, ::testing::ValuesIn(sum_to_cases()), grad_case_name);

// ---- forward values ------------------------------------------------------------------------------

TEST(ReduceForward, SumAll_2x3x4_is276) {
  EXPECT_TRUE(near(nb::sum(x234()), {276}, {}));
  EXPECT_TRUE(near(x234().sum({}, true), {276}, {1, 1, 1}));
}

TEST(ReduceForward, SumAxis0_2x3x4) {
  // x[0] + x[1] = 2i + 12
  EXPECT_TRUE(near(nb::sum(x234(), {0}), {12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34}, {3, 4}));
  EXPECT_TRUE(near(nb::sum(x234(), {0}, true), {12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34}, {1, 3, 4}));
}

TEST(ReduceForward, SumAxis1_2x3x4) {
  // sum_j (12a + 4j + k) = 36a + 12 + 3k
  EXPECT_TRUE(near(nb::sum(x234(), {1}), {12, 15, 18, 21, 48, 51, 54, 57}, {2, 4}));
  EXPECT_TRUE(near(nb::sum(x234(), {1}, true), {12, 15, 18, 21, 48, 51, 54, 57}, {2, 1, 4}));
}

TEST(ReduceForward, SumAxisMinus1_2x3x4) {
  // row r of 4 consecutive numbers starting at 4r: 16r + 6
  EXPECT_TRUE(near(nb::sum(x234(), {-1}), {6, 22, 38, 54, 70, 86}, {2, 3}));
}

TEST(ReduceForward, SumMeanNonAdjacentAxes02_2x3x4) {
  // sum over a, k of (12a + 4j + k) = 48 + 32j + 12
  EXPECT_TRUE(near(nb::sum(x234(), {0, 2}), {60, 92, 124}, {3}));
  EXPECT_TRUE(near(nb::sum(x234(), {2, 0}, true), {60, 92, 124}, {1, 3, 1}));
  EXPECT_TRUE(near(nb::mean(x234(), {0, 2}), {7.5, 11.5, 15.5}, {3}));
  EXPECT_TRUE(near(nb::mean(x234(), {0, -1}, true), {7.5, 11.5, 15.5}, {1, 3, 1}));
}

TEST(ReduceForward, MeanAll_2x3x4) {
  EXPECT_TRUE(near(nb::mean(x234()), {11.5}, {}));
  EXPECT_TRUE(near(x234().mean({}, true), {11.5}, {1, 1, 1}));
}

TEST(ReduceForward, MaxMin_2x3x4) {
  EXPECT_TRUE(near(nb::max(x234(), {1}), {8, 9, 10, 11, 20, 21, 22, 23}, {2, 4}));
  EXPECT_TRUE(near(nb::min(x234(), {1}), {0, 1, 2, 3, 12, 13, 14, 15}, {2, 4}));
  EXPECT_TRUE(near(nb::max(x234()), {23}, {}));
  EXPECT_TRUE(near(nb::min(x234()), {0}, {}));
  EXPECT_TRUE(near(nb::max(x234(), {0, 2}), {15, 19, 23}, {3}));
  EXPECT_TRUE(near(nb::min(x234(), {0, 2}, true), {0, 4, 8}, {1, 3, 1}));
}

TEST(ReduceForward, MaxMinUnordered_2x3) {
  Tensor x = f64({3, -1, 7, 2, 9, -5}, {2, 3});
  EXPECT_TRUE(near(nb::max(x, {0}), {3, 9, 7}, {3}));
  EXPECT_TRUE(near(nb::max(x, {1}), {7, 9}, {2}));
  EXPECT_TRUE(near(x.max({1}, true), {7, 9}, {2, 1}));
  EXPECT_TRUE(near(nb::min(x, {1}), {-1, -5}, {2}));
  EXPECT_TRUE(near(nb::min(x, {0}), {2, -1, -5}, {3}));
}

TEST(ReduceForward, ReduceOfTransposedView_2x3) {
  Tensor xt = f64({3, -1, 7, 2, 9, -5}, {2, 3}).t();  // [[3, 2], [-1, 9], [7, -5]]
  EXPECT_TRUE(near(nb::sum(xt, {1}), {5, 8, 2}, {3}));
  EXPECT_TRUE(near(nb::max(xt, {0}), {7, 9}, {2}));
  EXPECT_TRUE(near(nb::argmax(xt, 0), {2, 1}, {2}));
}

TEST(ReduceForward, Float32Sum) {
  Tensor x = f32({0.5, 1.5, 2, 4}, {2, 2});
  Tensor s = nb::sum(x, {1});
  EXPECT_EQ(s.dtype(), DType::float32);
  EXPECT_TRUE(near(s, {2, 6}, {2}));
}

TEST(ReduceForward, EmptyTensorSumIsZero_0x3) {
  Tensor x = nb::zeros({0, 3}, kF64);
  EXPECT_TRUE(near(nb::sum(x, {0}), {0, 0, 0}, {3}));
  EXPECT_TRUE(near(nb::sum(x), {0}, {}));
  EXPECT_TRUE(near(nb::sum(x, {1}), {}, {0}));
}

TEST(ReduceForward, ScalarInputGivesANewTensor_0d) {
  Tensor s = nb::scalar(2, kF64);
  for (ReduceFn fn : {ReduceFn(nb::sum), ReduceFn(nb::mean), ReduceFn(nb::max), ReduceFn(nb::min)}) {
    Tensor r = fn(s, {}, false);
    EXPECT_TRUE(near(r, {2}, {}));
    r.fill_(5);  // the result must not alias the input
    EXPECT_EQ(s.item(), 2);
  }
}

TEST(ReduceForward, LargeSumAccuracy_100000) {
  // 0.1 summed 100000 times; float64 sum must be within 1e-9 relative
  Tensor x = nb::full({100000}, 0.1, kF64);
  EXPECT_NEAR(nb::sum(x).item(), 10000.0, 1e-5);
  EXPECT_NEAR(nb::mean(x).item(), 0.1, 1e-12);
}

TEST(ReduceForward, Argmax_2x3) {
  Tensor x = f64({3, -1, 7, 2, 9, -5}, {2, 3});
  Tensor a1 = nb::argmax(x, 1);
  EXPECT_EQ(a1.dtype(), DType::int64);
  EXPECT_EQ(a1.shape(), (Shape{2}));
  EXPECT_EQ(a1.to_vector<int64_t>(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(nb::argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(nb::argmax(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(x.argmax().to_vector<int64_t>(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(nb::argmax(x, 0, true).shape(), (Shape{1, 3}));
}

TEST(ReduceForward, ArgmaxFirstOfTiesAnd1d) {
  Tensor a = nb::argmax(f64({1, 3, 3, 2}));
  EXPECT_EQ(a.shape(), Shape{});
  EXPECT_EQ(a.item<int64_t>(), 1);
  EXPECT_FALSE(nb::argmax(f64({1, 2}).requires_grad_()).requires_grad());
}

TEST(ReduceForward, ArgmaxMiddleAxis_2x3x4) {
  // x[a, j, k] increases with j: argmax over axis 1 is 2 everywhere
  Tensor a = nb::argmax(x234(), 1);
  EXPECT_EQ(a.shape(), (Shape{2, 4}));
  EXPECT_EQ(a.to_vector<int64_t>(), std::vector<int64_t>(8, 2));
  Tensor b = nb::argmax(nb::neg(x234()), 2);
  EXPECT_EQ(b.to_vector<int64_t>(), std::vector<int64_t>(6, 0));
}

TEST(ReduceForward, SumTo_2x3x4) {
  EXPECT_TRUE(near(nb::sum_to(x234(), {3, 1}), {60, 92, 124}, {3, 1}));
  EXPECT_TRUE(near(nb::sum_to(x234(), {4}), {60, 66, 72, 78}, {4}));
  EXPECT_TRUE(near(nb::sum_to(x234(), {}), {276}, {}));
  EXPECT_TRUE(near(nb::sum_to(x234(), {2, 1, 1}), {66, 210}, {2, 1, 1}));
  EXPECT_TRUE(near(nb::sum_to(f64({1, 2}), {2}), {1, 2}, {2}));
}

// Shapes large enough for the kernels' parallel and blocked paths (rows longer than one chunk,
// more columns than one block), against a naive loop over a [outer, r, inner] view.
class ReduceLarge : public ::testing::TestWithParam<std::tuple<Shape, int64_t>> {};

TEST_P(ReduceLarge, SumMeanMaxMinArgmaxMatchNaiveLoops) {
  const auto [shape, axis] = GetParam();
  nb::manual_seed(31);
  Tensor x = nb::rand(shape, kF64, -1, 1);
  const std::vector<double> v = x.to_vector<double>();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
  for (size_t i = axis + 1; i < shape.size(); ++i) inner *= shape[i];
  const int64_t r = shape[axis];
  std::vector<double> es(outer * inner, 0.0), emax(outer * inner, -2), emin(outer * inner, 2);
  std::vector<int64_t> earg(outer * inner, 0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t i = 0; i < inner; ++i) {
        const double e = v[(o * r + k) * inner + i];
        const int64_t j = o * inner + i;
        es[j] += e;
        if (e > emax[j]) {
          emax[j] = e;
          earg[j] = k;
        }
        emin[j] = std::min(emin[j], e);
      }
  Shape out_shape = shape;
  out_shape.erase(out_shape.begin() + axis);
  std::vector<double> emean = es;
  for (double& m : emean) m /= static_cast<double>(r);
  EXPECT_TRUE(near(nb::sum(x, {axis}), es, out_shape, 1e-10, 1e-12));
  EXPECT_TRUE(near(nb::mean(x, {axis}), emean, out_shape, 1e-12, 1e-12));
  EXPECT_TRUE(near(nb::max(x, {axis}), emax, out_shape, 0, 0));
  EXPECT_TRUE(near(nb::min(x, {axis}), emin, out_shape, 0, 0));
  EXPECT_EQ(nb::argmax(x, axis).to_vector<int64_t>(), earg);
  // float32: sums accumulate accurately enough for a loose relative check
  EXPECT_TRUE(near(nb::sum(x.to(DType::float32), {axis}), es, out_shape, 1e-3, 1e-4));
}

std::string large_name(const ::testing::TestParamInfo<std::tuple<Shape, int64_t>>& info) {
  return shape_name(std::get<0>(info.param)) + "_axis" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReduceLarge,
                         ::testing::Values(std::tuple<Shape, int64_t>{{70001}, 0},
                                           std::tuple<Shape, int64_t>{{3, 40000}, 1},
                                           std::tuple<Shape, int64_t>{{40000, 3}, 0},
                                           std::tuple<Shape, int64_t>{{3, 7, 600}, 1},
                                           std::tuple<Shape, int64_t>{{5, 300, 33}, 2},
                                           std::tuple<Shape, int64_t>{{2000, 40}, 1}),
                         large_name);

// ---- gradient conventions -----------------------------------------------------------------------

TEST(ReduceGradValues, MaxTiesShareTheGradientEqually_3) {
  Tensor x = f64({1, 3, 3}).requires_grad_();
  nb::max(x).backward();
  EXPECT_TRUE(near(x.grad(), {0, 0.5, 0.5}, {3}));
}

TEST(ReduceGradValues, MinTiesPerRow_2x3) {
  Tensor x = f64({2, 2, 2, 5, 1, 7}, {2, 3}).requires_grad_();
  nb::sum(nb::min(x, {1}) * f64({3, 6})).backward();
  EXPECT_TRUE(near(x.grad(), {1, 1, 1, 0, 6, 0}, {2, 3}));
}

TEST(ReduceGradValues, MeanGradientIsOneOverCount_2x3x4_axes02) {
  Tensor x = x234().requires_grad_();
  nb::sum(nb::mean(x, {0, 2})).backward();
  EXPECT_TRUE(near(x.grad(), std::vector<double>(24, 0.125), {2, 3, 4}));
}

// ---- errors ----------------------------------------------------------------------------------------

TEST(ReduceErrors, AxisOutOfRange_2x3_axis3) {
  for (ReduceFn fn : {ReduceFn(nb::sum), ReduceFn(nb::mean), ReduceFn(nb::max), ReduceFn(nb::min)}) {
    std::string msg = error_of([fn] { fn(nb::zeros({2, 3}, kF64), {3}, false); });
    EXPECT_THAT(msg, AllOf(HasSubstr("axis 3"), HasSubstr("2 dimensions")));
  }
  EXPECT_THAT(error_of([] { nb::sum(nb::zeros({2, 3}, kF64), {-3}); }), HasSubstr("sum: axis -3"));
  EXPECT_THAT(error_of([] { nb::mean(nb::zeros({2, 3}, kF64), {2}); }), HasSubstr("mean: axis 2"));
  EXPECT_THAT(error_of([] { nb::max(nb::zeros({2, 3}, kF64), {5}); }), HasSubstr("max: axis 5"));
  EXPECT_THAT(error_of([] { nb::argmax(nb::zeros({2, 3}, kF64), 2); }), HasSubstr("argmax: axis 2"));
}

TEST(ReduceErrors, AxisOfA0dTensor) {
  // a 0-d tensor has no axis 0: an error, not an out-of-bounds read of its empty shape
  for (ReduceFn fn : {ReduceFn(nb::sum), ReduceFn(nb::mean), ReduceFn(nb::max), ReduceFn(nb::min)}) {
    for (bool keepdim : {false, true}) {
      std::string msg = error_of([fn, keepdim] { fn(nb::scalar(2, kF64), {0}, keepdim); });
      EXPECT_THAT(msg, AllOf(HasSubstr("axis 0"), HasSubstr("0 dimensions")));
    }
  }
  EXPECT_THAT(error_of([] { nb::sum(nb::scalar(2, kF64), {-1}); }), HasSubstr("sum: axis -1"));
}

TEST(ReduceErrors, DuplicateAxis_2x3) {
  EXPECT_THAT(error_of([] { nb::sum(nb::zeros({2, 3}, kF64), {1, -1}); }),
              AllOf(HasSubstr("sum"), HasSubstr("twice")));
}

TEST(ReduceErrors, EmptyReductions_0x3) {
  EXPECT_THAT(error_of([] { nb::max(nb::zeros({0, 3}, kF64)); }), AllOf(HasSubstr("max"), HasSubstr("[0, 3]")));
  EXPECT_THAT(error_of([] { nb::min(nb::zeros({0, 3}, kF64), {0}); }), AllOf(HasSubstr("min"), HasSubstr("[0, 3]")));
  EXPECT_THAT(error_of([] { nb::mean(nb::zeros({0, 3}, kF64), {0}); }), AllOf(HasSubstr("mean"), HasSubstr("[0, 3]")));
  EXPECT_THAT(error_of([] { nb::argmax(nb::zeros({3, 0}, kF64), 1); }), AllOf(HasSubstr("argmax"), HasSubstr("[3, 0]")));
  EXPECT_THAT(error_of([] { nb::argmax(nb::scalar(1, kF64)); }), AllOf(HasSubstr("argmax"), HasSubstr("0-dimensional")));
}

TEST(ReduceErrors, SumToNotABroadcast) {
  EXPECT_THAT(error_of([] { nb::sum_to(nb::zeros({2, 3}, kF64), {4}); }),
              AllOf(HasSubstr("sum_to"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
  EXPECT_THAT(error_of([] { nb::sum_to(nb::zeros({3}, kF64), {2, 3}); }),
              AllOf(HasSubstr("sum_to"), HasSubstr("[3]"), HasSubstr("[2, 3]")));
  EXPECT_THAT(error_of([] { nb::sum_to(nb::zeros({2, 3}, kF64), {2, 1, 3}); }),
              AllOf(HasSubstr("sum_to"), HasSubstr("[2, 3]"), HasSubstr("[2, 1, 3]")));
}

TEST(ReduceErrors, IntegerInput) {
  EXPECT_THAT(error_of([] { nb::sum(i64({1, 2})); }), AllOf(HasSubstr("sum"), HasSubstr("int64")));
  EXPECT_THAT(error_of([] { nb::argmax(i32({1, 2})); }), AllOf(HasSubstr("argmax"), HasSubstr("int32")));
}

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

TEST(Sum, All_Axis0_Axis1_Keepdim_2x3) {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::sum(x), {}, {21}));
  EXPECT_TRUE(values(nb::sum(x, {0}), {3}, {5, 7, 9}));
  EXPECT_TRUE(values(nb::sum(x, {1}), {2}, {6, 15}));
  EXPECT_TRUE(values(nb::sum(x, {-1}), {2}, {6, 15}));
  EXPECT_TRUE(values(nb::sum(x, {1}, true), {2, 1}, {6, 15}));
  EXPECT_TRUE(values(nb::sum(x, {0}, true), {1, 3}, {5, 7, 9}));
  EXPECT_TRUE(values(nb::sum(x, {0, 1}), {}, {21}));
  EXPECT_TRUE(values(nb::sum(x, {}, true), {1, 1}, {21}));
  EXPECT_TRUE(values(x.sum({1, 0}), {}, {21}));
}

TEST(Sum, NonAdjacentAxes_2x3x4) {
  // x[i][j][k] = 12i + 4j + k; sum over i, k = 48 + 32j + 12 = (60, 92, 124)
  Tensor x = nb::arange(0, 24, 1, {.dtype = DType::float64}).reshape({2, 3, 4});
  EXPECT_TRUE(values(nb::sum(x, {0, 2}), {3}, {60, 92, 124}, kTight));
  EXPECT_TRUE(values(nb::sum(x, {2, 0}, true), {1, 3, 1}, {60, 92, 124}, kTight));
  // sum over j, keepdim: 36i + 12 + 3k
  EXPECT_TRUE(values(nb::sum(x, {1}, true), {2, 1, 4}, {12, 15, 18, 21, 48, 51, 54, 57}, kTight));
  EXPECT_TRUE(values(nb::sum(x), {}, {276}, kTight));  // 0 + ... + 23 = 23*24/2
}

TEST(Sum, EmptyTensor_0x3_IsZero) {
  Tensor x = nb::zeros({0, 3});
  EXPECT_TRUE(values(nb::sum(x), {}, {0}));
  EXPECT_TRUE(values(nb::sum(x, {0}), {3}, {0, 0, 0}));
}

TEST(Sum, TransposedView_3x2T) {
  // x.t() = [[1, 2, 3], [4, 5, 6]]
  Tensor x = f32({1, 4, 2, 5, 3, 6}, {3, 2});
  EXPECT_TRUE(values(nb::sum(x.t(), {1}), {2}, {6, 15}));
}

TEST(Mean, All_Axes_Keepdim_2x3) {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::mean(x), {}, {3.5}));
  EXPECT_TRUE(values(nb::mean(x, {0}), {3}, {2.5, 3.5, 4.5}));
  EXPECT_TRUE(values(nb::mean(x, {1}, true), {2, 1}, {2, 5}));
  // mean over j of 12i + 4j + k = 12i + 4 + k
  Tensor y = nb::arange(0, 24, 1, {.dtype = DType::float64}).reshape({2, 3, 4});
  EXPECT_TRUE(values(y.mean({1}), {2, 4}, {4, 5, 6, 7, 16, 17, 18, 19}, kTight));
  EXPECT_TRUE(values(nb::mean(f64({1, 2}), {}), {}, {1.5}, kTight));
}

TEST(Max, All_Axes_Keepdim_2x3) {
  Tensor x = f32({1, 7, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::max(x), {}, {7}));
  EXPECT_TRUE(values(nb::max(x, {0}), {3}, {4, 7, 6}));
  EXPECT_TRUE(values(nb::max(x, {1}), {2}, {7, 6}));
  EXPECT_TRUE(values(nb::max(x, {1}, true), {2, 1}, {7, 6}));
  EXPECT_TRUE(values(x.max({-2}), {3}, {4, 7, 6}));
  // all negative: the maximum is not 0
  EXPECT_TRUE(values(nb::max(f64({-5, -2, -9})), {}, {-2}, kTight));
}

TEST(Max, NonAdjacentAxes_2x3x4) {
  // max over i, k of 12i + 4j + k = 15 + 4j; min = 4j
  Tensor x = nb::arange(0, 24, 1, {.dtype = DType::float32}).reshape({2, 3, 4});
  EXPECT_TRUE(values(nb::max(x, {0, 2}), {3}, {15, 19, 23}));
  EXPECT_TRUE(values(nb::min(x, {0, 2}), {3}, {0, 4, 8}));
}

TEST(Min, All_Axes_Keepdim_2x3) {
  Tensor x = f32({1, 7, 3, 4, 5, -6}, {2, 3});
  EXPECT_TRUE(values(nb::min(x), {}, {-6}));
  EXPECT_TRUE(values(nb::min(x, {0}), {3}, {1, 5, -6}));
  EXPECT_TRUE(values(nb::min(x, {1}), {2}, {1, -6}));
  EXPECT_TRUE(values(nb::min(x, {0}, true), {1, 3}, {1, 5, -6}));
  // all positive: the minimum is not 0
  EXPECT_TRUE(values(nb::min(f64({5, 2, 9})), {}, {2}, kTight));
}

TEST(Argmax, FirstMaximumOnTies_2x3) {
  Tensor x = f32({1, 3, 3, 5, 2, 5}, {2, 3});
  Tensor r = nb::argmax(x, 1);
  EXPECT_EQ(r.dtype(), DType::int64);
  EXPECT_EQ(r.shape(), (Shape{2}));
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(nb::argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(nb::argmax(x, 1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(x.argmax().to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  // all equal: index 0
  EXPECT_EQ(nb::argmax(f64({2, 2, 2, 2})).to_vector<int64_t>(), (std::vector<int64_t>{0}));
  EXPECT_EQ(nb::argmax(f64({2, 2, 2, 2})).dim(), 0);
  // maximum last, negative values
  EXPECT_EQ(nb::argmax(f64({-3, -2, -1})).to_vector<int64_t>(), (std::vector<int64_t>{2}));
}

TEST(Argmax, MiddleAxis_2x3x2) {
  // x[i][:, k] columns: (0, 9, 9) -> 1, (5, 1, 2) -> 0, (-1, -1, 0) -> 2, (7, 8, 8) -> 1
  Tensor x = f32({0, 5, 9, 1, 9, 2, -1, 7, -1, 8, 0, 8}, {2, 3, 2});
  Tensor r = nb::argmax(x, 1);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 2, 1}));
}

TEST(SumTo, BroadcastInverse_2x3) {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::sum_to(x, {3}), {3}, {5, 7, 9}));
  EXPECT_TRUE(values(nb::sum_to(x, {1, 3}), {1, 3}, {5, 7, 9}));
  EXPECT_TRUE(values(nb::sum_to(x, {2, 1}), {2, 1}, {6, 15}));
  EXPECT_TRUE(values(nb::sum_to(x, {}), {}, {21}));
  EXPECT_TRUE(values(nb::sum_to(x, {2, 3}), {2, 3}, {1, 2, 3, 4, 5, 6}));
}

TEST(SumTo, 2x3x4_to_3x1) {
  // x[i][j][k] = 12i + 4j + k; to [3, 1]: sum over i and k = 60 + 32j
  Tensor x = nb::arange(0, 24, 1, {.dtype = DType::float64}).reshape({2, 3, 4});
  EXPECT_TRUE(values(nb::sum_to(x, {3, 1}), {3, 1}, {60, 92, 124}, kTight));
  // to [1, 4]: sum over i and j of 12i + 4j + k = 12*3 + 4*3*2 + 6k = 60 + 6k
  EXPECT_TRUE(values(nb::sum_to(x, {1, 4}), {1, 4}, {60, 66, 72, 78}, kTight));
}

TEST(Errors, Sum_AxisOutOfRange_2x3) {
  std::string msg = error_of([] { nb::sum(nb::zeros({2, 3}), {2}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("sum:"), HasSubstr("axis 2")));
  msg = error_of([] { nb::sum(nb::zeros({2, 3}), {-3}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("sum:"), HasSubstr("axis -3")));
  msg = error_of([] { nb::mean(nb::zeros({2, 3}), {0, -2}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("mean:"), HasSubstr("twice")));
  msg = error_of([] { nb::max(nb::zeros({2, 3}), {5}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("max:"), HasSubstr("axis 5")));
  msg = error_of([] { nb::argmax(nb::zeros({2, 3}), 2); });
  EXPECT_THAT(msg, AllOf(HasSubstr("argmax:"), HasSubstr("axis 2")));
}

TEST(Errors, Max_EmptyTensor_0x3) {
  std::string msg = error_of([] { nb::max(nb::zeros({0, 3})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("max:"), HasSubstr("[0, 3]")));
}

TEST(Errors, SumTo_NotABroadcast_2x3_to_4) {
  std::string msg = error_of([] { nb::sum_to(nb::zeros({2, 3}), {4}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("sum_to:"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
}

// ---- CPU kernels, called directly through nabla::Backend on host buffers (test_util.h: cpu()) ----
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

using nb::ReduceOp;

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

}  // namespace cpu_kernels

}  // namespace
