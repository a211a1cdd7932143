// Forward values of every op against hand-computed numbers, and the errors each op raises.
//
// Inputs and expected outputs are literals; each expected value was worked out by hand or with a
// calculator and is written next to its formula (e.g. sigmoid(2) = 1/(1+e^-2) = 0.880797...).
// Gradients are checked separately, in ops_grad_test.cpp.
#include "gradcheck.h"

#include <nabla/core/ops.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace nb = nabla;
using nb::DType;
using nb::Reduction;
using nb::Shape;
using nb::Tensor;
using nb::testing::error_of;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

const double inf = std::numeric_limits<double>::infinity();

Tensor f32(std::vector<double> v, Shape s = {}) { return nb::from_vector(v, s, {.dtype = DType::float32}); }
Tensor f64(std::vector<double> v, Shape s = {}) { return nb::from_vector(v, s, {.dtype = DType::float64}); }
Tensor i64(std::vector<int64_t> v) { return nb::from_vector(v, {static_cast<int64_t>(v.size())}); }
Tensor i32(std::vector<int32_t> v) { return nb::from_vector(v, {static_cast<int64_t>(v.size())}); }

// t has `shape` and each element is within tol * max(1, |want|) of `want` (row-major); +-inf must
// match exactly, NaN must be NaN.
::testing::AssertionResult values(const Tensor& t, const Shape& shape, const std::vector<double>& want,
                                  double tol = 1e-6) {
  if (!t.defined()) return ::testing::AssertionFailure() << "tensor is undefined";
  if (t.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << nb::shape_str(t.shape()) << ", expected "
                                         << nb::shape_str(shape);
  std::vector<double> got = t.to_vector<double>();
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << got.size() << " values, expected " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w))
      ok = std::isnan(g);
    else if (std::isinf(w))
      ok = g == w;
    else
      ok = std::abs(g - w) <= tol * std::max(1.0, std::abs(w));
    if (!ok)
      return ::testing::AssertionFailure() << "element " << i << " is " << ::testing::PrintToString(g)
                                           << ", expected " << ::testing::PrintToString(w) << " (tol " << tol
                                           << ")\n"
                                           << t;
  }
  return ::testing::AssertionSuccess();
}

// Tight tolerance for float64 results.
constexpr double kF64 = 1e-12;

}  // namespace

// ================================ binary arithmetic ===========================================

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
  EXPECT_TRUE(values(y, {4}, {-2.5, -5, 10, -0.25}, kF64));
}

TEST(Div, Broadcast_2x3_div_3) {
  // [1 2 3; 4 5 6] ./ [2 4 8] = [0.5 0.5 0.375; 2 1.25 0.75]
  Tensor y = nb::div(f32({1, 2, 3, 4, 5, 6}, {2, 3}), f32({2, 4, 8}));
  EXPECT_TRUE(values(y, {2, 3}, {0.5, 0.5, 0.375, 2, 1.25, 0.75}));
}

TEST(Div, ByZero_4_IsIeee) {
  // 1/0 = inf, -1/0 = -inf, 0/0 = NaN, 1/-0 = -inf, as in PyTorch.
  Tensor y = nb::div(f32({1, -1, 0, 1}), f32({0, 0, 0, -0.0}));
  EXPECT_TRUE(values(y, {4}, {inf, -inf, std::nan(""), -inf}));
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
  EXPECT_TRUE(values(a + b, {2, 2}, {5, 5, 5, 5}, kF64));
  EXPECT_TRUE(values(a - b, {2, 2}, {-3, -1, 1, 3}, kF64));
  EXPECT_TRUE(values(a * b, {2, 2}, {4, 6, 6, 4}, kF64));
  EXPECT_TRUE(values(a / b, {2, 2}, {0.25, 0.6666666666666666, 1.5, 4}, kF64));
  // (2 - a) * 3 + a / 4 - 1 = [3 + 0.25 - 1, 0 + 0.5 - 1, -3 + 0.75 - 1, -6 + 1 - 1]
  EXPECT_TRUE(values((2.0 - a) * 3.0 + a / 4.0 - 1.0, {2, 2}, {2.25, -0.5, -3.25, -6}, kF64));
}

TEST(Maximum, Elementwise_4) {
  Tensor a = f32({1, 5, -3, 2}), b = f32({2, 4, -3, -1});
  EXPECT_TRUE(values(nb::maximum(a, b), {4}, {2, 5, -3, 2}));
  EXPECT_TRUE(values(nb::minimum(a, b), {4}, {1, 4, -3, -1}));
}

TEST(Maximum, Broadcast_2x3_vs_Scalar0d) {
  Tensor x = f64({-1, 0.5, 2, -3, 4, 0}, {2, 3});
  EXPECT_TRUE(values(nb::maximum(x, nb::scalar(0.25, {.dtype = DType::float64})), {2, 3},
                     {0.25, 0.5, 2, 0.25, 4, 0.25}, kF64));
  EXPECT_TRUE(values(nb::minimum(nb::scalar(0.25, {.dtype = DType::float64}), x), {2, 3},
                     {-1, 0.25, 0.25, -3, 0.25, 0}, kF64));
}

TEST(Minimum, Broadcast_3x1_vs_1x2) {
  // min(a[i], b[j]): a = {1, 2, 3}, b = {2.5, 0}
  Tensor y = nb::minimum(f32({1, 2, 3}, {3, 1}), f32({2.5, 0}, {1, 2}));
  EXPECT_TRUE(values(y, {3, 2}, {1, 0, 2, 0, 2.5, 0}));
}

// ================================ comparisons =================================================

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

// ================================ unary math ===================================================

TEST(Neg, Values_4) {
  EXPECT_TRUE(values(nb::neg(f32({1, -2.5, 0, 1e30})), {4}, {-1, 2.5, 0, -1e30}));
}

TEST(Exp, Values_4_Float32_and_Float64) {
  // e^0 = 1, e^1 = 2.718281828459045, e^-1 = 0.36787944117144233, e^2 = 7.38905609893065
  const std::vector<double> want = {1, 2.718281828459045, 0.36787944117144233, 7.38905609893065};
  EXPECT_TRUE(values(nb::exp(f32({0, 1, -1, 2})), {4}, want));
  EXPECT_TRUE(values(nb::exp(f64({0, 1, -1, 2})), {4}, want, kF64));
  // e^-1000 underflows to 0, e^1000 overflows to inf
  EXPECT_TRUE(values(nb::exp(f64({-1000, 1000})), {2}, {0, inf}));
}

TEST(Exp, TransposedView_2x3T) {
  // x.t() = [[0, 1, 2], [-1, 0, 1]]
  Tensor x = f64({0, -1, 1, 0, 2, 1}, {3, 2});
  EXPECT_TRUE(values(nb::exp(x.t()), {2, 3},
                     {1, 2.718281828459045, 7.38905609893065, 0.36787944117144233, 1, 2.718281828459045}, kF64));
}

TEST(Log, Values_6) {
  // ln 1 = 0, ln 10 = 2.302585092994046, ln 0.5 = -0.6931471805599453, ln 2 = 0.6931471805599453,
  // ln 0 = -inf, ln(-1) = NaN
  Tensor x = f64({1, 10, 0.5, 2, 0, -1});
  EXPECT_TRUE(values(nb::log(x), {6},
                     {0, 2.302585092994046, -0.6931471805599453, 0.6931471805599453, -inf, std::nan("")}, kF64));
  EXPECT_TRUE(values(nb::log(f32({1, 10, 0.5, 2})), {4},
                     {0, 2.302585092994046, -0.6931471805599453, 0.6931471805599453}));
}

TEST(Sqrt, Values_5) {
  // sqrt(2) = 1.4142135623730951, sqrt(-1) = NaN
  EXPECT_TRUE(values(nb::sqrt(f32({0, 4, 2, 0.25})), {4}, {0, 2, 1.4142135623730951, 0.5}));
  EXPECT_TRUE(values(nb::sqrt(f64({2, -1})), {2}, {1.4142135623730951, std::nan("")}, kF64));
}

TEST(Abs, Values_5) {
  EXPECT_TRUE(values(nb::abs(f32({-3, 0, 2.5, -0.0, -1e-20})), {5}, {3, 0, 2.5, 0, 1e-20}));
  EXPECT_EQ(nb::abs(f32({-0.0})).to_vector<float>()[0], 0.0f);
  EXPECT_FALSE(std::signbit(nb::abs(f32({-0.0})).to_vector<float>()[0]));
}

TEST(Pow, Exponents_2_Half_Minus1_3_0) {
  Tensor x = f64({1, 2, 4, 0.5});
  EXPECT_TRUE(values(nb::pow(x, 2), {4}, {1, 4, 16, 0.25}, kF64));
  // 2^0.5 = 1.4142135623730951, 0.5^0.5 = 0.7071067811865476
  EXPECT_TRUE(values(nb::pow(x, 0.5), {4}, {1, 1.4142135623730951, 2, 0.7071067811865476}, kF64));
  EXPECT_TRUE(values(nb::pow(x, -1), {4}, {1, 0.5, 0.25, 2}, kF64));
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
  EXPECT_TRUE(values(nb::clamp(x, 0, inf), {6}, {0, 0, 0, 0.5, 1, 2}));
}

TEST(Clamp, NaNPassesThrough_2) {
  EXPECT_TRUE(values(nb::clamp(f64({std::nan(""), 5}), -1, 1), {2}, {std::nan(""), 1}));
}

TEST(Affine, ScaleShift_2x2) {
  // 2x - 1
  EXPECT_TRUE(values(nb::affine(f32({0, 1, -1, 0.25}, {2, 2}), 2, -1), {2, 2}, {-1, 1, -3, -0.5}));
  // -1.5x + 0.25
  EXPECT_TRUE(values(nb::affine(f64({2, -2}), -1.5, 0.25), {2}, {-2.75, 3.25}, kF64));
}

// ================================ activations ==================================================

TEST(Relu, Values_5) {
  EXPECT_TRUE(values(nb::relu(f32({-1, 0, 2, -1e-30, 1e30})), {5}, {0, 0, 2, 0, 1e30}));
  EXPECT_TRUE(values(f64({-3, 3}).relu(), {2}, {0, 3}, kF64));
}

TEST(LeakyRelu, DefaultAndCustomSlope_3) {
  Tensor x = f32({-2, 0, 3});
  EXPECT_TRUE(values(nb::leaky_relu(x), {3}, {-0.02, 0, 3}));
  EXPECT_TRUE(values(nb::leaky_relu(x, 0.1), {3}, {-0.2, 0, 3}));
}

TEST(Elu, AlphaOneAndTwo_3) {
  // elu(-1) = e^-1 - 1 = -0.6321205588285577; alpha 2: -1.2642411176571153; elu(-2) = -0.8646647167633873
  EXPECT_TRUE(values(nb::elu(f64({-1, 0, 2, -2})), {4}, {-0.6321205588285577, 0, 2, -0.8646647167633873}, kF64));
  EXPECT_TRUE(values(nb::elu(f32({-1, 0, 2}), 2.0), {3}, {-1.2642411176571153, 0, 2}));
  // saturates at -alpha
  EXPECT_TRUE(values(nb::elu(f32({-100}), 1.5), {1}, {-1.5}));
}

TEST(Sigmoid, Values_5) {
  // sigmoid(0) = 0.5, sigmoid(2) = 1/(1+e^-2) = 0.8807970779778823, sigmoid(-2) = 0.11920292202211755,
  // sigmoid(30) = 0.9999999999999065, sigmoid(-30) = 9.357622968839299e-14
  Tensor y = nb::sigmoid(f64({0, 2, -2, 30, -30}));
  EXPECT_TRUE(values(y, {5}, {0.5, 0.8807970779778823, 0.11920292202211755, 0.9999999999999065, 0}, kF64));
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
  EXPECT_TRUE(values(nb::tanh(f64({0.5, -1})), {2}, {0.46211715726000974, -0.7615941559557649}, kF64));
}

TEST(Gelu, ExactErfForm_5) {
  // gelu(x) = x * Phi(x) = x/2 * (1 + erf(x/sqrt 2)):
  // gelu(1) = 0.8413447460685429, gelu(-1) = -0.15865525393145707, gelu(2) = 1.9544997361036416,
  // gelu(-3) = -0.00404969409489031. The tanh approximation would give gelu(1) = 0.8411919906...
  Tensor y = nb::gelu(f64({0, 1, -1, 2, -3}));
  EXPECT_TRUE(values(y, {5}, {0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416, -0.00404969409489031},
                     kF64));
  EXPECT_NEAR(y.to_vector<double>()[4], -0.00404969409489031, 1e-15);
  EXPECT_TRUE(values(nb::gelu(f32({1, -1, 2})), {3}, {0.8413447460685429, -0.15865525393145707, 1.9544997361036416}));
}

TEST(Softplus, Values_6_IncludingPlusMinus50) {
  // softplus(x) = ln(1 + e^x): softplus(0) = ln 2 = 0.6931471805599453, softplus(1) = 1.3132616875182228,
  // softplus(-1) = 0.31326168751822286, softplus(50) = 50 + 1.9e-22, softplus(-50) = 1.9287498479639178e-22,
  // softplus(100) = 100
  Tensor y = nb::softplus(f64({0, 1, -1, 50, -50, 100}));
  EXPECT_TRUE(values(y, {6}, {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 50, 0, 100}, kF64));
  EXPECT_NEAR(y.to_vector<double>()[4], 1.9287498479639178e-22, 1e-35);
  Tensor z = nb::softplus(f32({0, 1, -1, 50, -50, 1000}));
  EXPECT_TRUE(values(z, {6}, {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 50, 0, 1000}));
  EXPECT_NEAR(z.to_vector<double>()[4], 1.9287498479639178e-22, 1e-28);
}

// ================================ softmax =====================================================

TEST(Softmax, LastAxis_2x3) {
  // softmax(1, 2, 3) = (0.09003057317038046, 0.24472847105479764, 0.6652409557748218); equal logits: 1/3
  Tensor y = nb::softmax(f32({1, 2, 3, 0, 0, 0}, {2, 3}));
  EXPECT_TRUE(values(y, {2, 3},
                     {0.09003057317038046, 0.24472847105479764, 0.6652409557748218, 1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_TRUE(values(nb::softmax(f64({1, 2, 3}), -1), {3},
                     {0.09003057317038046, 0.24472847105479764, 0.6652409557748218}, kF64));
}

TEST(Softmax, Axis0_2x2) {
  // columns (1, 3) and (2, 4): softmax(1, 3) = (0.11920292202211755, 0.8807970779778823)
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  const std::vector<double> want = {0.11920292202211755, 0.11920292202211755, 0.8807970779778823,
                                    0.8807970779778823};
  EXPECT_TRUE(values(nb::softmax(x, 0), {2, 2}, want, kF64));
  EXPECT_TRUE(values(nb::softmax(x, -2), {2, 2}, want, kF64));
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
                     kF64));
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
  EXPECT_TRUE(values(z, {2}, {-10000, 0}, kF64));
}

// ================================ reductions ==================================================

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
  EXPECT_TRUE(values(nb::sum(x, {0, 2}), {3}, {60, 92, 124}, kF64));
  EXPECT_TRUE(values(nb::sum(x, {2, 0}, true), {1, 3, 1}, {60, 92, 124}, kF64));
  // sum over j, keepdim: 36i + 12 + 3k
  EXPECT_TRUE(values(nb::sum(x, {1}, true), {2, 1, 4}, {12, 15, 18, 21, 48, 51, 54, 57}, kF64));
  EXPECT_TRUE(values(nb::sum(x), {}, {276}, kF64));  // 0 + ... + 23 = 23*24/2
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
  EXPECT_TRUE(values(y.mean({1}), {2, 4}, {4, 5, 6, 7, 16, 17, 18, 19}, kF64));
  EXPECT_TRUE(values(nb::mean(f64({1, 2}), {}), {}, {1.5}, kF64));
}

TEST(Max, All_Axes_Keepdim_2x3) {
  Tensor x = f32({1, 7, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values(nb::max(x), {}, {7}));
  EXPECT_TRUE(values(nb::max(x, {0}), {3}, {4, 7, 6}));
  EXPECT_TRUE(values(nb::max(x, {1}), {2}, {7, 6}));
  EXPECT_TRUE(values(nb::max(x, {1}, true), {2, 1}, {7, 6}));
  EXPECT_TRUE(values(x.max({-2}), {3}, {4, 7, 6}));
  // all negative: the maximum is not 0
  EXPECT_TRUE(values(nb::max(f64({-5, -2, -9})), {}, {-2}, kF64));
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
  EXPECT_TRUE(values(nb::min(f64({5, 2, 9})), {}, {2}, kF64));
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
  EXPECT_TRUE(values(nb::sum_to(x, {3, 1}), {3, 1}, {60, 92, 124}, kF64));
  // to [1, 4]: sum over i and j of 12i + 4j + k = 12*3 + 4*3*2 + 6k = 60 + 6k
  EXPECT_TRUE(values(nb::sum_to(x, {1, 4}), {1, 4}, {60, 66, 72, 78}, kF64));
}

// ================================ matmul and linear ===========================================

namespace {
// A0 = [[1,2,3],[4,5,6]], B0 = [[7,8],[9,10],[11,12]]: A0 B0 = [[58,64],[139,154]]
// A1 = [[1,0,-1],[2,1,0]], B1 = [[1,2],[3,4],[5,6]]:   A1 B1 = [[-4,-4],[5,8]]
// A1 B0 = [[-4,-4],[23,26]], A0 B1 = [[22,28],[49,64]]
const std::vector<double> A0 = {1, 2, 3, 4, 5, 6}, A1 = {1, 0, -1, 2, 1, 0};
const std::vector<double> B0 = {7, 8, 9, 10, 11, 12}, B1 = {1, 2, 3, 4, 5, 6};
std::vector<double> cat(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
}  // namespace

TEST(Matmul, 2x3_times_3x2) {
  Tensor y = nb::matmul(f32(A0, {2, 3}), f32(B0, {3, 2}));
  EXPECT_TRUE(values(y, {2, 2}, {58, 64, 139, 154}));
  EXPECT_TRUE(values(f64(A0, {2, 3}).matmul(f64(B0, {3, 2})), {2, 2}, {58, 64, 139, 154}, kF64));
  // 3x2 times 2x3 = [[39,54,69],[49,68,87],[59,82,105]]
  EXPECT_TRUE(values(nb::matmul(f32(B0, {3, 2}), f32(A0, {2, 3})), {3, 3}, {39, 54, 69, 49, 68, 87, 59, 82, 105}));
}

TEST(Matmul, Float64_KeepsDoublePrecision_1x2_times_2x1) {
  // 1*1 + 1e-10*1 = 1.0000000001 (float32 would give exactly 1)
  Tensor y = nb::matmul(f64({1, 1e-10}, {1, 2}), f64({1, 1}, {2, 1}));
  EXPECT_EQ(y.dtype(), DType::float64);
  EXPECT_NEAR(y.item(), 1.0000000001, 1e-16);
}

TEST(Matmul, Batched_2x2x3_times_2x3x2) {
  Tensor y = nb::matmul(f32(cat(A0, A1), {2, 2, 3}), f32(cat(B0, B1), {2, 3, 2}));
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, -4, -4, 5, 8}));
}

TEST(Matmul, BroadcastBatch_2x2x3_times_3x2) {
  Tensor y = nb::matmul(f32(cat(A0, A1), {2, 2, 3}), f32(B0, {3, 2}));
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, -4, -4, 23, 26}));
}

TEST(Matmul, BroadcastBatch_2x3_times_2x3x2) {
  // a 2-D matrix against a stack
  Tensor y = nb::matmul(f64(A0, {2, 3}), f64(cat(B0, B1), {2, 3, 2}));
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, 22, 28, 49, 64}, kF64));
}

TEST(Matmul, BroadcastBatch_1x2x3_times_2x3x2) {
  Tensor y = nb::matmul(f32(A0, {1, 2, 3}), f32(cat(B0, B1), {2, 3, 2}));
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, 22, 28, 49, 64}));
}

TEST(Matmul, BroadcastBatch_2x1x1x2_times_1x3x2x1) {
  // batch [2, 1] with [1, 3] -> [2, 3]; out[i][j] = a_i . b_j, a = (1,2), (3,4); b = (1,0), (0,1), (1,1)
  Tensor a = f32({1, 2, 3, 4}, {2, 1, 1, 2});
  Tensor b = f32({1, 0, 0, 1, 1, 1}, {1, 3, 2, 1});
  EXPECT_TRUE(values(nb::matmul(a, b), {2, 3, 1, 1}, {1, 2, 3, 3, 4, 7}));
}

TEST(Matmul, Vector_3_times_3x2) {
  // (1,2,3) B0 = (1*7+2*9+3*11, 1*8+2*10+3*12) = (58, 64)
  EXPECT_TRUE(values(nb::matmul(f32({1, 2, 3}), f32(B0, {3, 2})), {2}, {58, 64}));
}

TEST(Matmul, 2x3_times_Vector_3) {
  // A0 (1,0,-1) = (1-3, 4-6)
  EXPECT_TRUE(values(nb::matmul(f32(A0, {2, 3}), f32({1, 0, -1})), {2}, {-2, -2}));
}

TEST(Matmul, Vector_3_times_Vector_3_IsScalar) {
  // (1,2,3).(4,5,6) = 32, a 0-d tensor as in NumPy and PyTorch
  Tensor y = nb::matmul(f32({1, 2, 3}), f32({4, 5, 6}));
  EXPECT_TRUE(values(y, {}, {32}));
}

TEST(Matmul, Vector_3_times_2x3x2) {
  // (1,2,3) B0 = (58, 64), (1,2,3) B1 = (22, 28)
  EXPECT_TRUE(values(nb::matmul(f32({1, 2, 3}), f32(cat(B0, B1), {2, 3, 2})), {2, 2}, {58, 64, 22, 28}));
}

TEST(Matmul, 2x2x3_times_Vector_3) {
  // A0 (1,0,-1) = (-2, -2); A1 (1,0,-1) = (2, 2)
  EXPECT_TRUE(values(nb::matmul(f32(cat(A0, A1), {2, 2, 3}), f32({1, 0, -1})), {2, 2}, {-2, -2, 2, 2}));
}

TEST(Matmul, TransposedViews_3x2T_times_2x3T) {
  // at.t() = A0, bt.t() = B0
  Tensor at = f32({1, 4, 2, 5, 3, 6}, {3, 2});
  Tensor bt = f32({7, 9, 11, 8, 10, 12}, {2, 3});
  EXPECT_FALSE(at.t().is_contiguous());
  EXPECT_TRUE(values(nb::matmul(at.t(), bt.t()), {2, 2}, {58, 64, 139, 154}));
  EXPECT_TRUE(values(nb::matmul(at.t(), f32(B0, {3, 2})), {2, 2}, {58, 64, 139, 154}));
  EXPECT_TRUE(values(nb::matmul(f32(A0, {2, 3}), bt.t()), {2, 2}, {58, 64, 139, 154}));
  // (A0 B0)^T = B0^T A0^T = [[58,139],[64,154]]
  EXPECT_TRUE(values(nb::matmul(bt, at), {2, 2}, {58, 139, 64, 154}));
}

TEST(Matmul, BatchedTransposedView_2x3x2T_times_2x3x2) {
  // x[b] = A_b^T, so x.transpose(-2, -1) = (A0, A1)
  Tensor x = f32({1, 4, 2, 5, 3, 6, 1, 2, 0, 1, -1, 0}, {2, 3, 2});
  Tensor y = nb::matmul(x.transpose(-2, -1), f32(cat(B0, B1), {2, 3, 2}));
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, -4, -4, 5, 8}));
}

TEST(Matmul, StridedSliceViews_2x3) {
  // every other row of a [4, 3] (row stride 6), and the first 3 columns of a [2, 4] (row stride 4)
  Tensor rows = f32({1, 2, 3, 0, 0, 0, 4, 5, 6, 0, 0, 0}, {4, 3}).slice(0, 0, 4, 2);
  Tensor cols = f32({1, 2, 3, 99, 4, 5, 6, 99}, {2, 4}).slice(1, 0, 3);
  EXPECT_TRUE(values(nb::matmul(rows, f32(B0, {3, 2})), {2, 2}, {58, 64, 139, 154}));
  EXPECT_TRUE(values(nb::matmul(cols, f32(B0, {3, 2})), {2, 2}, {58, 64, 139, 154}));
}

TEST(Matmul, EmptyInner_2x0_times_0x3_IsZeros) {
  EXPECT_TRUE(values(nb::matmul(nb::zeros({2, 0}), nb::zeros({0, 3})), {2, 3}, {0, 0, 0, 0, 0, 0}));
}

TEST(Matmul, Larger_37x19_times_19x23_ClosedForm) {
  // a[i][k] = i + k, b[k][j] = k - j; c[i][j] = sum_k (i+k)(k-j) = 19*(-i*j) + (i - j)*S1 + S2 with
  // S1 = 0+...+18 = 171, S2 = 0^2+...+18^2 = 2109. Sizes not multiples of any blocking.
  const int m = 37, k = 19, n = 23;
  std::vector<double> a, b, want;
  for (int i = 0; i < m; ++i)
    for (int q = 0; q < k; ++q) a.push_back(i + q);
  for (int q = 0; q < k; ++q)
    for (int j = 0; j < n; ++j) b.push_back(q - j);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) want.push_back(-19.0 * i * j + (i - j) * 171.0 + 2109.0);
  EXPECT_TRUE(values(nb::matmul(f64(a, {m, k}), f64(b, {k, n})), {m, n}, want, kF64));
  EXPECT_TRUE(values(nb::matmul(f32(a, {m, k}), f32(b, {k, n})), {m, n}, want));
}

TEST(Linear, Bias_2x3_w2x3) {
  // x w^T = [[1-3, (1+2+3)/2], [4-6, (4+5+6)/2]] = [[-2, 3], [-2, 7.5]]; + b (10, -10)
  Tensor x = f32(A0, {2, 3});
  Tensor w = f32({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  Tensor b = f32({10, -10});
  EXPECT_TRUE(values(nb::linear(x, w, b), {2, 2}, {8, -7, 8, -2.5}));
  EXPECT_TRUE(values(nb::linear(x, w), {2, 2}, {-2, 3, -2, 7.5}));
}

TEST(Linear, Input_2x1x3_and_Vector_3) {
  Tensor w = f64({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  Tensor b = f64({10, -10});
  EXPECT_TRUE(values(nb::linear(f64(A0, {2, 1, 3}), w, b), {2, 1, 2}, {8, -7, 8, -2.5}, kF64));
  EXPECT_TRUE(values(nb::linear(f64({1, 2, 3}), w, b), {2}, {8, -7}, kF64));
}

TEST(Linear, TransposedInput_3x2T_w2x3) {
  Tensor xt = f32({1, 4, 2, 5, 3, 6}, {3, 2});  // xt.t() = A0
  Tensor w = f32({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  EXPECT_TRUE(values(nb::linear(xt.t(), w, f32({1, 1})), {2, 2}, {-1, 4, -1, 8.5}));
}

// ================================ losses ======================================================

TEST(MseLoss, Reductions_4) {
  // d = (-0.5, 0, 2, 0), d^2 = (0.25, 0, 4, 0): sum 4.25, mean 1.0625
  Tensor in = f32({1, 2, 3, 4}), tg = f32({1.5, 2, 1, 4});
  EXPECT_TRUE(values(nb::mse_loss(in, tg), {}, {1.0625}));
  EXPECT_TRUE(values(nb::mse_loss(in, tg, Reduction::sum), {}, {4.25}));
  EXPECT_TRUE(values(nb::mse_loss(in, tg, Reduction::none), {4}, {0.25, 0, 4, 0}));
}

TEST(L1Loss, Reductions_2x2) {
  // |d| = (0.5, 0, 2, 0): sum 2.5, mean 0.625
  Tensor in = f64({1, 2, 3, 4}, {2, 2}), tg = f64({1.5, 2, 1, 4}, {2, 2});
  EXPECT_TRUE(values(nb::l1_loss(in, tg), {}, {0.625}, kF64));
  EXPECT_TRUE(values(nb::l1_loss(in, tg, Reduction::sum), {}, {2.5}, kF64));
  EXPECT_TRUE(values(nb::l1_loss(in, tg, Reduction::none), {2, 2}, {0.5, 0, 2, 0}, kF64));
}

TEST(BinaryCrossEntropy, Reductions_3) {
  // -ln 0.5 = 0.6931471805599453, -ln(1-0.9) = 2.3025850929940455, -ln(1-0.2) = 0.2231435513142097
  Tensor p = f64({0.5, 0.9, 0.2}), t = f64({1, 0, 0});
  EXPECT_TRUE(values(nb::binary_cross_entropy(p, t, Reduction::none), {3},
                     {0.6931471805599453, 2.3025850929940455, 0.2231435513142097}, 1e-12));
  EXPECT_TRUE(values(nb::binary_cross_entropy(p, t), {}, {1.0729586082894003}, 1e-12));
  EXPECT_TRUE(values(nb::binary_cross_entropy(p, t, Reduction::sum), {}, {3.2188758248682006}, 1e-12));
  EXPECT_TRUE(values(nb::binary_cross_entropy(f32({0.5, 0.9, 0.2}), f32({1, 0, 0})), {}, {1.0729586082894003}));
}

TEST(BinaryCrossEntropy, SoftTarget_2) {
  // p = 0.25, t = 0.5: -(0.5 ln 0.25 + 0.5 ln 0.75) = 0.8369882167858358
  EXPECT_TRUE(values(nb::binary_cross_entropy(f64({0.25}), f64({0.5})), {}, {0.8369882167858358}, 1e-12));
}

TEST(BinaryCrossEntropy, ProbabilitiesZeroAndOne_LogClampedAtMinus100_4) {
  // p = 0 or 1: ln 0 is clamped to -100, so a wrong certain answer costs 100, a right one 0.
  Tensor p = f32({0, 1, 0, 1}), t = f32({0, 1, 1, 0});
  EXPECT_TRUE(values(nb::binary_cross_entropy(p, t, Reduction::none), {4}, {0, 0, 100, 100}));
  EXPECT_TRUE(values(nb::binary_cross_entropy(p, t), {}, {50}));
  // p = 1, t = 0.5: -(0.5 * 0 + 0.5 * -100) = 50
  EXPECT_TRUE(values(nb::binary_cross_entropy(f64({1}), f64({0.5})), {}, {50}, kF64));
}

TEST(BinaryCrossEntropyWithLogits, Reductions_3) {
  // softplus(x) - x t: x = 0, t = 1: ln 2 = 0.6931471805599453; x = 2, t = 0: softplus(2) = 2.1269280110429727;
  // x = -1, t = 0.5: 0.31326168751822286 + 0.5 = 0.8132616875182228; mean 1.2111122930403804
  Tensor x = f32({0, 2, -1}), t = f32({1, 0, 0.5});
  EXPECT_TRUE(values(nb::binary_cross_entropy_with_logits(x, t, Reduction::none), {3},
                     {0.6931471805599453, 2.1269280110429727, 0.8132616875182228}));
  EXPECT_TRUE(values(nb::binary_cross_entropy_with_logits(x, t), {}, {1.2111122930403804}));
  EXPECT_TRUE(values(nb::binary_cross_entropy_with_logits(f64({0, 2, -1}), f64({1, 0, 0.5}), Reduction::sum), {},
                     {3.633336879121141}, 1e-12));
}

TEST(BinaryCrossEntropyWithLogits, LargeLogits_4_StayFinite) {
  // x = 50, t = 1 and x = -50, t = 0: ~1.9e-22 (right); x = 50, t = 0 and x = -50, t = 1: 50 (wrong)
  Tensor y = nb::binary_cross_entropy_with_logits(f32({50, -50, 50, -50}), f32({1, 0, 0, 1}), Reduction::none);
  EXPECT_TRUE(values(y, {4}, {0, 0, 50, 50}));
  // x = 1000: e^1000 would overflow a naive ln(1 + e^x)
  EXPECT_TRUE(values(nb::binary_cross_entropy_with_logits(f64({1000, -1000}), f64({0, 1}), Reduction::none), {2},
                     {1000, 1000}, kF64));
}

TEST(CrossEntropy, Int64Labels_2x3_Reductions) {
  // row 0: -log_softmax(1,2,3)[2] = 0.4076059644443804; row 1 (equal logits): ln 3 = 1.0986122886681098
  Tensor logits = f32({1, 2, 3, 1, 1, 1}, {2, 3});
  Tensor labels = i64({2, 0});
  EXPECT_TRUE(values(nb::cross_entropy(logits, labels, Reduction::none), {2}, {0.4076059644443804, 1.0986122886681098}));
  EXPECT_TRUE(values(nb::cross_entropy(logits, labels), {}, {0.7531091265562451}));
  EXPECT_TRUE(values(nb::cross_entropy(logits, labels, Reduction::sum), {}, {1.5062182531124901}));
}

TEST(CrossEntropy, Int32Labels_2x3) {
  // row 0 label 0: 2.4076059644443806; row 1 label 2: ln 3
  Tensor logits = f64({1, 2, 3, 1, 1, 1}, {2, 3});
  EXPECT_TRUE(values(nb::cross_entropy(logits, i32({0, 2}), Reduction::none), {2},
                     {2.4076059644443806, 1.0986122886681098}, kF64));
  EXPECT_TRUE(values(nb::cross_entropy(logits, i32({0, 2})), {}, {1.7531091265562452}, kF64));
}

TEST(CrossEntropy, ProbabilityTargets_2x3) {
  // row 0: -(0.25*-2.4076 + 0.25*-1.4076 + 0.5*-0.4076) = 1.1576059644443806; row 1 (equal logits): ln 3
  Tensor logits = f64({1, 2, 3, 1, 1, 1}, {2, 3});
  Tensor target = f64({0.25, 0.25, 0.5, 0.2, 0.3, 0.5}, {2, 3});
  EXPECT_TRUE(values(nb::cross_entropy(logits, target, Reduction::none), {2}, {1.1576059644443806, 1.0986122886681098},
                     kF64));
  EXPECT_TRUE(values(nb::cross_entropy(logits, target), {}, {1.1281091265562452}, kF64));
  EXPECT_TRUE(values(nb::cross_entropy(logits, target, Reduction::sum), {}, {2.2562182531124904}, kF64));
  // one-hot probabilities equal the index form
  EXPECT_TRUE(values(nb::cross_entropy(f32({1, 2, 3}, {1, 3}), f32({0, 0, 1}, {1, 3})), {}, {0.4076059644443804}));
}

TEST(CrossEntropy, LargeLogits_1x2_StayFinite) {
  // logits (1000, 0), label 1: -log_softmax = 1000 (softmax in the naive form would give inf/inf)
  EXPECT_TRUE(values(nb::cross_entropy(f32({1000, 0, 1000, 1001}, {2, 2}), i64({1, 0}), Reduction::none), {2},
                     {1000, 1.3132616875182228}));
}

TEST(NllLoss, Reductions_2x3) {
  // picks -logp[0][1] = 2 and -logp[1][2] = 2.5
  Tensor logp = f32({-1, -2, -3, -0.5, -1.5, -2.5}, {2, 3});
  EXPECT_TRUE(values(nb::nll_loss(logp, i64({1, 2}), Reduction::none), {2}, {2, 2.5}));
  EXPECT_TRUE(values(nb::nll_loss(logp, i64({1, 2})), {}, {2.25}));
  EXPECT_TRUE(values(nb::nll_loss(logp, i32({0, 0}), Reduction::sum), {}, {1.5}));
}

// ================================ concat and dropout ==========================================

TEST(Concat, Axis0_1x2_and_2x2) {
  Tensor y = nb::concat({f32({1, 2}, {1, 2}), f32({3, 4, 5, 6}, {2, 2})}, 0);
  EXPECT_TRUE(values(y, {3, 2}, {1, 2, 3, 4, 5, 6}));
}

TEST(Concat, Axis1_2x1_2x2_2x3) {
  Tensor y = nb::concat({f64({1, 2}, {2, 1}), f64({3, 4, 5, 6}, {2, 2}), f64({7, 8, 9, 10, 11, 12}, {2, 3})}, 1);
  EXPECT_TRUE(values(y, {2, 6}, {1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12}, kF64));
  Tensor z = nb::concat({f64({1, 2}, {2, 1}), f64({3, 4, 5, 6}, {2, 2})}, -1);
  EXPECT_TRUE(values(z, {2, 3}, {1, 3, 4, 2, 5, 6}, kF64));
}

TEST(Concat, TransposedView_2x2T_and_2x1) {
  // v.t() = [[1, 2], [3, 4]]
  Tensor v = f32({1, 3, 2, 4}, {2, 2});
  EXPECT_TRUE(values(nb::concat({v.t(), f32({9, 9}, {2, 1})}, 1), {2, 3}, {1, 2, 9, 3, 4, 9}));
}

TEST(Concat, OneD_3_and_2) {
  EXPECT_TRUE(values(nb::concat({f32({1, 2, 3}), f32({4, 5})}), {5}, {1, 2, 3, 4, 5}));
}

TEST(Dropout, EvalIsIdentity_2x3) {
  Tensor x = f32(A0, {2, 3});
  EXPECT_TRUE(values(nb::dropout(x, 0.9, false), {2, 3}, A0));
  EXPECT_TRUE(values(nb::dropout(x, 1.0, false), {2, 3}, A0));
}

TEST(Dropout, TrainingPZeroIsIdentity_2x3) {
  EXPECT_TRUE(values(nb::dropout(f32(A0, {2, 3}), 0.0, true), {2, 3}, A0));
}

TEST(Dropout, TrainingPOne_IsAllZeros_4) {
  EXPECT_TRUE(values(nb::dropout(f32({1, 2, 3, 4}), 1.0, true), {4}, {0, 0, 0, 0}));
}

TEST(Dropout, TrainingHalf_10000Ones_HalfZerosRestTwo) {
  nb::manual_seed(1234);
  Tensor y = nb::dropout(nb::ones({10000}), 0.5, true);
  EXPECT_EQ(y.shape(), (Shape{10000}));
  int zeros = 0, twos = 0, other = 0;
  for (float v : y.to_vector<float>()) {
    if (v == 0.0f)
      ++zeros;
    else if (v == 2.0f)
      ++twos;
    else
      ++other;
  }
  EXPECT_EQ(other, 0);
  // Binomial(10000, 0.5): mean 5000, standard deviation 50; allow 6 of them.
  EXPECT_GT(zeros, 4700);
  EXPECT_LT(zeros, 5300);
  EXPECT_EQ(zeros + twos, 10000);
}

TEST(Dropout, TrainingQuarter_10000Ones_KeptScaledBy4Over3_Float64) {
  nb::manual_seed(99);
  Tensor y = nb::dropout(nb::ones({100, 100}, {.dtype = DType::float64}), 0.25, true);
  int zeros = 0, kept = 0;
  for (double v : y.to_vector<double>()) {
    if (v == 0.0)
      ++zeros;
    else if (std::abs(v - 4.0 / 3.0) < 1e-15)
      ++kept;
  }
  EXPECT_EQ(zeros + kept, 10000);
  // Binomial(10000, 0.25): mean 2500, standard deviation ~43.3
  EXPECT_GT(zeros, 2240);
  EXPECT_LT(zeros, 2760);
}

// ================================ errors ======================================================

TEST(Errors, Matmul_InnerDimensions_2x3_times_4x2) {
  std::string msg = error_of([] { nb::matmul(nb::zeros({2, 3}), nb::zeros({4, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul:"), HasSubstr("[2, 3]"), HasSubstr("[4, 2]")));
  msg = error_of([] { nb::matmul(nb::zeros({5, 2, 3}), nb::zeros({5, 2, 3})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul:"), HasSubstr("[5, 2, 3]")));
}

TEST(Errors, Matmul_BatchAxesDoNotBroadcast_2x2x3_times_3x3x2) {
  std::string msg = error_of([] { nb::matmul(nb::zeros({2, 2, 3}), nb::zeros({3, 3, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul (batch axes):"), HasSubstr("[2]"), HasSubstr("[3]")));
}

TEST(Errors, Matmul_ZeroDim) {
  std::string msg = error_of([] { nb::matmul(nb::scalar(1), nb::zeros({2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul:"), HasSubstr("[]"), HasSubstr("[2]")));
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

TEST(Errors, Linear_WrongFeatureCount_2x3_w5x4) {
  std::string msg = error_of([] { nb::linear(nb::zeros({2, 3}), nb::zeros({5, 4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear:"), HasSubstr("[2, 3]"), HasSubstr("[5, 4]")));
  msg = error_of([] { nb::linear(nb::zeros({2, 4}), nb::zeros({5, 4}), nb::zeros({4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear:"), HasSubstr("bias"), HasSubstr("[4]"), HasSubstr("[5]")));
  msg = error_of([] { nb::linear(nb::zeros({2, 4}), nb::zeros({5, 4}), {}, "fc2"); });
  EXPECT_EQ(msg, "(no error)");
  msg = error_of([] { nb::linear(nb::zeros({2, 3}), nb::zeros({5, 4}), {}, "fc2"); });
  EXPECT_THAT(msg, HasSubstr("fc2:"));
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

TEST(Errors, Softmax_AxisOutOfRange_2x3) {
  std::string msg = error_of([] { nb::softmax(nb::zeros({2, 3}), 2); });
  EXPECT_THAT(msg, AllOf(HasSubstr("softmax:"), HasSubstr("axis 2")));
  msg = error_of([] { nb::log_softmax(nb::zeros({2, 3}), -3); });
  EXPECT_THAT(msg, AllOf(HasSubstr("log_softmax:"), HasSubstr("axis -3")));
}

TEST(Errors, SumTo_NotABroadcast_2x3_to_4) {
  std::string msg = error_of([] { nb::sum_to(nb::zeros({2, 3}), {4}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("sum_to:"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
}

TEST(Errors, MseLoss_ShapeMismatch_2x3_vs_3x2) {
  std::string msg = error_of([] { nb::mse_loss(nb::zeros({2, 3}), nb::zeros({3, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("mse_loss:"), HasSubstr("[2, 3]"), HasSubstr("[3, 2]")));
  msg = error_of([] { nb::l1_loss(nb::zeros({4}), nb::zeros({4, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("l1_loss:"), HasSubstr("[4]"), HasSubstr("[4, 1]")));
  msg = error_of([] { nb::binary_cross_entropy_with_logits(nb::zeros({2}), nb::zeros({3})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("binary_cross_entropy_with_logits:"), HasSubstr("[2]"), HasSubstr("[3]")));
}

TEST(Errors, CrossEntropy_LabelOutOfRange_2x3) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3}), i64({0, 5})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("label 5"), HasSubstr("index 1"), HasSubstr("3 classes")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3}), i32({-1, 0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("label -1"), HasSubstr("index 0")));
  msg = error_of([] { nb::nll_loss(nb::zeros({2, 3}), i64({3, 0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss:"), HasSubstr("label 3"), HasSubstr("index 0")));
}

TEST(Errors, CrossEntropy_LabelsWrongShape_2x3_labels_3) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3}), i64({0, 1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("[3]"), HasSubstr("[2, 3]")));
  msg = error_of([] { nb::nll_loss(nb::zeros({2, 3}), i64({0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss:"), HasSubstr("[1]"), HasSubstr("[2, 3]")));
  // logits must be [batch, classes]
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3, 4}), i64({0, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("[2, 3, 4]")));
}

TEST(Errors, CrossEntropy_ProbabilityTargetWrongShape_2x3_vs_3x2) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({2, 3}), nb::zeros({3, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy:"), HasSubstr("[3, 2]"), HasSubstr("[2, 3]")));
}

TEST(Errors, NllLoss_FloatLabels_2x3) {
  std::string msg = error_of([] { nb::nll_loss(nb::zeros({2, 3}), f32({0, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss:"), HasSubstr("float32"), HasSubstr("int64")));
}

TEST(Errors, BinaryCrossEntropy_InputOutside01_3) {
  std::string msg = error_of([] { nb::binary_cross_entropy(f32({-0.5, 0.5, 1.5}), f32({0, 1, 0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("binary_cross_entropy:"), HasSubstr("-0.5"), HasSubstr("1.5")));
  msg = error_of([] { nb::binary_cross_entropy(f32({0.5, 1.25}), f32({0, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("binary_cross_entropy:"), HasSubstr("1.25")));
}

TEST(Errors, Concat_MismatchedShapes_2x3_and_3x3_Axis1) {
  std::string msg = error_of([] { nb::concat({nb::zeros({2, 3}), nb::zeros({3, 3})}, 1); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("[2, 3]"), HasSubstr("[3, 3]")));
  msg = error_of([] { nb::concat({nb::zeros({2, 3}), nb::zeros({6})}, 0); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("[2, 3]"), HasSubstr("[6]")));
  msg = error_of([] { nb::concat({nb::zeros({2}), nb::zeros({2}, {.dtype = DType::float64})}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("float32"), HasSubstr("float64")));
  msg = error_of([] { nb::concat({}); });
  EXPECT_THAT(msg, HasSubstr("concat:"));
}

TEST(Errors, View_NonContiguous_3x2T) {
  std::string msg = error_of([] { nb::zeros({3, 2}).t().view({6}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view:"), HasSubstr("[2, 3]"), HasSubstr("contiguous")));
  // reshape copies instead
  EXPECT_TRUE(values(f32({1, 4, 2, 5, 3, 6}, {3, 2}).t().reshape({6}), {6}, {1, 2, 3, 4, 5, 6}));
}

TEST(Errors, Reshape_WrongElementCount_2x3_to_4) {
  std::string msg = error_of([] { nb::zeros({2, 3}).reshape({4}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape:"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
  msg = error_of([] { nb::zeros({2, 3}).reshape({4, -1}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape:"), HasSubstr("[2, 3]"), HasSubstr("[4, -1]")));
  msg = error_of([] { nb::zeros({2, 3}).view({7}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view:"), HasSubstr("[2, 3]"), HasSubstr("[7]")));
}

TEST(Errors, Clamp_LoAboveHi) {
  std::string msg = error_of([] { nb::clamp(nb::zeros({2}), 2, 1); });
  EXPECT_THAT(msg, AllOf(HasSubstr("clamp:"), HasSubstr("lower bound 2"), HasSubstr("upper bound 1")));
}

TEST(Errors, Dropout_POutside01) {
  std::string msg = error_of([] { nb::dropout(nb::zeros({2}), 1.5, true); });
  EXPECT_THAT(msg, AllOf(HasSubstr("dropout:"), HasSubstr("1.5")));
  msg = error_of([] { nb::dropout(nb::zeros({2}), -0.25, false); });
  EXPECT_THAT(msg, AllOf(HasSubstr("dropout:"), HasSubstr("-0.25")));
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

TEST(Errors, Item_MultiElement_2x2) {
  std::string msg = error_of([] { nb::zeros({2, 2}).item(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("item():"), HasSubstr("[2, 2]"), HasSubstr("4 elements")));
  EXPECT_EQ(error_of([] { nb::zeros({1, 1}).item(); }), "(no error)");
}
