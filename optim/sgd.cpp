// SGD (torch.optim.SGD), with momentum, dampening, Nesterov momentum and L2 weight decay:
//
//   g = grad + weight_decay * param
//   buf = g at a parameter's first update, else momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf                    (with momentum)
//   param = param - lr * g
#include <nabla/optim/optimizer.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/foreach.h>

namespace nabla {

namespace {

// The entries of `list` at `indices`.
std::vector<Tensor> pick(const std::vector<Tensor>& list, const std::vector<size_t>& indices) {
  std::vector<Tensor> out;
  out.reserve(indices.size());
  for (size_t j : indices) out.push_back(list[j]);
  return out;
}

}  // namespace

SGD::SGD(SGDOptions o) : Optimizer(o.lr, "SGD"), opts_(o) {
  check_numbers("SGD", {{o.momentum, "momentum"}, {o.dampening, "dampening"}, {o.weight_decay, "weight_decay"}});
  NABLA_CHECK(o.momentum >= 0, "SGD: momentum {} is negative", o.momentum);
  NABLA_CHECK(o.weight_decay >= 0, "SGD: weight_decay {} is negative", o.weight_decay);
  NABLA_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
              "SGD: nesterov needs momentum > 0 and dampening 0 (got momentum {}, dampening {})", o.momentum,
              o.dampening);
}

SGD::SGD(ParamList params, SGDOptions o) : SGD(o) { bind(std::move(params.tensors)); }

void SGD::step() {
  const SGDOptions& o = opts_;
  Batch b = gather({o.momentum != 0});  // buffers: momentum_buffer
  if (b.empty()) return;
  // g: the gradients, or new tensors when they change (a parameter's .grad stays as it is).
  std::vector<Tensor> g = o.weight_decay != 0 ? foreach::add(b.grads, b.params, o.weight_decay) : b.grads;
  if (o.momentum != 0) {
    const std::vector<Tensor>& buf = b.buffers[0];
    std::vector<size_t> first, later;
    for (size_t j = 0; j < b.steps.size(); ++j) (b.steps[j] == 1 ? first : later).push_back(j);
    foreach::copy_(pick(buf, first), pick(g, first));
    const std::vector<Tensor> buf_later = pick(buf, later);
    foreach::mul_(buf_later, o.momentum);
    foreach::add_(buf_later, pick(g, later), 1 - o.dampening);
    if (o.nesterov) {
      if (o.weight_decay == 0) g = foreach::clone(g);
      foreach::add_(g, buf, o.momentum);
    } else {
      g = buf;
    }
  }
  foreach::add_(b.params, g, -lr_);
  advance(b);
}

std::vector<const char*> SGD::buffer_names() const { return {"momentum_buffer"}; }

std::vector<std::pair<std::string, double>> SGD::hyperparameters() const {
  return {{"momentum", opts_.momentum},
          {"dampening", opts_.dampening},
          {"weight_decay", opts_.weight_decay},
          {"nesterov", opts_.nesterov ? 1.0 : 0.0}};
}

}  // namespace nabla
