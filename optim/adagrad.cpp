// Adagrad (torch.optim.Adagrad), with learning-rate decay over each parameter's own step count t:
//
//   g = grad + weight_decay * param
//   sum = sum + g * g                               (sum starts at initial_accumulator_value)
//   param = param - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)
#include <nabla/optim/optimizer.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/foreach.h>

namespace nabla {

Adagrad::Adagrad(AdagradOptions o) : Optimizer(o.lr, "Adagrad"), opts_(o) {
  check_numbers("Adagrad", {{o.lr_decay, "lr_decay"}, {o.weight_decay, "weight_decay"}, {o.eps, "eps"},
                            {o.initial_accumulator_value, "initial_accumulator_value"}});
  NABLA_CHECK(o.lr_decay >= 0, "Adagrad: lr_decay {} is negative", o.lr_decay);
  NABLA_CHECK(o.weight_decay >= 0, "Adagrad: weight_decay {} is negative", o.weight_decay);
  NABLA_CHECK(o.eps >= 0, "Adagrad: eps {} is negative", o.eps);
  NABLA_CHECK(o.initial_accumulator_value >= 0, "Adagrad: initial_accumulator_value {} is negative",
              o.initial_accumulator_value);
}

Adagrad::Adagrad(ParamList params, AdagradOptions o) : Adagrad(o) { bind(std::move(params.tensors)); }

void Adagrad::step() {
  const AdagradOptions& o = opts_;
  Batch b = gather({true});
  if (b.empty()) return;
  const std::vector<Tensor>& sum = b.buffers[0];
  if (o.initial_accumulator_value != 0)
    for (size_t j = 0; j < b.steps.size(); ++j)
      if (b.steps[j] == 1) Tensor(sum[j]).fill_(o.initial_accumulator_value);
  // g: the gradients, or new tensors when they change (a parameter's .grad stays as it is).
  const std::vector<Tensor> g = o.weight_decay != 0 ? foreach::add(b.grads, b.params, o.weight_decay) : b.grads;
  foreach::addcmul_(sum, g, g);
  // Per parameter, from its own step count: -lr / (1 + (t - 1) * lr_decay).
  std::vector<double> step_size;
  for (int64_t t : b.steps) step_size.push_back(-lr_ / (1 + double(t - 1) * o.lr_decay));
  const std::vector<Tensor> denom = foreach::sqrt(sum);
  foreach::add_(denom, o.eps);
  foreach::addcdiv_(b.params, g, denom, step_size);
  advance(b);
}

std::vector<const char*> Adagrad::buffer_names() const { return {"sum"}; }

std::vector<std::pair<std::string, double>> Adagrad::hyperparameters() const {
  return {{"lr_decay", opts_.lr_decay},
          {"weight_decay", opts_.weight_decay},
          {"eps", opts_.eps},
          {"initial_accumulator_value", opts_.initial_accumulator_value}};
}

}  // namespace nabla
