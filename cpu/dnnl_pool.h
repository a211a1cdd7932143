// float32 average pooling on oneDNN (pooling_forward / pooling_backward with
// pooling_avg_include_padding or pooling_avg_exclude_padding). The NCHW buffers are reordered into
// the channel-blocked layout of oneDNN's JIT kernels (nChw8c on AVX2) and back at each call: on
// nchw itself oneDNN has only a slow generic kernel (2-4x slower than pool.cpp's), while the
// blocked one with both reorders measured up to 3x faster than pool.cpp's kernels where use()
// says so. Internal to cpu/. Max pooling stays on pool.cpp's
// kernels: nabla returns int64 indices, which oneDNN's workspace does not give.
#pragma once

#include <nabla/export.h>

#include <nabla/core/backend.h>
#include <nabla/cpu/dnnl_common.h>

namespace nabla::cpu::dnnl_pool {

// The oneDNN path is on (dnnl_common::enabled()) and, for this shape, faster than pool.cpp's
// kernels: at least 8 channels and more than 4 outputs per plane.
NABLA_INTERNAL_API bool use(const Pool2dShape& s);

// As CpuBackend::avg_pool2d_* (core/backend.h): the results are assigned.
NABLA_INTERNAL_API void avg_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad);
NABLA_INTERNAL_API void avg_backward(float* dx, const float* dy, const Pool2dShape& s, bool count_include_pad);

}  // namespace nabla::cpu::dnnl_pool
