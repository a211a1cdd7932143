// Fixture and helpers shared by the CUDA test suites (cuda_parity_test, cuda_nn_parity_test,
// cuda_rnn_parity_test).
//
// CudaTest skips a test without a CUDA device; otherwise it turns on the NaN fill of new device
// allocations (unless NABLA_TEST_POISON=0, for compute-sanitizer's initcheck, which the fill
// would hide uninitialized reads from), turns TF32 off, seeds the generator, and after the test
// synchronizes so that an error a kernel left on the device is charged to the test that caused it.
#pragma once

#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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

// ---- comparison (shared by the CUDA parity suites) ---------------------------------------------

inline std::string dims(const nabla::Shape& s) { return fmt::format("{}", fmt::join(s, "x")); }

struct Tol {
  double rtol = 1e-3;
  double atol = 1e-5;
};

// got (on CUDA) against ref (on the CPU); NaN must match NaN when nan_ok, else NaN on CUDA fails.
inline ::testing::AssertionResult close(const nabla::Tensor& got, const nabla::Tensor& ref, Tol tol,
                                        const std::string& what, bool nan_ok = false) {
  if (!got.defined() || !ref.defined())
    return ::testing::AssertionFailure() << what << ": result undefined (cuda " << got.defined() << ", cpu "
                                         << ref.defined() << ")";
  if (!got.device().is_cuda()) return ::testing::AssertionFailure() << what << ": CUDA result is on the CPU";
  if (got.shape() != ref.shape() || got.dtype() != ref.dtype())
    return ::testing::AssertionFailure() << what << ": CUDA gives " << dims(got.shape()) << ", CPU " << dims(ref.shape());
  const std::vector<double> g = got.to_vector<double>(), r = ref.to_vector<double>();
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok;
    if (std::isnan(g[i]) || std::isnan(r[i])) {
      ok = nan_ok && std::isnan(g[i]) && std::isnan(r[i]);
    } else {
      const double err = std::abs(g[i] - r[i]), allowed = tol.atol + tol.rtol * std::abs(r[i]);
      ok = err <= allowed;
      worst = std::max(worst, err / allowed);
    }
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << fmt::format(
             "{} ({}): {} of {} elements differ; first at flat index {}: cuda {:.9g}, cpu {:.9g} (rtol {:g}, atol "
             "{:g}); worst finite error {:.3g}x allowed",
             what, dims(ref.shape()), bad, g.size(), first, g[first], r[first], tol.rtol, tol.atol, worst);
}

// Same bytes, both on CUDA (reruns of one computation).
inline ::testing::AssertionResult same_bits(const nabla::Tensor& a, const nabla::Tensor& b,
                                            const std::string& what) {
  const nabla::Tensor ca = a.detach().to(nabla::Device::cpu()).contiguous();
  const nabla::Tensor cb = b.detach().to(nabla::Device::cpu()).contiguous();
  if (ca.shape() != cb.shape()) return ::testing::AssertionFailure() << what << ": shapes differ";
  const size_t bytes = size_t(ca.numel()) * nabla::dtype_size(ca.dtype());
  if (std::memcmp(ca.data_ptr(), cb.data_ptr(), bytes) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": the two runs differ in their bits";
}

}  // namespace nabla_test
