// Optimizers: each reads its parameters' .grad() and updates them in place, all the parameters
// that have a gradient in one call of core/ops/optim.h (one kernel launch per device and dtype).
// Formulas and defaults are torch.optim's.
//
//   nabla::Adam opt(model.parameters(), {.lr = 1e-3});
//   opt.zero_grad(); loss.backward(); opt.step();
//
// A parameter whose gradient is undefined is skipped and its state does not advance. State
// tensors are created at a parameter's first update, on its device, so a model may be moved to
// another device after its optimizer was made (but before the first step).
#pragma once

#include <nabla/core/ops/optim.h>
#include <nabla/core/tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace nabla {

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr, const char* name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  void zero_grad(bool set_to_none = true);

  double lr() const { return lr_; }
  void set_lr(double lr);  // a schedule changes it between steps
  const std::vector<Tensor>& params() const { return params_; }
  const char* name() const { return name_; }

  // Named state, for checkpoints: "<param index>.<buffer>" -> tensor; "<i>.step" is an int64
  // scalar. Parameters not yet updated have no entries.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;

 protected:
  struct Slot {
    int64_t step = 0;
    std::vector<Tensor> buffers;  // meaning per optimizer
  };
  // Updates every parameter that has a gradient with one call of `update` on the group of them
  // (core/ops/optim.h). On first use a slot gets one buffer per entry of `used`: a zero tensor
  // where true, undefined where false. On an error, no step count advances.
  template <typename F>
  void update_all(const std::vector<bool>& used, F&& update);
  std::vector<std::pair<std::string, Tensor>> named_state(const std::vector<const char*>& buffer_names) const;

  std::vector<Tensor> params_;
  std::vector<Slot> slots_;
  double lr_;
  const char* name_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions opts = {});
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  const SGDOptions& options() const { return opts_; }

 private:
  SGDOptions opts_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // L2, added to the gradient
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions opts = {});
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  const AdamOptions& options() const { return opts_; }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions opts, bool decoupled, const char* name);

 private:
  AdamOptions opts_;
  bool decoupled_;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: param *= 1 - lr * weight_decay
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions opts = {});
};

struct AdagradOptions {
  double lr = 0.01;
  double lr_decay = 0;
  double weight_decay = 0;
  double eps = 1e-10;
  double initial_accumulator_value = 0;
};

class Adagrad : public Optimizer {
 public:
  explicit Adagrad(std::vector<Tensor> params, AdagradOptions opts = {});
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  const AdagradOptions& options() const { return opts_; }

 private:
  AdagradOptions opts_;
};

struct RMSpropOptions {
  double lr = 0.01;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;
};

class RMSprop : public Optimizer {
 public:
  explicit RMSprop(std::vector<Tensor> params, RMSpropOptions opts = {});
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  const RMSpropOptions& options() const { return opts_; }

 private:
  RMSpropOptions opts_;
};

}  // namespace nabla
