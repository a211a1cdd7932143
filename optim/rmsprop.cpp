// RMSprop (torch.optim.RMSprop), centered or not, with or without momentum:
//
//   g = grad + weight_decay * param
//   v = alpha * v + (1 - alpha) * g * g                                  (square_avg)
//   centered: ga = alpha * ga + (1 - alpha) * g (as torch's lerp), avg = sqrt(v - ga * ga) + eps
//   else:     avg = sqrt(v) + eps
//   momentum: buf = momentum * buf + g / avg, param = param - lr * buf   (momentum_buffer)
//   else:     param = param - lr * g / avg
#include <nabla/optim/optimizer.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/foreach.h>

namespace nabla {

RMSprop::RMSprop(RMSpropOptions o) : Optimizer(o.lr, "RMSprop"), opts_(o) {
  check_numbers("RMSprop", {{o.alpha, "alpha"}, {o.eps, "eps"}, {o.momentum, "momentum"}, {o.weight_decay, "weight_decay"}});
  NABLA_CHECK(o.alpha >= 0, "RMSprop: alpha {} is negative", o.alpha);
  NABLA_CHECK(o.eps >= 0, "RMSprop: eps {} is negative", o.eps);
  NABLA_CHECK(o.momentum >= 0, "RMSprop: momentum {} is negative", o.momentum);
  NABLA_CHECK(o.weight_decay >= 0, "RMSprop: weight_decay {} is negative", o.weight_decay);
}

RMSprop::RMSprop(ParamList params, RMSpropOptions o) : RMSprop(o) { bind(std::move(params.tensors)); }

void RMSprop::step() {
  const RMSpropOptions& o = opts_;
  Batch b = gather({true, o.momentum > 0, o.centered});
  if (b.empty()) return;
  const std::vector<Tensor>& v = b.buffers[0];    // square_avg
  const std::vector<Tensor>& buf = b.buffers[1];  // momentum_buffer (momentum > 0)
  const std::vector<Tensor>& ga = b.buffers[2];   // grad_avg (centered)
  // g: the gradients, or new tensors when they change (a parameter's .grad stays as it is).
  const std::vector<Tensor> g = o.weight_decay != 0 ? foreach::add(b.grads, b.params, o.weight_decay) : b.grads;
  foreach::mul_(v, o.alpha);
  foreach::addcmul_(v, g, g, 1 - o.alpha);
  std::vector<Tensor> avg;
  if (o.centered) {
    foreach::lerp_(ga, g, 1 - o.alpha);
    avg = foreach::clone(v);
    foreach::addcmul_(avg, ga, ga, -1);
    foreach::sqrt_(avg);
  } else {
    avg = foreach::sqrt(v);
  }
  foreach::add_(avg, o.eps);
  if (o.momentum > 0) {
    foreach::mul_(buf, o.momentum);
    foreach::addcdiv_(buf, g, avg);
    foreach::add_(b.params, buf, -lr_);
  } else {
    foreach::addcdiv_(b.params, g, avg, -lr_);
  }
  advance(b);
}

std::vector<const char*> RMSprop::buffer_names() const { return {"square_avg", "momentum_buffer", "grad_avg"}; }

std::vector<std::pair<std::string, double>> RMSprop::hyperparameters() const {
  return {{"alpha", opts_.alpha},
          {"eps", opts_.eps},
          {"weight_decay", opts_.weight_decay},
          {"momentum", opts_.momentum},
          {"centered", opts_.centered ? 1.0 : 0.0}};
}

}  // namespace nabla
