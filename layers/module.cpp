#include <nabla/layers/module.h>

#include <nabla/core/error.h>

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

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters()) out.push_back(p);
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
  return *this;
}

Module& Module::to(DType dtype) {
  NABLA_CHECK(is_floating(dtype), "{}: parameters must be float32 or float64, asked for {}", type_name(), dtype);
  for (Tensor& p : parameters()) p.set_data(p.detach().to(dtype));
  return *this;
}

void Module::zero_grad(bool set_to_none) {
  for (Tensor& p : parameters()) p.zero_grad(set_to_none);
}

}  // namespace nabla
