#include <nabla/optim/optimizer.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/optim.h>

namespace nabla {

Optimizer::Optimizer(std::vector<Tensor> params, double lr, const char* name)
    : params_(std::move(params)), lr_(lr), name_(name) {
  NABLA_CHECK(!params_.empty(), "{}: got an empty parameter list", name_);
  for (size_t i = 0; i < params_.size(); ++i) {
    NABLA_CHECK(params_[i].defined(), "{}: parameter {} is an undefined tensor", name_, i);
    NABLA_CHECK(params_[i].requires_grad(), "{}: parameter {} (shape {}) does not require grad", name_, i,
                shape_str(params_[i].shape()));
    NABLA_CHECK(params_[i].is_leaf(), "{}: parameter {} (shape {}) is not a leaf tensor", name_, i,
                shape_str(params_[i].shape()));
  }
  set_lr(lr);
  slots_.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  NABLA_CHECK(lr >= 0, "{}: learning rate {} is negative", name_, lr);
  lr_ = lr;
}

void Optimizer::zero_grad(bool set_to_none) {
  for (Tensor& p : params_) p.zero_grad(set_to_none);
}

template <typename F>
void Optimizer::update_all(const std::vector<bool>& used, F&& update) {
  NoGrad no_grad;
  update::Group g;
  std::vector<size_t> members;
  std::vector<Tensor>* states[3] = {&g.state0, &g.state1, &g.state2};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = params_[i].grad();
    if (!grad.defined()) continue;
    Slot& s = slots_[i];
    if (s.buffers.empty())
      for (bool u : used) s.buffers.push_back(u ? zeros_like(params_[i]) : Tensor());
    members.push_back(i);
    g.params.push_back(params_[i]);
    g.grads.push_back(grad);
    for (size_t k = 0; k < used.size() && k < 3; ++k) states[k]->push_back(s.buffers[k]);
    g.steps.push_back(s.step + 1);
  }
  if (members.empty()) return;
  update(g);  // throws before any tensor changes when a check fails
  for (size_t i : members) ++slots_[i].step;
}

std::vector<std::pair<std::string, Tensor>> Optimizer::named_state(const std::vector<const char*>& names) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.step == 0) continue;
    out.emplace_back(fmt::format("{}.step", i), scalar(static_cast<double>(s.step), {.dtype = DType::int64}));
    for (size_t b = 0; b < s.buffers.size() && b < names.size(); ++b)
      if (s.buffers[b].defined()) out.emplace_back(fmt::format("{}.{}", i, names[b]), s.buffers[b]);
  }
  return out;
}

// ---- SGD ---------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, SGDOptions o) : Optimizer(std::move(params), o.lr, "SGD"), opts_(o) {
  NABLA_CHECK(o.momentum >= 0, "SGD: momentum {} is negative", o.momentum);
  NABLA_CHECK(o.weight_decay >= 0, "SGD: weight_decay {} is negative", o.weight_decay);
  NABLA_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
              "SGD: nesterov needs momentum > 0 and dampening 0 (got momentum {}, dampening {})", o.momentum,
              o.dampening);
}

void SGD::step() {
  update_all({opts_.momentum != 0}, [&](const update::Group& g) {
    update::sgd(g, lr_, opts_.momentum, opts_.dampening, opts_.weight_decay, opts_.nesterov);
  });
}

std::vector<std::pair<std::string, Tensor>> SGD::state() const { return named_state({"momentum_buffer"}); }

// ---- Adam, AdamW -------------------------------------------------------------------------------

static void check_adam(const AdamOptions& o, const char* name) {
  NABLA_CHECK(o.beta1 >= 0 && o.beta1 < 1, "{}: beta1 {} is outside [0, 1)", name, o.beta1);
  NABLA_CHECK(o.beta2 >= 0 && o.beta2 < 1, "{}: beta2 {} is outside [0, 1)", name, o.beta2);
  NABLA_CHECK(o.eps >= 0, "{}: eps {} is negative", name, o.eps);
  NABLA_CHECK(o.weight_decay >= 0, "{}: weight_decay {} is negative", name, o.weight_decay);
}

Adam::Adam(std::vector<Tensor> params, AdamOptions o) : Adam(std::move(params), o, false, "Adam") {}

Adam::Adam(std::vector<Tensor> params, AdamOptions o, bool decoupled, const char* name)
    : Optimizer(std::move(params), o.lr, name), opts_(o), decoupled_(decoupled) {
  check_adam(o, name);
}

void Adam::step() {
  update_all({true, true}, [&](const update::Group& g) {
    update::adam(g, lr_, opts_.beta1, opts_.beta2, opts_.eps, opts_.weight_decay, decoupled_);
  });
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const { return named_state({"exp_avg", "exp_avg_sq"}); }

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions o)
    : Adam(std::move(params), {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true, "AdamW") {}

// ---- Adagrad -----------------------------------------------------------------------------------

Adagrad::Adagrad(std::vector<Tensor> params, AdagradOptions o)
    : Optimizer(std::move(params), o.lr, "Adagrad"), opts_(o) {
  NABLA_CHECK(o.lr_decay >= 0, "Adagrad: lr_decay {} is negative", o.lr_decay);
  NABLA_CHECK(o.weight_decay >= 0, "Adagrad: weight_decay {} is negative", o.weight_decay);
  NABLA_CHECK(o.eps >= 0, "Adagrad: eps {} is negative", o.eps);
  NABLA_CHECK(o.initial_accumulator_value >= 0, "Adagrad: initial_accumulator_value {} is negative",
              o.initial_accumulator_value);
}

void Adagrad::step() {
  update_all({true}, [&](const update::Group& g) {
    if (opts_.initial_accumulator_value != 0)
      for (size_t i = 0; i < g.steps.size(); ++i)
        if (g.steps[i] == 1) Tensor(g.state0[i]).fill_(opts_.initial_accumulator_value);
    update::adagrad(g, lr_, opts_.lr_decay, opts_.weight_decay, opts_.eps);
  });
}

std::vector<std::pair<std::string, Tensor>> Adagrad::state() const { return named_state({"sum"}); }

// ---- RMSprop -----------------------------------------------------------------------------------

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions o)
    : Optimizer(std::move(params), o.lr, "RMSprop"), opts_(o) {
  NABLA_CHECK(o.alpha >= 0, "RMSprop: alpha {} is negative", o.alpha);
  NABLA_CHECK(o.eps >= 0, "RMSprop: eps {} is negative", o.eps);
  NABLA_CHECK(o.momentum >= 0, "RMSprop: momentum {} is negative", o.momentum);
  NABLA_CHECK(o.weight_decay >= 0, "RMSprop: weight_decay {} is negative", o.weight_decay);
}

void RMSprop::step() {
  // buffers: square_avg, momentum_buffer, grad_avg
  update_all({true, opts_.momentum > 0, opts_.centered}, [&](const update::Group& g) {
    update::rmsprop(g, lr_, opts_.alpha, opts_.eps, opts_.weight_decay, opts_.momentum, opts_.centered);
  });
}

std::vector<std::pair<std::string, Tensor>> RMSprop::state() const {
  return named_state({"square_avg", "momentum_buffer", "grad_avg"});
}

}  // namespace nabla
