// Elementwise ops and activations: float64 gradient checks, hand-computed forward values, and the
// errors a user sees. Binary ops broadcast as NumPy does.
#include "test_util.h"

#include <limits>

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

// ---- gradient checks ---------------------------------------------------------------------------

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);

std::vector<GradCase> binary_cases() {
  struct Op {
    const char* name;
    BinaryFn fn;
    bool positive_b;  // keep b away from 0 (div)
  };
  const Op ops[] = {{"add", nb::add, false}, {"sub", nb::sub, false},         {"mul", nb::mul, false},
                    {"div", nb::div, true},  {"maximum", nb::maximum, false}, {"minimum", nb::minimum, false}};
  const std::pair<Shape, Shape> shapes[] = {
      {{3, 4}, {3, 4}},       {{}, {2, 3}},     {{2, 3}, {}},     {{3, 1}, {1, 4}},
      {{2, 3, 4}, {4}},       {{4}, {2, 3, 4}}, {{2, 1, 4}, {3, 1}}, {{1}, {5}},
  };
  std::vector<GradCase> cases;
  for (const Op& op : ops) {
    for (const auto& [sa, sb] : shapes) {
      BinaryFn fn = op.fn;
      const bool pos = op.positive_b;
      cases.push_back({fmt::format("{}_{}_{}", op.name, shape_name(sa), shape_name(sb)),
                       [fn](const Tensors& x) { return fn(x[0], x[1]); },
                       [sa, sb, pos] {
                         // b in [0.5, 2) for div; otherwise both in [-2, 2) (ties in maximum or
                         // minimum have probability zero).
                         return Tensors{input(sa), pos ? input(sb, 0.5, 2) : input(sb)};
                       }});
    }
  }
  // shapes and ranges the loop above does not cover
  auto two = [](Shape a, Shape b, double lo = -2, double hi = 2) {
    return [=] { return Tensors{input(a, lo, hi), input(b, lo, hi)}; };
  };
  cases.push_back({"sub_2x3x4_3x1", [](const Tensors& x) { return x[0] - x[1]; }, two({2, 3, 4}, {3, 1})});
  cases.push_back({"mul_5_5", [](const Tensors& x) { return x[0] * x[1]; }, two({5}, {5})});
  cases.push_back({"div_2x3_3", [](const Tensors& x) { return x[0] / x[1]; }, two({2, 3}, {3}, 0.5, 2)});
  cases.push_back({"div_4x1_1x3", [](const Tensors& x) { return x[0] / x[1]; },
                   [] { return Tensors{input({4, 1}), input({1, 3}, 0.5, 2)}; }});
  cases.push_back({"maximum_3x4_4", [](const Tensors& x) { return nb::maximum(x[0], x[1]); },
                   [] { return Tensors{input({3, 4}), nb::affine(input({4}), 1, 0.3)}; }});
  return cases;
}

std::vector<GradCase> unary_cases() {
  auto one = [](Shape s, double lo = -2, double hi = 2, std::vector<double> kinks = {0.0}) {
    return [=] { return Tensors{input(s, lo, hi, kinks)}; };
  };
  return {
      {"neg_2x3", [](const Tensors& x) { return nb::neg(x[0]); }, one({2, 3})},
      {"operator_neg_5", [](const Tensors& x) { return -x[0]; }, one({5})},
      {"exp_2x3", [](const Tensors& x) { return nb::exp(x[0]); }, one({2, 3})},
      {"exp_0d", [](const Tensors& x) { return nb::exp(x[0]); }, one({})},
      {"log_2x3_pos", [](const Tensors& x) { return nb::log(x[0]); }, one({2, 3}, 0.2, 3)},
      {"sqrt_2x3_pos", [](const Tensors& x) { return nb::sqrt(x[0]); }, one({2, 3}, 0.2, 3)},
      {"abs_3x3", [](const Tensors& x) { return nb::abs(x[0]); }, one({3, 3})},
      {"pow_2.5_2x3_pos", [](const Tensors& x) { return nb::pow(x[0], 2.5); }, one({2, 3}, 0.2, 3)},
      {"pow_3_2x3", [](const Tensors& x) { return nb::pow(x[0], 3); }, one({2, 3})},
      {"pow_2_4", [](const Tensors& x) { return x[0].pow(2); }, one({4})},
      {"pow_-1_4_pos", [](const Tensors& x) { return nb::pow(x[0], -1); }, one({4}, 0.5, 2)},
      {"pow_0.5_4_pos", [](const Tensors& x) { return nb::pow(x[0], 0.5); }, one({4}, 0.2, 2)},
      {"pow_0_4", [](const Tensors& x) { return nb::pow(x[0], 0) * x[0]; }, one({4})},
      {"clamp_-1_1_12", [](const Tensors& x) { return nb::clamp(x[0], -1, 1); }, one({12}, -2, 2, {-1, 1})},
      {"clamp_0_inf_6", [](const Tensors& x) { return nb::clamp(x[0], 0, kInf); }, one({6})},
      {"affine_-1.5_0.25_3x2", [](const Tensors& x) { return nb::affine(x[0], -1.5, 0.25); }, one({3, 2})},
      {"relu_3x5", [](const Tensors& x) { return nb::relu(x[0]); }, one({3, 5})},
      {"leaky_relu_default_3x5", [](const Tensors& x) { return nb::leaky_relu(x[0]); }, one({3, 5})},
      {"leaky_relu_0.2_3x5", [](const Tensors& x) { return nb::leaky_relu(x[0], 0.2); }, one({3, 5})},
      {"elu_1_3x5", [](const Tensors& x) { return nb::elu(x[0]); }, one({3, 5})},
      {"elu_0.5_3x5", [](const Tensors& x) { return nb::elu(x[0], 0.5); }, one({3, 5})},
      {"sigmoid_3x5", [](const Tensors& x) { return nb::sigmoid(x[0]); }, one({3, 5}, -6, 6)},
      {"tanh_3x5", [](const Tensors& x) { return nb::tanh(x[0]); }, one({3, 5}, -3, 3)},
      {"gelu_3x5", [](const Tensors& x) { return nb::gelu(x[0]); }, one({3, 5}, -4, 4)},
      {"softplus_3x5", [](const Tensors& x) { return nb::softplus(x[0]); }, one({3, 5}, -8, 8)},
      {"silu_3x5", [](const Tensors& x) { return nb::silu(x[0]); }, one({3, 5}, -8, 8)},
      {"silu_of_transposed_4x3", [](const Tensors& x) { return nb::silu(x[0].t()); }, one({4, 3}, -3, 3)},
      {"hardtanh_default_12", [](const Tensors& x) { return nb::hardtanh(x[0]); }, one({12}, -2, 2, {-1, 1})},
      {"hardtanh_m0p5_2_3x4", [](const Tensors& x) { return nb::hardtanh(x[0], -0.5, 2); },
       one({3, 4}, -3, 3, {-0.5, 2})},
      {"softmax_last_4x5", [](const Tensors& x) { return nb::softmax(x[0]); }, one({4, 5})},
      {"softmax_axis0_3x4", [](const Tensors& x) { return nb::softmax(x[0], 0); }, one({3, 4})},
      {"softmax_axis1_2x3x4", [](const Tensors& x) { return nb::softmax(x[0], 1); }, one({2, 3, 4})},
      {"softmax_1d_6", [](const Tensors& x) { return nb::softmax(x[0]); }, one({6})},
      {"log_softmax_last_4x5", [](const Tensors& x) { return nb::log_softmax(x[0]); }, one({4, 5})},
      {"log_softmax_axis-2_2x3x4", [](const Tensors& x) { return nb::log_softmax(x[0], -2); }, one({2, 3, 4})},
      // non-contiguous inputs go through a copy whose gradient must reach the original
      {"exp_of_transposed_3x4", [](const Tensors& x) { return nb::exp(x[0].t()); }, one({3, 4})},
      {"tanh_of_slice_step2_2x7", [](const Tensors& x) { return nb::tanh(x[0].slice(1, 0, 7, 2)); }, one({2, 7})},
      {"softmax_of_transposed_3x4", [](const Tensors& x) { return nb::softmax(x[0].t(), -1); }, one({3, 4})},
      {"sigmoid_of_expanded_3x1_to_3x4",
       [](const Tensors& x) { return nb::sigmoid(x[0].expand({3, 4})); }, one({3, 1})},
      // more shapes and parameters
      {"neg_7", [](const Tensors& x) { return -x[0]; }, one({7})},
      {"abs_9", [](const Tensors& x) { return nb::abs(x[0]); }, one({9})},
      {"clamp_-1_1_10", [](const Tensors& x) { return nb::clamp(x[0], -1, 1); }, one({10}, -2, 2, {-1, 1})},
      {"leaky_relu_0.1_3x5", [](const Tensors& x) { return nb::leaky_relu(x[0], 0.1); }, one({3, 5})},
      {"elu_0.7_3x5", [](const Tensors& x) { return nb::elu(x[0], 0.7); }, one({3, 5})},
      {"log_softmax_axis0_3x2", [](const Tensors& x) { return nb::log_softmax(x[0], 0); }, one({3, 2})},
  };
}

std::vector<GradCase> composite_cases() {
  return {
      {"mul_same_tensor_twice_3x3", [](const Tensors& x) { return x[0] * x[0]; },
       [] { return Tensors{input({3, 3})}; }},
      {"div_same_tensor_2x2", [](const Tensors& x) { return (x[0] + 3.0) / x[0]; },
       [] { return Tensors{input({2, 2}, 0.5, 2)}; }},
      {"scalar_operators_2x3", [](const Tensors& x) { return (2.0 - x[0]) * 3.0 + x[0] / 4.0 - 1.0 + (0.5 + x[0]); },
       [] { return Tensors{input({2, 3})}; }},
      {"scalar_over_tensor_2x3", [](const Tensors& x) { return 2.0 / x[0]; },
       [] { return Tensors{input({2, 3}, 0.5, 2)}; }},
      {"binary_of_transposed_views_3x4", [](const Tensors& x) { return x[0].t() * x[1] + x[1]; },
       [] { return Tensors{input({3, 4}), input({4, 3})}; }},
      {"binary_of_strided_slices_4x6",
       [](const Tensors& x) { return x[0].slice(1, 1, 6, 2) - x[0].slice(1, 0, 6, 2).exp(); },
       [] { return Tensors{input({4, 6})}; }},
      {"chain_softplus_tanh_mul_2x3", [](const Tensors& x) { return nb::tanh(nb::softplus(x[0]) * x[1]); },
       [] { return Tensors{input({2, 3}), input({2, 3})}; }},
      // more shapes and parameters
      {"scalar_ops_2x3", [](const Tensors& x) { return (2.0 - x[0]) * 3.0 + x[0] / 4.0 - 1.0; },
       [] { return Tensors{input({2, 3})}; }},
  };
}

class ElementwiseGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(ElementwiseGrad, CentralDifferenceFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(42);
  EXPECT_TRUE(gradcheck(c.f, c.make_inputs(), c.options));
}

TEST_P(ElementwiseGrad, Float32AgreesWithFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(42);
  EXPECT_TRUE(float32_agrees(c.f, c.make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(Binary, ElementwiseGrad, ::testing::ValuesIn(binary_cases()), grad_case_name);
INSTANTIATE_TEST_SUITE_P(Unary, ElementwiseGrad, ::testing::ValuesIn(unary_cases()), grad_case_name);
INSTANTIATE_TEST_SUITE_P(Composite, ElementwiseGrad, ::testing::ValuesIn(composite_cases()), grad_case_name);

// ---- forward values, computed by hand -----------------------------------------------------------

TEST(ElementwiseForward, Add_2x3_plus_3) {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3}), b = f64({10, 20, 30});
  EXPECT_TRUE(near(a + b, {11, 22, 33, 14, 25, 36}, {2, 3}));
}

TEST(ElementwiseForward, Add_3x1_plus_1x4) {
  Tensor a = f64({1, 2, 3}, {3, 1}), b = f64({10, 20, 30, 40}, {1, 4});
  EXPECT_TRUE(near(nb::add(a, b), {11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43}, {3, 4}));
}

TEST(ElementwiseForward, Add_2x3x4_plus_4) {
  Tensor a = nb::arange(0.0, 24.0, 1.0, kF64).reshape({2, 3, 4});
  Tensor b = f64({100, 200, 300, 400});
  std::vector<double> e(24);
  for (int i = 0; i < 24; ++i) e[i] = i + 100.0 * (i % 4 + 1);
  EXPECT_TRUE(near(a + b, e, {2, 3, 4}));
  EXPECT_TRUE(near(b + a, e, {2, 3, 4}));
}

TEST(ElementwiseForward, Add_0d_plus_2x3) {
  Tensor s = nb::scalar(0.5, kF64), b = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(near(s + b, {1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, {2, 3}));
  EXPECT_TRUE(near(s + s, {1.0}, {}));
}

TEST(ElementwiseForward, Sub_2x2_minus_2x1) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({0.5, 1.5}, {2, 1});
  EXPECT_TRUE(near(a - b, {0.5, 1.5, 1.5, 2.5}, {2, 2}));
  EXPECT_TRUE(near(b - a, {-0.5, -1.5, -1.5, -2.5}, {2, 2}));
}

TEST(ElementwiseForward, Mul_3x1_times_1x4) {
  Tensor a = f64({1, 2, 3}, {3, 1}), b = f64({1, -1, 2, 0.5}, {1, 4});
  EXPECT_TRUE(near(a * b, {1, -1, 2, 0.5, 2, -2, 4, 1, 3, -3, 6, 1.5}, {3, 4}));
}

TEST(ElementwiseForward, Div_3_by_3_andByZero) {
  EXPECT_TRUE(near(f64({1, 2, 3}) / f64({2, 4, -0.5}), {0.5, 0.5, -6}, {3}));
  // IEEE: 1/0 = inf, -1/0 = -inf, 0/0 = NaN
  auto v = (f64({1, -1, 0}) / f64({0, 0, 0})).to_vector<double>();
  EXPECT_EQ(v[0], kInf);
  EXPECT_EQ(v[1], -kInf);
  EXPECT_TRUE(std::isnan(v[2]));
}

TEST(ElementwiseForward, MaximumMinimum_4) {
  Tensor a = f64({1, 5, -2, 3}), b = f64({2, 4, -2, -3});
  EXPECT_TRUE(near(nb::maximum(a, b), {2, 5, -2, 3}, {4}));
  EXPECT_TRUE(near(nb::minimum(a, b), {1, 4, -2, -3}, {4}));
  // broadcast against a 0-d scalar: maximum(x, 0) is relu
  EXPECT_TRUE(near(nb::maximum(a, nb::scalar(0, kF64)), {1, 5, 0, 3}, {4}));
}

TEST(ElementwiseForward, ScalarOperators_3) {
  Tensor x = f64({1, 2, 4});
  EXPECT_TRUE(near(x + 1.0, {2, 3, 5}, {3}));
  EXPECT_TRUE(near(1.0 + x, {2, 3, 5}, {3}));
  EXPECT_TRUE(near(x - 1.0, {0, 1, 3}, {3}));
  EXPECT_TRUE(near(1.0 - x, {0, -1, -3}, {3}));
  EXPECT_TRUE(near(x * 3.0, {3, 6, 12}, {3}));
  EXPECT_TRUE(near(3.0 * x, {3, 6, 12}, {3}));
  EXPECT_TRUE(near(x / 4.0, {0.25, 0.5, 1}, {3}));
  EXPECT_TRUE(near(4.0 / x, {4, 2, 1}, {3}));
}

TEST(ElementwiseForward, Comparisons_4_notRecorded) {
  Tensor a = f64({1, 2, 3, 4}).requires_grad_(), b = f64({2, 2, 2, 2});
  EXPECT_TRUE(near(nb::eq(a, b), {0, 1, 0, 0}, {4}));
  EXPECT_TRUE(near(nb::ne(a, b), {1, 0, 1, 1}, {4}));
  EXPECT_TRUE(near(nb::gt(a, b), {0, 0, 1, 1}, {4}));
  EXPECT_TRUE(near(nb::ge(a, b), {0, 1, 1, 1}, {4}));
  EXPECT_TRUE(near(nb::lt(a, b), {1, 0, 0, 0}, {4}));
  EXPECT_TRUE(near(nb::le(a, b), {1, 1, 0, 0}, {4}));
  EXPECT_EQ(nb::gt(a, b).dtype(), DType::float64);
  EXPECT_FALSE(nb::gt(a, b).requires_grad());
}

TEST(ElementwiseForward, NegExpLog) {
  EXPECT_TRUE(near(nb::neg(f64({1, -2, 0})), {-1, 2, 0}, {3}));
  EXPECT_TRUE(near(nb::exp(f64({0, 1, -1})), {1, 2.718281828459045, 0.36787944117144233}, {3}, 0, 1e-15));
  EXPECT_TRUE(near(nb::log(f64({1, 2.718281828459045, 10})), {0, 1, 2.302585092994046}, {3}, 1e-15, 1e-15));
  auto l0 = nb::log(f64({0, -1})).to_vector<double>();
  EXPECT_EQ(l0[0], -kInf);
  EXPECT_TRUE(std::isnan(l0[1]));
}

TEST(ElementwiseForward, PowSqrtAbs) {
  EXPECT_TRUE(near(nb::pow(f64({4, 9, 2}), 0.5), {2, 3, 1.4142135623730951}, {3}, 0, 1e-15));
  EXPECT_TRUE(near(nb::pow(f64({2, -3}), 3), {8, -27}, {2}));
  EXPECT_TRUE(near(nb::pow(f64({2, 4}), -1), {0.5, 0.25}, {2}));
  EXPECT_TRUE(near(nb::pow(f64({0, 5}), 0), {1, 1}, {2}));
  EXPECT_TRUE(near(nb::sqrt(f64({4, 2, 0})), {2, 1.4142135623730951, 0}, {3}, 0, 1e-15));
  EXPECT_TRUE(near(nb::abs(f64({-1.5, 0, 2})), {1.5, 0, 2}, {3}));
}

TEST(ElementwiseForward, ClampAffine) {
  EXPECT_TRUE(near(nb::clamp(f64({-2, -0.5, 0.3, 1.5}), -1, 1), {-1, -0.5, 0.3, 1}, {4}));
  EXPECT_TRUE(near(nb::clamp(f64({-2, 3}), 0, kInf), {0, 3}, {2}));
  EXPECT_TRUE(near(nb::clamp(f64({-2, 3}), 0.5, 0.5), {0.5, 0.5}, {2}));  // lo == hi is allowed
  EXPECT_TRUE(near(nb::affine(f64({1, -2, 0}), 2, 0.5), {2.5, -3.5, 0.5}, {3}));
}

TEST(ElementwiseForward, ReluLeakyElu) {
  EXPECT_TRUE(near(nb::relu(f64({-1, 0, 2})), {0, 0, 2}, {3}));
  EXPECT_TRUE(near(f64({-1, 0, 2}).relu(), {0, 0, 2}, {3}));
  EXPECT_TRUE(near(nb::leaky_relu(f64({-2, 3}), 0.1), {-0.2, 3}, {2}, 1e-15));
  EXPECT_TRUE(near(nb::leaky_relu(f64({-2, 3})), {-0.02, 3}, {2}, 1e-15));
  // elu(-1) = e^-1 - 1
  EXPECT_TRUE(near(nb::elu(f64({-1, 2})), {-0.6321205588285577, 2}, {2}, 1e-15));
  EXPECT_TRUE(near(nb::elu(f64({-1, 2}), 0.5), {-0.31606027941427883, 2}, {2}, 1e-15));
}

TEST(ElementwiseForward, SigmoidTanh) {
  EXPECT_TRUE(near(nb::sigmoid(f64({0, 2, -2})), {0.5, 0.8807970779778823, 0.11920292202211755}, {3}, 1e-15));
  // no overflow at the extremes
  EXPECT_TRUE(near(nb::sigmoid(f64({-1000, 1000})), {0, 1}, {2}, 1e-300, 0));
  EXPECT_TRUE(near(nb::tanh(f64({0, 1, -0.5})), {0, 0.7615941559557649, -0.46211715726000974}, {3}, 1e-15));
}

TEST(ElementwiseForward, GeluExactSoftplus) {
  // gelu(x) = x * Phi(x): Phi(1) = 0.8413447460685429, Phi(2) = 0.9772498680518208
  EXPECT_TRUE(near(nb::gelu(f64({0, 1, -1, 2})), {0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416},
                   {4}, 1e-15));
  // softplus(x) = ln(1 + e^x): ln 2, ln(1+e), ln(1+1/e); 50 and -50 without overflow
  EXPECT_TRUE(near(nb::softplus(f64({0, 1, -1, 50, -50})),
                   {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 50, 1.9287498479639178e-22}, {5},
                   0, 1e-14));
}

TEST(ElementwiseForward, SoftmaxLogSoftmax_3_and_2x2) {
  // e^1, e^2, e^3 normalized
  EXPECT_TRUE(near(nb::softmax(f64({1, 2, 3})), {0.09003057317038046, 0.24472847105479767, 0.6652409557748219},
                   {3}, 1e-15));
  EXPECT_TRUE(near(nb::log_softmax(f64({1, 2, 3})), {-2.40760596444438, -1.4076059644443801, -0.4076059644443803},
                   {3}, 1e-14));
  // along axis 0 of [[1, 2], [3, 4]]: each column is softmax([a, a+2])
  EXPECT_TRUE(near(nb::softmax(f64({1, 2, 3, 4}, {2, 2}), 0),
                   {0.11920292202211755, 0.11920292202211755, 0.8807970779778823, 0.8807970779778823}, {2, 2}, 1e-15));
  // shifted for stability: huge equal logits give a uniform distribution, not NaN
  EXPECT_TRUE(near(nb::softmax(f64({1000, 1000})), {0.5, 0.5}, {2}));
  EXPECT_TRUE(near(nb::log_softmax(f64({1000, 0})), {0, -1000}, {2}));
  // masked entries (-inf) get probability 0
  EXPECT_TRUE(near(nb::softmax(f64({0, -kInf, 0})), {0.5, 0, 0.5}, {3}));
  EXPECT_TRUE(near(nb::log_softmax(f64({0, -kInf})), {0, -kInf}, {2}));
}

TEST(ElementwiseForward, Float32Values) {
  Tensor x = f32({0, 1, -1});
  Tensor y = nb::exp(x) + nb::sigmoid(x);
  EXPECT_EQ(y.dtype(), DType::float32);
  EXPECT_TRUE(near(y, {1.5, 2.718281828459045 + 0.7310585786300049, 0.36787944117144233 + 0.2689414213699951},
                   {3}, 0, 1e-6));
}

TEST(ElementwiseForward, NonContiguousInputs_transposed2x3) {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor at = a.t();  // [[1, 4], [2, 5], [3, 6]]
  EXPECT_FALSE(at.is_contiguous());
  EXPECT_TRUE(near(nb::neg(at), {-1, -4, -2, -5, -3, -6}, {3, 2}));
  EXPECT_TRUE(near(at + f64({10, 20}), {11, 24, 12, 25, 13, 26}, {3, 2}));
  EXPECT_TRUE(near(nb::softmax(at, 0), nb::softmax(at.contiguous(), 0).to_vector<double>(), {3, 2}));
}

// Sizes large enough to be split across threads, against std:: on the host.
TEST(ElementwiseForward, LargeUnaryAndBroadcastBinary_300x257) {
  nb::manual_seed(17);
  Tensor x = nb::rand({300, 257}, kF64, -3, 3), b = nb::rand({257}, kF64, 0.5, 2);
  const auto xv = x.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> e_tanh(xv.size()), e_div(xv.size()), e_sig(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) {
    e_tanh[i] = std::tanh(xv[i]);
    e_div[i] = xv[i] / bv[i % 257];
    e_sig[i] = 1 / (1 + std::exp(-xv[i]));
  }
  EXPECT_TRUE(near(nb::tanh(x), e_tanh, {300, 257}, 1e-15, 1e-14));
  EXPECT_TRUE(near(x / b, e_div, {300, 257}, 0, 1e-15));
  EXPECT_TRUE(near(nb::sigmoid(x.t()).t(), e_sig, {300, 257}, 1e-15, 1e-14));
  // a transposed operand against a broadcast column
  Tensor y = x.t() * b.unsqueeze(1);  // [257, 300] * [257, 1]
  std::vector<double> e_mul(xv.size());
  for (int64_t i = 0; i < 257; ++i)
    for (int64_t j = 0; j < 300; ++j) e_mul[i * 300 + j] = xv[j * 257 + i] * bv[i];
  EXPECT_TRUE(near(y, e_mul, {257, 300}, 0, 1e-15));
}

TEST(ElementwiseForward, LargeSoftmaxRowsSumToOne_64x1000_and_axis0) {
  nb::manual_seed(19);
  Tensor x = nb::rand({64, 1000}, kF64, -10, 10);
  EXPECT_TRUE(near(nb::sum(nb::softmax(x), {1}), std::vector<double>(64, 1), {64}, 1e-12));
  EXPECT_TRUE(near(nb::sum(nb::softmax(x, 0), {0}), std::vector<double>(1000, 1), {1000}, 1e-12));
  EXPECT_TRUE(near(nb::exp(nb::log_softmax(x)), nb::softmax(x).to_vector<double>(), {64, 1000}, 1e-15, 1e-12));
}

// ---- gradients at kinks and ties (chosen conventions) ---------------------------------------------

Tensor grad_of(Tensor (*f)(const Tensor&), std::vector<double> x) {
  Tensor t = f64(x).requires_grad_();
  nb::sum(f(t)).backward();
  return t.grad();
}

TEST(ElementwiseKinks, AbsReluClampAtTheKink) {
  EXPECT_TRUE(near(grad_of(nb::abs, {-2, 0, 3}), {-1, 0, 1}, {3}));
  EXPECT_TRUE(near(grad_of(nb::relu, {-2, 0, 3}), {0, 0, 1}, {3}));
  Tensor x = f64({-1, 0, 1, 2}).requires_grad_();
  nb::sum(nb::clamp(x, -1, 1)).backward();
  EXPECT_TRUE(near(x.grad(), {0, 1, 0, 0}, {4}));  // 1 strictly inside (lo, hi)
}

TEST(ElementwiseKinks, MaximumTieGoesToA_MinimumTieGoesToA) {
  Tensor a = f64({1, 2, 3}).requires_grad_(), b = f64({1, 5, 0}).requires_grad_();
  nb::sum(nb::maximum(a, b)).backward();
  EXPECT_TRUE(near(a.grad(), {1, 0, 1}, {3}));
  EXPECT_TRUE(near(b.grad(), {0, 1, 0}, {3}));
  Tensor c = f64({1, 2, 3}).requires_grad_(), d = f64({1, 5, 0}).requires_grad_();
  nb::sum(nb::minimum(c, d)).backward();
  EXPECT_TRUE(near(c.grad(), {1, 1, 0}, {3}));
  EXPECT_TRUE(near(d.grad(), {0, 0, 1}, {3}));
}

TEST(ElementwiseKinks, PowZeroExponentHasZeroGradientAtZero) {
  Tensor x = f64({0, 2}).requires_grad_();
  nb::sum(nb::pow(x, 0)).backward();
  EXPECT_TRUE(near(x.grad(), {0, 0}, {2}));
}

TEST(ElementwiseKinks, BroadcastGradientSumsOverBroadcastAxes_3x1_plus_1x4) {
  Tensor a = f64({1, 2, 3}, {3, 1}).requires_grad_(), b = f64({1, 2, 3, 4}, {1, 4}).requires_grad_();
  nb::sum(a * b).backward();
  EXPECT_TRUE(near(a.grad(), {10, 10, 10}, {3, 1}));  // sum of b
  EXPECT_TRUE(near(b.grad(), {6, 6, 6, 6}, {1, 4}));  // sum of a
}

TEST(ElementwiseKinks, ScalarGradientOf0dOperandIsTheSum) {
  Tensor s = nb::scalar(2, kF64).requires_grad_(), x = f64({1, 2, 3, 4}, {2, 2}).requires_grad_();
  nb::sum(s * x).backward();
  EXPECT_TRUE(near(s.grad(), {10}, {}));
  EXPECT_TRUE(near(x.grad(), {2, 2, 2, 2}, {2, 2}));
}

// ---- errors ------------------------------------------------------------------------------------

TEST(ElementwiseErrors, AddBroadcastFailure_2x3_vs_4) {
  std::string msg = error_of([] { nb::add(f64({1, 2, 3, 4, 5, 6}, {2, 3}), f64({1, 2, 3, 4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add"), HasSubstr("[2, 3]"), HasSubstr("[4]"), HasSubstr("broadcast")));
}

TEST(ElementwiseErrors, EachBinaryOpNamesItselfAndBothShapes_2x3_vs_3x2) {
  const std::pair<const char*, BinaryFn> ops[] = {{"add", nb::add},         {"sub", nb::sub},
                                                  {"mul", nb::mul},         {"div", nb::div},
                                                  {"maximum", nb::maximum}, {"minimum", nb::minimum},
                                                  {"eq", nb::eq},           {"lt", nb::lt}};
  for (const auto& [name, fn] : ops) {
    std::string msg = error_of([fn] { fn(nb::zeros({2, 3}, kF64), nb::zeros({3, 2}, kF64)); });
    EXPECT_THAT(msg, AllOf(HasSubstr(std::string(name) + ":"), HasSubstr("[2, 3]"), HasSubstr("[3, 2]"))) << name;
  }
}

TEST(ElementwiseErrors, MixingFloat32WithFloat64_2_vs_2) {
  std::string msg = error_of([] { nb::mul(f32({1, 2}), f64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("mul"), HasSubstr("float32"), HasSubstr("float64"), HasSubstr("[2]")));
  msg = error_of([] { (void)(nb::scalar(1, kF32) + f64({1, 2, 3}, {3, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add"), HasSubstr("[]"), HasSubstr("[3, 1]")));
}

TEST(ElementwiseErrors, IntegerOperandsAreRejected) {
  std::string msg = error_of([] { nb::add(i64({1, 2}), i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add"), HasSubstr("int64")));
  msg = error_of([] { nb::exp(i32({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("exp"), HasSubstr("int32")));
}

TEST(ElementwiseErrors, ClampBoundsReversed) {
  std::string msg = error_of([] { nb::clamp(f64({1}), 2, 1); });
  EXPECT_THAT(msg, AllOf(HasSubstr("clamp"), HasSubstr("2"), HasSubstr("1")));
}

TEST(ElementwiseErrors, SoftmaxAxisOutOfRange_2x3_axis2) {
  std::string msg = error_of([] { nb::softmax(nb::zeros({2, 3}, kF64), 2); });
  EXPECT_THAT(msg, AllOf(HasSubstr("softmax"), HasSubstr("axis 2"), HasSubstr("2 dimensions")));
  msg = error_of([] { nb::log_softmax(nb::zeros({2, 3}, kF64), -3); });
  EXPECT_THAT(msg, AllOf(HasSubstr("log_softmax"), HasSubstr("-3")));
  msg = error_of([] { nb::softmax(nb::scalar(1, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("softmax"), HasSubstr("0-dimensional")));
}

TEST(ElementwiseErrors, UndefinedOperand) {
  std::string msg = error_of([] { nb::add(Tensor(), f64({1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add"), HasSubstr("undefined")));
  msg = error_of([] { nb::relu(Tensor()); });
  EXPECT_THAT(msg, AllOf(HasSubstr("relu"), HasSubstr("undefined")));
}

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

TEST(Add, Same_2x3_plus_2x3) {
  Tensor y = nb::add(f32({1, 2, 3, 4, 5, 6}, {2, 3}), f32({10, 20, 30, 40, 50, 60}, {2, 3}));
  EXPECT_EQ(y.dtype(), DType::float32);
  EXPECT_TRUE(values(y, {2, 3}, {11, 22, 33, 44, 55, 66}));
}

TEST(Add, Broadcast_3x1_plus_1x4) {
  // out[i][j] = a[i] + b[j]
  Tensor y = f32({1, 2, 3}, {3, 1}) + f32({10, 20, 30, 40}, {1, 4});
  EXPECT_TRUE(values(y, {3, 4}, {11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43}));
}

TEST(Add, Broadcast_2x3x4_plus_4) {
  Tensor a = nb::arange(0, 24, 1, {.dtype = DType::float32}).reshape({2, 3, 4});
  Tensor y = nb::add(a, f32({100, 200, 300, 400}));
  std::vector<double> want;
  for (int i = 0; i < 24; ++i) want.push_back(i + 100 * (i % 4 + 1));
  EXPECT_TRUE(values(y, {2, 3, 4}, want));
}

TEST(Add, Scalar0d_plus_2x3_and_2x3_plus_Scalar0d) {
  Tensor s = nb::scalar(0.5);
  EXPECT_EQ(s.dim(), 0);
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::add(s, x), {2, 3}, {1.5, 2.5, 3.5, 4.5, 5.5, 6.5}));
  EXPECT_TRUE(values(nb::add(x, s), {2, 3}, {1.5, 2.5, 3.5, 4.5, 5.5, 6.5}));
}

TEST(Add, Scalar0d_plus_Scalar0d_is_0d) {
  Tensor y = nb::scalar(1.25) + nb::scalar(2);
  EXPECT_TRUE(values(y, {}, {3.25}));
  EXPECT_DOUBLE_EQ(y.item(), 3.25);
}

TEST(Add, Float64_KeepsDoublePrecision_3) {
  // 1 + 1e-10 is 1.0000000001 in float64; float32 would round it to exactly 1.
  Tensor y = nb::add(f64({1, 0.1, -1}), f64({1e-10, 0.2, 1e-300}));
  EXPECT_EQ(y.dtype(), DType::float64);
  auto v = y.to_vector<double>();
  EXPECT_NEAR(v[0], 1.0000000001, 1e-16);
  EXPECT_NE(v[0], 1.0);
  EXPECT_NEAR(v[1], 0.3, 1e-16);
  EXPECT_EQ(v[2], -1.0);
}

TEST(Add, TransposedView_3x2T_plus_2x3) {
  // a.t() = [[1, 2, 3], [4, 5, 6]]
  Tensor a = f32({1, 4, 2, 5, 3, 6}, {3, 2});
  Tensor y = nb::add(a.t(), f32({10, 20, 30, 40, 50, 60}, {2, 3}));
  EXPECT_TRUE(values(y, {2, 3}, {11, 22, 33, 44, 55, 66}));
}

TEST(Sub, Broadcast_2x3_minus_3) {
  Tensor y = nb::sub(f32({1, 2, 3, 4, 5, 6}, {2, 3}), f32({0.5, 1, 1.5}));
  EXPECT_TRUE(values(y, {2, 3}, {0.5, 1, 1.5, 3.5, 4, 4.5}));
}

TEST(Sub, Broadcast_3_minus_2x1_OperandOrder) {
  // out[i][j] = a[j] - b[i]: a [3] = {1, 2, 3}, b [2, 1] = {10, 20}.
  Tensor y = f32({1, 2, 3}) - f32({10, 20}, {2, 1});
  EXPECT_TRUE(values(y, {2, 3}, {-9, -8, -7, -19, -18, -17}));
}

TEST(Mul, Broadcast_3x1_times_1x4) {
  Tensor y = nb::mul(f32({1, 2, 3}, {3, 1}), f32({1, -1, 0.5, 10}, {1, 4}));
  EXPECT_TRUE(values(y, {3, 4}, {1, -1, 0.5, 10, 2, -2, 1, 20, 3, -3, 1.5, 30}));
}

TEST(Mul, Scalar0d_times_4_Float64) {
  Tensor y = nb::mul(nb::scalar(-2.5, {.dtype = DType::float64}), f64({1, 2, -4, 0.1}));
  EXPECT_EQ(y.dtype(), DType::float64);
  EXPECT_TRUE(values(y, {4}, {-2.5, -5, 10, -0.25}, kTight));
}

TEST(Div, Broadcast_2x3_div_3) {
  // [1 2 3; 4 5 6] ./ [2 4 8] = [0.5 0.5 0.375; 2 1.25 0.75]
  Tensor y = nb::div(f32({1, 2, 3, 4, 5, 6}, {2, 3}), f32({2, 4, 8}));
  EXPECT_TRUE(values(y, {2, 3}, {0.5, 0.5, 0.375, 2, 1.25, 0.75}));
}

TEST(Div, ByZero_4_IsIeee) {
  // 1/0 = inf, -1/0 = -inf, 0/0 = NaN, 1/-0 = -inf, as in PyTorch.
  Tensor y = nb::div(f32({1, -1, 0, 1}), f32({0, 0, 0, -0.0}));
  EXPECT_TRUE(values(y, {4}, {kInf, -kInf, std::nan(""), -kInf}));
}

TEST(Div, OneThird_Float64_3) {
  Tensor y = nb::div(f64({1, 2, 10}), f64({3, 3, 3}));
  EXPECT_TRUE(values(y, {3}, {0.3333333333333333, 0.6666666666666666, 3.3333333333333335}, 1e-15));
}

TEST(Operators, ScalarOnEitherSide_3) {
  Tensor x = f32({1, -2, 4});
  EXPECT_TRUE(values(x + 2.0, {3}, {3, 0, 6}));
  EXPECT_TRUE(values(2.0 + x, {3}, {3, 0, 6}));
  EXPECT_TRUE(values(x - 2.0, {3}, {-1, -4, 2}));
  EXPECT_TRUE(values(2.0 - x, {3}, {1, 4, -2}));
  EXPECT_TRUE(values(x * 3.0, {3}, {3, -6, 12}));
  EXPECT_TRUE(values(3.0 * x, {3}, {3, -6, 12}));
  EXPECT_TRUE(values(x / 4.0, {3}, {0.25, -0.5, 1}));
  EXPECT_TRUE(values(4.0 / x, {3}, {4, -2, 1}));
  EXPECT_TRUE(values(-x, {3}, {-1, 2, -4}));
  // Scalars keep the tensor's dtype.
  EXPECT_EQ((x * 3.0).dtype(), DType::float32);
  EXPECT_EQ((4.0 / x).dtype(), DType::float32);
  EXPECT_EQ((4.0 / f64({2})).dtype(), DType::float64);
}

TEST(Operators, TensorTensor_2x2) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({4, 3, 2, 1}, {2, 2});
  EXPECT_TRUE(values(a + b, {2, 2}, {5, 5, 5, 5}, kTight));
  EXPECT_TRUE(values(a - b, {2, 2}, {-3, -1, 1, 3}, kTight));
  EXPECT_TRUE(values(a * b, {2, 2}, {4, 6, 6, 4}, kTight));
  EXPECT_TRUE(values(a / b, {2, 2}, {0.25, 0.6666666666666666, 1.5, 4}, kTight));
  // (2 - a) * 3 + a / 4 - 1 = [3 + 0.25 - 1, 0 + 0.5 - 1, -3 + 0.75 - 1, -6 + 1 - 1]
  EXPECT_TRUE(values((2.0 - a) * 3.0 + a / 4.0 - 1.0, {2, 2}, {2.25, -0.5, -3.25, -6}, kTight));
}

TEST(Maximum, Elementwise_4) {
  Tensor a = f32({1, 5, -3, 2}), b = f32({2, 4, -3, -1});
  EXPECT_TRUE(values(nb::maximum(a, b), {4}, {2, 5, -3, 2}));
  EXPECT_TRUE(values(nb::minimum(a, b), {4}, {1, 4, -3, -1}));
}

TEST(Maximum, Broadcast_2x3_vs_Scalar0d) {
  Tensor x = f64({-1, 0.5, 2, -3, 4, 0}, {2, 3});
  EXPECT_TRUE(values(nb::maximum(x, nb::scalar(0.25, {.dtype = DType::float64})), {2, 3},
                     {0.25, 0.5, 2, 0.25, 4, 0.25}, kTight));
  EXPECT_TRUE(values(nb::minimum(nb::scalar(0.25, {.dtype = DType::float64}), x), {2, 3},
                     {-1, 0.25, 0.25, -3, 0.25, 0}, kTight));
}

TEST(Minimum, Broadcast_3x1_vs_1x2) {
  // min(a[i], b[j]): a = {1, 2, 3}, b = {2.5, 0}
  Tensor y = nb::minimum(f32({1, 2, 3}, {3, 1}), f32({2.5, 0}, {1, 2}));
  EXPECT_TRUE(values(y, {3, 2}, {1, 0, 2, 0, 2.5, 0}));
}

TEST(Compare, AllSix_3_vs_3) {
  Tensor a = f32({1, 2, 3}), b = f32({2, 2, 2});
  EXPECT_TRUE(values(nb::eq(a, b), {3}, {0, 1, 0}));
  EXPECT_TRUE(values(nb::ne(a, b), {3}, {1, 0, 1}));
  EXPECT_TRUE(values(nb::gt(a, b), {3}, {0, 0, 1}));
  EXPECT_TRUE(values(nb::ge(a, b), {3}, {0, 1, 1}));
  EXPECT_TRUE(values(nb::lt(a, b), {3}, {1, 0, 0}));
  EXPECT_TRUE(values(nb::le(a, b), {3}, {1, 1, 0}));
  EXPECT_EQ(nb::eq(a, b).dtype(), DType::float32);
}

TEST(Compare, Broadcast_3x1_vs_1x3_Float64) {
  // gt(a[i], b[j]) with a = b = {1, 2, 3}: strictly lower triangle.
  Tensor a = f64({1, 2, 3}, {3, 1}), b = f64({1, 2, 3}, {1, 3});
  Tensor g = nb::gt(a, b);
  EXPECT_EQ(g.dtype(), DType::float64);
  EXPECT_TRUE(values(g, {3, 3}, {0, 0, 0, 1, 0, 0, 1, 1, 0}));
  EXPECT_TRUE(values(nb::le(a, b), {3, 3}, {1, 1, 1, 0, 1, 1, 0, 0, 1}));
  EXPECT_TRUE(values(nb::eq(a, b), {3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}));
}

TEST(Compare, NaN_2) {
  // NaN compares unequal to everything, itself included.
  Tensor a = f32({std::nan(""), 1}), b = f32({std::nan(""), 1});
  EXPECT_TRUE(values(nb::eq(a, b), {2}, {0, 1}));
  EXPECT_TRUE(values(nb::ne(a, b), {2}, {1, 0}));
  EXPECT_TRUE(values(nb::ge(a, b), {2}, {0, 1}));
}

TEST(Compare, NotRecorded) {
  Tensor a = f64({1, 2}).requires_grad_(true);
  Tensor y = nb::gt(a, f64({1.5, 1.5}));
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(values(y, {2}, {0, 1}));
}

TEST(Neg, Values_4) {
  EXPECT_TRUE(values(nb::neg(f32({1, -2.5, 0, 1e30})), {4}, {-1, 2.5, 0, -1e30}));
}

TEST(Exp, Values_4_Float32_and_Float64) {
  // e^0 = 1, e^1 = 2.718281828459045, e^-1 = 0.36787944117144233, e^2 = 7.38905609893065
  const std::vector<double> want = {1, 2.718281828459045, 0.36787944117144233, 7.38905609893065};
  EXPECT_TRUE(values(nb::exp(f32({0, 1, -1, 2})), {4}, want));
  EXPECT_TRUE(values(nb::exp(f64({0, 1, -1, 2})), {4}, want, kTight));
  // e^-1000 underflows to 0, e^1000 overflows to inf
  EXPECT_TRUE(values(nb::exp(f64({-1000, 1000})), {2}, {0, kInf}));
}

TEST(Exp, TransposedView_2x3T) {
  // x.t() = [[0, 1, 2], [-1, 0, 1]]
  Tensor x = f64({0, -1, 1, 0, 2, 1}, {3, 2});
  EXPECT_TRUE(values(nb::exp(x.t()), {2, 3},
                     {1, 2.718281828459045, 7.38905609893065, 0.36787944117144233, 1, 2.718281828459045}, kTight));
}

TEST(Log, Values_6) {
  // ln 1 = 0, ln 10 = 2.302585092994046, ln 0.5 = -0.6931471805599453, ln 2 = 0.6931471805599453,
  // ln 0 = -inf, ln(-1) = NaN
  Tensor x = f64({1, 10, 0.5, 2, 0, -1});
  EXPECT_TRUE(values(nb::log(x), {6},
                     {0, 2.302585092994046, -0.6931471805599453, 0.6931471805599453, -kInf, std::nan("")}, kTight));
  EXPECT_TRUE(values(nb::log(f32({1, 10, 0.5, 2})), {4},
                     {0, 2.302585092994046, -0.6931471805599453, 0.6931471805599453}));
}

TEST(Sqrt, Values_5) {
  // sqrt(2) = 1.4142135623730951, sqrt(-1) = NaN
  EXPECT_TRUE(values(nb::sqrt(f32({0, 4, 2, 0.25})), {4}, {0, 2, 1.4142135623730951, 0.5}));
  EXPECT_TRUE(values(nb::sqrt(f64({2, -1})), {2}, {1.4142135623730951, std::nan("")}, kTight));
}

TEST(Abs, Values_5) {
  EXPECT_TRUE(values(nb::abs(f32({-3, 0, 2.5, -0.0, -1e-20})), {5}, {3, 0, 2.5, 0, 1e-20}));
  EXPECT_EQ(nb::abs(f32({-0.0})).to_vector<float>()[0], 0.0f);
  EXPECT_FALSE(std::signbit(nb::abs(f32({-0.0})).to_vector<float>()[0]));
}

TEST(Pow, Exponents_2_Half_Minus1_3_0) {
  Tensor x = f64({1, 2, 4, 0.5});
  EXPECT_TRUE(values(nb::pow(x, 2), {4}, {1, 4, 16, 0.25}, kTight));
  // 2^0.5 = 1.4142135623730951, 0.5^0.5 = 0.7071067811865476
  EXPECT_TRUE(values(nb::pow(x, 0.5), {4}, {1, 1.4142135623730951, 2, 0.7071067811865476}, kTight));
  EXPECT_TRUE(values(nb::pow(x, -1), {4}, {1, 0.5, 0.25, 2}, kTight));
  // integer exponents of negative bases keep their sign; x^0 = 1 also at x = 0
  EXPECT_TRUE(values(nb::pow(f32({-2, -1.5, 3}), 3), {3}, {-8, -3.375, 27}));
  EXPECT_TRUE(values(nb::pow(f32({0, -2, 5}), 0), {3}, {1, 1, 1}));
}

TEST(Clamp, MinusOne_One_6) {
  Tensor x = f32({-2, -1, -0.5, 0.5, 1, 2});
  EXPECT_TRUE(values(nb::clamp(x, -1, 1), {6}, {-1, -1, -0.5, 0.5, 1, 1}));
  // lo == hi is allowed and gives a constant
  EXPECT_TRUE(values(nb::clamp(x, 0.25, 0.25), {6}, {0.25, 0.25, 0.25, 0.25, 0.25, 0.25}));
  // one-sided with an infinite bound
  EXPECT_TRUE(values(nb::clamp(x, 0, kInf), {6}, {0, 0, 0, 0.5, 1, 2}));
}

TEST(Clamp, NaNPassesThrough_2) {
  EXPECT_TRUE(values(nb::clamp(f64({std::nan(""), 5}), -1, 1), {2}, {std::nan(""), 1}));
}

TEST(Affine, ScaleShift_2x2) {
  // 2x - 1
  EXPECT_TRUE(values(nb::affine(f32({0, 1, -1, 0.25}, {2, 2}), 2, -1), {2, 2}, {-1, 1, -3, -0.5}));
  // -1.5x + 0.25
  EXPECT_TRUE(values(nb::affine(f64({2, -2}), -1.5, 0.25), {2}, {-2.75, 3.25}, kTight));
}

TEST(Relu, Values_5) {
  EXPECT_TRUE(values(nb::relu(f32({-1, 0, 2, -1e-30, 1e30})), {5}, {0, 0, 2, 0, 1e30}));
  EXPECT_TRUE(values(f64({-3, 3}).relu(), {2}, {0, 3}, kTight));
}

TEST(LeakyRelu, DefaultAndCustomSlope_3) {
  Tensor x = f32({-2, 0, 3});
  EXPECT_TRUE(values(nb::leaky_relu(x), {3}, {-0.02, 0, 3}));
  EXPECT_TRUE(values(nb::leaky_relu(x, 0.1), {3}, {-0.2, 0, 3}));
}

TEST(Elu, AlphaOneAndTwo_3) {
  // elu(-1) = e^-1 - 1 = -0.6321205588285577; alpha 2: -1.2642411176571153; elu(-2) = -0.8646647167633873
  EXPECT_TRUE(values(nb::elu(f64({-1, 0, 2, -2})), {4}, {-0.6321205588285577, 0, 2, -0.8646647167633873}, kTight));
  EXPECT_TRUE(values(nb::elu(f32({-1, 0, 2}), 2.0), {3}, {-1.2642411176571153, 0, 2}));
  // saturates at -alpha
  EXPECT_TRUE(values(nb::elu(f32({-100}), 1.5), {1}, {-1.5}));
}

TEST(Sigmoid, Values_5) {
  // sigmoid(0) = 0.5, sigmoid(2) = 1/(1+e^-2) = 0.8807970779778823, sigmoid(-2) = 0.11920292202211755,
  // sigmoid(30) = 0.9999999999999065, sigmoid(-30) = 9.357622968839299e-14
  Tensor y = nb::sigmoid(f64({0, 2, -2, 30, -30}));
  EXPECT_TRUE(values(y, {5}, {0.5, 0.8807970779778823, 0.11920292202211755, 0.9999999999999065, 0}, kTight));
  EXPECT_NEAR(y.to_vector<double>()[4], 9.357622968839299e-14, 1e-26);
  Tensor z = nb::sigmoid(f32({0, 2, -2}));
  EXPECT_TRUE(values(z, {3}, {0.5, 0.8807970779778823, 0.11920292202211755}));
}

TEST(Sigmoid, LargeMagnitudeStaysFinite_4) {
  // sigmoid(-100) = e^-100 / (1 + e^-100) = 3.720075976020836e-44, not 0/0 or 1/inf trouble.
  Tensor y = nb::sigmoid(f64({-100, 100, -1000, 1000}));
  auto v = y.to_vector<double>();
  EXPECT_NEAR(v[0], 3.720075976020836e-44, 1e-57);
  EXPECT_EQ(v[1], 1.0);
  EXPECT_EQ(v[2], 0.0);
  EXPECT_EQ(v[3], 1.0);
  Tensor z = nb::sigmoid(f32({-1000, 1000}));
  EXPECT_TRUE(values(z, {2}, {0, 1}));
}

TEST(Tanh, Values_4) {
  // tanh(0.5) = 0.46211715726000974, tanh(-1) = -0.7615941559557649, tanh(20) = 1 (to double precision)
  EXPECT_TRUE(values(nb::tanh(f32({0, 0.5, -1, 20})), {4}, {0, 0.46211715726000974, -0.7615941559557649, 1}));
  EXPECT_TRUE(values(nb::tanh(f64({0.5, -1})), {2}, {0.46211715726000974, -0.7615941559557649}, kTight));
}

TEST(Gelu, ExactErfForm_5) {
  // gelu(x) = x * Phi(x) = x/2 * (1 + erf(x/sqrt 2)):
  // gelu(1) = 0.8413447460685429, gelu(-1) = -0.15865525393145707, gelu(2) = 1.9544997361036416,
  // gelu(-3) = -0.00404969409489031. The tanh approximation would give gelu(1) = 0.8411919906...
  Tensor y = nb::gelu(f64({0, 1, -1, 2, -3}));
  EXPECT_TRUE(values(y, {5}, {0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416, -0.00404969409489031},
                     kTight));
  EXPECT_NEAR(y.to_vector<double>()[4], -0.00404969409489031, 1e-15);
  EXPECT_TRUE(values(nb::gelu(f32({1, -1, 2})), {3}, {0.8413447460685429, -0.15865525393145707, 1.9544997361036416}));
}

TEST(Softplus, Values_6_IncludingPlusMinus50) {
  // softplus(x) = ln(1 + e^x): softplus(0) = ln 2 = 0.6931471805599453, softplus(1) = 1.3132616875182228,
  // softplus(-1) = 0.31326168751822286, softplus(50) = 50 + 1.9e-22, softplus(-50) = 1.9287498479639178e-22,
  // softplus(100) = 100
  Tensor y = nb::softplus(f64({0, 1, -1, 50, -50, 100}));
  EXPECT_TRUE(values(y, {6}, {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 50, 0, 100}, kTight));
  EXPECT_NEAR(y.to_vector<double>()[4], 1.9287498479639178e-22, 1e-35);
  Tensor z = nb::softplus(f32({0, 1, -1, 50, -50, 1000}));
  EXPECT_TRUE(values(z, {6}, {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 50, 0, 1000}));
  EXPECT_NEAR(z.to_vector<double>()[4], 1.9287498479639178e-22, 1e-28);
}

TEST(Silu, Values_9) {
  // silu(x) = x / (1 + e^-x): silu(1) = 0.73105857863000488, silu(-1) = -0.26894142136999512,
  // silu(2) = 1.7615941559557649, silu(-2) = -0.23840584404423511, silu(0.5) = 0.31122966560092728,
  // silu(30) = 29.999999999997193, silu(-30) = -2.8072868906517897e-12
  Tensor y = nb::silu(f64({0, 1, -1, 2, -2, 0.5, 30, -30, 700}));
  EXPECT_TRUE(values(y, {9},
                     {0, 0.73105857863000488, -0.26894142136999512, 1.7615941559557649, -0.23840584404423511,
                      0.31122966560092728, 29.999999999997193, -2.8072868906517897e-12, 700},
                     kTight));
  EXPECT_NEAR(y.to_vector<double>()[7], -2.8072868906517897e-12, 1e-25);
  EXPECT_TRUE(values(nb::silu(f32({0, 1, -1, 2})), {4}, {0, 0.73105857863000488, -0.26894142136999512, 1.7615941559557649}));
}

TEST(Silu, LargeMagnitudeInfinityAndNaN_LikeSigmoid) {
  // silu(-100) = -100 e^-100 / (1 + e^-100) = -3.720075976020836e-42; far below it, x * sigmoid(x)
  // underflows to (-)0. At -inf the limit 0, not -inf * 0; +inf stays +inf; NaN stays NaN.
  const double inf = kInf;
  Tensor y = nb::silu(f64({-100, 100, -1000, 1000, -inf, inf, kNaN}));
  auto v = y.to_vector<double>();
  EXPECT_NEAR(v[0], -3.720075976020836e-42, 1e-55);
  EXPECT_EQ(v[1], 100.0);
  EXPECT_EQ(v[2], 0.0);
  EXPECT_EQ(v[3], 1000.0);
  EXPECT_EQ(v[4], 0.0);
  EXPECT_EQ(v[5], inf);
  EXPECT_TRUE(std::isnan(v[6]));
  Tensor z = nb::silu(f32({-1000, 1000, -inf, inf, kNaN}));
  EXPECT_TRUE(values(z, {5}, {0, 1000, 0, inf, kNaN}));
  // the derivative s (1 + x (1 - s)): 0 at -inf and far below 0, 1 at +inf and far above, NaN at NaN;
  // at -30: 9.357622968839299e-14 * (1 - 30 (1 - 9.4e-14)) = -2.713710660963134e-12
  Tensor x = f64({-30, -1000, 1000, -inf, inf, kNaN}).requires_grad_();
  nb::sum(nb::silu(x)).backward();
  auto g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], -2.713710660963134e-12, 1e-25);
  EXPECT_EQ(g[1], 0.0);
  EXPECT_EQ(g[2], 1.0);
  EXPECT_EQ(g[3], 0.0);
  EXPECT_EQ(g[4], 1.0);
  EXPECT_TRUE(std::isnan(g[5]));
  Tensor xf = f32({-1000, 1000, -inf, inf, kNaN}).requires_grad_();
  nb::sum(nb::silu(xf)).backward();
  EXPECT_TRUE(values(xf.grad(), {5}, {0, 1, 0, 1, kNaN}));
}

TEST(Silu, DerivativeValues_4) {
  // silu'(x) = s (1 + x (1 - s)): silu'(0) = 0.5, silu'(1) = 0.92767051187148673,
  // silu'(-1) = 0.072329488128513268, silu'(-2) = -0.090784248784895479
  EXPECT_TRUE(values(grad_of(nb::silu, {0, 1, -1, -2}), {4},
                     {0.5, 0.92767051187148673, 0.072329488128513268, -0.090784248784895479}, kTight));
}

TEST(Hardtanh, DefaultAndCustomBounds_InfAndNaN) {
  const double inf = kInf;
  EXPECT_TRUE(values(nb::hardtanh(f32({-2, -1, -0.5, 0, 0.5, 1, 2, -inf, inf, kNaN})), {10},
                     {-1, -1, -0.5, 0, 0.5, 1, 1, -1, 1, kNaN}));
  EXPECT_TRUE(values(nb::hardtanh(f64({-3, -0.5, 0.25, 2, 7}), -0.5, 2), {5}, {-0.5, -0.5, 0.25, 2, 2}, kTight));
  EXPECT_TRUE(values(nb::hardtanh(f64({-1, 0.5, 1}), 0.5, 0.5), {3}, {0.5, 0.5, 0.5}, kTight));  // equal bounds
}

TEST(Hardtanh, GradientZeroAtAndBeyondTheBounds_AsPyTorch) {
  // PyTorch's hardtanh_backward: 0 where x <= min_val or x >= max_val, the incoming gradient elsewhere
  // (NaN included).
  Tensor x = f64({-2, -1, -0.999, 0, 0.999, 1, 2, kNaN}).requires_grad_();
  nb::sum(nb::hardtanh(x)).backward();
  EXPECT_TRUE(values(x.grad(), {8}, {0, 0, 1, 1, 1, 0, 0, 1}));
  Tensor y = f32({-0.5, 0, 2, 3}).requires_grad_();
  nb::sum(nb::hardtanh(y, -0.5, 2) * 3.0).backward();
  EXPECT_TRUE(values(y.grad(), {4}, {0, 3, 0, 0}));
  Tensor z = f64({0.5}).requires_grad_();
  nb::sum(nb::hardtanh(z, 0.5, 0.5)).backward();
  EXPECT_TRUE(values(z.grad(), {1}, {0}));
}

TEST(Hardtanh, MinAboveMaxIsAnErrorNamingBoth) {
  std::string msg = error_of([] { nb::hardtanh(f64({1}), 2, 1.5); });
  EXPECT_THAT(msg, AllOf(HasSubstr("hardtanh:"), HasSubstr("min_val 2"), HasSubstr("max_val 1.5")));
  msg = error_of([] { nb::hardtanh(nb::zeros({2}), 0.25, -0.25); });
  EXPECT_THAT(msg, AllOf(HasSubstr("hardtanh:"), HasSubstr("min_val 0.25"), HasSubstr("max_val -0.25")));
}

TEST(Softmax, LastAxis_2x3) {
  // softmax(1, 2, 3) = (0.09003057317038046, 0.24472847105479764, 0.6652409557748218); equal logits: 1/3
  Tensor y = nb::softmax(f32({1, 2, 3, 0, 0, 0}, {2, 3}));
  EXPECT_TRUE(values(y, {2, 3},
                     {0.09003057317038046, 0.24472847105479764, 0.6652409557748218, 1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_TRUE(values(nb::softmax(f64({1, 2, 3}), -1), {3},
                     {0.09003057317038046, 0.24472847105479764, 0.6652409557748218}, kTight));
}

TEST(Softmax, Axis0_2x2) {
  // columns (1, 3) and (2, 4): softmax(1, 3) = (0.11920292202211755, 0.8807970779778823)
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  const std::vector<double> want = {0.11920292202211755, 0.11920292202211755, 0.8807970779778823,
                                    0.8807970779778823};
  EXPECT_TRUE(values(nb::softmax(x, 0), {2, 2}, want, kTight));
  EXPECT_TRUE(values(nb::softmax(x, -2), {2, 2}, want, kTight));
}

TEST(Softmax, MiddleAxis_2x3x2) {
  // x[0] columns: (1, 2, 3) and (0, 0, 0); x[1] columns: (3, 2, 1) and (1000, 1001, 1002)
  Tensor x = f32({1, 0, 2, 0, 3, 0, 3, 1000, 2, 1001, 1, 1002}, {2, 3, 2});
  const double a = 0.09003057317038046, b = 0.24472847105479764, c = 0.6652409557748218, t = 1.0 / 3;
  EXPECT_TRUE(values(nb::softmax(x, 1), {2, 3, 2}, {a, t, b, t, c, t, c, a, b, b, a, c}));
}

TEST(Softmax, LargeValues_1000_1001_StayFinite) {
  // softmax(1000, 1001) = softmax(0, 1) = (0.2689414213699951, 0.7310585786300049); exp(1000) would overflow.
  Tensor y = nb::softmax(f32({1000, 1001, -1000, -1001}, {2, 2}));
  EXPECT_TRUE(values(y, {2, 2}, {0.2689414213699951, 0.7310585786300049, 0.7310585786300049, 0.2689414213699951}));
}

TEST(LogSoftmax, LastAxis_2x3) {
  // log_softmax(1, 2, 3) = (-2.4076059644443806, -1.4076059644443804, -0.4076059644443804); equal: -ln 3
  Tensor y = nb::log_softmax(f64({1, 2, 3, 5, 5, 5}, {2, 3}));
  EXPECT_TRUE(values(y, {2, 3},
                     {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804, -1.0986122886681098,
                      -1.0986122886681098, -1.0986122886681098},
                     kTight));
  EXPECT_TRUE(values(nb::log_softmax(f32({1, 2, 3})), {3}, {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804}));
}

TEST(LogSoftmax, Axis0_2x2) {
  // columns (1, 3): log_softmax = (-2.1269280110429727, -0.1269280110429726)
  Tensor y = nb::log_softmax(f32({1, 10, 3, 12}, {2, 2}), 0);
  EXPECT_TRUE(values(y, {2, 2}, {-2.1269280110429727, -2.1269280110429727, -0.1269280110429726, -0.1269280110429726}));
}

TEST(LogSoftmax, LargeValues_1000_1001_StayFinite) {
  // log_softmax(1000, 1001) = (-1.3132616875182228, -0.31326168751822286); a logit 1e4 below: -1e4 - ...
  Tensor y = nb::log_softmax(f32({1000, 1001}));
  EXPECT_TRUE(values(y, {2}, {-1.3132616875182228, -0.31326168751822286}));
  Tensor z = nb::log_softmax(f64({0, 10000}));
  EXPECT_TRUE(values(z, {2}, {-10000, 0}, kTight));
}

TEST(Errors, Add_Broadcast_2x3_plus_4) {
  std::string msg = error_of([] { nb::add(nb::zeros({2, 3}), nb::zeros({4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add:"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
}

TEST(Errors, Mul_Broadcast_2x3_times_3x2) {
  std::string msg = error_of([] { nb::zeros({2, 3}) * nb::zeros({3, 2}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("mul:"), HasSubstr("[2, 3]"), HasSubstr("[3, 2]")));
}

TEST(Errors, Sub_Div_Maximum_Eq_Broadcast_2_vs_3) {
  for (auto [name, f] : std::vector<std::pair<std::string, Tensor (*)(const Tensor&, const Tensor&)>>{
           {"sub", nb::sub}, {"div", nb::div}, {"maximum", nb::maximum}, {"minimum", nb::minimum},
           {"eq", nb::eq}, {"lt", nb::lt}}) {
    std::string msg = error_of([f = f] { f(nb::zeros({2}), nb::zeros({3})); });
    EXPECT_THAT(msg, AllOf(HasSubstr(name + ":"), HasSubstr("[2]"), HasSubstr("[3]"))) << name;
  }
}

TEST(Errors, Add_Float32_plus_Float64) {
  std::string msg = error_of([] { nb::add(nb::zeros({2, 3}), nb::zeros({2, 3}, {.dtype = DType::float64})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add:"), HasSubstr("float32"), HasSubstr("float64"), HasSubstr("[2, 3]")));
  msg = error_of([] { nb::matmul(nb::zeros({2, 3}), nb::zeros({3, 2}, {.dtype = DType::float64})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul:"), HasSubstr("float32"), HasSubstr("float64")));
}

TEST(Errors, Softmax_AxisOutOfRange_2x3) {
  std::string msg = error_of([] { nb::softmax(nb::zeros({2, 3}), 2); });
  EXPECT_THAT(msg, AllOf(HasSubstr("softmax:"), HasSubstr("axis 2")));
  msg = error_of([] { nb::log_softmax(nb::zeros({2, 3}), -3); });
  EXPECT_THAT(msg, AllOf(HasSubstr("log_softmax:"), HasSubstr("axis -3")));
}

TEST(Errors, Clamp_LoAboveHi) {
  std::string msg = error_of([] { nb::clamp(nb::zeros({2}), 2, 1); });
  EXPECT_THAT(msg, AllOf(HasSubstr("clamp:"), HasSubstr("lower bound 2"), HasSubstr("upper bound 1")));
}

TEST(Errors, Int64TensorToFloatOp) {
  std::string msg = error_of([] { nb::exp(i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("exp:"), HasSubstr("int64")));
  msg = error_of([] { nb::add(i64({1, 2}), i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add:"), HasSubstr("int64")));
  msg = error_of([] { nb::sum(i32({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("sum:"), HasSubstr("int32")));
  msg = error_of([] { nb::matmul(i64({1, 2}), i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul:"), HasSubstr("int64")));
  msg = error_of([] { nb::softmax(i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("softmax:"), HasSubstr("int64")));
}

TEST(Errors, UndefinedTensor) {
  std::string msg = error_of([] { nb::add(Tensor(), nb::zeros({2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("add:"), HasSubstr("undefined")));
  msg = error_of([] { nb::relu(Tensor()); });
  EXPECT_THAT(msg, AllOf(HasSubstr("relu:"), HasSubstr("undefined")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3}), Tensor()); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("undefined")));
  msg = error_of([] { Tensor().shape(); });
  EXPECT_THAT(msg, HasSubstr("undefined"));
}

// ---- CPU kernels, called directly through nabla::Backend on host buffers (test_util.h: cpu()) ----
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

using nb::BinaryOp;
using nb::ReduceOp;
using nb::StridedLayout;
using nb::UnaryOp;

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
      {"silu", UnaryOp::silu, 0, 0, -20, 20, {}, [](double x) { return x / (1 + std::exp(-x)); }},
      {"hardtanh_m0p5_2",
       UnaryOp::hardtanh,
       -0.5,
       2,
       -3,
       3,
       {-0.5, 2},
       [](double x) { return x < -0.5 ? -0.5
                             : x > 2  ? 2
                                      : x; }},
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

TEST(CpuUnaryKinks, HardtanhDerivativeIsZeroAtTheBounds_m1_2) {
  EXPECT_EQ(derivative_at(UnaryOp::hardtanh, -1.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::hardtanh, 2.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::hardtanh, 3.0, -1, 2), 0.0);
  EXPECT_EQ(derivative_at(UnaryOp::hardtanh, 0.5, -1, 2), 1.0);
  EXPECT_EQ(derivative_at(UnaryOp::hardtanh, kNaN, -1, 2), 1.0);  // PyTorch's: NaN is not at or beyond a bound
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

}  // namespace cpu_kernels

}  // namespace
