// Dense (fully connected, PyTorch's Linear): y = x . weight^T + bias.
// x: (*, in), y: (*, out); weight: (out, in), bias: (out).
#pragma once

#include <nabla/export.h>

#include <nabla/layers/init.h>
#include <nabla/layers/module.h>

namespace nabla {

struct DenseOptions {
  bool bias = true;
  Init weight_init = Init::torch_default;
  Init bias_init = Init::torch_default;
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

class NABLA_API Dense : public Module {
 public:
  Dense(int64_t in_features, int64_t out_features, DenseOptions opts = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dense"; }
  std::string to_string() const override;

  Tensor weight() const { return weight_; }
  Tensor bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
  std::string label_;  // "Dense(784->256)", for error messages
};

using Linear = Dense;

}  // namespace nabla
