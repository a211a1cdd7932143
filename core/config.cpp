#include <nabla/core/config.h>

#include <atomic>

namespace nabla {

namespace {
std::atomic<bool> g_tf32{false};
}

void set_tf32(bool on) { g_tf32.store(on, std::memory_order_relaxed); }
bool tf32_enabled() { return g_tf32.load(std::memory_order_relaxed); }

}  // namespace nabla
