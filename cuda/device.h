// CUDA device query for the CUDA backend and its tests: how many devices there are, and what each
// one is. Internal (not installed): programs use core/device.h, which covers every kind of device.
//
// Part of every build. With the CUDA backend (NABLA_WITH_CUDA) it asks the CUDA runtime; a
// machine without a GPU or without a driver has 0 devices, which is not an error. Without the
// CUDA backend device_count() is 0 and device_info() throws, saying nabla was built without CUDA.
// This header needs no CUDA headers.
#pragma once

#include <nabla/export.h>

#include <cstddef>
#include <string>

namespace nabla::cuda {

// Number of usable CUDA devices; 0 when there is no device or no (sufficient) driver. Throws
// nabla::Error only for an unexpected CUDA runtime failure.
NABLA_INTERNAL_API int device_count();

struct DeviceInfo {
  int index = 0;
  std::string name;               // e.g. "NVIDIA H100 80GB HBM3"
  std::size_t total_memory = 0;   // bytes
  std::size_t free_memory = 0;    // bytes, at the time of the query
  int cc_major = 0, cc_minor = 0; // compute capability, e.g. 9.0
  int sm_count = 0;               // streaming multiprocessors
};

// Properties of device `index`. Throws nabla::Error naming the index and the device count when
// it is out of range. Reading free memory creates the device's primary context, as any CUDA
// work on it would; the calling thread's current device is left as it was.
NABLA_INTERNAL_API DeviceInfo device_info(int index = 0);

// device_count() > 0.
NABLA_INTERNAL_API bool available();

// Waits until all work queued on every CUDA device is done; reports errors found on a device
// since the last synchronization (e.g. out-of-range labels). Without devices it does nothing.
NABLA_INTERNAL_API void synchronize();

}  // namespace nabla::cuda
