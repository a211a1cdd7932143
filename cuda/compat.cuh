// Does this build fit the machine it runs on: the messages for a GPU the build has no code for,
// and for a cuDNN older at run time than at build time (backend.cu). Plain C++ (no CUDA
// headers), so tests/cuda_device_test.cpp checks them without a GPU. Internal (a .cuh: not
// installed).
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <string>

namespace nabla::cuda::compat {

// The error for device `device` (name, compute capability major.minor) when the build has no
// kernel image it can run: no real code for its architecture, and no PTX of an architecture at
// or below it for the driver to compile. `built_for` is CMAKE_CUDA_ARCHITECTURES of the build.
inline std::string no_kernel_image_message(int device, const std::string& name, int major, int minor,
                                           const std::string& built_for) {
  return fmt::format(
      "cuda:{} ({}, compute capability {}.{}): this nabla was built without code for this GPU (CUDA architectures "
      "'{}'; the driver can compile PTX only for a GPU at or above the PTX's architecture). Rebuild with "
      "-DCMAKE_CUDA_ARCHITECTURES={}{} (or add {}-real to the list), or use the CPU (Device::cpu())",
      device, name, major, minor, built_for.empty() ? "unknown" : built_for, major, minor, major * 10 + minor);
}

struct Version {
  int major = 0, minor = 0, patch = 0;
};

// cuDNN's version number: cuDNN 9 counts major * 10000 + minor * 100 + patch (9.14.0 = 91400),
// cuDNN 8 and older major * 1000 + minor * 100 + patch (8.9.7 = 8907).
inline Version cudnn_version(std::size_t v) {
  if (v >= 90000) return {int(v / 10000), int(v / 100 % 100), int(v % 100)};
  return {int(v / 1000), int(v / 100 % 10), int(v % 100)};
}

inline std::string to_string(Version v) { return fmt::format("{}.{}.{}", v.major, v.minor, v.patch); }

// Empty when the cuDNN loaded at run time (cudnnGetVersion) is at least the one nabla was compiled
// against (CUDNN_VERSION); else the warning to print, once, at start-up.
inline std::string cudnn_version_warning(std::size_t compiled, std::size_t runtime) {
  const Version c = cudnn_version(compiled), r = cudnn_version(runtime);
  if (r.major == c.major && (r.minor > c.minor || (r.minor == c.minor && r.patch >= c.patch))) return {};
  if (r.major > c.major) return {};
  if (r.major != c.major)
    return fmt::format(
        "nabla: warning: cuDNN {} was loaded, but nabla was built against cuDNN {}: a different major version, "
        "whose API differs; convolutions, pooling and RNNs on CUDA will likely fail. Put cuDNN {}'s lib folder "
        "first on LD_LIBRARY_PATH, or rebuild nabla against cuDNN {}",
        to_string(r), to_string(c), c.major, r.major);
  return fmt::format(
      "nabla: warning: cuDNN {} was loaded, older than cuDNN {} that nabla was built against; calls that the "
      "older library lacks or handles differently may fail (CUDNN_STATUS_NOT_SUPPORTED, missing symbols). Put "
      "cuDNN >= {}'s lib folder first on LD_LIBRARY_PATH, or rebuild nabla against cuDNN {}",
      to_string(r), to_string(c), to_string(c), to_string(r));
}

}  // namespace nabla::cuda::compat
