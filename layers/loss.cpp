#include <nabla/layers/loss.h>

#include <nabla/core/error.h>

#include <utility>

namespace nabla {

namespace {

using LossFn = Tensor (*)(const Tensor&, const Tensor&, Reduction);

const char* name_of(LossFn fn) {
  const std::pair<LossFn, const char*> known[] = {
      {&cross_entropy, "cross_entropy"},
      {&nll_loss, "nll_loss"},
      {&mse_loss, "mse"},
      {&l1_loss, "l1"},
      {&binary_cross_entropy, "binary_cross_entropy"},
      {&binary_cross_entropy_with_logits, "binary_cross_entropy_with_logits"}};
  for (const auto& [f, name] : known)
    if (f == fn) return name;
  return "loss";
}

}  // namespace

Loss::Loss(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {
  NABLA_CHECK(fn_ != nullptr, "Loss '{}': the function is empty", name_);
}

Loss::Loss(LossFn fn)
    : Loss(name_of(fn), [fn](const Tensor& output, const Tensor& target) { return fn(output, target, Reduction::mean); }) {
  NABLA_CHECK(fn != nullptr, "Loss: the function is null");
}

Tensor Loss::operator()(const Tensor& output, const Tensor& target) const { return fn_(output, target); }

bool Loss::is_binary() const { return name_ == "binary_cross_entropy" || from_logits(); }
bool Loss::from_logits() const { return name_ == "binary_cross_entropy_with_logits"; }

CrossEntropyLoss::CrossEntropyLoss() : Loss(&cross_entropy) {}
NLLLoss::NLLLoss() : Loss(&nll_loss) {}
MSELoss::MSELoss() : Loss(&mse_loss) {}
L1Loss::L1Loss() : Loss(&l1_loss) {}
BCELoss::BCELoss() : Loss(&binary_cross_entropy) {}
BCEWithLogitsLoss::BCEWithLogitsLoss() : Loss(&binary_cross_entropy_with_logits) {}

}  // namespace nabla
