// Fixture and helpers shared by the CUDA test suites (cuda_parity_test, cuda_nn_parity_test).
//
// CudaTest skips a test without a CUDA device; otherwise it turns on the NaN fill of new device
// allocations (unless NABLA_TEST_POISON=0, for compute-sanitizer's initcheck, which the fill
// would hide uninitialized reads from), turns TF32 off, seeds the generator, and after the test
// synchronizes so that an error a kernel left on the device is charged to the test that caused it.
#pragma once

#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace nabla_test {

inline const nabla::Device kCuda = nabla::Device::cuda(0);

inline bool poison_wanted() {
  const char* env = std::getenv("NABLA_TEST_POISON");
  return !(env && std::string(env) == "0");
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (nabla::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    nabla::cuda::set_poison_allocations(poison_wanted());
    nabla::set_tf32(false);
    nabla::manual_seed(20240611);
  }
  void TearDown() override {
    if (nabla::cuda::device_count() == 0) return;
    // An error a kernel of this test left on the device belongs to this test, not the next.
    try {
      nabla::cuda::synchronize();
    } catch (const nabla::Error& e) {
      ADD_FAILURE() << "device error pending after the test: " << e.what();
    }
    nabla::cuda::set_poison_allocations(false);
    nabla::set_tf32(false);
  }
};

template <typename P>
class CudaParamTest : public CudaTest, public ::testing::WithParamInterface<P> {};

// Sets TF32 for its lifetime.
class Tf32Guard {
 public:
  explicit Tf32Guard(bool on) : prev_(nabla::tf32_enabled()) { nabla::set_tf32(on); }
  ~Tf32Guard() { nabla::set_tf32(prev_); }
  Tf32Guard(const Tf32Guard&) = delete;
  Tf32Guard& operator=(const Tf32Guard&) = delete;

 private:
  bool prev_;
};

}  // namespace nabla_test
