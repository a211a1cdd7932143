// Losses with reduction none / mean / sum: float64 gradient checks (input and target where the
// target is differentiable), hand-computed values, and the errors a user sees.
#include "test_util.h"

#include <cmath>

namespace nb = nabla;
using nb::DType;
using nb::Reduction;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
  }
  return "?";
}

const Reduction kReductions[] = {Reduction::none, Reduction::mean, Reduction::sum};

// ---- gradient checks ---------------------------------------------------------------------------

std::vector<GradCase> loss_cases() {
  std::vector<GradCase> cases;
  for (Reduction r : kReductions) {
    const std::string rn = reduction_name(r);
    cases.push_back({"mse_loss_" + rn + "_3x4", [r](const Tensors& x) { return nb::mse_loss(x[0], x[1], r); },
                     [] { return Tensors{input({3, 4}), input({3, 4})}; }});
    cases.push_back({"mse_loss_" + rn + "_0d", [r](const Tensors& x) { return nb::mse_loss(x[0], x[1], r); },
                     [] { return Tensors{input({}), input({})}; }});
    // target = input + an offset of magnitude in [0.1, 1]: |input - target| stays off the kink
    cases.push_back({"l1_loss_" + rn + "_2x5", [r](const Tensors& x) { return nb::l1_loss(x[0], x[1], r); },
                     [] {
                       Tensor a = input({2, 5});
                       return Tensors{a, a + input({2, 5}, -1, 1, {0.0}, 0.1)};
                     }});
    cases.push_back({"binary_cross_entropy_" + rn + "_2x3",
                     [r](const Tensors& x) { return nb::binary_cross_entropy(x[0], x[1], r); },
                     [] { return Tensors{input({2, 3}, 0.05, 0.95, {}), input({2, 3}, 0, 1, {})}; }});
    cases.push_back({"binary_cross_entropy_with_logits_" + rn + "_2x3",
                     [r](const Tensors& x) { return nb::binary_cross_entropy_with_logits(x[0], x[1], r); },
                     [] { return Tensors{input({2, 3}, -5, 5), input({2, 3}, 0, 1, {})}; }});
    cases.push_back({"cross_entropy_int64_" + rn + "_4x5",
                     [r](const Tensors& x) { return nb::cross_entropy(x[0], x[1], r); },
                     [] { return Tensors{input({4, 5}), i64({0, 4, 2, 2})}; }});
    cases.push_back({"cross_entropy_int32_" + rn + "_3x3",
                     [r](const Tensors& x) { return nb::cross_entropy(x[0], x[1], r); },
                     [] { return Tensors{input({3, 3}), i32({2, 0, 1})}; }});
    // probability targets: rows of softmax of random numbers; the target gets a gradient too
    cases.push_back({"cross_entropy_probs_" + rn + "_3x4",
                     [r](const Tensors& x) { return nb::cross_entropy(x[0], x[1], r); },
                     [] { return Tensors{input({3, 4}), nb::softmax(input({3, 4}), 1).detach()}; }});
    cases.push_back({"nll_loss_int64_" + rn + "_3x4",
                     [r](const Tensors& x) { return nb::nll_loss(x[0], x[1], r); },
                     [] { return Tensors{input({3, 4}), i64({1, 1, 3})}; }});
    cases.push_back({"nll_loss_int32_" + rn + "_2x6",
                     [r](const Tensors& x) { return nb::nll_loss(x[0], x[1], r); },
                     [] { return Tensors{input({2, 6}), i32({5, 0})}; }});
  }
  // losses of non-contiguous views and of composite graphs
  cases.push_back({"cross_entropy_of_transposed_logits_5x3T",
                   [](const Tensors& x) { return nb::cross_entropy(x[0].t(), x[1]); },
                   [] { return Tensors{input({5, 3}), i64({4, 0, 2})}; }});
  cases.push_back({"nll_loss_of_log_softmax_4x3", [](const Tensors& x) {
                     return nb::nll_loss(nb::log_softmax(x[0], 1), x[1], Reduction::sum);
                   },
                   [] { return Tensors{input({4, 3}), i64({2, 2, 0, 1})}; }});
  cases.push_back({"mse_loss_of_linear_3x4_w2x4", [](const Tensors& x) {
                     return nb::mse_loss(nb::linear(x[0], x[1]), x[2]);
                   },
                   [] { return Tensors{input({3, 4}), input({2, 4}), input({3, 2})}; }});
  return cases;
}

class LossGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(LossGrad, CentralDifferenceFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(5);
  EXPECT_TRUE(gradcheck(c.f, c.make_inputs(), c.options));
}

TEST_P(LossGrad, Float32AgreesWithFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(5);
  EXPECT_TRUE(float32_agrees(c.f, c.make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(Losses, LossGrad, ::testing::ValuesIn(loss_cases()), grad_case_name);

// ---- forward values ------------------------------------------------------------------------------

TEST(LossForward, MseLoss_3) {
  Tensor x = f64({1, 2, 3}), t = f64({1, 0, 5});  // differences 0, 2, -2
  EXPECT_TRUE(near(nb::mse_loss(x, t, Reduction::none), {0, 4, 4}, {3}));
  EXPECT_TRUE(near(nb::mse_loss(x, t), {8.0 / 3}, {}));
  EXPECT_TRUE(near(nb::mse_loss(x, t, Reduction::sum), {8}, {}));
}

TEST(LossForward, L1Loss_2x2) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2}), t = f64({1, 0, 5, 4.5}, {2, 2});
  EXPECT_TRUE(near(nb::l1_loss(x, t, Reduction::none), {0, 2, 2, 0.5}, {2, 2}));
  EXPECT_TRUE(near(nb::l1_loss(x, t), {1.125}, {}));
  EXPECT_TRUE(near(nb::l1_loss(x, t, Reduction::sum), {4.5}, {}));
}

TEST(LossForward, BinaryCrossEntropy_3) {
  // -ln 0.5, -ln 0.9, -ln 0.8
  Tensor p = f64({0.5, 0.9, 0.2}), t = f64({1, 1, 0});
  const std::vector<double> e = {0.6931471805599453, 0.10536051565782628, 0.2231435513142097};
  EXPECT_TRUE(near(nb::binary_cross_entropy(p, t, Reduction::none), e, {3}, 1e-15));
  EXPECT_TRUE(near(nb::binary_cross_entropy(p, t), {(e[0] + e[1] + e[2]) / 3}, {}, 1e-15));
  EXPECT_TRUE(near(nb::binary_cross_entropy(p, t, Reduction::sum), {e[0] + e[1] + e[2]}, {}, 1e-15));
  // soft target 0.25 at p = 0.5: -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2
  EXPECT_TRUE(near(nb::binary_cross_entropy(f64({0.5}), f64({0.25})), {0.6931471805599453}, {}, 1e-15));
}

TEST(LossForward, BinaryCrossEntropyLogClampedAtMinus100) {
  // as PyTorch: log(0) is clamped to -100, so a certain wrong answer costs 100, a right one 0
  Tensor p = f64({0, 1, 0, 1}), t = f64({1, 0, 0, 1});
  EXPECT_TRUE(near(nb::binary_cross_entropy(p, t, Reduction::none), {100, 100, 0, 0}, {4}));
}

TEST(LossForward, BinaryCrossEntropyWithLogits_3) {
  // softplus(x) - x t: ln 2; softplus(2) = 2.1269280110429727; softplus(-1) + 0.5
  Tensor x = f64({0, 2, -1}), t = f64({1, 0, 0.5});
  const std::vector<double> e = {0.6931471805599453, 2.1269280110429727, 0.8132616875182228};
  EXPECT_TRUE(near(nb::binary_cross_entropy_with_logits(x, t, Reduction::none), e, {3}, 1e-15));
  EXPECT_TRUE(near(nb::binary_cross_entropy_with_logits(x, t), {(e[0] + e[1] + e[2]) / 3}, {}, 1e-15));
  // huge logits stay finite (about 3.7e-44, not inf or NaN)
  EXPECT_TRUE(near(nb::binary_cross_entropy_with_logits(f64({100, -100}), f64({1, 0}), Reduction::none),
                   {0, 0}, {2}, 1e-40));
}

TEST(LossForward, CrossEntropyInt64Int32Probs_2x3) {
  Tensor logits = f64({1, 2, 3, 1, 1, 1}, {2, 3});
  // row 0: -log_softmax([1,2,3])[2] = 0.4076059644443803; row 1: ln 3
  const std::vector<double> e = {0.4076059644443803, 1.0986122886681098};
  EXPECT_TRUE(near(nb::cross_entropy(logits, i64({2, 0}), Reduction::none), e, {2}, 1e-14));
  EXPECT_TRUE(near(nb::cross_entropy(logits, i64({2, 0})), {0.753109126556245}, {}, 1e-14));
  EXPECT_TRUE(near(nb::cross_entropy(logits, i32({2, 0}), Reduction::sum), {1.5062182531124901}, {}, 1e-14));
  // one-hot probabilities give the same; a soft target averages the log-probabilities
  EXPECT_TRUE(near(nb::cross_entropy(logits, f64({0, 0, 1, 1, 0, 0}, {2, 3}), Reduction::none), e, {2}, 1e-14));
  // 0.5 * (2.40760596444438 + 1.4076059644443801)
  EXPECT_TRUE(near(nb::cross_entropy(logits, f64({0.5, 0.5, 0, 0, 0, 1}, {2, 3}), Reduction::none),
                   {1.90760596444438, 1.0986122886681098}, {2}, 1e-14));
}

TEST(LossForward, CrossEntropyGradientIsSoftmaxMinusOneHot_1x3) {
  Tensor logits = f64({1, 2, 3}, {1, 3}).requires_grad_();
  nb::cross_entropy(logits, i64({1})).backward();
  EXPECT_TRUE(near(logits.grad(), {0.09003057317038046, 0.24472847105479767 - 1, 0.6652409557748219}, {1, 3}, 1e-15));
}

TEST(LossForward, CrossEntropyLargeLogitsAreStable_1x2) {
  EXPECT_TRUE(near(nb::cross_entropy(f64({1000, 0}, {1, 2}), i64({1})), {1000}, {}, 1e-9));
  EXPECT_TRUE(near(nb::cross_entropy(f32({1000, 0}, {1, 2}), i64({0})), {0}, {}, 1e-6));
}

TEST(LossForward, NllLoss_2x3) {
  Tensor logp = f64({-1, -2, -3, -0.5, -1.5, -2.5}, {2, 3});
  EXPECT_TRUE(near(nb::nll_loss(logp, i64({1, 2}), Reduction::none), {2, 2.5}, {2}));
  EXPECT_TRUE(near(nb::nll_loss(logp, i64({1, 2})), {2.25}, {}));
  EXPECT_TRUE(near(nb::nll_loss(logp, i32({1, 2}), Reduction::sum), {4.5}, {}));
}

TEST(LossForward, Float32Losses) {
  Tensor x = f32({1, 2, 3}), t = f32({1, 0, 5});
  Tensor l = nb::mse_loss(x, t);
  EXPECT_EQ(l.dtype(), DType::float32);
  EXPECT_TRUE(near(l, {8.0 / 3}, {}, 1e-6));
  Tensor ce = nb::cross_entropy(f32({1, 2, 3, 1, 1, 1}, {2, 3}), i64({2, 0}));
  EXPECT_EQ(ce.dtype(), DType::float32);
  EXPECT_TRUE(near(ce, {0.753109126556245}, {}, 1e-6));
}

// ---- errors ----------------------------------------------------------------------------------------

TEST(LossErrors, PairwiseLossesShapeMismatch_2x3_vs_3x2) {
  using PairLoss = Tensor (*)(const Tensor&, const Tensor&, Reduction);
  const std::pair<const char*, PairLoss> losses[] = {
      {"mse_loss", nb::mse_loss},
      {"l1_loss", nb::l1_loss},
      {"binary_cross_entropy", nb::binary_cross_entropy},
      {"binary_cross_entropy_with_logits", nb::binary_cross_entropy_with_logits}};
  for (const auto& [name, fn] : losses) {
    std::string msg = error_of([fn] { fn(nb::full({2, 3}, 0.5, kF64), nb::full({3, 2}, 0.5, kF64), Reduction::mean); });
    EXPECT_THAT(msg, AllOf(HasSubstr(std::string(name) + ":"), HasSubstr("[2, 3]"), HasSubstr("[3, 2]"))) << name;
    msg = error_of([fn] { fn(nb::full({2}, 0.5, kF64), nb::full({2}, 0.5), Reduction::mean); });
    EXPECT_THAT(msg, AllOf(HasSubstr(std::string(name) + ":"), HasSubstr("float32"), HasSubstr("float64"))) << name;
  }
}

TEST(LossErrors, BinaryCrossEntropyInputOutsideZeroOne) {
  std::string msg = error_of([] { nb::binary_cross_entropy(f64({0.5, 1.5}), f64({1, 0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("binary_cross_entropy"), HasSubstr("[0, 1]"), HasSubstr("1.5")));
}

TEST(LossErrors, CrossEntropyWrongLabelShape_2x5_labels3) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), i64({0, 1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("[3]"), HasSubstr("[2, 5]")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), i64({0, 1}, {2, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("[2, 1]"), HasSubstr("[2, 5]")));
}

TEST(LossErrors, CrossEntropyLabelOutOfRange_2x5) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), i64({0, 5})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("5"), HasSubstr("index 1"), HasSubstr("5 classes")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), i32({-1, 0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("-1"), HasSubstr("index 0")));
}

TEST(LossErrors, CrossEntropyBadInputOrProbabilityTarget) {
  std::string msg = error_of([] { nb::cross_entropy(nb::zeros({5}, kF64), i64({1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("[5]")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), nb::zeros({2, 4}, kF64)); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("[2, 4]"), HasSubstr("[2, 5]")));
  msg = error_of([] { nb::cross_entropy(nb::zeros({2, 5}, kF64), nb::zeros({2, 5})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("float32"), HasSubstr("float64")));
  msg = error_of([] { nb::cross_entropy(i64({1, 2}, {1, 2}), i64({0})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("cross_entropy"), HasSubstr("int64")));
}

TEST(LossErrors, NllLossNamesItself_3x4) {
  std::string msg = error_of([] { nb::nll_loss(nb::zeros({3, 4}, kF64), i64({0, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss"), HasSubstr("[2]"), HasSubstr("[3, 4]")));
  msg = error_of([] { nb::nll_loss(nb::zeros({3, 4}, kF64), i64({0, 1, 4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss"), HasSubstr("4"), HasSubstr("index 2")));
  msg = error_of([] { nb::nll_loss(nb::zeros({3, 4}, kF64), f64({0, 1, 2})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss"), HasSubstr("float64")));
  msg = error_of([] { nb::nll_loss(nb::zeros({2, 3, 4}, kF64), i64({0, 1})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("nll_loss"), HasSubstr("[2, 3, 4]")));
}

}  // namespace
