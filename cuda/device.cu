// Device query through the CUDA runtime. Host code only; a .cu file so that every build with
// CUDA compiles nabla headers with nvcc from day one.
#include <nabla/core/error.h>
#include <nabla/cuda/check.cuh>
#include <nabla/cuda/device.h>

#include <cuda_runtime_api.h>

namespace nabla::cuda {

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  switch (err) {
    case cudaSuccess:
      return n;
    // No GPU, no driver, a driver older than this runtime, or only the driver's link-time stub
    // (libcuda.so from the toolkit's stubs/ folder): no usable device.
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorStubLibrary:
      cudaGetLastError();  // clear it, so later calls do not report it again
      return 0;
    default:
      throw_cuda_error(err, "cudaGetDeviceCount(&n)", __FILE__, __LINE__);
  }
}

bool available() { return device_count() > 0; }

DeviceInfo device_info(int index) {
  const int n = device_count();
  if (index < 0 || index >= n) {
    fail<IndexError>("cuda::device_info: device index {} is out of range: {} CUDA device{} present", index, n,
                     n == 1 ? " is" : "s are");
  }
  cudaDeviceProp prop{};
  NABLA_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));

  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.total_memory = prop.totalGlobalMem;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;

  // cudaMemGetInfo reports on the current device: switch to `index` and back.
  int previous = 0;
  NABLA_CUDA_CHECK(cudaGetDevice(&previous));
  NABLA_CUDA_CHECK(cudaSetDevice(index));
  std::size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t err = cudaMemGetInfo(&free_bytes, &total_bytes);
  const cudaError_t restored = cudaSetDevice(previous);  // restore before reporting a failure
  check(err, "cudaMemGetInfo(&free_bytes, &total_bytes)", __FILE__, __LINE__);
  check(restored, "cudaSetDevice(previous)", __FILE__, __LINE__);
  info.free_memory = free_bytes;
  return info;
}

}  // namespace nabla::cuda
