// Gradient clipping, applied between backward() and step(). Both work in place on the
// parameters' .grad() (parameters without one are skipped), on their devices, never recorded,
// and never read a value back to the host: no synchronization inside a step.
//
//   loss.backward();
//   nabla::clip_grad_norm(model.parameters(), 1.0);
//   opt.step();
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <vector>

namespace nabla {

// Scales all the gradients together so that their global L2 norm (of every element of every
// gradient, as one vector) is at most max_norm: g *= min(1, max_norm / (norm + 1e-6)), as
// torch.nn.utils.clip_grad_norm_. Returns the norm before clipping, a float32 scalar on the
// gradients' device (undefined when no parameter has a gradient). max_norm > 0; every gradient
// on one device.
NABLA_API Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Clamps every gradient element into [-clip_value, clip_value]; clip_value > 0.
NABLA_API void clip_grad_value(const std::vector<Tensor>& params, double clip_value);

}  // namespace nabla
