// Module: the base of every layer and model.
//
// A module owns named parameters (tensors that require grad) and named child modules. Names
// follow PyTorch's state_dict: a Sequential's children are "0", "1", …, so the first Dense's
// weight is "0.weight". Modules are held through shared_ptr by their parents; a layer object
// itself is a cheap value whose parameters are shared handles (see Tensor).
#pragma once

#include <nabla/export.h>

#include <nabla/core/anomaly.h>
#include <nabla/core/tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

class NABLA_API Module {
 public:
  virtual ~Module() = default;

  // The computation. x's shape conventions are the layer's (documented on each).
  virtual Tensor forward(const Tensor& x) = 0;
  // forward(x); in anomaly mode, ops it records name this module (to_string()) as their layer.
  Tensor operator()(const Tensor& x) {
    if (!anomaly_enabled()) return forward(x);
    AnomalyLayer layer(to_string());
    return forward(x);
  }

  // "Dense", "ReLU", …
  virtual std::string type_name() const = 0;
  // "Dense(784->256, bias)": type and configuration, used in messages and summaries.
  virtual std::string to_string() const { return type_name(); }

  // Parameters of this module and, recursively, of its children, in registration order; a tensor
  // reachable under two names (a layer used twice) comes once, as an optimizer needs it.
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  int64_t num_parameters() const;
  // Buffers: state that is saved and moved with the module but not trained (BatchNorm's running
  // statistics), named like parameters ("1.running_mean"), in registration order.
  std::vector<Tensor> buffers() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Training mode (the default) versus evaluation mode (Dropout off, …), recursively.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves (or converts) every parameter and buffer in place: tensors keep their identity, so an
  // optimizer created before the move still updates them. Converting the dtype leaves integer
  // buffers (counters) as they are.
  Module& to(Device device);
  Module& to(DType dtype);
  void zero_grad(bool set_to_none = true);

  // Tells this module and, recursively, its children that their parameters and buffers were
  // overwritten in place (a checkpoint was loaded), for modules that keep host copies of
  // buffer values (BatchNorm's batch count).
  void state_loaded();

 protected:
  Module() = default;
  Module(const Module&) = default;
  Module& operator=(const Module&) = default;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  // Registers t (made to require grad) under `name`; returns it.
  Tensor register_parameter(const std::string& name, Tensor t);
  void register_module(const std::string& name, std::shared_ptr<Module> m);
  // Registers a buffer (never requires grad) under `name`; returns it.
  Tensor register_buffer(const std::string& name, Tensor t);
  // See state_loaded(): refresh host copies of buffer values here. May read the device.
  virtual void on_state_loaded() {}

 private:
  void collect(const std::string& prefix, bool buffers, std::vector<std::pair<std::string, Tensor>>& out) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Holds a module as a shared_ptr whatever was passed: a layer value, or a pointer to one.
template <typename M>
std::shared_ptr<Module> share_module(M&& m) {
  using T = std::decay_t<M>;
  if constexpr (std::is_convertible_v<T, std::shared_ptr<Module>>) {
    return std::forward<M>(m);
  } else {
    static_assert(std::is_base_of_v<Module, T>, "expected a nabla::Module");
    return std::make_shared<T>(std::forward<M>(m));
  }
}

}  // namespace nabla
