// Consumer of nabla (installed, or its build tree; through CMake or pkg-config): makes a tensor,
// prints it, checks its values; prints the library's version and the headers'.
#if __has_include(<nabla/nabla.h>)
#include <nabla/nabla.h>
#else
#include <nabla/core/tensor.h>
#endif
#include <nabla/core/error.h>
#include <nabla/core/device.h>
#include <nabla/version.h>

#include <cstdio>
#include <iostream>
#include <vector>

int main() {
  try {
    nabla::Tensor t = nabla::from_vector({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3});
    std::cout << t << "\n";
    const std::vector<float> v = t.to_vector<float>();
    double sum = 0;
    for (float x : v) sum += x;
    if (t.numel() != 6 || t.dim() != 2 || sum != 21.0) {
      std::printf("nabla consumer: WRONG numel %lld sum %g\n", static_cast<long long>(t.numel()), sum);
      return 1;
    }
    for (const nabla::Device& d : nabla::devices()) {
      const nabla::DeviceProperties p = nabla::device_properties(d);
      std::printf("device %s: %s, %zu bytes\n", d.str().c_str(), p.name.c_str(), p.total_memory);
    }
    std::printf("cuda devices: %d\n", nabla::device_count(nabla::Device::Kind::CUDA));
    const nabla::BuildInfo b = nabla::build_info();
    std::printf("nabla %s (headers %s): CUDA %s, cuDNN %s, oneDNN %s, %s\n", nabla::version(),
                NABLA_VERSION_STRING, b.cuda ? b.cuda_version.c_str() : "no",
                b.cuda ? b.cudnn_version.c_str() : "no", b.onednn ? b.onednn_version.c_str() : "no",
                b.blas.c_str());
    std::printf("nabla consumer OK: sum 21\n");
    return 0;
  } catch (const nabla::Error& e) {
    std::printf("nabla consumer: nabla::Error: %s\n", e.what());
    return 1;
  }
}
