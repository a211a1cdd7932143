// core/device.h: the device-neutral view of the devices present, in every build. CUDA cases skip
// themselves without a GPU.
#include <nabla/core/test_hooks.h>
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "test_util.h"

namespace nb = nabla;
using nb::test::error_of;

TEST(Devices, CpuIsAlwaysThereAndListedFirst) {
  EXPECT_EQ(nb::device_count(nb::Device::Kind::CPU), 1);
  const std::vector<nb::Device> all = nb::devices();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), nb::Device::cpu());
  const int cuda = nb::device_count(nb::Device::Kind::CUDA);
  EXPECT_GE(cuda, 0);
  EXPECT_EQ(all.size(), size_t(1 + cuda));
  for (int i = 0; i < cuda; ++i) EXPECT_EQ(all[1 + i], nb::Device::cuda(i));
}

TEST(Devices, CpuPropertiesAreSensible) {
  const nb::DeviceProperties p = nb::device_properties(nb::Device::cpu());
  EXPECT_EQ(p.device, nb::Device::cpu());
  EXPECT_FALSE(p.name.empty());
  EXPECT_GT(p.total_memory, size_t(1) << 20);
  EXPECT_GT(p.free_memory, 0u);
  EXPECT_LE(p.free_memory, p.total_memory);
  EXPECT_GE(p.compute_units, 1);
  EXPECT_EQ(p.cc_major, 0);
  EXPECT_EQ(p.cc_minor, 0);
}

TEST(Devices, MissingDeviceIsAnErrorNamingItAndTheCount) {
  std::string msg = error_of([] { nb::device_properties(nb::Device{nb::Device::Kind::CPU, 1}); });
  EXPECT_NE(msg.find("device_properties"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 CPU device is present"), std::string::npos) << msg;

  const int n = nb::device_count(nb::Device::Kind::CUDA);
  msg = error_of([&] { nb::synchronize(nb::Device::cuda(n)); });
  EXPECT_NE(msg.find("synchronize"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda:" + std::to_string(n)), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(n) + " CUDA device"), std::string::npos) << msg;
}

TEST(Devices, SynchronizeWaitsForQueuedWork) {
  EXPECT_NO_THROW(nb::synchronize(nb::Device::cpu()));
  EXPECT_NO_THROW(nb::synchronize());
  for (nb::Device d : nb::devices()) {
    SCOPED_TRACE(d.str());
    nb::Tensor x = nb::full({1 << 16}, 2.0, {.device = d});
    nb::Tensor y = nb::sum(x * x);
    nb::synchronize(d);
    EXPECT_EQ(y.item<double>(), 4.0 * (1 << 16));
  }
}

TEST(Devices, CudaPropertiesOfEveryGpu) {
  const int n = nb::device_count(nb::Device::Kind::CUDA);
  if (n == 0) GTEST_SKIP() << "no CUDA device";
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE("cuda:" + std::to_string(i));
    const nb::DeviceProperties p = nb::device_properties(nb::Device::cuda(i));
    EXPECT_EQ(p.device, nb::Device::cuda(i));
    EXPECT_FALSE(p.name.empty());
    EXPECT_GT(p.total_memory, 0u);
    EXPECT_GT(p.free_memory, 0u);
    EXPECT_LE(p.free_memory, p.total_memory);
    EXPECT_GT(p.compute_units, 0);
    EXPECT_GE(p.cc_major, 7);
  }
}

// The CPU backend keeps freed blocks of 1 MiB and more for the next allocation of the same size
// (cpu/backend.cpp): the newest first, never a block of another size. Off under AddressSanitizer.
TEST(Devices, CpuReusesFreedLargeBlocksOfTheSameSize) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the cache is off under AddressSanitizer";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "the cache is off under AddressSanitizer";
#endif
#endif
  nabla::Backend& be = nabla::test::cpu();
  nabla::test_hooks::release_cpu_block_cache();
  const size_t big = size_t{3} << 20, other = big + 4096;
  void* a = be.allocate(big);
  void* b = be.allocate(big);
  be.deallocate(a, big);
  be.deallocate(b, big);
  void* c = be.allocate(other);  // another size: not one of the cached blocks
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  void* d = be.allocate(big);  // the newest of the two
  void* e = be.allocate(big);
  EXPECT_EQ(d, b);
  EXPECT_EQ(e, a);
  for (void* p : {d, e}) be.deallocate(p, big);
  be.deallocate(c, other);
  EXPECT_EQ(nabla::test_hooks::cpu_block_cache_bytes(), 2 * big + other);
  // A size that does not come back leaves after 256 later frees of large blocks.
  for (int i = 0; i < 300; ++i) be.deallocate(be.allocate(big), big);
  EXPECT_EQ(nabla::test_hooks::cpu_block_cache_bytes(), big);
  nabla::test_hooks::release_cpu_block_cache();
  EXPECT_EQ(nabla::test_hooks::cpu_block_cache_bytes(), 0u);
}
