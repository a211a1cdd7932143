// float32 batch normalization on oneDNN (batch_normalization_forward / _backward). The data
// (n, c, m) is described to oneDNN as nchw with h = 1, w = m and reordered into the
// channel-blocked layout of its JIT kernels (nChw8c on AVX2) and back at each call. oneDNN computes the batch mean
// and the biased variance; save_invstd = 1 / sqrt(var + eps) and the running statistics are
// computed here, in double, exactly as core/backend.h defines them. Internal to cpu/.
//
// norm.cpp sends a call here only where use_* says so: where oneDNN measured faster than
// norm.cpp's own kernels (which remain the float64 path and the tests' reference).
#pragma once

#include <nabla/export.h>

#include <nabla/cpu/dnnl_common.h>

#include <cstdint>

namespace nabla::cpu::dnnl_norm {

// The oneDNN path is on (dnnl_common::enabled()) and, for this shape, faster than norm.cpp's
// (dnnl_norm.cpp has the measurements): the training forward with m == 1 or m >= 8, the backward
// with m == 1 or 8 <= m <= 64, evaluation with m == 1; each from 2^15 elements.
NABLA_INTERNAL_API bool use_forward_train(int64_t n, int64_t c, int64_t m);
NABLA_INTERNAL_API bool use_forward_eval(int64_t n, int64_t c, int64_t m);
NABLA_INTERNAL_API bool use_backward(int64_t n, int64_t c, int64_t m);

// As CpuBackend::batch_norm_* (core/backend.h) for float32; n * c * m >= 1.
NABLA_INTERNAL_API void forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                   const float* x, const float* weight, const float* bias, int64_t n, int64_t c, int64_t m,
                   double momentum, double eps);
NABLA_INTERNAL_API void forward_eval(float* y, const float* x, const float* running_mean, const float* running_var, const float* weight,
                  const float* bias, int64_t n, int64_t c, int64_t m, double eps);
NABLA_INTERNAL_API void backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* save_mean,
              const float* save_invstd, const float* weight, int64_t n, int64_t c, int64_t m);

}  // namespace nabla::cpu::dnnl_norm
