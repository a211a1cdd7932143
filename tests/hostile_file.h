// Helpers for the suites that feed readers hostile files (tests/data_test.cpp,
// tests/safetensors_test.cpp): an allocation watch and a matcher for nabla::Error messages.
//
// Include this header in exactly one source file of a test binary: it defines the replacement
// global operator new and the program's aligned_alloc.
#pragma once

#include <gtest/gtest.h>
#include <nabla/core/error.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

// ---- allocation watch
// ---------------------------------------------------------------------------- Replacing the global
// operator new, and defining aligned_alloc (which the CPU backend uses for tensor storage), lets a
// test see the largest single allocation the library made while reading a hostile file: libnabla's
// calls resolve to these definitions too.
namespace nabla_test_alloc {
inline std::atomic<bool> watch{false};
inline std::atomic<size_t> largest{0};
inline void note(size_t n) {
  if (watch.load(std::memory_order_relaxed)) {
    size_t prev = largest.load(std::memory_order_relaxed);
    while (n > prev && !largest.compare_exchange_weak(prev, n)) {
    }
  }
}
}  // namespace nabla_test_alloc

// GCC inlines these and then warns that free() meets a pointer from `new`; that pairing is
// exactly what a replacement allocator does.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  nabla_test_alloc::note(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
// The nothrow forms too (std::stable_sort's temporary buffer uses one): libstdc++'s own would
// call the replacement above, but under ASan they are ASan's, whose memory then reaches the
// free() below and is reported as an operator-new-vs-free mismatch.
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  nabla_test_alloc::note(n);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

// posix_memalign is glibc's own entry point, so this does not call itself; memory from it is
// released with free(), like aligned_alloc's.
extern "C" void* aligned_alloc(size_t alignment, size_t n) noexcept {
  nabla_test_alloc::note(n);
  void* p = nullptr;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  return posix_memalign(&p, alignment, n) == 0 ? p : nullptr;
}

namespace {

// Records the largest single allocation (operator new or aligned_alloc) while alive.
struct AllocWatch {
  AllocWatch() {
    nabla_test_alloc::largest = 0;
    nabla_test_alloc::watch = true;
  }
  ~AllocWatch() { nabla_test_alloc::watch = false; }
  size_t largest() const { return nabla_test_alloc::largest.load(); }
};

// Passes when f throws nabla::Error whose message contains every entry of `words`; an entry
// "a|b" accepts either alternative.
template <typename F>
::testing::AssertionResult ThrowsWith(F&& f, const std::vector<std::string>& words) {
  try {
    f();
  } catch (const nabla::Error& e) {
    const std::string msg = e.what();
    for (const std::string& w : words) {
      bool found = false;
      size_t start = 0;
      while (!found) {
        size_t bar = w.find('|', start);
        std::string alt =
            w.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
        found = msg.find(alt) != std::string::npos;
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      if (!found)
        return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << w << "\"";
    }
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-nabla exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace
