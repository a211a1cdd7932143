// Metrics for Model::compile / fit / evaluate. A metric accumulates over batches on the
// outputs' device (update() never reads a value back to the host) and is read with result()
// once per epoch (and when the progress bar redraws): that read is the one synchronization.
//
//   model.compile(nabla::Adam(), nabla::CrossEntropyLoss(), {"accuracy", nabla::F1Score()});
//
// Strings: "accuracy" ("acc"), "binary_accuracy", "categorical_accuracy",
// "sparse_categorical_accuracy", "precision", "recall", "f1", "mae", "mse". "accuracy",
// "precision", "recall" and "f1" take the binary form (class 1 of one score per sample, as
// Keras) when the loss is binary cross-entropy, with the threshold on logits for
// BCEWithLogitsLoss; otherwise the categorical form (macro average for precision/recall/F1).
//
// Shapes. Categorical: output (N, C) scores, target (N) class indices (int or float) or (N, C)
// one-hot / probabilities (argmax). Binary: output (N) or (N, 1) scores, target of the same
// shape with 0/1 labels (> 0.5 is class 1). Regression (MAE, MSE): output and target of one shape.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

class NABLA_API Metric {
 public:
  virtual ~Metric() = default;
  // The key in logs and History ("accuracy"; per-class results add "_<class>").
  virtual std::string name() const = 0;
  virtual void reset() = 0;
  // Adds one batch; on the device, never recorded, no host read.
  virtual void update(const Tensor& output, const Tensor& target) = 0;
  // The values so far (reads the device). Empty before the first update.
  virtual std::vector<std::pair<std::string, double>> result() const = 0;
  // For data-parallel training (Model::distribute): the accumulated state as numbers that add
  // up across processes (counts and sums; empty before the first update; reads the device), and
  // the results such a sum gives. fit adds every rank's state() and shows result_of(the sum).
  // A metric without (summable() false, the default) is shown for each rank's own samples, and
  // fit warns once.
  virtual bool summable() const { return false; }
  virtual std::vector<double> state() const { return {}; }
  virtual std::vector<std::pair<std::string, double>> result_of(const std::vector<double>& /*state*/) const {
    return result();
  }
};

// ---- accuracy ---------------------------------------------------------------------------------

struct BinaryOptions {
  double threshold = 0.5;   // on probabilities: class 1 when p > threshold
  bool from_logits = false;  // outputs are logits: p = sigmoid(output)
};

// Fraction of samples whose thresholded output equals the 0/1 target.
class NABLA_API BinaryAccuracy : public Metric {
 public:
  explicit BinaryAccuracy(BinaryOptions opts = {}, std::string name = "binary_accuracy");
  std::string name() const override { return name_; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  std::vector<std::pair<std::string, double>> result() const override;
  bool summable() const override { return true; }
  std::vector<double> state() const override;  // {correct, count}
  std::vector<std::pair<std::string, double>> result_of(const std::vector<double>& state) const override;

 private:
  BinaryOptions opts_;
  std::string name_;
  Tensor correct_;
  int64_t count_ = 0;
};

// Fraction of samples whose argmax output is the target class; the target may be (N) indices
// (sparse) or (N, C) one-hot/probabilities (categorical): both classes accept both.
class NABLA_API CategoricalAccuracy : public Metric {
 public:
  explicit CategoricalAccuracy(std::string name = "categorical_accuracy");
  std::string name() const override { return name_; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  std::vector<std::pair<std::string, double>> result() const override;
  bool summable() const override { return true; }
  std::vector<double> state() const override;  // {correct, count}
  std::vector<std::pair<std::string, double>> result_of(const std::vector<double>& state) const override;

 private:
  std::string name_;
  Tensor correct_;
  int64_t count_ = 0;
};

class NABLA_API SparseCategoricalAccuracy : public CategoricalAccuracy {
 public:
  explicit SparseCategoricalAccuracy(std::string name = "sparse_categorical_accuracy")
      : CategoricalAccuracy(std::move(name)) {}
};

// ---- confusion matrix, precision, recall, F1 --------------------------------------------------

enum class Average {
  macro,   // unweighted mean over classes
  micro,   // from the summed counts of all classes (equals accuracy for one label per sample)
  none,    // one value per class: "<name>_0", "<name>_1", ...
  binary,  // class 1 only (two classes)
};

struct ClassMetricOptions {
  int64_t num_classes = 0;  // 0: C of a (N, C) output, or 2 for one score per sample
  Average average = Average::macro;
  double threshold = 0.5;   // one score per sample: class 1 when p > threshold
  bool from_logits = false;  // one score per sample: p = sigmoid(output)
};

// counts[t][p]: samples of true class t predicted as p, accumulated on the device. Rows are
// true classes, columns predictions (as sklearn.metrics.confusion_matrix). result() is empty:
// read it with matrix().
class NABLA_API ConfusionMatrix : public Metric {
 public:
  explicit ConfusionMatrix(ClassMetricOptions opts = {}, std::string name = "confusion_matrix");
  std::string name() const override { return name_; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  std::vector<std::pair<std::string, double>> result() const override { return {}; }
  bool summable() const override { return true; }
  std::vector<double> state() const override;  // the C x C counts, row-major
  std::vector<std::pair<std::string, double>> result_of(const std::vector<double>& state) const override;
  // int64 (C, C) on the CPU; undefined before the first update.
  Tensor matrix() const;
  int64_t num_classes() const { return classes_; }

 protected:
  // Row-major C x C counts read from the device (one read).
  std::vector<double> counts() const;
  // The scores of a confusion matrix (what result() and result_of() give; none here).
  virtual std::vector<std::pair<std::string, double>> scores(const std::vector<double>& /*counts*/,
                                                             int64_t /*classes*/) const {
    return {};
  }
  ClassMetricOptions opts_;
  std::string name_;

 private:
  Tensor counts_;  // float32 (C, C) on the device
  int64_t classes_ = 0;
};

// Precision tp / (tp + fp), recall tp / (tp + fn), F1 2pr / (p + r) of each class from the
// confusion matrix, 0 where the denominator is 0 (sklearn's zero_division=0), then averaged as
// opts.average says.
class NABLA_API Precision : public ConfusionMatrix {
 public:
  explicit Precision(ClassMetricOptions opts = {}, std::string name = "precision")
      : ConfusionMatrix(opts, std::move(name)) {}
  std::vector<std::pair<std::string, double>> result() const override;

 protected:
  std::vector<std::pair<std::string, double>> scores(const std::vector<double>& counts, int64_t classes) const override;
};
class NABLA_API Recall : public ConfusionMatrix {
 public:
  explicit Recall(ClassMetricOptions opts = {}, std::string name = "recall")
      : ConfusionMatrix(opts, std::move(name)) {}
  std::vector<std::pair<std::string, double>> result() const override;

 protected:
  std::vector<std::pair<std::string, double>> scores(const std::vector<double>& counts, int64_t classes) const override;
};
class NABLA_API F1Score : public ConfusionMatrix {
 public:
  explicit F1Score(ClassMetricOptions opts = {}, std::string name = "f1")
      : ConfusionMatrix(opts, std::move(name)) {}
  std::vector<std::pair<std::string, double>> result() const override;

 protected:
  std::vector<std::pair<std::string, double>> scores(const std::vector<double>& counts, int64_t classes) const override;
};

// ---- regression -------------------------------------------------------------------------------

// Mean over all elements of |output - target| ("mae") or (output - target)^2 ("mse").
class NABLA_API MeanAbsoluteError : public Metric {
 public:
  explicit MeanAbsoluteError(std::string name = "mae") : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  std::vector<std::pair<std::string, double>> result() const override;
  bool summable() const override { return true; }
  std::vector<double> state() const override;  // {total, count}
  std::vector<std::pair<std::string, double>> result_of(const std::vector<double>& state) const override;

 protected:
  virtual Tensor error(const Tensor& diff) const;
  std::string name_;
  Tensor total_;
  int64_t count_ = 0;
};
class NABLA_API MeanSquaredError : public MeanAbsoluteError {
 public:
  explicit MeanSquaredError(std::string name = "mse") : MeanAbsoluteError(std::move(name)) {}

 protected:
  Tensor error(const Tensor& diff) const override;
};

// ---- helpers ----------------------------------------------------------------------------------

// counts[t][p] of one batch, float32 (C, C) on the outputs' device (see ConfusionMatrix for the
// shapes); predictions and targets outside [0, C) count nowhere.
NABLA_API Tensor confusion_matrix(const Tensor& output, const Tensor& target, const ClassMetricOptions& opts = {});

// The metric a string names (see the top of this file); `binary` / `from_logits` describe the
// loss. Throws nabla::Error listing the known names.
NABLA_API std::shared_ptr<Metric> make_metric(const std::string& name, bool binary = false, bool from_logits = false);

// A metric for Model::compile: a string, a metric value, or a shared_ptr to one (to read it
// after training, e.g. a ConfusionMatrix).
struct MetricSpec {
  MetricSpec(const char* name) : name(name) {}
  MetricSpec(std::string name) : name(std::move(name)) {}
  template <typename M>
    requires std::is_base_of_v<Metric, M>
  MetricSpec(std::shared_ptr<M> m) : metric(std::move(m)) {}
  template <typename M>
    requires std::is_base_of_v<Metric, std::decay_t<M>>
  MetricSpec(M&& m) : metric(std::make_shared<std::decay_t<M>>(std::forward<M>(m))) {}

  std::string name;                // when metric is null
  std::shared_ptr<Metric> metric;
};

}  // namespace nabla
