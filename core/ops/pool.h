// Pooling over NCHW tensors. Differentiable; float32 (CPU and CUDA) and float64 (CPU).
#pragma once

#include <nabla/export.h>

#include <nabla/core/ops/conv.h>
#include <nabla/core/tensor.h>

namespace nabla {

struct Pool2dParams {
  // Default (0): the kernel size, as in PyTorch.
  Size2 stride = 0;
  // Explicit amounts at most half the kernel, or "valid"; "same" is not supported for pooling.
  Padding padding = 0;
  // avg_pool2d: whether padded zeros count in the divisor (PyTorch's default: yes).
  bool count_include_pad = true;
};

// x: (n, c, h, w) -> (n, c, oh, ow), oh = (h + 2 pad - kh) / stride + 1 (floor).
// The gradient of a window goes to its (first) maximum.
NABLA_API Tensor max_pool2d(const Tensor& x, Size2 kernel, const Pool2dParams& p = {},
                  const char* name = "max_pool2d");
NABLA_API Tensor avg_pool2d(const Tensor& x, Size2 kernel, const Pool2dParams& p = {},
                  const char* name = "avg_pool2d");
// x: (n, c, h, w) -> (n, c): the mean of each channel's plane (Keras' GlobalAveragePooling2D).
NABLA_API Tensor global_avg_pool2d(const Tensor& x, const char* name = "global_avg_pool2d");

}  // namespace nabla
