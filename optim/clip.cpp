#include <nabla/optim/clip.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>

namespace nabla {

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  check_number(max_norm, "clip_grad_norm", "max_norm");
  NABLA_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got {}", max_norm);
  NoGrad no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return {};
  const Device device = grads[0].device();
  Tensor sq = zeros({}, {.device = device});
  for (const Tensor& g : grads) {
    NABLA_CHECK(g.device() == device, "clip_grad_norm: gradients on {} and {}; clip each device's separately",
                device, g.device());
    sq = sq + sum(mul(g, g)).to(DType::float32);
  }
  Tensor norm = sqrt(sq);
  // min(1, max_norm / (norm + eps)) stays on the device: no branch on the value.
  Tensor scale = clamp(max_norm / (norm + 1e-6), 0.0, 1.0);
  for (Tensor& g : grads) g.copy_(mul(g, scale.to(g.dtype())));
  return norm;
}

void clip_grad_value(const std::vector<Tensor>& params, double clip_value) {
  check_number(clip_value, "clip_grad_value", "clip_value");
  NABLA_CHECK(clip_value > 0, "clip_grad_value: clip_value must be > 0, got {}", clip_value);
  NoGrad no_grad;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) {
      Tensor g = p.grad();
      g.copy_(clamp(g, -clip_value, clip_value));
    }
}

}  // namespace nabla
