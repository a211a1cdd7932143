// Metrics against confusion matrices and values computed by hand; schedules against their
// formulas; gradient clipping.
#include <nabla/nabla.h>

#include "test_util.h"

#include <cmath>
#include <numbers>

namespace nb = nabla;
using nb::test::error_of;
using nb::test::f32;
using nb::test::i64;
using ::testing::HasSubstr;

namespace {

// (N, 3) logits whose argmax is `pred` (the predicted class gets 2, the others 0 and -1).
nb::Tensor logits_for(const std::vector<int64_t>& pred, int64_t classes = 3) {
  std::vector<double> v;
  for (int64_t p : pred)
    for (int64_t c = 0; c < classes; ++c) v.push_back(c == p ? 2.0 : (c + p) % 2 ? -1.0 : 0.0);
  return f32(v, {static_cast<int64_t>(pred.size()), classes});
}

// truth  = 0 0 0 1 1 2 2 2
// pred   = 0 1 0 1 2 2 2 1
// counts[t][p] = [[2, 1, 0], [0, 1, 1], [0, 1, 2]]
// columns (predicted) 2, 3, 3; rows (true) 3, 2, 3
// precision 2/2, 1/3, 2/3; recall 2/3, 1/2, 2/3; F1 0.8, 0.4, 2/3; accuracy 5/8.
const std::vector<int64_t> kTruth = {0, 0, 0, 1, 1, 2, 2, 2};
const std::vector<int64_t> kPred = {0, 1, 0, 1, 2, 2, 2, 1};

// Feeds the 8 samples in two batches (5 + 3), so accumulation across batches counts.
void feed(nb::Metric& m) {
  m.reset();
  std::vector<int64_t> t1(kTruth.begin(), kTruth.begin() + 5), t2(kTruth.begin() + 5, kTruth.end());
  std::vector<int64_t> p1(kPred.begin(), kPred.begin() + 5), p2(kPred.begin() + 5, kPred.end());
  m.update(logits_for(p1), i64(t1));
  m.update(logits_for(p2), i64(t2));
}

double value(const nb::Metric& m) {
  auto r = m.result();
  EXPECT_EQ(r.size(), 1u) << m.name();
  return r.empty() ? NAN : r[0].second;
}

}  // namespace

TEST(ConfusionMatrix, ThreeClassesTwoBatchesMatchTheHandCount) {
  nb::ConfusionMatrix cm;
  feed(cm);
  ASSERT_EQ(cm.num_classes(), 3);
  nb::Tensor m = cm.matrix();
  EXPECT_EQ(m.dtype(), nb::DType::int64);
  EXPECT_EQ(m.shape(), (nb::Shape{3, 3}));
  EXPECT_EQ(m.to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0, 0, 1, 1, 0, 1, 2}));
  EXPECT_TRUE(cm.result().empty());
  cm.reset();
  EXPECT_FALSE(cm.matrix().defined());
}

TEST(ConfusionMatrix, OneHotTargetsAndFixedClassCount) {
  // One-hot targets give the same counts as indices; num_classes 4 adds an empty class.
  std::vector<double> onehot;
  for (int64_t t : kTruth)
    for (int64_t c = 0; c < 3; ++c) onehot.push_back(c == t);
  nb::Tensor m = nb::confusion_matrix(logits_for(kPred), f32(onehot, {8, 3}));
  EXPECT_EQ(m.to_vector<double>(), (std::vector<double>{2, 1, 0, 0, 1, 1, 0, 1, 2}));
  nb::Tensor m4 = nb::confusion_matrix(logits_for(kPred), i64(kTruth), {.num_classes = 4});
  EXPECT_EQ(m4.shape(), (nb::Shape{4, 4}));
  EXPECT_EQ(nb::sum(m4).item(), 8.0);
  EXPECT_EQ(m4.to_vector<double>()[15], 0.0);
}

TEST(PrecisionRecallF1, PerClassMacroMicroFromTheHandCount) {
  const double tol = 1e-6;
  nb::Precision p_none({.average = nb::Average::none});
  feed(p_none);
  auto per = p_none.result();
  ASSERT_EQ(per.size(), 3u);
  EXPECT_EQ(per[0].first, "precision_0");
  EXPECT_EQ(per[2].first, "precision_2");
  EXPECT_NEAR(per[0].second, 1.0, tol);
  EXPECT_NEAR(per[1].second, 1.0 / 3, tol);
  EXPECT_NEAR(per[2].second, 2.0 / 3, tol);

  nb::Recall r_none({.average = nb::Average::none});
  feed(r_none);
  auto rec = r_none.result();
  ASSERT_EQ(rec.size(), 3u);
  EXPECT_NEAR(rec[0].second, 2.0 / 3, tol);
  EXPECT_NEAR(rec[1].second, 0.5, tol);
  EXPECT_NEAR(rec[2].second, 2.0 / 3, tol);

  nb::F1Score f_none({.average = nb::Average::none});
  feed(f_none);
  auto f1 = f_none.result();
  ASSERT_EQ(f1.size(), 3u);
  EXPECT_NEAR(f1[0].second, 0.8, tol);
  EXPECT_NEAR(f1[1].second, 0.4, tol);
  EXPECT_NEAR(f1[2].second, 2.0 / 3, tol);

  nb::Precision p;  // macro by default
  nb::Recall r;
  nb::F1Score f;
  feed(p);
  feed(r);
  feed(f);
  EXPECT_NEAR(value(p), (1.0 + 1.0 / 3 + 2.0 / 3) / 3, tol);
  EXPECT_NEAR(value(r), (2.0 / 3 + 0.5 + 2.0 / 3) / 3, tol);
  EXPECT_NEAR(value(f), (0.8 + 0.4 + 2.0 / 3) / 3, tol);

  for (auto avg : {nb::Average::micro}) {
    nb::Precision pm({.average = avg});
    nb::Recall rm({.average = avg});
    nb::F1Score fm({.average = avg});
    feed(pm);
    feed(rm);
    feed(fm);
    EXPECT_NEAR(value(pm), 5.0 / 8, tol);
    EXPECT_NEAR(value(rm), 5.0 / 8, tol);
    EXPECT_NEAR(value(fm), 5.0 / 8, tol);
  }
}

TEST(PrecisionRecallF1, ClassNeverPredictedScoresZero) {
  // Class 2 is never predicted and never true: precision and recall 0 (zero_division = 0).
  nb::Precision p({.num_classes = 3, .average = nb::Average::none});
  p.update(logits_for({0, 1, 1, 0}), i64({0, 1, 0, 0}));
  auto per = p.result();
  ASSERT_EQ(per.size(), 3u);
  EXPECT_NEAR(per[0].second, 1.0, 1e-6);  // 2 predicted 0, both right
  EXPECT_NEAR(per[1].second, 0.5, 1e-6);  // 2 predicted 1, one right
  EXPECT_EQ(per[2].second, 0.0);
}

// Binary: p = [0.9, 0.2, 0.6, 0.4, 0.7], targets [1, 0, 0, 1, 0], threshold 0.5.
// pred = [1, 0, 1, 0, 1]; counts[t][p] = [[1, 2], [1, 1]]: tp 1, fp 2, fn 1.
// precision 1/3, recall 1/2, F1 0.4, accuracy 2/5.
TEST(BinaryMetrics, ThresholdOnProbabilitiesAndLogits) {
  const std::vector<double> prob = {0.9, 0.2, 0.6, 0.4, 0.7};
  std::vector<double> logit;
  for (double p : prob) logit.push_back(std::log(p / (1 - p)));
  const nb::Tensor target = f32({1, 0, 0, 1, 0}, {5, 1});
  for (bool from_logits : {false, true}) {
    SCOPED_TRACE(from_logits ? "logits" : "probabilities");
    nb::Tensor out = f32(from_logits ? logit : prob, {5, 1});
    nb::BinaryAccuracy acc({.from_logits = from_logits});
    acc.update(out, target);
    EXPECT_NEAR(value(acc), 0.4, 1e-6);
    nb::Precision p({.average = nb::Average::binary, .from_logits = from_logits});
    nb::Recall r({.average = nb::Average::binary, .from_logits = from_logits});
    nb::F1Score f({.average = nb::Average::binary, .from_logits = from_logits});
    for (nb::Metric* m : std::vector<nb::Metric*>{&p, &r, &f}) m->update(out, target);
    EXPECT_NEAR(value(p), 1.0 / 3, 1e-6);
    EXPECT_NEAR(value(r), 0.5, 1e-6);
    EXPECT_NEAR(value(f), 0.4, 1e-6);
    nb::ConfusionMatrix cm({.from_logits = from_logits});
    cm.update(out, target);
    EXPECT_EQ(cm.matrix().to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 1, 1}));
  }
  // Threshold 0.65: pred = [1, 0, 0, 0, 1], right on samples 0, 1, 2: accuracy 3/5.
  nb::BinaryAccuracy acc({.threshold = 0.65});
  acc.update(f32(prob), f32({1, 0, 0, 1, 0}));
  EXPECT_NEAR(value(acc), 0.6, 1e-6);
}

TEST(Accuracy, SparseAndCategoricalTargetsAgree) {
  nb::SparseCategoricalAccuracy sparse;
  feed(sparse);
  EXPECT_NEAR(value(sparse), 5.0 / 8, 1e-6);
  std::vector<double> onehot;
  for (int64_t t : kTruth)
    for (int64_t c = 0; c < 3; ++c) onehot.push_back(c == t);
  nb::CategoricalAccuracy cat;
  cat.update(logits_for(kPred), f32(onehot, {8, 3}));
  EXPECT_NEAR(value(cat), 5.0 / 8, 1e-6);
  EXPECT_EQ(cat.name(), "categorical_accuracy");
  EXPECT_EQ(sparse.name(), "sparse_categorical_accuracy");
  cat.reset();
  EXPECT_TRUE(cat.result().empty());
}

TEST(Regression, MaeAndMse) {
  // |d| = 0.5, 0, 2, 0: MAE 0.625, MSE (0.25 + 4) / 4.
  nb::MeanAbsoluteError mae;
  nb::MeanSquaredError mse;
  for (nb::Metric* m : std::vector<nb::Metric*>{&mae, &mse}) {
    m->update(f32({1, 2}, {2, 1}), f32({1.5, 2}, {2, 1}));
    m->update(f32({3, 4}, {2, 1}), f32({1, 4}, {2, 1}));
  }
  EXPECT_NEAR(value(mae), 0.625, 1e-6);
  EXPECT_NEAR(value(mse), 4.25 / 4, 1e-6);
  EXPECT_EQ(mae.name(), "mae");
  EXPECT_EQ(mse.name(), "mse");
}

TEST(Metrics, ByNameAndErrors) {
  EXPECT_EQ(nb::make_metric("accuracy")->name(), "accuracy");
  EXPECT_NE(dynamic_cast<nb::CategoricalAccuracy*>(nb::make_metric("accuracy").get()), nullptr);
  EXPECT_NE(dynamic_cast<nb::BinaryAccuracy*>(nb::make_metric("accuracy", true).get()), nullptr);
  for (const char* n : {"acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "precision",
                        "recall", "f1", "mae", "mse"})
    EXPECT_NO_THROW(nb::make_metric(n)) << n;
  EXPECT_THAT(error_of([] { nb::make_metric("auc"); }), HasSubstr("metric 'auc' is unknown"));
  nb::CategoricalAccuracy cat;
  EXPECT_THAT(error_of([&] { cat.update(f32({1, 2}), f32({1, 0})); }), HasSubstr("(N, C) class scores"));
  EXPECT_THAT(error_of([&] { cat.update(logits_for({0, 1}), i64({0, 1, 2})); }), HasSubstr("number of samples"));
  nb::ConfusionMatrix cm;
  cm.update(logits_for({0, 1}), i64({0, 1}));
  EXPECT_THAT(error_of([&] { cm.update(logits_for({0, 1}, 4), i64({0, 1})); }), HasSubstr("4 classes in this batch, 3"));
  nb::Precision pb({.average = nb::Average::binary});
  EXPECT_THAT(error_of([&] { pb.update(logits_for({0, 1}), i64({0, 1})); }), HasSubstr("binary average needs 2"));
}

// ---- schedules --------------------------------------------------------------------------------

TEST(Schedules, EachAgainstItsFormula) {
  for (int64_t t = 0; t < 40; ++t) {
    const double td = static_cast<double>(t);
    EXPECT_DOUBLE_EQ((nb::StepDecay{.initial_lr = 0.1, .step_size = 7, .gamma = 0.5})(t),
                     0.1 * std::pow(0.5, std::floor(td / 7)));
    EXPECT_DOUBLE_EQ((nb::ExponentialDecay{.initial_lr = 0.1, .rate = 0.9, .decay_steps = 4})(t),
                     0.1 * std::pow(0.9, td / 4));
    EXPECT_DOUBLE_EQ((nb::ExponentialDecay{.initial_lr = 0.1, .rate = 0.9, .decay_steps = 4, .staircase = true})(t),
                     0.1 * std::pow(0.9, std::floor(td / 4)));
    EXPECT_DOUBLE_EQ((nb::InverseTimeDecay{.initial_lr = 0.1, .rate = 0.5, .decay_steps = 3})(t),
                     0.1 / (1 + 0.5 * td / 3));
    EXPECT_DOUBLE_EQ((nb::InverseTimeDecay{.initial_lr = 0.1, .rate = 0.5, .decay_steps = 3, .staircase = true})(t),
                     0.1 / (1 + 0.5 * std::floor(td / 3)));
    const double cos = (nb::CosineDecay{.initial_lr = 0.1, .total = 30, .warmup = 5, .min_lr = 0.001})(t);
    if (t < 5)
      EXPECT_DOUBLE_EQ(cos, 0.1 * (td + 1) / 5);
    else
      EXPECT_NEAR(cos, 0.001 + 0.099 * 0.5 * (1 + std::cos(std::numbers::pi * std::min(1.0, (td - 5) / 25))), 1e-15);
  }
  // Landmarks: the warm-up reaches lr0 at t = warmup - 1, the cosine starts there and ends at min_lr.
  nb::CosineDecay c{.initial_lr = 1, .total = 10, .warmup = 2, .min_lr = 0.5};
  EXPECT_DOUBLE_EQ(c(1), 1.0);
  EXPECT_DOUBLE_EQ(c(2), 1.0);
  EXPECT_DOUBLE_EQ(c(10), 0.5);
  EXPECT_DOUBLE_EQ(c(100), 0.5);
  EXPECT_DOUBLE_EQ(c(6), 0.75);  // halfway through the cosine
}

TEST(Schedules, BadArgumentsAreErrors) {
  EXPECT_THAT(error_of([] { (nb::StepDecay{.step_size = 0})(1); }), HasSubstr("StepDecay: step_size"));
  EXPECT_THAT(error_of([] { (nb::ExponentialDecay{.decay_steps = 0})(1); }), HasSubstr("decay_steps"));
  EXPECT_THAT(error_of([] { (nb::CosineDecay{.total = 5, .warmup = 5})(1); }), HasSubstr("warmup < total"));
  EXPECT_THAT(error_of([] { (nb::StepDecay{})(-1); }), HasSubstr("t must be >= 0"));
}

// ---- gradient clipping ------------------------------------------------------------------------

TEST(ClipGradNorm, ScalesAllGradientsTogether) {
  nb::Tensor a = f32({0, 0}).requires_grad_(), b = f32({0}).requires_grad_(), c = f32({5}).requires_grad_();
  a.set_grad(f32({3, 4}));
  b.set_grad(f32({12}));  // global norm 13
  nb::Tensor norm = nb::clip_grad_norm({a, b, c}, 6.5);  // c has no gradient: skipped
  EXPECT_NEAR(norm.item(), 13.0, 1e-5);
  const double s = 6.5 / (13 + 1e-6);
  EXPECT_TRUE(nb::test::near(a.grad(), {3 * s, 4 * s}, {2}, 1e-6));
  EXPECT_TRUE(nb::test::near(b.grad(), {12 * s}, {1}, 1e-6));
  EXPECT_FALSE(c.grad().defined());
  // Below the limit nothing changes.
  nb::Tensor n2 = nb::clip_grad_norm({a, b}, 100);
  EXPECT_NEAR(n2.item(), 6.5, 1e-4);
  EXPECT_TRUE(nb::test::near(a.grad(), {3 * s, 4 * s}, {2}, 1e-6));
  EXPECT_FALSE(nb::clip_grad_norm({c}, 1).defined());
  EXPECT_THAT(error_of([&] { nb::clip_grad_norm({a}, 0); }), HasSubstr("max_norm must be > 0"));
}

TEST(ClipGradValue, ClampsEachElement) {
  nb::Tensor a = f32({0, 0, 0, 0}).requires_grad_();
  a.set_grad(f32({-3, -0.5, 0.25, 9}));
  nb::clip_grad_value({a}, 1.0);
  EXPECT_TRUE(nb::test::near(a.grad(), {-1, -0.5, 0.25, 1}, {4}));
  EXPECT_THAT(error_of([&] { nb::clip_grad_value({a}, -1); }), HasSubstr("clip_value must be > 0"));
}

// ---- optimizer state ----------------------------------------------------------------------------

TEST(OptimizerLoadState, ContinuesExactlyLikeTheOriginal) {
  auto grads = [](int s) { return f32({0.1 * s, -0.2, 0.3 / (s + 1)}); };
  nb::Tensor pa = f32({1, 2, 3}).requires_grad_(), pb = f32({0, 0, 0}).requires_grad_();
  nb::Adam a({pa}, {.lr = 0.1, .weight_decay = 0.01});
  for (int s = 0; s < 3; ++s) {
    pa.set_grad(grads(s));
    a.step();
  }
  nb::Adam b({.lr = 0.1, .weight_decay = 0.01});  // unbound, bound later
  EXPECT_FALSE(b.bound());
  EXPECT_THAT(error_of([&] { b.step(); }), HasSubstr("without parameters"));
  b.bind({pb});
  b.load_state(a.state());
  pb.copy_(pa);
  for (int s = 3; s < 6; ++s) {
    pa.set_grad(grads(s));
    pb.set_grad(grads(s));
    a.step();
    b.step();
    EXPECT_EQ(pa.to_vector<float>(), pb.to_vector<float>()) << "step " << s;
  }
  EXPECT_EQ(b.state().size(), 3u);  // 0.step, 0.exp_avg, 0.exp_avg_sq
  EXPECT_EQ(b.hyperparameters().size(), 4u);

  EXPECT_THAT(error_of([&] { b.load_state({{"1.step", nb::scalar(1, {.dtype = nb::DType::int64})}}); }),
              HasSubstr("does not name one of the 1 parameters"));
  EXPECT_THAT(error_of([&] { b.load_state({{"0.step", nb::scalar(1, {.dtype = nb::DType::int64})}, {"0.sum", f32({0, 0, 0})}}); }),
              HasSubstr("Adam has no state named 'sum'"));
  EXPECT_THAT(error_of([&] { b.load_state({{"0.step", nb::scalar(1, {.dtype = nb::DType::int64})}, {"0.exp_avg", f32({0, 0})}}); }),
              HasSubstr("has shape [2], parameter 0 has [3]"));
  EXPECT_THAT(error_of([&] { b.load_state({{"0.exp_avg", f32({0, 0, 0})}}); }), HasSubstr("no '0.step'"));
  EXPECT_THAT(error_of([&] { b.bind({pa}); }), HasSubstr("already bound"));
}
