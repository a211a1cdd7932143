// float32 2-D convolution on oneDNN (Debian's libdnnl), the library PyTorch's CPU convolutions
// use: its JIT kernels work on blocked memory formats (e.g. nChw8c on AVX2), into which the
// NCHW buffers are reordered at each call; the reorders cost far less than the convolution.
// Internal to cpu/. conv.cpp calls these for float32 when enabled(); float64 and a build without
// oneDNN keep the im2col + GEMM kernels, which are also the reference the tests hold these to.
#pragma once

#include <nabla/core/backend.h>
#include <nabla/cpu/dnnl_common.h>

namespace nabla::cpu::dnnl_conv {

// The switch of all the oneDNN paths (dnnl_common.h).
using dnnl_common::enabled;
using dnnl_common::set_enabled;

// As CpuBackend::conv2d_* (core/backend.h): the results are assigned, not accumulated.
void forward(float* y, const float* x, const float* w, const float* bias, const Conv2dShape& s);
void backward_data(float* dx, const float* dy, const float* w, const Conv2dShape& s);
void backward_weight(float* dw, const float* dy, const float* x, const Conv2dShape& s);
// The three gradients at once, as CpuBackend::conv2d_backward (each null when not wanted; y read
// only for s.relu); forward honours s.relu too.
void backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, const float* y,
              const Conv2dShape& s);

}  // namespace nabla::cpu::dnnl_conv
