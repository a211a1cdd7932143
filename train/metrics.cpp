#include <nabla/train/metrics.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/linalg.h>
#include <nabla/core/ops/reduce.h>

namespace nabla {

namespace {

void check_pair(const Tensor& output, const Tensor& target, const std::string& name) {
  NABLA_CHECK(output.defined() && target.defined(), "{}: output or target is undefined", name);
  NABLA_CHECK_SHAPE(output.dim() >= 1 && output.size(0) == target.size(0) && target.dim() >= 1,
                    "{}: output {} and target {} differ in the number of samples", name, shape_str(output.shape()),
                    shape_str(target.shape()));
  NABLA_CHECK(output.device() == target.device(), "{}: output on {}, target on {}", name, output.device(),
              target.device());
}

bool one_score_per_sample(const Tensor& output) { return output.dim() == 1 || (output.dim() == 2 && output.size(1) == 1); }

// (N) float32 predicted classes.
Tensor predicted_class(const Tensor& output, double threshold, bool from_logits) {
  if (!one_score_per_sample(output)) return argmax(output.reshape({output.size(0), -1}), 1).to(DType::float32);
  Tensor score = output.reshape({-1});
  if (from_logits) score = sigmoid(score);
  return gt(score, scalar(threshold, {.dtype = score.dtype(), .device = score.device()})).to(DType::float32);
}

// (N) float32 true classes: indices, the argmax of a one-hot (N, C), or 0/1 for one score.
Tensor true_class(const Tensor& output, const Tensor& target, const std::string& name) {
  const int64_t n = output.size(0);
  if (one_score_per_sample(output)) {
    NABLA_CHECK_SHAPE(target.numel() == n, "{}: one score per sample {} needs one 0/1 target per sample, got {}", name,
                      shape_str(output.shape()), shape_str(target.shape()));
    Tensor t = target.reshape({-1}).to(DType::float32);
    return gt(t, scalar(0.5, {.device = t.device()}));
  }
  if (target.dim() == 1) return target.to(DType::float32);
  NABLA_CHECK_SHAPE(target.shape() == output.shape(),
                    "{}: target {} is neither (N) class indices nor of the output's shape {}", name,
                    shape_str(target.shape()), shape_str(output.shape()));
  return argmax(target.reshape({n, -1}), 1).to(DType::float32);
}

// (N, C) float32 with a 1 at each row's class (nothing for a class outside [0, C)).
Tensor one_hot(const Tensor& cls, int64_t classes) {
  Tensor ids = arange(0.0, static_cast<double>(classes), 1.0, {.device = cls.device()}).reshape({1, classes});
  return eq(cls.reshape({-1, 1}), ids);
}

Tensor accumulate(const Tensor& total, const Tensor& add) { return total.defined() ? total + add : add; }

}  // namespace

// ---- accuracy ---------------------------------------------------------------------------------

BinaryAccuracy::BinaryAccuracy(BinaryOptions opts, std::string name) : opts_(opts), name_(std::move(name)) {}
void BinaryAccuracy::reset() {
  correct_ = {};
  count_ = 0;
}
void BinaryAccuracy::update(const Tensor& output, const Tensor& target) {
  NoGrad no_grad;
  check_pair(output, target, name_);
  NABLA_CHECK_SHAPE(one_score_per_sample(output), "{}: expected one score per sample, (N) or (N, 1), got {}", name_,
                    shape_str(output.shape()));
  Tensor pred = predicted_class(output, opts_.threshold, opts_.from_logits);
  correct_ = accumulate(correct_, sum(eq(pred, true_class(output, target, name_))));
  count_ += output.size(0);
}
std::vector<double> BinaryAccuracy::state() const {
  if (count_ == 0) return {};
  return {correct_.item(), static_cast<double>(count_)};
}
std::vector<std::pair<std::string, double>> BinaryAccuracy::result_of(const std::vector<double>& s) const {
  if (s.size() != 2 || s[1] == 0) return {};
  return {{name_, s[0] / s[1]}};
}
std::vector<std::pair<std::string, double>> BinaryAccuracy::result() const {
  if (count_ == 0) return {};
  return {{name_, correct_.item() / static_cast<double>(count_)}};
}

CategoricalAccuracy::CategoricalAccuracy(std::string name) : name_(std::move(name)) {}
void CategoricalAccuracy::reset() {
  correct_ = {};
  count_ = 0;
}
void CategoricalAccuracy::update(const Tensor& output, const Tensor& target) {
  NoGrad no_grad;
  check_pair(output, target, name_);
  NABLA_CHECK_SHAPE(!one_score_per_sample(output), "{}: expected (N, C) class scores with C > 1, got {}", name_,
                    shape_str(output.shape()));
  Tensor pred = predicted_class(output, 0, false);
  correct_ = accumulate(correct_, sum(eq(pred, true_class(output, target, name_))));
  count_ += output.size(0);
}
std::vector<double> CategoricalAccuracy::state() const {
  if (count_ == 0) return {};
  return {correct_.item(), static_cast<double>(count_)};
}
std::vector<std::pair<std::string, double>> CategoricalAccuracy::result_of(const std::vector<double>& s) const {
  if (s.size() != 2 || s[1] == 0) return {};
  return {{name_, s[0] / s[1]}};
}
std::vector<std::pair<std::string, double>> CategoricalAccuracy::result() const {
  if (count_ == 0) return {};
  return {{name_, correct_.item() / static_cast<double>(count_)}};
}

// ---- confusion matrix -------------------------------------------------------------------------

Tensor confusion_matrix(const Tensor& output, const Tensor& target, const ClassMetricOptions& opts) {
  NoGrad no_grad;
  check_pair(output, target, "confusion_matrix");
  const int64_t classes =
      opts.num_classes > 0 ? opts.num_classes : (one_score_per_sample(output) ? 2 : output.size(-1));
  Tensor pred = one_hot(predicted_class(output, opts.threshold, opts.from_logits), classes);
  Tensor truth = one_hot(true_class(output, target, "confusion_matrix"), classes);
  return matmul(truth.t(), pred);
}

ConfusionMatrix::ConfusionMatrix(ClassMetricOptions opts, std::string name) : opts_(opts), name_(std::move(name)) {
  NABLA_CHECK(opts.num_classes >= 0, "{}: num_classes must be >= 0, got {}", name_, opts.num_classes);
  NABLA_CHECK(opts.average != Average::binary || opts.num_classes == 0 || opts.num_classes == 2,
              "{}: the binary average needs 2 classes, got num_classes {}", name_, opts.num_classes);
}

void ConfusionMatrix::reset() {
  counts_ = {};
  classes_ = 0;
}

void ConfusionMatrix::update(const Tensor& output, const Tensor& target) {
  Tensor batch = confusion_matrix(output, target, opts_);
  const int64_t c = batch.size(0);
  NABLA_CHECK_SHAPE(classes_ == 0 || classes_ == c, "{}: {} classes in this batch, {} before", name_, c, classes_);
  NABLA_CHECK_SHAPE(opts_.average != Average::binary || c == 2,
                    "{}: the binary average needs 2 classes, output {} has {}", name_, shape_str(output.shape()), c);
  classes_ = c;
  NoGrad no_grad;
  counts_ = accumulate(counts_, batch);
}

std::vector<double> ConfusionMatrix::counts() const {
  return counts_.defined() ? counts_.to_vector<double>() : std::vector<double>{};
}

Tensor ConfusionMatrix::matrix() const {
  if (!counts_.defined()) return {};
  return counts_.to(Device::cpu()).to(DType::int64);
}

namespace {

enum class Score { precision, recall, f1 };

std::vector<std::pair<std::string, double>> class_scores(const std::vector<double>& cm, int64_t c, Average avg,
                                                         Score what, const std::string& name) {
  if (cm.empty()) return {};
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  auto score = [&](double tp, double predicted, double actual) {
    const double p = ratio(tp, predicted), r = ratio(tp, actual);
    switch (what) {
      case Score::precision: return p;
      case Score::recall: return r;
      default: return ratio(2 * p * r, p + r);
    }
  };
  std::vector<double> per(static_cast<size_t>(c));
  double tp_all = 0, total = 0;
  for (int64_t k = 0; k < c; ++k) {
    double tp = cm[k * c + k], predicted = 0, actual = 0;
    for (int64_t j = 0; j < c; ++j) {
      predicted += cm[j * c + k];
      actual += cm[k * c + j];
    }
    per[k] = score(tp, predicted, actual);
    tp_all += tp;
    total += actual;
  }
  switch (avg) {
    case Average::binary: return {{name, per[1]}};
    case Average::micro: return {{name, score(tp_all, total, total)}};
    case Average::none: {
      std::vector<std::pair<std::string, double>> out;
      for (int64_t k = 0; k < c; ++k) out.emplace_back(fmt::format("{}_{}", name, k), per[k]);
      return out;
    }
    default: {
      double s = 0;
      for (double v : per) s += v;
      return {{name, s / static_cast<double>(c)}};
    }
  }
}

}  // namespace

std::vector<double> ConfusionMatrix::state() const { return counts(); }
std::vector<std::pair<std::string, double>> ConfusionMatrix::result_of(const std::vector<double>& s) const {
  if (s.empty()) return {};
  auto c = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(s.size()))));
  NABLA_CHECK(c > 0 && static_cast<size_t>(c * c) == s.size(),
              "{}: a summed state of {} numbers is not a square confusion matrix", name_, s.size());
  return scores(s, c);
}

std::vector<std::pair<std::string, double>> Precision::result() const { return scores(counts(), num_classes()); }
std::vector<std::pair<std::string, double>> Recall::result() const { return scores(counts(), num_classes()); }
std::vector<std::pair<std::string, double>> F1Score::result() const { return scores(counts(), num_classes()); }
std::vector<std::pair<std::string, double>> Precision::scores(const std::vector<double>& cm, int64_t c) const {
  return class_scores(cm, c, opts_.average, Score::precision, name_);
}
std::vector<std::pair<std::string, double>> Recall::scores(const std::vector<double>& cm, int64_t c) const {
  return class_scores(cm, c, opts_.average, Score::recall, name_);
}
std::vector<std::pair<std::string, double>> F1Score::scores(const std::vector<double>& cm, int64_t c) const {
  return class_scores(cm, c, opts_.average, Score::f1, name_);
}

// ---- regression -------------------------------------------------------------------------------

void MeanAbsoluteError::reset() {
  total_ = {};
  count_ = 0;
}
Tensor MeanAbsoluteError::error(const Tensor& diff) const { return abs(diff); }
Tensor MeanSquaredError::error(const Tensor& diff) const { return mul(diff, diff); }

void MeanAbsoluteError::update(const Tensor& output, const Tensor& target) {
  NoGrad no_grad;
  check_pair(output, target, name_);
  NABLA_CHECK_SHAPE(output.numel() == target.numel(), "{}: output {} and target {} differ in size", name_,
                    shape_str(output.shape()), shape_str(target.shape()));
  Tensor diff = sub(output.reshape({-1}), target.reshape({-1}).to(output.dtype()));
  total_ = accumulate(total_, sum(error(diff)));
  count_ += output.numel();
}

std::vector<double> MeanAbsoluteError::state() const {
  if (count_ == 0) return {};
  return {total_.item(), static_cast<double>(count_)};
}
std::vector<std::pair<std::string, double>> MeanAbsoluteError::result_of(const std::vector<double>& s) const {
  if (s.size() != 2 || s[1] == 0) return {};
  return {{name_, s[0] / s[1]}};
}
std::vector<std::pair<std::string, double>> MeanAbsoluteError::result() const {
  if (count_ == 0) return {};
  return {{name_, total_.item() / static_cast<double>(count_)}};
}

// ---- by name ----------------------------------------------------------------------------------

std::shared_ptr<Metric> make_metric(const std::string& name, bool binary, bool from_logits) {
  const BinaryOptions bo{.from_logits = from_logits};
  const ClassMetricOptions co{.average = binary ? Average::binary : Average::macro, .from_logits = from_logits};
  if (name == "accuracy" || name == "acc") {
    if (binary) return std::make_shared<BinaryAccuracy>(bo, name);
    return std::make_shared<CategoricalAccuracy>(name);
  }
  if (name == "binary_accuracy") return std::make_shared<BinaryAccuracy>(bo);
  if (name == "categorical_accuracy") return std::make_shared<CategoricalAccuracy>();
  if (name == "sparse_categorical_accuracy") return std::make_shared<SparseCategoricalAccuracy>();
  if (name == "precision") return std::make_shared<Precision>(co);
  if (name == "recall") return std::make_shared<Recall>(co);
  if (name == "f1") return std::make_shared<F1Score>(co);
  if (name == "mae") return std::make_shared<MeanAbsoluteError>();
  if (name == "mse") return std::make_shared<MeanSquaredError>();
  fail("metric '{}' is unknown; known: accuracy, acc, binary_accuracy, categorical_accuracy, "
       "sparse_categorical_accuracy, precision, recall, f1, mae, mse",
       name);
}

}  // namespace nabla
