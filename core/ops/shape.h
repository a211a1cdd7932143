// Ops that move data without arithmetic. (Views are methods of Tensor.)
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <vector>

namespace nabla {

// Joins tensors of equal shape but along `axis`; differentiable.
NABLA_API Tensor concat(const std::vector<Tensor>& tensors, int64_t axis = 0);

// Inverted dropout: in training, zeroes each element with probability p and scales the rest by
// 1/(1-p); identity when !training or p == 0.
NABLA_API Tensor dropout(const Tensor& x, double p, bool training);

}  // namespace nabla
