// Reductions over axes. Empty `axes` means all axes. keepdim keeps reduced axes as size 1.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <vector>

namespace nabla {

NABLA_API Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
NABLA_API Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// Gradient is shared equally among tied maxima (as torch.amax).
NABLA_API Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
NABLA_API Tensor min(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// int64 index of the first maximum along `axis`; never recorded.
NABLA_API Tensor argmax(const Tensor& x, int64_t axis = -1, bool keepdim = false);
// Sums a broadcast result back down to `shape` (the inverse of broadcasting); differentiable.
NABLA_API Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace nabla
