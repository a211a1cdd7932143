// Optimizer updates: checks, then one kernel per parameter tensor.
#include <nabla/core/ops/optim.h>

#include <nabla/core/ops/util.h>

namespace nabla::update {

using detail::be;

namespace {

void check_state(const Tensor& param, const Tensor& t, const char* op, const char* what) {
  detail::check_same(param, t, op, "param", what);
  NABLA_CHECK(t.shape() == param.shape(), "{}: {} has shape {}, expected the parameter's {}", op, what,
              shape_str(t.shape()), shape_str(param.shape()));
  NABLA_CHECK(t.is_contiguous(), "{}: {} {} is not contiguous", op, what, shape_str(t.shape()));
}

void check_param(const Tensor& param, const Tensor& grad, const char* op) {
  detail::check_float(param, op, "param");
  NABLA_CHECK(param.is_contiguous(), "{}: parameter {} is not contiguous", op, shape_str(param.shape()));
  check_state(param, grad, op, "grad");
}

}  // namespace

void sgd(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool first_step) {
  check_param(param, grad, "SGD");
  if (momentum != 0) check_state(param, momentum_buf, "SGD", "momentum buffer");
  if (param.numel() == 0) return;
  be(param).sgd_step(param.dtype(), param.data_ptr(), grad.data_ptr(), momentum != 0 ? momentum_buf.data_ptr() : nullptr,
                     param.numel(), lr, momentum, dampening, weight_decay, nesterov, first_step);
}

void adam(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled, int64_t step) {
  const char* op = decoupled ? "AdamW" : "Adam";
  check_param(param, grad, op);
  check_state(param, m, op, "first moment");
  check_state(param, v, op, "second moment");
  NABLA_CHECK(step >= 1, "{}: step counts from 1, got {}", op, step);
  if (param.numel() == 0) return;
  be(param).adam_step(param.dtype(), param.data_ptr(), grad.data_ptr(), m.data_ptr(), v.data_ptr(), param.numel(), lr,
                      beta1, beta2, eps, weight_decay, decoupled, step);
}

void adagrad(Tensor& param, const Tensor& grad, Tensor& sum, double lr, double lr_decay, double weight_decay,
             double eps, int64_t step) {
  check_param(param, grad, "Adagrad");
  check_state(param, sum, "Adagrad", "sum of squares");
  NABLA_CHECK(step >= 1, "Adagrad: step counts from 1, got {}", step);
  if (param.numel() == 0) return;
  be(param).adagrad_step(param.dtype(), param.data_ptr(), grad.data_ptr(), sum.data_ptr(), param.numel(), lr, lr_decay,
                         weight_decay, eps, step);
}

void rmsprop(Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor& momentum_buf, Tensor& grad_avg, double lr,
             double alpha, double eps, double weight_decay, double momentum, bool centered) {
  check_param(param, grad, "RMSprop");
  check_state(param, square_avg, "RMSprop", "square average");
  if (momentum > 0) check_state(param, momentum_buf, "RMSprop", "momentum buffer");
  if (centered) check_state(param, grad_avg, "RMSprop", "gradient average");
  if (param.numel() == 0) return;
  be(param).rmsprop_step(param.dtype(), param.data_ptr(), grad.data_ptr(), square_avg.data_ptr(),
                         momentum > 0 ? momentum_buf.data_ptr() : nullptr, centered ? grad_avg.data_ptr() : nullptr,
                         param.numel(), lr, alpha, eps, weight_decay, momentum, centered);
}

}  // namespace nabla::update
