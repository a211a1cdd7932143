// Optimizers: each reads its parameters' .grad() and updates them in place, all the parameters
// that have a gradient at once, with the multi-tensor ops of core/ops/foreach.h (a few kernel
// launches per step, however many parameters). Formulas and defaults are torch.optim's; each
// optimizer's step is written out in its own file (sgd.cpp, adam.cpp, adagrad.cpp, rmsprop.cpp).
//
//   nabla::Adam opt(model.parameters(), {.lr = 1e-3});
//   opt.zero_grad(); loss.backward(); opt.step();
//
// A parameter whose gradient is undefined is skipped and its state does not advance. State
// tensors are created at a parameter's first update, on its device, so a model may be moved to
// another device after its optimizer was made (but before the first step).
//
// An optimizer made without parameters, nabla::Adam({.lr = 1e-3}), is bound to them later:
// Model::compile does that (or call bind()). Optimizers move but do not copy.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

// The parameters given to an optimizer: a vector (model.parameters()) or a braced list {a, b}.
// A type of its own so that nabla::Adam({.lr = 1e-3}) means options, not a list of tensors.
struct ParamList {
  ParamList(std::vector<Tensor> params) : tensors(std::move(params)) {}
  ParamList(std::initializer_list<Tensor> params) : tensors(params) {}
  std::vector<Tensor> tensors;
};

class NABLA_API Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr, const char* name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;

  // One update of every parameter that has a gradient. Throws when not bound to parameters.
  virtual void step() = 0;
  void zero_grad(bool set_to_none = true);

  // Gives an unbound optimizer its parameters (checked as the constructor checks them); state
  // starts empty. Throws when it already has parameters.
  void bind(std::vector<Tensor> params);
  bool bound() const { return !params_.empty(); }

  double lr() const { return lr_; }
  void set_lr(double lr);  // a schedule changes it between steps
  const std::vector<Tensor>& params() const { return params_; }
  const char* name() const { return name_; }

  // Named state, for checkpoints: "<param index>.<buffer>" -> tensor; "<i>.step" is an int64
  // scalar. Parameters not yet updated have no entries. The tensors are the live state, not
  // copies.
  std::vector<std::pair<std::string, Tensor>> state() const;
  // Replaces the whole state with `state` as state() names it (the tensors are copied onto each
  // parameter's device and dtype); parameters without a "<i>.step" entry start afresh. Checks
  // every entry (index, buffer name, shape) before changing anything.
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state);
  // The options other than lr, by their torch.optim names ("beta1", "weight_decay", ...), for
  // checkpoints and messages; booleans as 0/1.
  virtual std::vector<std::pair<std::string, double>> hyperparameters() const = 0;

 protected:
  // An unbound optimizer (see bind()).
  Optimizer(double lr, const char* name);
  // Checks the options of optimizer `name` that must be numbers (a NaN is "not a number", before
  // the range checks that would call it negative).
  static void check_numbers(const char* name, std::initializer_list<std::pair<double, const char*>> options);
  // Names of the state buffers, in Slot::buffers order.
  virtual std::vector<const char*> buffer_names() const = 0;

  struct Slot {
    int64_t step = 0;
    std::vector<Tensor> buffers;  // meaning per optimizer
  };
  // The parameters that one step updates (those with a gradient), as lists for the foreach ops:
  // entry j is parameter index[j], its gradient, buffers[k][j] (its slot's buffer k) and
  // steps[j], the count of this update (1 at the parameter's first).
  struct Batch {
    std::vector<size_t> index;
    std::vector<Tensor> params, grads;
    std::vector<std::vector<Tensor>> buffers;
    std::vector<int64_t> steps;
    bool empty() const { return params.empty(); }
  };
  // Gathers the parameters that have a gradient and checks them: each gradient and buffer has
  // its parameter's shape, dtype and device, and all are contiguous and floating (an error names
  // the optimizer and the parameter, and changes nothing). On first use a slot gets one buffer
  // per entry of `used`: a zero tensor where true, undefined where false. Throws when unbound.
  Batch gather(const std::vector<bool>& used);
  // Counts the update of every parameter of b (once the step is done).
  void advance(const Batch& b);
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

class NABLA_API SGD : public Optimizer {
 public:
  explicit SGD(ParamList params, SGDOptions opts = {});
  explicit SGD(SGDOptions opts = {});  // unbound
  void step() override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  const SGDOptions& options() const { return opts_; }

 private:
  std::vector<const char*> buffer_names() const override;
  SGDOptions opts_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // L2, added to the gradient
};

class NABLA_API Adam : public Optimizer {
 public:
  explicit Adam(ParamList params, AdamOptions opts = {});
  explicit Adam(AdamOptions opts = {});  // unbound
  void step() override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  const AdamOptions& options() const { return opts_; }

 protected:
  Adam(ParamList params, AdamOptions opts, bool decoupled, const char* name);
  Adam(AdamOptions opts, bool decoupled, const char* name);  // unbound

 private:
  std::vector<const char*> buffer_names() const override;
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

class NABLA_API AdamW : public Adam {
 public:
  explicit AdamW(ParamList params, AdamWOptions opts = {});
  explicit AdamW(AdamWOptions opts = {});  // unbound
};

struct AdagradOptions {
  double lr = 0.01;
  double lr_decay = 0;
  double weight_decay = 0;
  double eps = 1e-10;
  double initial_accumulator_value = 0;
};

class NABLA_API Adagrad : public Optimizer {
 public:
  explicit Adagrad(ParamList params, AdagradOptions opts = {});
  explicit Adagrad(AdagradOptions opts = {});  // unbound
  void step() override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  const AdagradOptions& options() const { return opts_; }

 private:
  std::vector<const char*> buffer_names() const override;
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

class NABLA_API RMSprop : public Optimizer {
 public:
  explicit RMSprop(ParamList params, RMSpropOptions opts = {});
  explicit RMSprop(RMSpropOptions opts = {});  // unbound
  void step() override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  const RMSpropOptions& options() const { return opts_; }

 private:
  std::vector<const char*> buffer_names() const override;
  RMSpropOptions opts_;
};

}  // namespace nabla
