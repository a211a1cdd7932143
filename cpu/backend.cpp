// CpuBackend: memory and copies, and the registration of the CPU backend at library load.
#include <nabla/cpu/cpu_backend.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>

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
