// CpuBackend: memory and copies, and the registration of the CPU backend at library load.
#include <nabla/cpu/cpu_backend.h>

#include <nabla/core/test_hooks.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <mutex>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

namespace nabla::cpu {

namespace {

constexpr size_t kAlignment = 64;  // a cache line, and the widest AVX-512 load

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// Freed blocks of 1 MiB and more, kept for the next allocation of the same size. A training step
// allocates the same large buffers every step (activations, an LSTM's saved state), and each fresh
// one is a new mapping from the system whose every 4 KiB page faults and is zeroed on first touch:
// the lstm workload spent a fifth of its step in the kernel for that. At most kLimit bytes wait
// here, the oldest given back to the system first, and none longer than kMaxAge later frees of
// large blocks (sizes that do not come back, as with a changing batch or sequence length, leave
// again within about a step); an allocation that fails empties the cache and tries again. Off
// under AddressSanitizer, which must see every free to find a use after it.
class BlockCache {
 public:
  static constexpr size_t kMin = size_t{1} << 20;
  static constexpr size_t kLimit = size_t{1} << 30;
  static constexpr uint64_t kMaxAge = 256;

  void* take(size_t bytes) {
    if (kAddressSanitizer || bytes < kMin) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {  // the newest first: warm in cache
      if (it->bytes != bytes) continue;
      void* p = it->p;
      cached_ -= bytes;
      blocks_.erase(std::next(it).base());
      return p;
    }
    return nullptr;
  }

  // Keeps p, or returns false (the caller frees it).
  bool give(void* p, size_t bytes) noexcept {
    if (kAddressSanitizer || bytes < kMin || bytes > kLimit) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    ++frees_;
    while (!blocks_.empty() && (cached_ + bytes > kLimit || blocks_.front().freed + kMaxAge < frees_)) {
      std::free(blocks_.front().p);
      cached_ -= blocks_.front().bytes;
      blocks_.pop_front();
    }
    try {
      blocks_.push_back({p, bytes, frees_});
    } catch (...) {
      return false;
    }
    cached_ += bytes;
    return true;
  }

  size_t bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  void release() {
    std::deque<Block> all;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      all.swap(blocks_);
      cached_ = 0;
    }
    for (const Block& b : all) std::free(b.p);
  }

 private:
  struct Block {
    void* p;
    size_t bytes;
    uint64_t freed;  // the value of frees_ when it came here
  };
  std::mutex mutex_;
  std::deque<Block> blocks_;  // oldest first
  size_t cached_ = 0;
  uint64_t frees_ = 0;  // large blocks given so far
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;  // never destroyed: tensors may be freed at exit
  return *cache;
}

size_t rounded_size(size_t nbytes) { return std::max(kAlignment, (nbytes + kAlignment - 1) / kAlignment * kAlignment); }

}  // namespace

}  // namespace nabla::cpu

namespace nabla::cpu {
namespace {
std::atomic<size_t> g_allocation_limit{std::numeric_limits<size_t>::max()};  // test_hooks
}  // namespace
}  // namespace nabla::cpu

void nabla::test_hooks::release_cpu_block_cache() { nabla::cpu::block_cache().release(); }
void nabla::test_hooks::set_cpu_allocation_limit(size_t bytes) { nabla::cpu::g_allocation_limit.store(bytes); }
size_t nabla::test_hooks::cpu_block_cache_bytes() { return nabla::cpu::block_cache().bytes(); }

namespace nabla::cpu {

void* CpuBackend::allocate(size_t nbytes) {
  // aligned_alloc wants a multiple of the alignment, and a zero-byte tensor still needs a
  // pointer of its own.
  if (nbytes > std::numeric_limits<size_t>::max() - kAlignment)
    fail<OutOfMemoryError>("cpu: cannot allocate {} bytes: the size is out of range", nbytes);
  if (const size_t limit = g_allocation_limit.load(std::memory_order_relaxed); nbytes > limit)
    fail<OutOfMemoryError>("cpu: out of memory allocating {} bytes (test_hooks::set_cpu_allocation_limit: {} bytes)",
                           nbytes, limit);
  const size_t rounded = rounded_size(nbytes);
  if (void* cached = block_cache().take(rounded)) return cached;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    block_cache().release();
    p = std::aligned_alloc(kAlignment, rounded);
  }
  if (p == nullptr) {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    fail<OutOfMemoryError>("cpu: out of memory allocating {} bytes ({} bytes of physical memory free)", nbytes,
                           pages > 0 && page_size > 0 ? uint64_t(pages) * uint64_t(page_size) : 0);
  }
  return p;
}

void CpuBackend::deallocate(void* p, size_t nbytes) noexcept {
  if (p == nullptr) return;
  if (!block_cache().give(p, rounded_size(nbytes))) std::free(p);
}

void CpuBackend::copy(void* dst, const void* src, size_t nbytes) {
  if (nbytes > 0 && dst != src) std::memmove(dst, src, nbytes);
}

void CpuBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  copy(dst, host_src, nbytes);
}

void CpuBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  copy(host_dst, src, nbytes);
}

namespace {
// The first "<key> : <value>" line of a /proc file whose key is `key`; empty when there is none
// (or no /proc, as in some containers).
std::string proc_value(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.pop_back();
    if (k != key) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}
}  // namespace

DeviceProperties CpuBackend::properties() {
  DeviceProperties p;
  p.device = Device::cpu();
  p.name = proc_value("/proc/cpuinfo", "model name");
  if (p.name.empty()) p.name = "cpu";
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) p.total_memory = size_t(pages) * size_t(page_size);
  // MemAvailable (free plus what the kernel can reclaim) is what a program can still get;
  // MemFree alone undercounts on any machine that has read files. "12345 kB".
  const std::string available = proc_value("/proc/meminfo", "MemAvailable");
  char* end = nullptr;
  const unsigned long long kb = available.empty() ? 0 : std::strtoull(available.c_str(), &end, 10);
  if (kb > 0 && kb <= p.total_memory / 1024) {
    p.free_memory = size_t(kb) * 1024;
  } else {
    const long free_pages = sysconf(_SC_AVPHYS_PAGES);
    if (free_pages > 0 && page_size > 0) p.free_memory = std::min(p.total_memory, size_t(free_pages) * size_t(page_size));
  }
  p.compute_units = omp_get_max_threads();
  return p;
}

namespace {
struct Registration {
  Registration() {
    register_backend(Device::Kind::CPU, [](int index) -> Backend& {
      NABLA_CHECK_INDEX(index == 0, "device cpu:{} does not exist: there is one CPU device, cpu:0",
                        index);
      static CpuBackend backend;
      return backend;
    }, [] { return 1; });
  }
};
const Registration registration;
}  // namespace

}  // namespace nabla::cpu
