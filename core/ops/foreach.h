// Multi-tensor arithmetic, in place, never recorded on the tape: the building blocks of the
// optimizers of optim/, after PyTorch's torch._foreach_* ops.
//
// Each op works on lists of tensors taken pairwise: tensor i of every list has the shape, dtype
// (float32 or float64) and device of x[i], and each is contiguous. A scalar is one value for
// every tensor or one per tensor (Scalars), e.g. a bias correction that depends on a tensor's own
// step count. An op checks all of its arguments before it changes anything (a nabla::Error names
// the op, the tensor's index and what was expected), then makes one backend call per (device,
// dtype) of the tensors in x (on a GPU, one kernel launch for up to a few dozen tensors of any
// sizes). The tensors of x may be of different devices and dtypes; empty tensors are allowed.
// x[i] may be y[i] or z[i], but no other tensor of the call.
//
// Arithmetic is in the tensors' dtype, each product rounded before the sum that uses it, in the
// order written below; scalars are given in double and rounded to the dtype.
//
//   foreach::mul_(exp_avg_sq, beta2);
//   foreach::addcmul_(exp_avg_sq, grads, grads, 1 - beta2);  // v = beta2 v + (1 - beta2) g^2
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <initializer_list>
#include <vector>

namespace nabla::foreach {

using TensorList = std::vector<Tensor>;

// One scalar for every tensor of a list, or one per tensor.
class Scalars {
 public:
  Scalars(double all) : all_(all) {}  // NOLINT(google-explicit-constructor): foreach::mul_(x, 0.9)
  Scalars(std::vector<double> per_tensor) : per_tensor_(std::move(per_tensor)), one_each_(true) {}  // NOLINT
  bool one_each() const { return one_each_; }
  size_t size() const { return per_tensor_.size(); }
  double operator[](size_t i) const { return one_each_ ? per_tensor_[i] : all_; }

 private:
  double all_ = 0;
  std::vector<double> per_tensor_;
  bool one_each_ = false;
};

// ---- in place: x[i] is written -----------------------------------------------------------------
NABLA_API void copy_(const TensorList& x, const TensorList& y);                       // x = y
NABLA_API void sqrt_(const TensorList& x);                                            // x = sqrt(x)
NABLA_API void mul_(const TensorList& x, const Scalars& a);                           // x = x * a
NABLA_API void div_(const TensorList& x, const Scalars& a);                           // x = x / a
NABLA_API void add_(const TensorList& x, const Scalars& a);                           // x = x + a
NABLA_API void add_(const TensorList& x, const TensorList& y, const Scalars& a = 1);  // x = x + a * y
NABLA_API void addcmul_(const TensorList& x, const TensorList& y, const TensorList& z,
              const Scalars& a = 1);  // x = x + (a * y) * z
NABLA_API void addcdiv_(const TensorList& x, const TensorList& y, const TensorList& z,
              const Scalars& a = 1);  // x = x + a * (y / z)
// x = x + w * (y - x), evaluated as torch.lerp does: y - (y - x) * (1 - w) when |w| >= 0.5.
NABLA_API void lerp_(const TensorList& x, const TensorList& y, const Scalars& w);

// ---- new tensors (each like y[i]) ----------------------------------------------------------------
NABLA_API TensorList clone(const TensorList& y);                                      // y
NABLA_API TensorList sqrt(const TensorList& y);                                       // sqrt(y)
NABLA_API TensorList add(const TensorList& x, const TensorList& y, const Scalars& a = 1);  // x + a * y

}  // namespace nabla::foreach
