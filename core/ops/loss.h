// Losses. Each returns a scalar for Reduction::mean / sum, or per-element (per-sample for
// cross entropy) values for Reduction::none.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

namespace nabla {

enum class Reduction { none, mean, sum };

NABLA_API Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean);
NABLA_API Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean);
// input: probabilities in [0, 1]; log terms clamped at -100 as PyTorch does.
NABLA_API Tensor binary_cross_entropy(const Tensor& input, const Tensor& target,
                            Reduction r = Reduction::mean);
NABLA_API Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction r = Reduction::mean);
// logits: (N, C). target: (N) int64/int32 class indices in [0, C), or (N, C) probabilities of
// the logits' dtype. Softmax is applied inside (as torch.nn.functional.cross_entropy).
NABLA_API Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction r = Reduction::mean);
// logp: (N, C) log-probabilities, labels (N) class indices.
NABLA_API Tensor nll_loss(const Tensor& logp, const Tensor& labels, Reduction r = Reduction::mean);

}  // namespace nabla
