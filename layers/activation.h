// Activation layers: stateless wrappers around the ops of core/ops/elementwise.h.
// Each maps a tensor of any shape to one of the same shape (Softmax: along `axis`).
#pragma once

#include <nabla/export.h>

#include <nabla/layers/module.h>

namespace nabla {

class NABLA_API ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

class NABLA_API LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string to_string() const override;

 private:
  double slope_;
};

class NABLA_API ELU : public Module {
 public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ELU"; }
  std::string to_string() const override;

 private:
  double alpha_;
};

class NABLA_API Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sigmoid"; }
};

class NABLA_API Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Tanh"; }
};

class NABLA_API GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GELU"; }
};

class NABLA_API SiLU : public Module {  // x * sigmoid(x)
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SiLU"; }
};

// min(max(x, min_val), max_val), as PyTorch's nn.Hardtanh; min_val > max_val is an error.
class NABLA_API Hardtanh : public Module {
 public:
  explicit Hardtanh(double min_val = -1.0, double max_val = 1.0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Hardtanh"; }
  std::string to_string() const override;

 private:
  double min_, max_;
};

class NABLA_API Softmax : public Module {
 public:
  explicit Softmax(int64_t axis = -1) : axis_(axis) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Softmax"; }
  std::string to_string() const override;

 private:
  int64_t axis_;
};

class NABLA_API LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int64_t axis = -1) : axis_(axis) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LogSoftmax"; }
  std::string to_string() const override;

 private:
  int64_t axis_;
};

// Inverted dropout: in training, zeroes each element with probability p and scales the others by
// 1/(1-p); the identity in evaluation mode.
class NABLA_API Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::string to_string() const override;

 private:
  double p_;
};

// Flattens axes start..end (default: all but the batch axis) into one.
class NABLA_API Flatten : public Module {
 public:
  explicit Flatten(int64_t start_axis = 1, int64_t end_axis = -1) : start_(start_axis), end_(end_axis) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Flatten"; }

 private:
  int64_t start_, end_;
};

}  // namespace nabla
