// Devices, without naming a backend: how many there are, what each one is, and waiting for the
// work queued on them. nabla.h includes this; a program never needs a backend's own header.
//
//   for (nabla::Device d : nabla::devices()) {
//     auto p = nabla::device_properties(d);
//     fmt::print("{}: {} ({} of {} bytes free)\n", d.str(), p.name, p.free_memory, p.total_memory);
//   }
#pragma once

#include <nabla/export.h>

#include <nabla/core/types.h>

#include <cstddef>
#include <string>
#include <vector>

namespace nabla {

// Devices of this kind present: 1 for the CPU; for CUDA 0 when nabla was built without it, or
// when there is no GPU or no usable driver (not an error).
NABLA_API int device_count(Device::Kind kind);

// Every device present: cpu:0 first, then cuda:0, cuda:1, ...
NABLA_API std::vector<Device> devices();

struct DeviceProperties {
  Device device;
  std::string name;               // "NVIDIA H200", or the CPU's model name
  std::size_t total_memory = 0;   // bytes
  std::size_t free_memory = 0;    // bytes available, at the time of the query
  int compute_units = 0;          // streaming multiprocessors, or the CPU cores nabla may use
  int cc_major = 0, cc_minor = 0; // CUDA compute capability (e.g. 9.0); 0.0 on the CPU
};

// What device `d` is. Throws nabla::Error naming the device and how many of its kind are
// present when it does not exist. On a GPU this creates the device's context, as any work would.
NABLA_API DeviceProperties device_properties(Device d);

// Waits until the work queued on `d` is done, and reports the errors a device found since the
// last synchronization (e.g. out-of-range labels) as nabla::Error. The CPU has nothing to wait for.
NABLA_API void synchronize(Device d);
// The same for every device present.
NABLA_API void synchronize();

}  // namespace nabla
