#include <nabla/layers/module.h>

#include <nabla/core/error.h>

#include <unordered_set>

namespace nabla {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  NABLA_CHECK(t.defined(), "{}: parameter '{}' is undefined", type_name(), name);
  for (const auto& [n, p] : params_)
    NABLA_CHECK(n != name, "{}: parameter '{}' registered twice", type_name(), name);
  if (!t.requires_grad()) t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::register_module(const std::string& name, std::shared_ptr<Module> m) {
  NABLA_CHECK(m != nullptr, "{}: child module '{}' is null", type_name(), name);
  for (const auto& [n, c] : children_)
    NABLA_CHECK(n != name, "{}: child module '{}' registered twice", type_name(), name);
  children_.emplace_back(name, std::move(m));
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  NABLA_CHECK(t.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  for (const auto& [n, b] : buffers_) NABLA_CHECK(n != name, "{}: buffer '{}' registered twice", type_name(), name);
  for (const auto& [n, p] : params_)
    NABLA_CHECK(n != name, "{}: buffer '{}' has the name of a parameter", type_name(), name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix, bool buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, p] : buffers ? buffers_ : params_) out.emplace_back(prefix + n, p);
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, out);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& [n, b] : named_buffers()) out.push_back(b);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  // Each tensor once, as PyTorch's parameters() gives it: a layer used twice (shared weights)
  // has its parameters under two names, but an optimizer must update them once.
  std::vector<Tensor> out;
  std::unordered_set<const TensorImpl*> seen;
  for (auto& [n, p] : named_parameters())
    if (seen.insert(p.impl()).second) out.push_back(p);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

Module& Module::to(Device device) {
  for (Tensor& p : parameters()) p.set_data(p.detach().to(device));
  for (Tensor& b : buffers()) b.set_data(b.to(device));
  return *this;
}

Module& Module::to(DType dtype) {
  NABLA_CHECK_DTYPE(is_floating(dtype), "{}: parameters must be float32 or float64, asked for {}", type_name(), dtype);
  for (Tensor& p : parameters()) p.set_data(p.detach().to(dtype));
  for (Tensor& b : buffers())
    if (is_floating(b.dtype())) b.set_data(b.to(dtype));
  return *this;
}

void Module::state_loaded() {
  on_state_loaded();
  for (auto& [n, c] : children_) c->state_loaded();
}

void Module::zero_grad(bool set_to_none) {
  for (Tensor& p : parameters()) p.zero_grad(set_to_none);
}

}  // namespace nabla
