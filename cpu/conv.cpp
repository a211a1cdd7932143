// PLACEHOLDER (replaced in the next commits): CPU convolution, pooling and batch-norm kernels.
#include <nabla/cpu/cpu_backend.h>

namespace nabla::cpu {

#define NABLA_CPU_TODO(name) fail("cpu " name ": not implemented yet")
void CpuBackend::conv2d_forward(DType, void*, const void*, const void*, const void*, const Conv2dShape&) { NABLA_CPU_TODO("conv2d_forward"); }
void CpuBackend::conv2d_backward_data(DType, void*, const void*, const void*, const Conv2dShape&) { NABLA_CPU_TODO("conv2d_backward_data"); }
void CpuBackend::conv2d_backward_weight(DType, void*, const void*, const void*, const Conv2dShape&) { NABLA_CPU_TODO("conv2d_backward_weight"); }
void CpuBackend::conv2d_backward_bias(DType, void*, const void*, const Conv2dShape&) { NABLA_CPU_TODO("conv2d_backward_bias"); }
void CpuBackend::max_pool2d_forward(DType, void*, int64_t*, const void*, const Pool2dShape&) { NABLA_CPU_TODO("max_pool2d_forward"); }
void CpuBackend::max_pool2d_backward(DType, void*, const void*, const int64_t*, const Pool2dShape&) { NABLA_CPU_TODO("max_pool2d_backward"); }
void CpuBackend::avg_pool2d_forward(DType, void*, const void*, const Pool2dShape&, bool) { NABLA_CPU_TODO("avg_pool2d_forward"); }
void CpuBackend::avg_pool2d_backward(DType, void*, const void*, const Pool2dShape&, bool) { NABLA_CPU_TODO("avg_pool2d_backward"); }
void CpuBackend::batch_norm_forward_train(DType, void*, void*, void*, void*, void*, const void*, const void*, const void*, int64_t, int64_t, int64_t, double, double) { NABLA_CPU_TODO("batch_norm_forward_train"); }
void CpuBackend::batch_norm_forward_eval(DType, void*, const void*, const void*, const void*, const void*, const void*, int64_t, int64_t, int64_t, double) { NABLA_CPU_TODO("batch_norm_forward_eval"); }
void CpuBackend::batch_norm_backward(DType, void*, void*, void*, const void*, const void*, const void*, const void*, const void*, int64_t, int64_t, int64_t) { NABLA_CPU_TODO("batch_norm_backward"); }

}  // namespace nabla::cpu
