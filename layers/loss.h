// Loss objects for Model::compile: a name and a function (output, target) -> scalar, the mean
// over the batch. The functions of core/ops/loss.h convert to one directly, with
// Reduction::mean, and so does any callable of (output, target):
//
//   model.compile(nabla::Adam(), nabla::CrossEntropyLoss(), {"accuracy"});
//   model.compile(nabla::Adam(), nabla::cross_entropy);
//   model.compile(nabla::Adam(), [](const Tensor& out, const Tensor& y) { return ...; });
//
// The name ("cross_entropy", "mse", ...) is what "accuracy" and the other metric strings look
// at to choose between binary and categorical forms (see train/metrics.h).
#pragma once

#include <nabla/export.h>

#include <nabla/core/ops/loss.h>
#include <nabla/core/tensor.h>

#include <concepts>
#include <functional>
#include <string>

namespace nabla {

class NABLA_API Loss {
 public:
  using Fn = std::function<Tensor(const Tensor& output, const Tensor& target)>;

  Loss(std::string name, Fn fn);
  // One of core/ops/loss.h's functions (named after it), or any other of that signature
  // (named "loss"), reducing with Reduction::mean.
  Loss(Tensor (*fn)(const Tensor&, const Tensor&, Reduction));
  // Any callable of (output, target), named "loss".
  template <typename F>
    requires(std::invocable<F&, const Tensor&, const Tensor&> && !std::derived_from<std::decay_t<F>, Loss>)
  Loss(F fn) : Loss("loss", Fn(std::move(fn))) {}

  Tensor operator()(const Tensor& output, const Tensor& target) const;
  const std::string& name() const { return name_; }
  // True for the losses whose outputs are one score per sample for class 1 (binary
  // cross-entropy, with or without logits); `from_logits` for the logits one.
  bool is_binary() const;
  bool from_logits() const;

 private:
  std::string name_;
  Fn fn_;
};

// output (N, C) logits, target (N) class indices or (N, C) probabilities.
struct NABLA_API CrossEntropyLoss : Loss {
  CrossEntropyLoss();
};
// output (N, C) log-probabilities, target (N) class indices.
struct NABLA_API NLLLoss : Loss {
  NLLLoss();
};
struct NABLA_API MSELoss : Loss {
  MSELoss();
};
struct NABLA_API L1Loss : Loss {
  L1Loss();
};
// output: probabilities in [0, 1]; target of the same shape in [0, 1].
struct NABLA_API BCELoss : Loss {
  BCELoss();
};
// output: logits; target of the same shape in [0, 1].
struct NABLA_API BCEWithLogitsLoss : Loss {
  BCEWithLogitsLoss();
};

}  // namespace nabla
