#include <nabla/core/error.h>
#include <nabla/cuda/check.cuh>

namespace nabla::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  // Clear the error if it is not sticky, so the next unrelated call does not report it again.
  cudaGetLastError();
  fail("{} failed: {}: {} (at {}:{})", call, cudaGetErrorName(err), cudaGetErrorString(err), file,
       line);
}

}  // namespace nabla::cuda
