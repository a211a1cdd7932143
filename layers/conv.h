// Convolution layers (PyTorch's Conv2d / Conv1d): NCHW and NCL inputs, cross-correlation,
// weight (out, in / groups, kh, kw), optional bias (out). Initialized as PyTorch does by default:
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kh * kw.
//
//   nabla::Conv2d(1, 32, 3, {.padding = 1})        // 3x3, "same"-sized for stride 1
//   nabla::Conv2d(32, 64, {3, 5}, {.stride = 2, .padding = "same"})
#pragma once

#include <nabla/export.h>

#include <nabla/core/ops/conv.h>
#include <nabla/layers/init.h>
#include <nabla/layers/module.h>

namespace nabla {

struct Conv2dOptions {
  Size2 stride = 1;
  Padding padding = 0;  // amount (one or (h, w)), "same" or "valid"
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  Init weight_init = Init::torch_default;
  Init bias_init = Init::torch_default;
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

// x: (n, in, h, w) -> (n, out, oh, ow).
class NABLA_API Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel, Conv2dOptions opts = {});
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) as one op, the ReLU fused where the backend can (Conv2dParams::relu).
  Tensor forward_relu(const Tensor& x);
  std::string type_name() const override { return "Conv2d"; }
  std::string to_string() const override;

  Tensor weight() const { return weight_; }
  Tensor bias() const { return bias_; }  // undefined without bias
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  Size2 kernel_size() const { return kernel_; }
  const Conv2dParams& params() const { return params_; }

 private:
  int64_t in_, out_;
  Size2 kernel_;
  Conv2dParams params_;
  Tensor weight_, bias_;
  std::string label_;  // "Conv2d(1->32, 3x3)", for error messages
};

struct Conv1dOptions {
  int64_t stride = 1;
  Padding padding = 0;  // amount, "same" or "valid"
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  Init weight_init = Init::torch_default;
  Init bias_init = Init::torch_default;
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

// x: (n, in, l) -> (n, out, ol).
class NABLA_API Conv1d : public Module {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel, Conv1dOptions opts = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv1d"; }
  std::string to_string() const override;

  Tensor weight() const { return weight_; }
  Tensor bias() const { return bias_; }

 private:
  int64_t in_, out_, kernel_;
  Conv1dParams params_;
  Tensor weight_, bias_;
  std::string label_;
};

}  // namespace nabla
