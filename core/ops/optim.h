// In-place optimizer updates, one kernel call per parameter tensor, never recorded. Optimizers
// in optim/ keep the state tensors and call these. Formulas are those of torch.optim's docs.
#pragma once

#include <nabla/core/tensor.h>

namespace nabla::update {

void sgd(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum,
         double dampening, double weight_decay, bool nesterov, bool first_step);
// decoupled = AdamW's weight decay. step counts from 1.
void adam(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
          double beta2, double eps, double weight_decay, bool decoupled, int64_t step);
void adagrad(Tensor& param, const Tensor& grad, Tensor& sum, double lr, double lr_decay,
             double weight_decay, double eps, int64_t step);
// momentum_buf used when momentum > 0, grad_avg when centered (pass undefined otherwise).
void rmsprop(Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor& momentum_buf,
             Tensor& grad_avg, double lr, double alpha, double eps, double weight_decay,
             double momentum, bool centered);

}  // namespace nabla::update
