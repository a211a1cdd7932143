// Pooling layers over NCHW inputs (PyTorch's MaxPool2d / AvgPool2d; Keras'
// GlobalAveragePooling2D). The stride defaults to the kernel size.
//
//   nabla::MaxPool2d(2)                         // 2x2, stride 2
//   nabla::AvgPool2d(3, {.stride = 1, .padding = 1, .count_include_pad = false})
#pragma once

#include <nabla/export.h>

#include <nabla/core/ops/pool.h>
#include <nabla/layers/module.h>

namespace nabla {

// x: (n, c, h, w) -> (n, c, oh, ow).
class NABLA_API MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2 kernel, Pool2dParams opts = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2d"; }
  std::string to_string() const override;

 private:
  Size2 kernel_;
  Pool2dParams params_;
  std::string label_;
};

class NABLA_API AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel, Pool2dParams opts = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AvgPool2d"; }
  std::string to_string() const override;

 private:
  Size2 kernel_;
  Pool2dParams params_;
  std::string label_;
};

// x: (n, c, h, w) -> (n, c), the mean of each channel.
class NABLA_API GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GlobalAvgPool2d"; }
};

}  // namespace nabla
