// Process-wide numeric settings.
#pragma once

#include <nabla/export.h>

namespace nabla {

// TF32 tensor cores for float32 matrix products on GPUs that have them. Off by default (as in
// PyTorch), so that CPU and GPU agree to float32 rounding; on, products are about 10 bits less
// precise and several times faster.
NABLA_API void set_tf32(bool on);
NABLA_API bool tf32_enabled();

}  // namespace nabla
