#include <nabla/optim/optimizer.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

namespace nabla {

void Optimizer::check_numbers(const char* name, std::initializer_list<std::pair<double, const char*>> options) {
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

Optimizer::Batch Optimizer::gather(const std::vector<bool>& used) {
  NABLA_CHECK(bound(), "{}: step() on an optimizer without parameters (bind it, or compile a Model with it)", name_);
  const std::vector<const char*> names = buffer_names();
  // Everything is checked before anything changes.
  auto check_like = [&](const Tensor& p, const Tensor& t, size_t i, const std::string& what) {
    NABLA_CHECK_SHAPE(t.shape() == p.shape(), "{}: parameter {} {}: {} has shape {}, expected the parameter's {}",
                      name_, i, shape_str(p.shape()), what, shape_str(t.shape()), shape_str(p.shape()));
    NABLA_CHECK_DTYPE(t.dtype() == p.dtype(), "{}: parameter {} {}: {} is {}, expected the parameter's {}", name_, i,
                      shape_str(p.shape()), what, t.dtype(), p.dtype());
    NABLA_CHECK(t.device() == p.device(), "{}: parameter {} {}: {} is on {}, expected the parameter's {}", name_, i,
                shape_str(p.shape()), what, t.device(), p.device());
    NABLA_CHECK(t.is_contiguous(), "{}: parameter {} {}: {} is not contiguous", name_, i, shape_str(p.shape()), what);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    NABLA_CHECK_DTYPE(is_floating(p.dtype()), "{}: parameter {} {} is {}, expected float32 or float64", name_, i,
                      shape_str(p.shape()), p.dtype());
    NABLA_CHECK(p.is_contiguous(), "{}: parameter {} {} is not contiguous", name_, i, shape_str(p.shape()));
    check_like(p, grad, i, "gradient");
    const Slot& s = slots_[i];
    for (size_t k = 0; k < s.buffers.size() && k < used.size(); ++k)
      if (used[k] && s.buffers[k].defined())
        check_like(p, s.buffers[k], i, fmt::format("state '{}'", k < names.size() ? names[k] : "?"));
  }
  Batch b;
  b.buffers.resize(used.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = params_[i].grad();
    if (!grad.defined()) continue;
    Slot& s = slots_[i];
    // Empty at the first update; after load_state, a buffer the checkpoint lacked is made here.
    s.buffers.resize(std::max(s.buffers.size(), used.size()));
    for (size_t k = 0; k < used.size(); ++k) {
      if (used[k] && !s.buffers[k].defined()) s.buffers[k] = zeros_like(params_[i]);
      b.buffers[k].push_back(s.buffers[k]);
    }
    b.index.push_back(i);
    b.params.push_back(params_[i]);
    b.grads.push_back(grad);
    b.steps.push_back(s.step + 1);
  }
  return b;
}

void Optimizer::advance(const Batch& b) {
  for (size_t i : b.index) ++slots_[i].step;
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
      NABLA_CHECK_SHAPE(t.numel() == 1, "{}: state entry '{}' has shape {}, expected a scalar", name_, key,
                        shape_str(t.shape()));
      const double v = t.item();
      NABLA_CHECK(v >= 1 && v == std::floor(v), "{}: state entry '{}' is {}, expected a count >= 1", name_, key, v);
      slots[i].step = static_cast<int64_t>(v);
      has_step[i] = true;
      continue;
    }
    size_t b = 0;
    while (b < names.size() && what != names[b]) ++b;
    NABLA_CHECK(b < names.size(), "{}: state entry '{}': {} has no state named '{}'", name_, key, name_, what);
    NABLA_CHECK_SHAPE(t.shape() == params_[i].shape(), "{}: state entry '{}' has shape {}, parameter {} has {}", name_,
                      key, shape_str(t.shape()), i, shape_str(params_[i].shape()));
    if (slots[i].buffers.size() < names.size()) slots[i].buffers.resize(names.size());
    slots[i].buffers[b] = t.detach().to(params_[i].device()).to(params_[i].dtype()).clone();
  }
  for (size_t i = 0; i < slots.size(); ++i)
    NABLA_CHECK(has_step[i] || slots[i].buffers.empty(), "{}: state of parameter {} has buffers but no '{}.step'",
                name_, i, i);
  slots_ = std::move(slots);
}

}  // namespace nabla
