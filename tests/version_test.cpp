// nabla/version.h: the version macros, nabla::version() and nabla::build_info(). The values
// CMake found when configuring reach this test as NABLA_TEST_EXPECT_* (tests/CMakeLists.txt).
#include <nabla/nabla.h>
#include <nabla/version.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>
#include <regex>
#include <string>

namespace nb = nabla;

TEST(Version, LibraryMatchesTheHeaders) {
  EXPECT_STREQ(nb::version(), NABLA_VERSION_STRING);
  EXPECT_EQ(std::string(NABLA_VERSION_STRING),
            fmt::format("{}.{}.{}", NABLA_VERSION_MAJOR, NABLA_VERSION_MINOR, NABLA_VERSION_PATCH));
  EXPECT_EQ(std::string(NABLA_VERSION_STRING), NABLA_TEST_EXPECT_VERSION);
  EXPECT_EQ(nb::build_info().version, nb::version());
}

TEST(Version, BuildInfoCuda) {
  const nb::BuildInfo b = nb::build_info();
  const std::regex dotted(R"(\d+\.\d+(\.\d+)*)");
#ifdef NABLA_WITH_CUDA
  EXPECT_TRUE(b.cuda);
  EXPECT_TRUE(std::regex_match(b.cuda_version, dotted)) << b.cuda_version;
  EXPECT_TRUE(std::regex_match(b.cudnn_version, dotted)) << b.cudnn_version;
#else
  EXPECT_FALSE(b.cuda);
  EXPECT_EQ(b.cuda_version, "");
  EXPECT_EQ(b.cudnn_version, "");
#endif
  EXPECT_EQ(b.cuda_version, NABLA_TEST_EXPECT_CUDA);
  EXPECT_EQ(b.cudnn_version, NABLA_TEST_EXPECT_CUDNN);
}

TEST(Version, BuildInfoCpu) {
  const nb::BuildInfo b = nb::build_info();
  EXPECT_EQ(b.onednn_version, NABLA_TEST_EXPECT_DNNL);
  EXPECT_EQ(b.onednn, !b.onednn_version.empty());
  if (b.onednn) {
    EXPECT_TRUE(std::regex_match(b.onednn_version, std::regex(R"(2\.\d+(\.\d+)*)"))) << b.onednn_version;
  }
  EXPECT_EQ(b.blas.rfind("OpenBLAS", 0), 0u) << b.blas;
}
