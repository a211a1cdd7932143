// Reductions over axes. Empty `axes` means all axes. keepdim keeps reduced axes as size 1.
#pragma once

#include <nabla/core/tensor.h>

#include <vector>

namespace nabla {

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// Gradient is shared equally among tied maxima (as torch.amax).
Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// int64 index of the first maximum along `axis`; never recorded.
Tensor argmax(const Tensor& x, int64_t axis = -1, bool keepdim = false);
// Sums a broadcast result back down to `shape` (the inverse of broadcasting); differentiable.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace nabla
