#include <nabla/core/device.h>

#include <nabla/core/backend.h>
#include <nabla/core/error.h>

namespace nabla {

namespace {
// Checked here rather than left to each backend, so that the error reads the same for all.
Backend& existing(Device d, const char* what) {
  const int n = device_count(d.kind);
  // "cpu:1", not d.str(), which writes the one CPU device as "cpu".
  NABLA_CHECK_INDEX(d.index >= 0 && d.index < n, "{}: device {}:{} does not exist: {} {} device{} present", what,
                    d.is_cpu() ? "cpu" : "cuda", d.index, n, d.is_cpu() ? "CPU" : "CUDA", n == 1 ? " is" : "s are");
  return backend(d);
}
}  // namespace

std::vector<Device> devices() {
  std::vector<Device> all;
  for (Device::Kind kind : {Device::Kind::CPU, Device::Kind::CUDA}) {
    const int n = device_count(kind);
    for (int i = 0; i < n; ++i) all.push_back(Device{kind, i});
  }
  return all;
}

DeviceProperties device_properties(Device d) {
  DeviceProperties p = existing(d, "device_properties").properties();
  p.device = d;
  return p;
}

void synchronize(Device d) { existing(d, "synchronize").synchronize(); }

void synchronize() {
  for (Device d : devices()) backend(d).synchronize();
}

}  // namespace nabla
