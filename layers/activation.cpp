#include <nabla/layers/activation.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/shape.h>

namespace nabla {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor LeakyReLU::forward(const Tensor& x) { return leaky_relu(x, slope_); }
std::string LeakyReLU::to_string() const { return fmt::format("LeakyReLU({})", slope_); }
Tensor ELU::forward(const Tensor& x) { return elu(x, alpha_); }
std::string ELU::to_string() const { return fmt::format("ELU({})", alpha_); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }
Hardtanh::Hardtanh(double min_val, double max_val) : min_(min_val), max_(max_val) {
  NABLA_CHECK(!(min_val > max_val), "Hardtanh: min_val {} is greater than max_val {}", min_val, max_val);
}
Tensor Hardtanh::forward(const Tensor& x) { return hardtanh(x, min_, max_); }
std::string Hardtanh::to_string() const { return fmt::format("Hardtanh(min_val={}, max_val={})", min_, max_); }
Tensor Softmax::forward(const Tensor& x) { return softmax(x, axis_); }
std::string Softmax::to_string() const { return fmt::format("Softmax(axis={})", axis_); }
Tensor LogSoftmax::forward(const Tensor& x) { return log_softmax(x, axis_); }
std::string LogSoftmax::to_string() const { return fmt::format("LogSoftmax(axis={})", axis_); }

Dropout::Dropout(double p) : p_(p) {
  check_number(p, "Dropout", "probability");
  NABLA_CHECK(p >= 0 && p < 1, "Dropout: probability {} is outside [0, 1)", p);
}
Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training()); }
std::string Dropout::to_string() const { return fmt::format("Dropout({})", p_); }

Tensor Flatten::forward(const Tensor& x) {
  NABLA_CHECK(x.defined(), "Flatten: input is an undefined tensor");
  if (x.dim() <= 1) return x;
  return x.flatten(start_, end_);
}

}  // namespace nabla
