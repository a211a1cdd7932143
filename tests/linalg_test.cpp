// matmul and linear: float64 gradient checks (2-D, batched, broadcast batch, 1-D operands,
// transposed and strided views), values computed by hand or by a naive loop, and errors.
#include "test_util.h"

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

// ---- gradient checks ---------------------------------------------------------------------------

std::vector<GradCase> matmul_cases() {
  const std::pair<Shape, Shape> shapes[] = {
      {{3, 4}, {4, 5}},          // 2-D
      {{1, 4}, {4, 1}},          // row times column
      {{3, 1}, {1, 4}},          // outer product (k = 1)
      {{2, 3, 4}, {2, 4, 2}},    // batched
      {{2, 3, 4}, {4, 5}},       // stack of matrices times one matrix
      {{4, 5}, {2, 5, 3}},       // one matrix times a stack
      {{1, 3, 4}, {2, 4, 2}},    // broadcast batch of 1
      {{2, 1, 3, 4}, {1, 3, 4, 2}},  // two batch axes, each broadcast on one side
      {{3, 2, 2, 3}, {2, 3, 2}},  // batch axes of different rank
      {{4}, {4, 3}},              // 1-D a: a row, dropped from the result
      {{3, 4}, {4}},              // 1-D b: a column, dropped
      {{4}, {4}},                 // dot product, 0-d result
      {{4}, {2, 4, 3}},           // 1-D a against a batch
      {{2, 3, 4}, {4}},           // batch against 1-D b
  };
  std::vector<GradCase> cases;
  for (const auto& [sa, sb] : shapes) {
    cases.push_back({fmt::format("matmul_{}_{}", shape_name(sa), shape_name(sb)),
                     [](const Tensors& x) { return nb::matmul(x[0], x[1]); },
                     [sa, sb] { return Tensors{input(sa), input(sb)}; }});
  }
  // transposed and strided views are read in place (gemm transpose flags and leading dimensions)
  cases.push_back({"matmul_aT_4x3T_3x5", [](const Tensors& x) { return nb::matmul(x[0].t(), x[1]); },
                   [] { return Tensors{input({4, 3}), input({4, 5})}; }});
  cases.push_back({"matmul_bT_3x4_5x4T", [](const Tensors& x) { return nb::matmul(x[0], x[1].t()); },
                   [] { return Tensors{input({3, 4}), input({5, 4})}; }});
  cases.push_back({"matmul_aT_bT_4x3T_5x4T", [](const Tensors& x) { return x[0].t().matmul(x[1].t()); },
                   [] { return Tensors{input({4, 3}), input({5, 4})}; }});
  cases.push_back({"matmul_batched_transposed_2x4x3T_2x4x2",
                   [](const Tensors& x) { return nb::matmul(x[0].transpose(-2, -1), x[1]); },
                   [] { return Tensors{input({2, 4, 3}), input({2, 4, 2})}; }});
  cases.push_back({"matmul_batch_axis_moved_3x2x4_2x4x5",
                   [](const Tensors& x) { return nb::matmul(x[0].transpose(0, 1), x[1]); },
                   [] { return Tensors{input({3, 2, 4}), input({2, 4, 5})}; }});
  cases.push_back({"matmul_column_slice_3x8_step2_4x2",
                   [](const Tensors& x) { return nb::matmul(x[0].slice(1, 0, 8, 2), x[1]); },
                   [] { return Tensors{input({3, 8}), input({4, 2})}; }});
  cases.push_back({"matmul_row_slice_6x4_rows1to4_4x3",
                   [](const Tensors& x) { return nb::matmul(x[0].slice(0, 1, 4), x[1]); },
                   [] { return Tensors{input({6, 4}), input({4, 3})}; }});
  cases.push_back({"matmul_expanded_b_3x4_4x1_to_4x5",
                   [](const Tensors& x) { return nb::matmul(x[0], x[1].expand({4, 5})); },
                   [] { return Tensors{input({3, 4}), input({4, 1})}; }});
  cases.push_back({"matmul_same_tensor_xTx_3x4", [](const Tensors& x) { return nb::matmul(x[0].t(), x[0]); },
                   [] { return Tensors{input({3, 4})}; }});
  cases.push_back({"matmul_chain_2x3_3x4_4x2",
                   [](const Tensors& x) { return nb::matmul(nb::matmul(x[0], x[1]), x[2]); },
                   [] { return Tensors{input({2, 3}), input({3, 4}), input({4, 2})}; }});
  return cases;
}

std::vector<GradCase> linear_cases() {
  return {
      {"linear_bias_x3x4_w5x4_b5", [](const Tensors& x) { return nb::linear(x[0], x[1], x[2]); },
       [] { return Tensors{input({3, 4}), input({5, 4}), input({5})}; }},
      {"linear_nobias_x3x4_w5x4", [](const Tensors& x) { return nb::linear(x[0], x[1]); },
       [] { return Tensors{input({3, 4}), input({5, 4})}; }},
      {"linear_bias_x2x3x4_w2x4_b2", [](const Tensors& x) { return nb::linear(x[0], x[1], x[2]); },
       [] { return Tensors{input({2, 3, 4}), input({2, 4}), input({2})}; }},
      {"linear_nobias_x2x3x4_w2x4", [](const Tensors& x) { return nb::linear(x[0], x[1]); },
       [] { return Tensors{input({2, 3, 4}), input({2, 4})}; }},
      {"linear_bias_x4_w3x4_b3", [](const Tensors& x) { return nb::linear(x[0], x[1], x[2]); },
       [] { return Tensors{input({4}), input({3, 4}), input({3})}; }},
      {"linear_bias_xT_4x3T_w2x4_b2", [](const Tensors& x) { return nb::linear(x[0].t(), x[1], x[2]); },
       [] { return Tensors{input({4, 3}), input({2, 4}), input({2})}; }},
      {"linear_wT_x3x4_w4x5T", [](const Tensors& x) { return nb::linear(x[0], x[1].t()); },
       [] { return Tensors{input({3, 4}), input({4, 5})}; }},
      {"linear_batch1_x1x4_w3x4_b3", [](const Tensors& x) { return nb::linear(x[0], x[1], x[2]); },
       [] { return Tensors{input({1, 4}), input({3, 4}), input({3})}; }},
      {"linear_two_layers_tanh_x4x6", [](const Tensors& x) {
         return nb::linear(nb::tanh(nb::linear(x[0], x[1], x[2])), x[3]);
       },
       [] { return Tensors{input({4, 6}), input({5, 6}), input({5}), input({3, 5})}; }},
  };
}

class LinalgGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(LinalgGrad, CentralDifferenceFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(3);
  EXPECT_TRUE(gradcheck(c.f, c.make_inputs(), c.options));
}

TEST_P(LinalgGrad, Float32AgreesWithFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(3);
  EXPECT_TRUE(float32_agrees(c.f, c.make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(Matmul, LinalgGrad, ::testing::ValuesIn(matmul_cases()), grad_case_name);
INSTANTIATE_TEST_SUITE_P(Linear, LinalgGrad, ::testing::ValuesIn(linear_cases()), grad_case_name);

// Only one operand requires grad: the other gets none, and the first is still right.
TEST(LinalgGradPartial, OnlyBRequiresGrad_2x3_3x2) {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f64({1, 0, 0, 1, 1, 1}, {3, 2}).requires_grad_();
  nb::sum(nb::matmul(a, b)).backward();
  // d sum(a b) / d b[k, n] = sum_m a[m, k] = column sums of a
  EXPECT_TRUE(near(b.grad(), {5, 5, 7, 7, 9, 9}, {3, 2}));
  EXPECT_FALSE(a.grad().defined());
}

// A frozen input (data, not a parameter): only weight and bias get gradients.
TEST(LinalgGradPartial, LinearInputNeedsNoGrad_x2x2_w3x2_b3) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor w = f64({1, 0, 0, 1, 1, 1}, {3, 2}).requires_grad_();
  Tensor b = f64({0.5, -0.5, 1}).requires_grad_();
  nb::linear(x, w, b).backward(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_TRUE(near(w.grad(), {13, 18, 17, 24, 21, 30}, {3, 2}));
  EXPECT_TRUE(near(b.grad(), {5, 7, 9}, {3}));
  EXPECT_FALSE(x.grad().defined());
  // and only the input: a frozen layer
  Tensor x2 = f64({1, 2, 3, 4}, {2, 2}).requires_grad_();
  nb::linear(x2, w.detach(), b.detach()).backward(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_TRUE(near(x2.grad(), {4, 5, 10, 11}, {2, 2}));
}

// ---- forward values ------------------------------------------------------------------------------

TEST(LinalgForward, Matmul_2x2_2x2) {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({5, 6, 7, 8}, {2, 2});
  EXPECT_TRUE(near(nb::matmul(a, b), {19, 22, 43, 50}, {2, 2}));
  // a^T b = [[1, 3], [2, 4]] . b
  EXPECT_TRUE(near(nb::matmul(a.t(), b), {26, 30, 38, 44}, {2, 2}));
  // a b^T = [[1*5+2*6, 1*7+2*8], [3*5+4*6, 3*7+4*8]]
  EXPECT_TRUE(near(nb::matmul(a, b.t()), {17, 23, 39, 53}, {2, 2}));
  // a^T b^T = (b a)^T, b a = [[23, 34], [31, 46]]
  EXPECT_TRUE(near(nb::matmul(a.t(), b.t()), {23, 31, 34, 46}, {2, 2}));
}

TEST(LinalgForward, Matmul1dOperands) {
  Tensor m = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(near(nb::matmul(f64({1, 2, 3}), f64({4, 5, 6})), {32}, {}));         // dot
  EXPECT_TRUE(near(nb::matmul(m, f64({1, 0, -1})), {-2, -2}, {2}));                  // [2,3] x [3]
  EXPECT_TRUE(near(nb::matmul(f64({1, 2}), m), {9, 12, 15}, {3}));                   // [2] x [2,3]
  Tensor batch = nb::concat({m.unsqueeze(0), nb::neg(m).unsqueeze(0)}, 0);           // [2, 2, 3]
  EXPECT_TRUE(near(nb::matmul(batch, f64({1, 1, 1})), {6, 15, -6, -15}, {2, 2}));     // [2,2,3] x [3]
  EXPECT_TRUE(near(nb::matmul(f64({1, -1}), batch), {-3, -3, -3, 3, 3, 3}, {2, 3}));  // [2] x [2,2,3]
}

TEST(LinalgForward, MatmulBatchedAndBroadcast_2x2x2_2x2) {
  Tensor a = f64({1, 0, 0, 1, 2, 0, 0, 2}, {2, 2, 2});  // I and 2I
  Tensor b = f64({1, 2, 3, 4}, {2, 2});
  EXPECT_TRUE(near(nb::matmul(a, b), {1, 2, 3, 4, 2, 4, 6, 8}, {2, 2, 2}));
  EXPECT_TRUE(near(nb::matmul(b, a), {1, 2, 3, 4, 2, 4, 6, 8}, {2, 2, 2}));
  // [1, 2, 2] x [2, 2, 2]: the batch of 1 broadcasts
  EXPECT_TRUE(near(nb::matmul(b.unsqueeze(0), a), {1, 2, 3, 4, 2, 4, 6, 8}, {2, 2, 2}));
  // [2, 1, 2, 2] x [3, 2, 2] -> [2, 3, 2, 2]
  Tensor c = nb::concat({a, a.slice(0, 0, 1)}, 0);  // [3, 2, 2]: I, 2I, I
  Tensor r = nb::matmul(a.unsqueeze(1), c);
  std::vector<double> e;
  for (double s : {1.0, 2.0})
    for (double t : {1.0, 2.0, 1.0})
      for (double v : {1.0, 0.0, 0.0, 1.0}) e.push_back(s * t * v);
  EXPECT_TRUE(near(r, e, {2, 3, 2, 2}));
}

// Against a naive triple loop, in both dtypes, on sizes that are not multiples of anything.
class MatmulNaive : public ::testing::TestWithParam<std::tuple<int, int, int, bool, bool, DType>> {};

TEST_P(MatmulNaive, MatchesTripleLoop) {
  const auto [m, k, n, ta, tb, dtype] = GetParam();
  nb::manual_seed(11);
  Tensor a = ta ? nb::rand({k, m}, {.dtype = dtype}, -1, 1).t() : nb::rand({m, k}, {.dtype = dtype}, -1, 1);
  Tensor b = tb ? nb::rand({n, k}, {.dtype = dtype}, -1, 1).t() : nb::rand({k, n}, {.dtype = dtype}, -1, 1);
  auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
  std::vector<double> e(m * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) e[i * n + j] += av[i * k + p] * bv[p * n + j];
  const double tol = dtype == DType::float32 ? 1e-4 : 1e-12;
  Tensor c = nb::matmul(a, b);
  EXPECT_EQ(c.dtype(), dtype);
  EXPECT_TRUE(near(c, e, {m, n}, tol, tol));
}

std::string naive_name(const ::testing::TestParamInfo<MatmulNaive::ParamType>& info) {
  const auto [m, k, n, ta, tb, dtype] = info.param;
  return fmt::format("m{}_k{}_n{}_{}{}_{}", m, k, n, ta ? "aT" : "a", tb ? "bT" : "b", nb::dtype_name(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, MatmulNaive,
    ::testing::Combine(::testing::Values(1, 17), ::testing::Values(1, 33), ::testing::Values(9),
                       ::testing::Bool(), ::testing::Bool(), ::testing::Values(DType::float32, DType::float64)),
    naive_name);

TEST(LinalgForward, MatmulEmptyInnerDimensionGivesZeros_2x0_0x3) {
  EXPECT_TRUE(near(nb::matmul(nb::zeros({2, 0}, kF64), nb::zeros({0, 3}, kF64)), std::vector<double>(6, 0), {2, 3}));
  EXPECT_EQ(nb::matmul(nb::zeros({0, 4}, kF64), nb::zeros({4, 3}, kF64)).shape(), (Shape{0, 3}));
}

TEST(LinalgForward, Linear_2x2_w3x2_b3) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor w = f64({1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor b = f64({0.5, -0.5, 1});
  // x w^T = [[1, 2, 3], [3, 4, 7]]
  EXPECT_TRUE(near(nb::linear(x, w), {1, 2, 3, 3, 4, 7}, {2, 3}));
  EXPECT_TRUE(near(nb::linear(x, w, b), {1.5, 1.5, 4, 3.5, 3.5, 8}, {2, 3}));
  // 3-D input [2, 1, 2] keeps its leading axes; 1-D input drops its batch
  EXPECT_TRUE(near(nb::linear(x.reshape({2, 1, 2}), w, b), {1.5, 1.5, 4, 3.5, 3.5, 8}, {2, 1, 3}));
  EXPECT_TRUE(near(nb::linear(f64({1, 2}), w, b), {1.5, 1.5, 4}, {3}));
  // transposed input view: x^T = [[1, 3], [2, 4]]
  EXPECT_TRUE(near(nb::linear(x.t(), w, b), {1.5, 2.5, 5, 2.5, 3.5, 7}, {2, 3}));
}

TEST(LinalgForward, LinearBiasGradientIsColumnSum_2x2_w3x2) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor w = f64({1, 0, 0, 1, 1, 1}, {3, 2}).requires_grad_();
  Tensor b = f64({0.5, -0.5, 1}).requires_grad_();
  Tensor g = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  nb::linear(x, w, b).backward(g);
  EXPECT_TRUE(near(b.grad(), {5, 7, 9}, {3}));
  // dW = g^T x = [[1*1+4*3, 1*2+4*4], [2*1+5*3, 2*2+5*4], [3*1+6*3, 3*2+6*4]]
  EXPECT_TRUE(near(w.grad(), {13, 18, 17, 24, 21, 30}, {3, 2}));
  // dx = g W = [[1+3, 2+3], [4+6, 5+6]]
  EXPECT_TRUE(near(x.grad(), {4, 5, 10, 11}, {2, 2}));
}

TEST(LinalgForward, LinearFloat32) {
  Tensor y = nb::linear(f32({1, 2}, {1, 2}), f32({3, 4}, {1, 2}), f32({0.25}));
  EXPECT_EQ(y.dtype(), DType::float32);
  EXPECT_TRUE(near(y, {11.25}, {1, 1}));
}

// ---- errors ----------------------------------------------------------------------------------------

TEST(LinalgErrors, MatmulInnerMismatch_2x3_4x5) {
  std::string msg = error_of([] { nb::matmul(nb::zeros({2, 3}, kF64), nb::zeros({4, 5}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[2, 3]"), HasSubstr("[4, 5]")));
}

TEST(LinalgErrors, MatmulInnerMismatch1d_3_4) {
  // the message shows the shapes the user passed, not the unsqueezed ones
  std::string msg = error_of([] { nb::matmul(nb::zeros({3}, kF64), nb::zeros({4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[3]"), HasSubstr("[4]")));
  msg = error_of([] { nb::matmul(nb::zeros({2, 3}, kF64), nb::zeros({4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
  msg = error_of([] { nb::matmul(nb::zeros({3}, kF64), nb::zeros({4, 2}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[3]"), HasSubstr("[4, 2]")));
}

TEST(LinalgErrors, MatmulBatchMismatch_2x3x4_3x4x5) {
  std::string msg = error_of([] { nb::matmul(nb::zeros({2, 3, 4}, kF64), nb::zeros({3, 4, 5}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[2, 3, 4]"), HasSubstr("[3, 4, 5]")));
}

TEST(LinalgErrors, MatmulScalarOperand) {
  std::string msg = error_of([] { nb::matmul(nb::scalar(2, kF64), nb::zeros({3}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("[]"), HasSubstr("[3]")));
}

TEST(LinalgErrors, MatmulMixedDtypes_2x2_f32_f64) {
  std::string msg = error_of([] { nb::matmul(nb::zeros({2, 2}), nb::zeros({2, 2}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("float32"), HasSubstr("float64"), HasSubstr("[2, 2]")));
  msg = error_of([] { nb::matmul(i64({1, 2}), i64({1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("matmul"), HasSubstr("int64")));
}

TEST(LinalgErrors, LinearInputMismatch_x2x5_w3x4) {
  std::string msg = error_of([] { nb::linear(nb::zeros({2, 5}, kF64), nb::zeros({3, 4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear"), HasSubstr("[2, 5]"), HasSubstr("[3, 4]")));
  msg = error_of([] { nb::linear(nb::zeros({2, 5}, kF64), nb::zeros({3, 4}, kF64), {}, "Dense(4->3)"); });
  EXPECT_THAT(msg, AllOf(HasSubstr("Dense(4->3)"), HasSubstr("[2, 5]")));
}

TEST(LinalgErrors, LinearBadBiasAndWeight) {
  std::string msg =
      error_of([] { nb::linear(nb::zeros({2, 4}, kF64), nb::zeros({3, 4}, kF64), nb::zeros({4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear"), HasSubstr("bias"), HasSubstr("[4]"), HasSubstr("[3]")));
  msg = error_of([] { nb::linear(nb::zeros({2, 4}, kF64), nb::zeros({4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear"), HasSubstr("weight"), HasSubstr("[4]")));
  msg = error_of([] { nb::linear(nb::zeros({2, 4}, kF64), nb::zeros({3, 4}), nb::zeros({3})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear"), HasSubstr("float32"), HasSubstr("float64")));
  msg = error_of([] { nb::linear(nb::zeros({2, 4}, kF64), nb::zeros({3, 4}, kF64), nb::zeros({3})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("linear"), HasSubstr("bias"), HasSubstr("float32")));
}

}  // namespace
