// device.h for builds without the CUDA backend (NABLA_CUDA=OFF, or AUTO without nvcc): no
// devices. Compiled only then; the CUDA build uses device.cu.
#include <nabla/core/error.h>
#include <nabla/cuda/device.h>

namespace nabla::cuda {

int device_count() { return 0; }

bool available() { return false; }

void synchronize() {}

DeviceInfo device_info(int index) {
  fail("cuda::device_info: no CUDA device {}: nabla was built without CUDA (NABLA_CUDA=OFF or no "
       "nvcc found), so 0 CUDA devices are present",
       index);
}

}  // namespace nabla::cuda
