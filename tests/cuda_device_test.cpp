// nabla::cuda device query: in every build, with or without a GPU. Tests that need a device
// skip themselves when there is none.
#include <nabla/core/error.h>
#include <nabla/cuda/compat.cuh>
#include <nabla/core/device.h>
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

// ---- does the build fit the machine (cuda/compat.cuh; no GPU needed) -----------------------------

TEST(CudaCompat, NoKernelImageMessageNamesTheGpuAndTheOption) {
  const std::string m = nb::cuda::compat::no_kernel_image_message(1, "Tesla T4", 7, 5, "90-real,80-virtual");
  for (const char* part : {"cuda:1", "Tesla T4", "compute capability 7.5", "90-real,80-virtual",
                           "-DCMAKE_CUDA_ARCHITECTURES=75", "75-real"})
    EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
}

TEST(CudaCompat, CudnnVersionNumbersDecode) {
  using nb::cuda::compat::cudnn_version;
  using nb::cuda::compat::to_string;
  EXPECT_EQ(to_string(cudnn_version(91400)), "9.14.0");
  EXPECT_EQ(to_string(cudnn_version(90100)), "9.1.0");
  EXPECT_EQ(to_string(cudnn_version(91002)), "9.10.2");
  EXPECT_EQ(to_string(cudnn_version(8907)), "8.9.7");
}

TEST(CudaCompat, CudnnOlderAtRunTimeWarnsNewerOrSameDoesNot) {
  using nb::cuda::compat::cudnn_version_warning;
  EXPECT_EQ(cudnn_version_warning(91400, 91400), "");
  EXPECT_EQ(cudnn_version_warning(91400, 91401), "");
  EXPECT_EQ(cudnn_version_warning(91400, 92000), "");
  EXPECT_EQ(cudnn_version_warning(90100, 100000), "");  // a newer major: its problem to stay compatible
  const std::string older = cudnn_version_warning(91400, 90100);
  EXPECT_NE(older.find("cuDNN 9.1.0 was loaded, older than cuDNN 9.14.0"), std::string::npos) << older;
  EXPECT_NE(older.find("LD_LIBRARY_PATH"), std::string::npos) << older;
  EXPECT_NE(cudnn_version_warning(91400, 91300).find("older"), std::string::npos);
  EXPECT_NE(cudnn_version_warning(91401, 91400).find("older"), std::string::npos);
  const std::string major = cudnn_version_warning(91400, 8907);
  EXPECT_NE(major.find("different major version"), std::string::npos) << major;
}

// core/device.h reports for a GPU what the CUDA runtime says of it.
TEST(CudaDevice, DevicePropertiesAgreeWithTheRuntime) {
  const int n = nb::cuda::device_count();
  EXPECT_EQ(nb::device_count(nb::Device::Kind::CUDA), n);
  if (n == 0) GTEST_SKIP() << "no CUDA device";
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE("device " + std::to_string(i));
    const nb::cuda::DeviceInfo info = nb::cuda::device_info(i);
    const nb::DeviceProperties p = nb::device_properties(nb::Device::cuda(i));
    EXPECT_EQ(p.name, info.name);
    EXPECT_EQ(p.total_memory, info.total_memory);
    EXPECT_EQ(p.compute_units, info.sm_count);
    EXPECT_EQ(p.cc_major, info.cc_major);
    EXPECT_EQ(p.cc_minor, info.cc_minor);
  }
}
