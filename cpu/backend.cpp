// CpuBackend: memory and copies, and the registration of the CPU backend at library load.
#include <nabla/cpu/cpu_backend.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

namespace nabla::cpu {

namespace {
constexpr size_t kAlignment = 64;  // a cache line, and the widest AVX-512 load
}  // namespace

void* CpuBackend::allocate(size_t nbytes) {
  // aligned_alloc wants a multiple of the alignment, and a zero-byte tensor still needs a
  // pointer of its own.
  if (nbytes > std::numeric_limits<size_t>::max() - kAlignment)
    fail("cpu: cannot allocate {} bytes: the size is out of range", nbytes);
  const size_t rounded = std::max(kAlignment, (nbytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    fail("cpu: out of memory allocating {} bytes ({} bytes of physical memory free)", nbytes,
         pages > 0 && page_size > 0 ? uint64_t(pages) * uint64_t(page_size) : 0);
  }
  return p;
}

void CpuBackend::deallocate(void* p, size_t /*nbytes*/) noexcept { std::free(p); }

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
      NABLA_CHECK(index == 0, "device cpu:{} does not exist: there is one CPU device, cpu:0",
                  index);
      static CpuBackend backend;
      return backend;
    }, [] { return 1; });
  }
};
const Registration registration;
}  // namespace

}  // namespace nabla::cpu
