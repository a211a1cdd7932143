// matmul and linear: float64 gradient checks (2-D, batched, broadcast batch, 1-D operands,
// transposed and strided views), values computed by hand or by a naive loop, and errors.
#include "test_util.h"

#include <nabla/cpu/dnnl_gemm.h>

#include <cstdlib>

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

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

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
  EXPECT_TRUE(values(f64(A0, {2, 3}).matmul(f64(B0, {3, 2})), {2, 2}, {58, 64, 139, 154}, kTight));
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
  EXPECT_TRUE(values(y, {2, 2, 2}, {58, 64, 139, 154, 22, 28, 49, 64}, kTight));
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
  EXPECT_TRUE(values(nb::matmul(f64(a, {m, k}), f64(b, {k, n})), {m, n}, want, kTight));
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
  EXPECT_TRUE(values(nb::linear(f64(A0, {2, 1, 3}), w, b), {2, 1, 2}, {8, -7, 8, -2.5}, kTight));
  EXPECT_TRUE(values(nb::linear(f64({1, 2, 3}), w, b), {2}, {8, -7}, kTight));
}

TEST(Linear, TransposedInput_3x2T_w2x3) {
  Tensor xt = f32({1, 4, 2, 5, 3, 6}, {3, 2});  // xt.t() = A0
  Tensor w = f32({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  EXPECT_TRUE(values(nb::linear(xt.t(), w, f32({1, 1})), {2, 2}, {-1, 4, -1, 8.5}));
}

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

// ---- CPU kernels, called directly through nabla::Backend on host buffers (test_util.h: cpu()) ----
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

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

}  // namespace cpu_kernels

}  // namespace

// float32 products on oneDNN's sgemm against OpenBLAS's (cpu/dnnl_gemm.h), every transpose, odd
// sizes, alpha and beta: both within 2 gamma_{k+1} sum |alpha a b| + |beta c| of the float64 product
// (u = 2^-24; k + 1 terms counting beta c). Without oneDNN in the build both runs are OpenBLAS.
TEST(GemmDnnl, Float32OnOneDnnAndOpenBlasWithinTheRoundingBound) {
  struct Case {
    int64_t m, n, k;
    bool ta, tb;
  };
  const std::vector<Case> cases{{1, 1, 1, false, false}, {7, 5, 3, false, true},  {5, 7, 3, true, false},
                                {9, 13, 17, true, true}, {33, 65, 129, false, true}, {128, 10, 128, true, false},
                                {64, 48, 300, false, false}};
  const double alpha = 0.75, beta = -0.5;
  const double u = std::ldexp(1.0, -24);
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.m << "x" << c.n << "x" << c.k << (c.ta ? " A^T" : "") << (c.tb ? " B^T" : ""));
    const auto a = random_values(size_t(c.m * c.k), -1, 1, 1), b = random_values(size_t(c.k * c.n), -1, 1, 2),
               c0 = random_values(size_t(c.m * c.n), -1, 1, 3);
    const std::vector<float> af = to_float(a), bf = to_float(b);
    const int64_t lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
    auto at = [&](const std::vector<double>& v, bool t, int64_t ld, int64_t i, int64_t j) {
      return t ? v[size_t(j * ld + i)] : v[size_t(i * ld + j)];
    };
    std::vector<double> want(c0.size()), magnitude(c0.size());
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double sum = 0, mag = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          const double term = double(float(at(a, c.ta, lda, i, p))) * double(float(at(b, c.tb, ldb, p, j)));
          sum += term;
          mag += std::abs(term);
        }
        const double cf = double(float(c0[size_t(i * c.n + j)]));
        want[size_t(i * c.n + j)] = alpha * sum + beta * cf;
        magnitude[size_t(i * c.n + j)] = std::abs(alpha) * mag + std::abs(beta * cf);
      }
    }
    const double kk = double(c.k + 1), bound = 2 * kk * u / (1 - kk * u);
    for (int which : {1, 0}) {
      SCOPED_TRACE(which ? "oneDNN" : "OpenBLAS");
      std::vector<float> out = to_float(c0);
      const int was = nabla::cpu::dnnl_gemm::force(which);
      cpu().gemm(DType::float32, c.ta, c.tb, c.m, c.n, c.k, alpha, af.data(), lda, 0, bf.data(), ldb, 0, beta,
                 out.data(), c.n, 0, 1);
      nabla::cpu::dnnl_gemm::force(was);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_LE(std::abs(double(out[i]) - want[i]), bound * magnitude[i] + 1e-30) << "element " << i;
    }
  }
}

// Which library takes a float32 product (cpu/dnnl_gemm.h): oneDNN for the forward and input-gradient
// shapes below 2^30 multiply-adds, OpenBLAS for weight gradients (A^T B) and the largest products,
// and oneDNN for everything when OpenBLAS runs its generic kernels on an AVX2 CPU.
TEST(GemmDnnl, ChoiceByShape) {
  if (std::getenv("NABLA_CPU_GEMM") != nullptr) GTEST_SKIP() << "NABLA_CPU_GEMM forces one library";
  namespace g = nabla::cpu::dnnl_gemm;
  const int was = g::force(-1);
  if (!g::use_for(false, true, 8, 8, 8, true)) {
    g::force(was);
    GTEST_SKIP() << "built without oneDNN";
  }
  EXPECT_TRUE(g::use_for(false, true, 128, 256, 784, false));    // mlp's first layer, forward
  EXPECT_TRUE(g::use_for(false, false, 128, 784, 256, false));   // its input gradient
  EXPECT_FALSE(g::use_for(true, false, 256, 784, 128, false));   // its weight gradient
  EXPECT_FALSE(g::use_for(false, true, 1024, 4096, 4096, false));  // mlp_wide
  EXPECT_TRUE(g::use_for(true, false, 256, 784, 128, true));     // OpenBLAS on generic kernels
  EXPECT_TRUE(g::use_for(false, true, 1024, 4096, 4096, true));
  g::force(was);
}
