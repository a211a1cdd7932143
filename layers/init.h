// Weight initializers. fan_in / fan_out are those of the layer (Dense: in and out features).
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <string>

namespace nabla {

enum class Init {
  torch_default,   // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Linear default
  glorot_uniform,  // U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Xavier; Keras' default)
  glorot_normal,   // N(0, 2 / (fan_in + fan_out))
  he_uniform,      // U(-a, a), a = sqrt(6 / fan_in) (Kaiming, for ReLU)
  he_normal,       // N(0, 2 / fan_in)
  lecun_uniform,   // U(-a, a), a = sqrt(3 / fan_in)
  lecun_normal,    // N(0, 1 / fan_in)
  zeros,
  ones,
};

NABLA_API const char* init_name(Init kind);
// A new tensor of `shape` drawn from `kind` (from the default generator, see manual_seed).
// `who` ("Dense(784->256) weight") prefixes the errors, such as running out of memory.
NABLA_API Tensor initialize(const Shape& shape, Init kind, int64_t fan_in, int64_t fan_out, TensorOptions opts = {},
                  const std::string& who = "");

}  // namespace nabla
