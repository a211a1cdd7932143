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
  // shapes, targets and graphs not covered above
  cases.push_back({"mse_none_5", [](const Tensors& x) { return nb::mse_loss(x[0], x[1], Reduction::none); },
                   [] { return Tensors{input({5}), input({5})}; }});
  cases.push_back({"l1_sum_3x4", [](const Tensors& x) { return nb::l1_loss(x[0], x[1], Reduction::sum); },
                   [] { return Tensors{input({3, 4}), nb::affine(input({3, 4}), 1, 0).detach()}; }});
  cases.push_back({"bce_mean_6", [](const Tensors& x) { return nb::binary_cross_entropy(x[0], x[1]); },
                   [] { return Tensors{input({6}, 0.05, 0.95, {}), input({6}, 0, 1, {})}; }});
  cases.push_back({"cross_entropy_none_3x4",
                   [](const Tensors& x) { return nb::cross_entropy(x[0], i64({3, 1, 0}), Reduction::none); },
                   [] { return Tensors{input({3, 4})}; }});
  // the target is a softmax of the second input, so the gradient flows through it too
  cases.push_back({"cross_entropy_probs_through_softmax_mean_3x4",
                   [](const Tensors& x) { return nb::cross_entropy(x[0], nb::softmax(x[1])); },
                   [] { return Tensors{input({3, 4}), input({3, 4})}; }});
  cases.push_back({"mlp_loss_4x6", [](const Tensors& x) {
                     Tensor h = nb::tanh(nb::linear(x[0], x[1], x[2]));
                     return nb::cross_entropy(nb::linear(h, x[3]), i64({0, 2, 1, 2}));
                   },
                   [] { return Tensors{input({4, 6}), input({5, 6}), input({5}), input({3, 5})}; }});
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

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

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
  EXPECT_TRUE(values(nb::l1_loss(in, tg), {}, {0.625}, kTight));
  EXPECT_TRUE(values(nb::l1_loss(in, tg, Reduction::sum), {}, {2.5}, kTight));
  EXPECT_TRUE(values(nb::l1_loss(in, tg, Reduction::none), {2, 2}, {0.5, 0, 2, 0}, kTight));
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
  EXPECT_TRUE(values(nb::binary_cross_entropy(f64({1}), f64({0.5})), {}, {50}, kTight));
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
                     {1000, 1000}, kTight));
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
                     {2.4076059644443806, 1.0986122886681098}, kTight));
  EXPECT_TRUE(values(nb::cross_entropy(logits, i32({0, 2})), {}, {1.7531091265562452}, kTight));
}

TEST(CrossEntropy, ProbabilityTargets_2x3) {
  // row 0: -(0.25*-2.4076 + 0.25*-1.4076 + 0.5*-0.4076) = 1.1576059644443806; row 1 (equal logits): ln 3
  Tensor logits = f64({1, 2, 3, 1, 1, 1}, {2, 3});
  Tensor target = f64({0.25, 0.25, 0.5, 0.2, 0.3, 0.5}, {2, 3});
  EXPECT_TRUE(values(nb::cross_entropy(logits, target, Reduction::none), {2}, {1.1576059644443806, 1.0986122886681098},
                     kTight));
  EXPECT_TRUE(values(nb::cross_entropy(logits, target), {}, {1.1281091265562452}, kTight));
  EXPECT_TRUE(values(nb::cross_entropy(logits, target, Reduction::sum), {}, {2.2562182531124904}, kTight));
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

// ---- CPU kernels, called directly through nabla::Backend on host buffers (test_util.h: cpu()) ----
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

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

}  // namespace cpu_kernels

}  // namespace
