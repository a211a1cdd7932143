#include <nabla/core/backend.h>

#include <nabla/core/error.h>

#include <array>
#include <mutex>

namespace nabla {

namespace {
struct Registry {
  std::mutex mu;
  std::array<BackendFactory, 2> factories;
  std::array<std::function<int()>, 2> counts;
};
Registry& registry() {
  static Registry r;
  return r;
}
size_t slot(Device::Kind k) { return k == Device::Kind::CPU ? 0 : 1; }
}  // namespace

void register_backend(Device::Kind kind, BackendFactory factory, std::function<int()> device_count) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.factories[slot(kind)] = std::move(factory);
  r.counts[slot(kind)] = std::move(device_count);
}

int device_count(Device::Kind kind) {
  std::function<int()> count;
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    count = r.counts[slot(kind)];
  }
  return count ? count() : 0;
}

bool has_backend(Device::Kind kind) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return static_cast<bool>(r.factories[slot(kind)]);
}

Backend& backend_for(Device::Kind kind, int index) {
  BackendFactory f;
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    f = r.factories[slot(kind)];
  }
  if (!f) {
    fail("no backend for device {}: this build of nabla {}", Device{kind, index}.str(),
         kind == Device::Kind::CUDA ? "has no usable CUDA backend (built with NABLA_CUDA=OFF, or no GPU)"
                                    : "has no CPU backend");
  }
  return f(index);
}

void Backend::conv2d_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                              const void* weight, const void*, const Conv2dShape& s) {
  NABLA_CHECK(!s.relu, "conv2d_backward: this backend does not fuse the ReLU (conv2d_fuses_relu is false)");
  if (dx) conv2d_backward_data(dtype, dx, dy, weight, s);
  if (dweight) conv2d_backward_weight(dtype, dweight, dy, x, s);
  if (dbias) conv2d_backward_bias(dtype, dbias, dy, s);
}

}  // namespace nabla
