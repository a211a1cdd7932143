// Embedding lookup. Differentiable in the weight; float32 (CPU and CUDA) and float64 (CPU).
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

namespace nabla {

// indices: int64 of any shape, each in [0, num); weight: (num, dim) -> (*indices.shape, dim).
// The gradient of row padding_idx (when >= 0) stays 0. `name` names the layer in errors.
NABLA_API Tensor embedding(const Tensor& indices, const Tensor& weight, int64_t padding_idx = -1,
                 const char* name = "embedding");

}  // namespace nabla
