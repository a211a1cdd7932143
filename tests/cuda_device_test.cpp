// nabla::cuda device query: in every build, with or without a GPU. Tests that need a device
// skip themselves when there is none.
#include <nabla/core/error.h>
#include <nabla/cuda/device.h>

#include <gtest/gtest.h>

#include <string>

namespace nb = nabla;

TEST(CudaDevice, CountIsNonNegativeAndDoesNotThrow) {
  int n = -1;
  EXPECT_NO_THROW(n = nb::cuda::device_count());
  EXPECT_GE(n, 0);
  EXPECT_EQ(nb::cuda::available(), n > 0);
}

TEST(CudaDevice, InfoOfEveryDevice) {
  const int n = nb::cuda::device_count();
  if (n == 0) GTEST_SKIP() << "no CUDA device";
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE("device " + std::to_string(i));
    const nb::cuda::DeviceInfo info = nb::cuda::device_info(i);
    EXPECT_EQ(info.index, i);
    EXPECT_FALSE(info.name.empty());
    EXPECT_GT(info.total_memory, 0u);
    EXPECT_GT(info.free_memory, 0u);
    EXPECT_LE(info.free_memory, info.total_memory);
    EXPECT_GE(info.cc_major, 7);
    EXPECT_GE(info.cc_minor, 0);
    EXPECT_GT(info.sm_count, 0);
  }
}

TEST(CudaDevice, DefaultIndexIsDeviceZero) {
  if (nb::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(nb::cuda::device_info().index, 0);
}

// Runs everywhere: with no device, every index is out of range.
TEST(CudaDevice, OutOfRangeIndexThrowsNamingIndexAndCount) {
  const int n = nb::cuda::device_count();
  try {
    nb::cuda::device_info(n);
    FAIL() << "device_info(" << n << ") did not throw";
  } catch (const nb::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(n)), std::string::npos) << what;
  }
  EXPECT_THROW(nb::cuda::device_info(-1), nb::Error);
  EXPECT_THROW(nb::cuda::device_info(n + 7), nb::Error);
}

#ifdef NABLA_WITH_CUDA
TEST(CudaDevice, OutOfRangeMessageGivesDeviceCount) {
  const int n = nb::cuda::device_count();
  try {
    nb::cuda::device_info(n + 3);
    FAIL() << "did not throw";
  } catch (const nb::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::to_string(n + 3)), std::string::npos) << what;
    EXPECT_NE(what.find(std::to_string(n) + " CUDA device"), std::string::npos) << what;
  }
}
#else
TEST(CudaDevice, BuildWithoutCudaHasNoDevices) {
  EXPECT_EQ(nb::cuda::device_count(), 0);
  EXPECT_FALSE(nb::cuda::available());
  try {
    nb::cuda::device_info(0);
    FAIL() << "did not throw";
  } catch (const nb::Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}
#endif
