#include <nabla/optim/optimizer.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/optim.h>

#include <cmath>
#include <map>
#include <tuple>

namespace nabla {

// A NaN option is "not a number", before the range checks that would call it negative.
static void check_numbers(const char* name, std::initializer_list<std::pair<double, const char*>> options) {
  for (const auto& [value, what] : options) check_number(value, name, what);
}

Optimizer::Optimizer(double lr, const char* name) : lr_(lr), name_(name) { set_lr(lr); }

Optimizer::Optimizer(std::vector<Tensor> params, double lr, const char* name) : Optimizer(lr, name) {
  bind(std::move(params));
}

void Optimizer::bind(std::vector<Tensor> params) {
  NABLA_CHECK(params_.empty(), "{}: already bound to {} parameters", name_, params_.size());
  NABLA_CHECK(!params.empty(), "{}: got an empty parameter list", name_);
  for (size_t i = 0; i < params.size(); ++i) {
    NABLA_CHECK(params[i].defined(), "{}: parameter {} is an undefined tensor", name_, i);
    NABLA_CHECK(params[i].requires_grad(), "{}: parameter {} (shape {}) does not require grad", name_, i,
                shape_str(params[i].shape()));
    NABLA_CHECK(params[i].is_leaf(), "{}: parameter {} (shape {}) is not a leaf tensor", name_, i,
                shape_str(params[i].shape()));
  }
  // The same tensor twice (or two handles on the same elements) would be updated twice a step.
  // Views of different parts of one storage (an RNN's flat weights) are distinct parameters.
  std::map<std::tuple<const void*, int64_t, Shape, Shape>, size_t> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    const TensorImpl& t = *params[i].impl();
    auto [it, fresh] = seen.try_emplace({t.storage.get(), t.offset, t.shape, t.strides}, i);
    NABLA_CHECK(fresh,
                "{}: some parameters appear more than once: parameter {} (shape {}) is parameter {} again; each "
                "would be updated twice per step",
                name_, i, shape_str(t.shape), it->second);
  }
  params_ = std::move(params);
  slots_.assign(params_.size(), Slot{});
}

void Optimizer::set_lr(double lr) {
  check_number(lr, name_, "learning rate");
  NABLA_CHECK(lr >= 0, "{}: learning rate {} is negative", name_, lr);
  lr_ = lr;
}

void Optimizer::zero_grad(bool set_to_none) {
  for (Tensor& p : params_) p.zero_grad(set_to_none);
}

template <typename F>
void Optimizer::update_all(const std::vector<bool>& used, F&& update) {
  NABLA_CHECK(bound(), "{}: step() on an optimizer without parameters (bind it, or compile a Model with it)", name_);
  NoGrad no_grad;
  update::Group g;
  std::vector<size_t> members;
  std::vector<Tensor>* states[3] = {&g.state0, &g.state1, &g.state2};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = params_[i].grad();
    if (!grad.defined()) continue;
    Slot& s = slots_[i];
    // Empty at the first update; after load_state, a buffer the checkpoint lacked is made here.
    s.buffers.resize(used.size());
    for (size_t k = 0; k < used.size(); ++k)
      if (used[k] && !s.buffers[k].defined()) s.buffers[k] = zeros_like(params_[i]);
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

std::vector<std::pair<std::string, Tensor>> Optimizer::state() const {
  const std::vector<const char*> names = buffer_names();
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

void Optimizer::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  const std::vector<const char*> names = buffer_names();
  std::vector<Slot> slots(params_.size());
  std::vector<bool> has_step(params_.size(), false);
  for (const auto& [key, t] : state) {
    const size_t dot = key.find('.');
    size_t i = 0;
    const std::string index = key.substr(0, dot), what = dot == std::string::npos ? "" : key.substr(dot + 1);
    const bool numeric = !index.empty() && index.size() < 10 && index.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) i = std::stoul(index);
    NABLA_CHECK(numeric && i < params_.size() && !what.empty(),
                "{}: state entry '{}' does not name one of the {} parameters as '<index>.<name>'", name_, key,
                params_.size());
    NABLA_CHECK(t.defined(), "{}: state entry '{}' is an undefined tensor", name_, key);
    if (what == "step") {
      NABLA_CHECK(t.numel() == 1, "{}: state entry '{}' has shape {}, expected a scalar", name_, key, shape_str(t.shape()));
      const double v = t.item();
      NABLA_CHECK(v >= 1 && v == std::floor(v), "{}: state entry '{}' is {}, expected a count >= 1", name_, key, v);
      slots[i].step = static_cast<int64_t>(v);
      has_step[i] = true;
      continue;
    }
    size_t b = 0;
    while (b < names.size() && what != names[b]) ++b;
    NABLA_CHECK(b < names.size(), "{}: state entry '{}': {} has no state named '{}'", name_, key, name_, what);
    NABLA_CHECK(t.shape() == params_[i].shape(), "{}: state entry '{}' has shape {}, parameter {} has {}", name_, key,
                shape_str(t.shape()), i, shape_str(params_[i].shape()));
    if (slots[i].buffers.size() < names.size()) slots[i].buffers.resize(names.size());
    slots[i].buffers[b] = t.detach().to(params_[i].device()).to(params_[i].dtype()).clone();
  }
  for (size_t i = 0; i < slots.size(); ++i)
    NABLA_CHECK(has_step[i] || slots[i].buffers.empty(), "{}: state of parameter {} has buffers but no '{}.step'",
                name_, i, i);
  slots_ = std::move(slots);
}

// ---- SGD ---------------------------------------------------------------------------------------

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
  update_all({opts_.momentum != 0}, [&](const update::Group& g) {
    update::sgd(g, lr_, opts_.momentum, opts_.dampening, opts_.weight_decay, opts_.nesterov);
  });
}

std::vector<const char*> SGD::buffer_names() const { return {"momentum_buffer"}; }

std::vector<std::pair<std::string, double>> SGD::hyperparameters() const {
  return {{"momentum", opts_.momentum},
          {"dampening", opts_.dampening},
          {"weight_decay", opts_.weight_decay},
          {"nesterov", opts_.nesterov ? 1.0 : 0.0}};
}

// ---- Adam, AdamW -------------------------------------------------------------------------------

static void check_adam(const AdamOptions& o, const char* name) {
  check_numbers(name, {{o.beta1, "beta1"}, {o.beta2, "beta2"}, {o.eps, "eps"}, {o.weight_decay, "weight_decay"}});
  NABLA_CHECK(o.beta1 >= 0 && o.beta1 < 1, "{}: beta1 {} is outside [0, 1)", name, o.beta1);
  NABLA_CHECK(o.beta2 >= 0 && o.beta2 < 1, "{}: beta2 {} is outside [0, 1)", name, o.beta2);
  NABLA_CHECK(o.eps >= 0, "{}: eps {} is negative", name, o.eps);
  NABLA_CHECK(o.weight_decay >= 0, "{}: weight_decay {} is negative", name, o.weight_decay);
}

Adam::Adam(AdamOptions o) : Adam(o, false, "Adam") {}
Adam::Adam(ParamList params, AdamOptions o) : Adam(std::move(params), o, false, "Adam") {}

Adam::Adam(AdamOptions o, bool decoupled, const char* name)
    : Optimizer(o.lr, name), opts_(o), decoupled_(decoupled) {
  check_adam(o, name);
}

Adam::Adam(ParamList params, AdamOptions o, bool decoupled, const char* name) : Adam(o, decoupled, name) {
  bind(std::move(params.tensors));
}

void Adam::step() {
  update_all({true, true}, [&](const update::Group& g) {
    update::adam(g, lr_, opts_.beta1, opts_.beta2, opts_.eps, opts_.weight_decay, decoupled_);
  });
}

std::vector<const char*> Adam::buffer_names() const { return {"exp_avg", "exp_avg_sq"}; }

std::vector<std::pair<std::string, double>> Adam::hyperparameters() const {
  return {{"beta1", opts_.beta1}, {"beta2", opts_.beta2}, {"eps", opts_.eps}, {"weight_decay", opts_.weight_decay}};
}

AdamW::AdamW(AdamWOptions o) : Adam({o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true, "AdamW") {}
AdamW::AdamW(ParamList params, AdamWOptions o)
    : Adam(std::move(params), {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true, "AdamW") {}

// ---- Adagrad -----------------------------------------------------------------------------------

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
  update_all({true}, [&](const update::Group& g) {
    if (opts_.initial_accumulator_value != 0)
      for (size_t i = 0; i < g.steps.size(); ++i)
        if (g.steps[i] == 1) Tensor(g.state0[i]).fill_(opts_.initial_accumulator_value);
    update::adagrad(g, lr_, opts_.lr_decay, opts_.weight_decay, opts_.eps);
  });
}

std::vector<const char*> Adagrad::buffer_names() const { return {"sum"}; }

std::vector<std::pair<std::string, double>> Adagrad::hyperparameters() const {
  return {{"lr_decay", opts_.lr_decay},
          {"weight_decay", opts_.weight_decay},
          {"eps", opts_.eps},
          {"initial_accumulator_value", opts_.initial_accumulator_value}};
}

// ---- RMSprop -----------------------------------------------------------------------------------

RMSprop::RMSprop(RMSpropOptions o) : Optimizer(o.lr, "RMSprop"), opts_(o) {
  check_numbers("RMSprop", {{o.alpha, "alpha"}, {o.eps, "eps"}, {o.momentum, "momentum"}, {o.weight_decay, "weight_decay"}});
  NABLA_CHECK(o.alpha >= 0, "RMSprop: alpha {} is negative", o.alpha);
  NABLA_CHECK(o.eps >= 0, "RMSprop: eps {} is negative", o.eps);
  NABLA_CHECK(o.momentum >= 0, "RMSprop: momentum {} is negative", o.momentum);
  NABLA_CHECK(o.weight_decay >= 0, "RMSprop: weight_decay {} is negative", o.weight_decay);
}

RMSprop::RMSprop(ParamList params, RMSpropOptions o) : RMSprop(o) { bind(std::move(params.tensors)); }

void RMSprop::step() {
  // buffers: square_avg, momentum_buffer, grad_avg
  update_all({true, opts_.momentum > 0, opts_.centered}, [&](const update::Group& g) {
    update::rmsprop(g, lr_, opts_.alpha, opts_.eps, opts_.weight_decay, opts_.momentum, opts_.centered);
  });
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
