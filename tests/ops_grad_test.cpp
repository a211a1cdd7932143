// Gradient checks of every differentiable op, in float64 on the CPU (see gradcheck.h).
#include "gradcheck.h"

#include <nabla/core/ops.h>

#include <limits>

namespace nb = nabla;
using nb::Tensor;
using nb::testing::gradcheck;
using nb::testing::input;

namespace {

struct Case {
  std::string name;  // op and shapes, used as the test name
  nb::testing::Fn f;
  std::function<std::vector<Tensor>()> inputs;
};

Tensor labels(std::vector<int64_t> v) { return nb::from_vector(v, {static_cast<int64_t>(v.size())}); }
Tensor labels32(std::vector<int32_t> v) { return nb::from_vector(v, {static_cast<int64_t>(v.size())}); }
const double inf = std::numeric_limits<double>::infinity();

std::vector<Case> cases() {
  using V = std::vector<Tensor>;
  auto one = [](nb::Shape s, double lo = -2, double hi = 2, std::vector<double> kinks = {0.0}) {
    return [=] { return V{input(s, lo, hi, kinks)}; };
  };
  auto two = [](nb::Shape a, nb::Shape b, double lo = -2, double hi = 2) {
    return [=] { return V{input(a, lo, hi), input(b, lo, hi)}; };
  };
  std::vector<Case> c = {
      // binary, with broadcasting
      {"add_3x4_3x4", [](const V& x) { return x[0] + x[1]; }, two({3, 4}, {3, 4})},
      {"add_3x1_1x4", [](const V& x) { return x[0] + x[1]; }, two({3, 1}, {1, 4})},
      {"add_2x3x4_4", [](const V& x) { return x[0] + x[1]; }, two({2, 3, 4}, {4})},
      {"add_scalar0d_2x3", [](const V& x) { return x[0] + x[1]; }, two({}, {2, 3})},
      {"sub_2x3x4_3x1", [](const V& x) { return x[0] - x[1]; }, two({2, 3, 4}, {3, 1})},
      {"mul_3x1_1x4", [](const V& x) { return x[0] * x[1]; }, two({3, 1}, {1, 4})},
      {"mul_5_5", [](const V& x) { return x[0] * x[1]; }, two({5}, {5})},
      {"div_2x3_3", [](const V& x) { return x[0] / x[1]; }, two({2, 3}, {3}, 0.5, 2)},
      {"div_4x1_1x3", [](const V& x) { return x[0] / x[1]; }, [] { return V{input({4, 1}), input({1, 3}, 0.5, 2)}; }},
      {"maximum_3x4_4", [](const V& x) { return nb::maximum(x[0], x[1]); },
       [] { return V{input({3, 4}), nb::affine(input({4}), 1, 0.3)}; }},
      {"minimum_3x4_3x4", [](const V& x) { return nb::minimum(x[0], x[1]); }, two({3, 4}, {3, 4})},
      {"scalar_ops_2x3", [](const V& x) { return (2.0 - x[0]) * 3.0 + x[0] / 4.0 - 1.0; }, one({2, 3})},
      {"rdiv_scalar_2x3", [](const V& x) { return 2.0 / x[0]; }, one({2, 3}, 0.5, 2)},
      // unary
      {"neg_7", [](const V& x) { return -x[0]; }, one({7})},
      {"exp_2x3", [](const V& x) { return nb::exp(x[0]); }, one({2, 3})},
      {"log_2x3", [](const V& x) { return nb::log(x[0]); }, one({2, 3}, 0.2, 3)},
      {"sqrt_2x3", [](const V& x) { return nb::sqrt(x[0]); }, one({2, 3}, 0.2, 3)},
      {"abs_9", [](const V& x) { return nb::abs(x[0]); }, one({9})},
      {"pow_2.5_2x3", [](const V& x) { return nb::pow(x[0], 2.5); }, one({2, 3}, 0.2, 3)},
      {"pow_3_2x3", [](const V& x) { return nb::pow(x[0], 3); }, one({2, 3})},
      {"pow_neg1_4", [](const V& x) { return nb::pow(x[0], -1); }, one({4}, 0.5, 2)},
      {"clamp_-1_1_10", [](const V& x) { return nb::clamp(x[0], -1, 1); }, one({10}, -2, 2, {-1, 1})},
      {"affine_3x2", [](const V& x) { return nb::affine(x[0], -1.5, 0.25); }, one({3, 2})},
      {"relu_3x5", [](const V& x) { return nb::relu(x[0]); }, one({3, 5})},
      {"leaky_relu_0.1_3x5", [](const V& x) { return nb::leaky_relu(x[0], 0.1); }, one({3, 5})},
      {"elu_0.7_3x5", [](const V& x) { return nb::elu(x[0], 0.7); }, one({3, 5})},
      {"sigmoid_3x5", [](const V& x) { return nb::sigmoid(x[0]); }, one({3, 5}, -5, 5)},
      {"tanh_3x5", [](const V& x) { return nb::tanh(x[0]); }, one({3, 5})},
      {"gelu_3x5", [](const V& x) { return nb::gelu(x[0]); }, one({3, 5}, -3, 3)},
      {"softplus_3x5", [](const V& x) { return nb::softplus(x[0]); }, one({3, 5}, -5, 5)},
      {"softmax_last_4x5", [](const V& x) { return nb::softmax(x[0]); }, one({4, 5})},
      {"softmax_axis1_2x3x4", [](const V& x) { return nb::softmax(x[0], 1); }, one({2, 3, 4})},
      {"log_softmax_last_4x5", [](const V& x) { return nb::log_softmax(x[0]); }, one({4, 5})},
      {"log_softmax_axis0_3x2", [](const V& x) { return nb::log_softmax(x[0], 0); }, one({3, 2})},
      // reductions
      {"sum_all_3x4", [](const V& x) { return nb::sum(x[0]); }, one({3, 4})},
      {"sum_axis1_2x3x4", [](const V& x) { return nb::sum(x[0], {1}); }, one({2, 3, 4})},
      {"sum_axes02_keepdim_2x3x4", [](const V& x) { return nb::sum(x[0], {0, 2}, true); }, one({2, 3, 4})},
      {"mean_axis-1_3x4", [](const V& x) { return nb::mean(x[0], {-1}); }, one({3, 4})},
      {"mean_all_2x2x2", [](const V& x) { return nb::mean(x[0]); }, one({2, 2, 2})},
      {"max_axis1_3x4", [](const V& x) { return nb::max(x[0], {1}); }, one({3, 4})},
      {"max_all_keepdim_2x3", [](const V& x) { return nb::max(x[0], {}, true); }, one({2, 3})},
      {"min_axes01_2x3x2", [](const V& x) { return nb::min(x[0], {0, 1}); }, one({2, 3, 2})},
      {"sum_to_2x3x4_to_3x1", [](const V& x) { return nb::sum_to(x[0], {3, 1}); }, one({2, 3, 4})},
      // products
      {"matmul_3x4_4x5", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({3, 4}, {4, 5})},
      {"matmul_batched_2x3x4_2x4x2", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({2, 3, 4}, {2, 4, 2})},
      {"matmul_broadcast_2x3x4_4x5", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({2, 3, 4}, {4, 5})},
      {"matmul_broadcast_1x3x4_2x4x2", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({1, 3, 4}, {2, 4, 2})},
      {"matmul_vec_4_4x3", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({4}, {4, 3})},
      {"matmul_3x4_vec_4", [](const V& x) { return nb::matmul(x[0], x[1]); }, two({3, 4}, {4})},
      {"matmul_transposed_views_4x3T_5x4T", [](const V& x) { return nb::matmul(x[0].t(), x[1].t()); },
       two({4, 3}, {5, 4})},
      {"linear_bias_3x4_w5x4", [](const V& x) { return nb::linear(x[0], x[1], x[2]); },
       [] { return V{input({3, 4}), input({5, 4}), input({5})}; }},
      {"linear_nobias_2x3x4_w2x4", [](const V& x) { return nb::linear(x[0], x[1]); }, two({2, 3, 4}, {2, 4})},
      // losses (reduction none / mean / sum)
      {"mse_mean_3x4", [](const V& x) { return nb::mse_loss(x[0], x[1]); }, two({3, 4}, {3, 4})},
      {"mse_none_5", [](const V& x) { return nb::mse_loss(x[0], x[1], nb::Reduction::none); }, two({5}, {5})},
      {"l1_sum_3x4", [](const V& x) { return nb::l1_loss(x[0], x[1], nb::Reduction::sum); },
       [] { return V{input({3, 4}), nb::affine(input({3, 4}), 1, 0).detach()}; }},
      {"bce_mean_6", [](const V& x) { return nb::binary_cross_entropy(x[0], x[1]); },
       [] { return V{input({6}, 0.05, 0.95, {}), input({6}, 0, 1, {})}; }},
      {"bce_none_2x3", [](const V& x) { return nb::binary_cross_entropy(x[0], x[1], nb::Reduction::none); },
       [] { return V{input({2, 3}, 0.05, 0.95, {}), input({2, 3}, 0, 1, {})}; }},
      {"bce_logits_sum_2x3", [](const V& x) { return nb::binary_cross_entropy_with_logits(x[0], x[1], nb::Reduction::sum); },
       [] { return V{input({2, 3}, -4, 4), input({2, 3}, 0, 1, {})}; }},
      {"cross_entropy_int64_mean_4x5",
       [](const V& x) { return nb::cross_entropy(x[0], labels({0, 4, 2, 2})); }, one({4, 5})},
      {"cross_entropy_int32_sum_3x3",
       [](const V& x) { return nb::cross_entropy(x[0], labels32({2, 0, 1}), nb::Reduction::sum); }, one({3, 3})},
      {"cross_entropy_none_3x4",
       [](const V& x) { return nb::cross_entropy(x[0], labels({3, 1, 0}), nb::Reduction::none); }, one({3, 4})},
      {"cross_entropy_probs_mean_3x4", [](const V& x) { return nb::cross_entropy(x[0], nb::softmax(x[1])); },
       two({3, 4}, {3, 4})},
      {"nll_mean_3x4", [](const V& x) { return nb::nll_loss(x[0], labels({1, 1, 3})); }, one({3, 4})},
      // views and data movement
      {"reshape_2x6_to_3x4", [](const V& x) { return x[0].reshape({3, 4}) * x[1]; }, two({2, 6}, {3, 4})},
      {"reshape_infer_noncontig_3x4T", [](const V& x) { return x[0].t().reshape({-1}); }, one({3, 4})},
      {"view_flatten_2x3x4", [](const V& x) { return x[0].flatten(1); }, one({2, 3, 4})},
      {"transpose_2x3x4_axes0_2", [](const V& x) { return x[0].transpose(0, 2) * x[1]; }, two({2, 3, 4}, {4, 3, 2})},
      {"slice_step2_axis1_3x7", [](const V& x) { return x[0].slice(1, 1, 7, 2); }, one({3, 7})},
      {"slice_negative_axis0_5x2", [](const V& x) { return x[0].slice(0, -3, -1); }, one({5, 2})},
      {"unsqueeze_squeeze_3x4", [](const V& x) { return x[0].unsqueeze(1).squeeze(1).unsqueeze(0) * x[0]; }, one({3, 4})},
      {"expand_3x1_to_2x3x4", [](const V& x) { return x[0].expand({2, 3, 4}) * x[1]; }, two({3, 1}, {2, 3, 4})},
      {"contiguous_clone_of_transpose_3x4", [](const V& x) { return x[0].t().contiguous().clone(); }, one({3, 4})},
      {"concat_axis1_2x3_2x1_2x2",
       [](const V& x) { return nb::concat({x[0], x[1], x[2]}, 1); },
       [] { return V{input({2, 3}), input({2, 1}), input({2, 2})}; }},
      {"concat_axis0_1x3_2x3", [](const V& x) { return nb::concat({x[0], x[1]}, 0); }, two({1, 3}, {2, 3})},
      // a composite: a two-layer network with its loss
      {"mlp_loss_4x6", [](const V& x) {
         Tensor h = nb::tanh(nb::linear(x[0], x[1], x[2]));
         return nb::cross_entropy(nb::linear(h, x[3]), labels({0, 2, 1, 2}));
       },
       [] { return V{input({4, 6}), input({5, 6}), input({5}), input({3, 5})}; }},
  };
  return c;
}

class GradCheck : public ::testing::TestWithParam<Case> {};

TEST_P(GradCheck, BackwardMatchesFiniteDifferencesAndAccumulates) {
  nb::manual_seed(1234);
  const Case& c = GetParam();
  EXPECT_TRUE(gradcheck(c.f, c.inputs()));
}

INSTANTIATE_TEST_SUITE_P(Ops, GradCheck, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// Dropout's gradient is its mask times 1/(1-p): check it against the forward's own mask.
TEST(GradCheckDropout, GradientIsTheScaledMask_p025_n1000) {
  nb::manual_seed(7);
  Tensor x = nb::ones({1000}, {.dtype = nb::DType::float64}).requires_grad_(true);
  Tensor y = nb::dropout(x, 0.25, true);
  nb::sum(y).backward();
  auto yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i], yv[i]);  // y = x * mask, x = 1
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return nb::dropout(v[0], 0.5, false); }, {input({4})}));
}

// Casting is differentiable: the gradient comes back cast to the input's dtype (float32 rounding
// makes finite differences useless here, so the check is direct).
TEST(GradCheckCast, Float64ToFloat32AndBack_3) {
  Tensor x = nb::from_vector({1.5, -2.0, 0.25}, {3}, {.dtype = nb::DType::float64}).requires_grad_(true);
  Tensor y = x.to(nb::DType::float32);
  EXPECT_EQ(y.dtype(), nb::DType::float32);
  nb::sum(nb::mul(y, nb::from_vector({1, 2, 3}))).backward();
  EXPECT_EQ(x.grad().dtype(), nb::DType::float64);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 2, 3}));
}

}  // namespace
