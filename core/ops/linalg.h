// Matrix products.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

namespace nabla {

// a: (..., m, k), b: (..., k, n) -> (..., m, n). 1-D operands are treated as a row (a) or a
// column (b) and that axis is dropped from the result, as NumPy does. Leading batch axes
// broadcast. Transposed views are used as they are, without a copy.
NABLA_API Tensor matmul(const Tensor& a, const Tensor& b);

// x: (..., in), weight: (out, in) as PyTorch's Linear, bias: (out) or undefined.
// Returns x . weight^T + bias. `name` names the layer in error messages.
NABLA_API Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              const char* name = "linear");

}  // namespace nabla
