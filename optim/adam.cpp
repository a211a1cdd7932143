// Adam (torch.optim.Adam, L2 weight decay) and AdamW (torch.optim.AdamW, decoupled weight decay),
// with bias corrections from each parameter's own step count t:
//
//   Adam:  g = grad + weight_decay * param          AdamW:  param = param * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g                 (exp_avg, as torch's lerp)
//   v = beta2 * v + (1 - beta2) * g * g             (exp_avg_sq)
//   param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#include <nabla/optim/optimizer.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/foreach.h>

#include <cmath>

namespace nabla {

static void check_adam(const AdamOptions& o, const char* name) {
  NABLA_CHECK(o.beta1 >= 0 && o.beta1 < 1, "{}: beta1 {} is outside [0, 1)", name, o.beta1);
  NABLA_CHECK(o.beta2 >= 0 && o.beta2 < 1, "{}: beta2 {} is outside [0, 1)", name, o.beta2);
  NABLA_CHECK(o.eps >= 0, "{}: eps {} is negative", name, o.eps);
  NABLA_CHECK(o.weight_decay >= 0, "{}: weight_decay {} is negative", name, o.weight_decay);
}

Adam::Adam(AdamOptions o) : Adam(o, false, "Adam") {}
Adam::Adam(ParamList params, AdamOptions o) : Adam(std::move(params), o, false, "Adam") {}

Adam::Adam(AdamOptions o, bool decoupled, const char* name)
    : Optimizer(o.lr, name), opts_(o), decoupled_(decoupled) {
  check_numbers(name, {{o.beta1, "beta1"}, {o.beta2, "beta2"}, {o.eps, "eps"}, {o.weight_decay, "weight_decay"}});
  check_adam(o, name);
}

Adam::Adam(ParamList params, AdamOptions o, bool decoupled, const char* name) : Adam(o, decoupled, name) {
  bind(std::move(params.tensors));
}

void Adam::step() {
  const AdamOptions& o = opts_;
  Batch b = gather({true, true});
  if (b.empty()) return;
  const std::vector<Tensor>& m = b.buffers[0];  // exp_avg
  const std::vector<Tensor>& v = b.buffers[1];  // exp_avg_sq
  // g: the gradients, or new tensors when they change (a parameter's .grad stays as it is).
  std::vector<Tensor> g = b.grads;
  if (o.weight_decay != 0) {
    if (decoupled_)
      foreach::mul_(b.params, 1 - lr_ * o.weight_decay);
    else
      g = foreach::add(b.grads, b.params, o.weight_decay);
  }
  foreach::lerp_(m, g, 1 - o.beta1);
  foreach::mul_(v, o.beta2);
  foreach::addcmul_(v, g, g, 1 - o.beta2);
  // Per parameter, from its own step count: -lr / (1 - beta1^t) and sqrt(1 - beta2^t).
  std::vector<double> step_size, bias2_sqrt;
  for (int64_t t : b.steps) {
    step_size.push_back(-lr_ / (1 - std::pow(o.beta1, double(t))));
    bias2_sqrt.push_back(std::sqrt(1 - std::pow(o.beta2, double(t))));
  }
  const std::vector<Tensor> denom = foreach::sqrt(v);
  foreach::div_(denom, bias2_sqrt);
  foreach::add_(denom, o.eps);
  foreach::addcdiv_(b.params, m, denom, step_size);
  advance(b);
}

std::vector<const char*> Adam::buffer_names() const { return {"exp_avg", "exp_avg_sq"}; }

std::vector<std::pair<std::string, double>> Adam::hyperparameters() const {
  return {{"beta1", opts_.beta1}, {"beta2", opts_.beta2}, {"eps", opts_.eps}, {"weight_decay", opts_.weight_decay}};
}

AdamW::AdamW(AdamWOptions o) : Adam({o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true, "AdamW") {}
AdamW::AdamW(ParamList params, AdamWOptions o)
    : Adam(std::move(params), {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true, "AdamW") {}

}  // namespace nabla
