// Error checks for CUDA runtime calls (internal to cuda/; not installed).
//
//   NABLA_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream));
//   my_kernel<<<grid, block, 0, stream>>>(...);
//   NABLA_CUDA_CHECK_LAUNCH();
//
// A failure throws nabla::Error with the call's text, CUDA's error name and description, and
// file:line. The macros only capture the text and the location; the work is in check().
#pragma once

#include <cuda_runtime_api.h>

namespace nabla::cuda {

// Throws nabla::Error: "<call> failed: <cudaErrorName>: <description> (at <file>:<line>)".
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);

inline void check(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, call, file, line);
}

}  // namespace nabla::cuda

#define NABLA_CUDA_CHECK(call)                                         \
  do {                                                                 \
    ::nabla::cuda::check((call), #call, __FILE__, __LINE__);           \
  } while (0)

// After a kernel launch: reports a bad launch configuration (and, asynchronously, earlier
// failures) at the launch site.
#define NABLA_CUDA_CHECK_LAUNCH()                                                  \
  do {                                                                             \
    ::nabla::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__); \
  } while (0)
