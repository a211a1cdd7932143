// In-place optimizer updates, never recorded. An optimizer (optim/) gathers the parameters it
// updates this step, with their gradients and state tensors, into one Group; each function
// checks them and updates the whole group with one backend call per (device, dtype), which is
// one kernel launch on a GPU. Formulas are those of torch.optim's docs.
#pragma once

#include <nabla/core/tensor.h>

#include <vector>

namespace nabla::update {

struct Group {
  std::vector<Tensor> params;  // contiguous float tensors
  std::vector<Tensor> grads;   // same shape, dtype and device as params[i]
  // Per-optimizer state, each empty or one entry per parameter (undefined where unused).
  std::vector<Tensor> state0, state1, state2;
  std::vector<int64_t> steps;  // updates of params[i] so far, this one included (>= 1)
};

void sgd(const Group& g, double lr, double momentum, double dampening, double weight_decay, bool nesterov);
// state0 = exp_avg, state1 = exp_avg_sq. decoupled = AdamW's weight decay.
void adam(const Group& g, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled);
// state0 = sum of squares.
void adagrad(const Group& g, double lr, double lr_decay, double weight_decay, double eps);
// state0 = square_avg, state1 = momentum buffer (momentum > 0), state2 = grad_avg (centered).
void rmsprop(const Group& g, double lr, double alpha, double eps, double weight_decay, double momentum,
             bool centered);

}  // namespace nabla::update
