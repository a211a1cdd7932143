// Batch normalization over (n, c), (n, c, l) or (n, c, h, w) tensors, statistics per channel c.
// Differentiable in x, weight and bias; float32 (CPU and CUDA) and float64 (CPU).
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

namespace nabla {

// training: normalizes with the batch's mean and biased variance, and (when defined) updates
// running_mean / running_var in place, never recorded: r = (1 - momentum) r + momentum * stat,
// the variance unbiased. Not training: normalizes with running_mean / running_var (required).
// weight, bias: (c) or undefined (1 and 0). `name` names the layer in error messages.
NABLA_API Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum = 0.1, double eps = 1e-5, const char* name = "batch_norm");

}  // namespace nabla
