// Helpers shared by the op implementations in core/ops (not installed as public API).
#pragma once

#include <nabla/export.h>

#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/core/tensor.h>

namespace nabla::detail {

inline Backend& be(const Tensor& t) { return backend(t.device()); }

NABLA_API void check_defined(const Tensor& t, const char* op, const char* arg);
// Float32 or float64.
NABLA_API void check_float(const Tensor& t, const char* op, const char* arg);
// Same device and same dtype, naming both operands when they differ.
NABLA_API void check_same(const Tensor& a, const Tensor& b, const char* op, const char* an = "a",
                const char* bn = "b");

// Layout for writing a tensor of `shape` with strides `out` from sources with strides a and b
// (b may be empty). Size-1 dimensions are dropped and mergeable neighbours merged, so that a
// contiguous case reaches the kernel as one flat dimension.
NABLA_API StridedLayout make_layout(const Shape& shape, const Shape& out, const Shape& a,
                          const Shape& b = {});
// Strides of `t` as seen from a broadcast to `shape` (stride 0 on broadcast dimensions).
NABLA_API Shape broadcast_strides(const Tensor& t, const Shape& shape);

}  // namespace nabla::detail
