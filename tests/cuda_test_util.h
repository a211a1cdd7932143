// Fixture and helpers shared by the CUDA test suites (the cuda_<family>_parity_test suites,
// cuda_nn_parity_test, cuda_rnn_parity_test), and the op parity check (nabla::test::parity).
//
// CudaTest skips a test without a CUDA device; otherwise it turns on the NaN fill of new device
// allocations (unless NABLA_TEST_POISON=0, for compute-sanitizer's initcheck, which the fill
// would hide uninitialized reads from), turns TF32 off, seeds the generator, and after the test
// synchronizes so that an error a kernel left on the device is charged to the test that caused it.
#pragma once

#include <nabla/cuda/device.h>
#include <nabla/cuda/test_hooks.cuh>
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace nabla::test {

inline const nabla::Device kCuda = nabla::Device::cuda(0);

inline bool poison_wanted() {
  const char* env = std::getenv("NABLA_TEST_POISON");
  return !(env && std::string(env) == "0");
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (nabla::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    nabla::cuda::test_hooks::set_poison_allocations(poison_wanted());
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
    nabla::cuda::test_hooks::set_poison_allocations(false);
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

}  // namespace nabla::test

// ---- op parity: one function on random CPU inputs and on their copies on cuda:0 -----------------
//
// The CPU backend is the reference. Each check makes random CPU inputs (batch > 1, sizes that
// reach every launch branch: 1, 7, 1023, 4097 and 2^20 + 3 elements, contiguous, at an odd
// offset, transposed, strided and with a leading-dimension gap), copies them to cuda:0, runs the
// same function on both, compares the outputs with |cuda - cpu| <= atol + rtol * |cpu|, then runs
// backward of sum(out * w) with one random w on both and compares every input's gradient the
// same way. New device allocations are filled with NaN (cuda::test_hooks::set_poison_allocations), so an
// output element a kernel never writes shows up as NaN, and NaN on the CUDA side always fails.
//
// Tolerances, float32: 1e-4 relative for elementwise work; 1e-3 for reductions, softmax and
// products whose inner dimension is long; absolute terms scaled with sqrt(reduced length) where
// sums may cancel. float64: about 1e-11. TF32 (nb::set_tf32(true)): 5e-3.
// Used by the cuda_<family>_parity_test suites, through `using namespace nabla::test::parity`.
namespace nb = nabla;

namespace nabla::test::parity {

// What a suite's `using namespace nabla::test::parity` brings besides the check itself.
using nabla::test::CudaParamTest;
using nabla::test::CudaTest;
using nabla::test::kCuda;
using nabla::test::poison_wanted;
using nabla::test::shape_name;
using nabla::test::Tf32Guard;
using nb::DType;
using nb::Reduction;
using nb::Shape;
using nb::Tensor;

inline constexpr int64_t kBig = (int64_t{1} << 20) + 3;  // past one grid of blocks, not a multiple of 4

// ---- names -------------------------------------------------------------------------------------

inline std::string axes_name(const std::vector<int64_t>& axes) {
  if (axes.empty()) return "all";
  std::string out = "axes";
  for (int64_t a : axes) out += "_" + (a < 0 ? "m" + std::to_string(-a) : std::to_string(a));
  return out;
}

// ---- inputs ------------------------------------------------------------------------------------

// How an input of logical shape S reaches the op. Every layout but `contiguous` is a view of a
// larger or permuted base tensor; the gradient is compared on the base.
enum class Layout {
  contiguous,
  offset,      // base [S0 + 1, ...] sliced from row 1: contiguous, data pointer not 16-byte aligned
  transposed,  // base with the last two axes swapped, transposed back
  strided,     // base [..., 2 * Sn + 1] sliced with step 2 from element 1
  narrow,      // base [..., Sn + 5] sliced [2, 2 + Sn): rows with a gap (ld > columns), odd offset
};

inline const char* layout_suffix(Layout l) {
  switch (l) {
    case Layout::contiguous: return "";
    case Layout::offset: return "_offset";
    case Layout::transposed: return "_transposed";
    case Layout::strided: return "_strided";
    case Layout::narrow: return "_narrow";
  }
  return "";
}

inline Shape base_shape(const Shape& s, Layout l) {
  Shape b = s;
  switch (l) {
    case Layout::contiguous: break;
    case Layout::offset: b[0] += 1; break;
    case Layout::transposed: std::swap(b[b.size() - 1], b[b.size() - 2]); break;
    case Layout::strided: b.back() = 2 * b.back() + 1; break;
    case Layout::narrow: b.back() += 5; break;
  }
  return b;
}

inline Tensor view_of(const Tensor& base, const Shape& s, Layout l) {
  switch (l) {
    case Layout::contiguous: return base;
    case Layout::offset: return base.slice(0, 1, 1 + s[0]);
    case Layout::transposed: return base.transpose(-2, -1);
    case Layout::strided: return base.slice(-1, 1, 1 + 2 * s.back(), 2);
    case Layout::narrow: return base.slice(-1, 2, 2 + s.back());
  }
  return base;
}

struct Arg {
  Shape shape;
  Layout layout = Layout::contiguous;
  double lo = -2, hi = 2;
  double gap = 0;      // > 0: values closer than this to 0 are pushed out to +-gap (divisors)
  double quantum = 0;  // > 0: values rounded to multiples of it (ties for comparisons, max)
  bool grad = true;    // compare this input's gradient
  std::function<Tensor()> make = nullptr;  // a given CPU tensor (labels, targets) used as is
};

inline Arg arg(Shape shape, double lo = -2, double hi = 2, Layout layout = Layout::contiguous) {
  return Arg{.shape = std::move(shape), .layout = layout, .lo = lo, .hi = hi};
}
inline Arg given(std::function<Tensor()> make, bool grad = false) {
  Arg a;
  a.grad = grad;
  a.make = std::move(make);
  return a;
}

inline Tensor random_base(const Arg& a, DType dtype) {
  const Shape bs = base_shape(a.shape, a.layout);
  Tensor t = nb::rand(bs, {.dtype = dtype}, a.lo, a.hi);
  if (a.gap <= 0 && a.quantum <= 0) return t;
  std::vector<double> v = t.to_vector<double>();
  for (double& x : v) {
    if (a.quantum > 0) x = std::round(x / a.quantum) * a.quantum;
    if (a.gap > 0 && std::abs(x) < a.gap) x = x < 0 ? -a.gap : a.gap;
  }
  return nb::from_vector(v, bs.empty() ? Shape{1} : bs, {.dtype = dtype}).reshape(bs);
}

// Integer class labels in [0, c), from a fixed seed.
inline Tensor labels(int64_t n, int64_t c, DType dtype = DType::int64, uint64_t seed = 5) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> d(0, c - 1);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(gen);
  return nb::from_vector(v, {n}, {.dtype = dtype});
}

// ---- comparison --------------------------------------------------------------------------------

struct Tol {
  double rtol = 1e-4;
  double atol = 1e-6;
};

// Tolerance for sums of r terms of magnitude about 1 that may cancel.
inline Tol sum_tol(int64_t r) { return {r > 64 ? 1e-3 : 1e-4, r > 1 ? 1e-5 * std::sqrt(double(r)) : 1e-6}; }

// got (on CUDA) against ref (on the CPU). NaN on the CUDA side fails, since it is what an element
// no kernel wrote reads as, except where nan_ok and the CPU has NaN there too; infinities must
// be equal.
inline ::testing::AssertionResult allclose(const Tensor& got, const Tensor& ref, Tol tol, const std::string& what,
                                           bool nan_ok = false) {
  if (!got.defined() || !ref.defined())
    return ::testing::AssertionFailure() << what << ": " << (got.defined() ? "" : "CUDA result undefined ")
                                         << (ref.defined() ? "" : "CPU result undefined");
  if (!got.device().is_cuda())
    return ::testing::AssertionFailure() << what << ": CUDA result is on " << got.device().str();
  if (got.shape() != ref.shape() || got.dtype() != ref.dtype())
    return ::testing::AssertionFailure() << what << ": CUDA gives " << shape_name(got.shape()) << " "
                                         << nb::dtype_name(got.dtype()) << ", CPU " << shape_name(ref.shape())
                                         << " " << nb::dtype_name(ref.dtype());
  const std::vector<double> g = got.to_vector<double>(), r = ref.to_vector<double>();
  int64_t bad = 0, nans = 0, first = -1;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double a = g[i], b = r[i];
    bool ok;
    if (std::isnan(a)) {
      ok = nan_ok && std::isnan(b);
      nans += !ok;
    } else if (std::isnan(b)) {
      ok = false;  // the test's inputs are outside the op's domain
    } else if (std::isinf(a) || std::isinf(b)) {
      ok = a == b;
    } else {
      const double err = std::abs(a - b), allowed = tol.atol + tol.rtol * std::abs(b);
      ok = err <= allowed;
      worst = std::max(worst, err / allowed);
    }
    if (!ok) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  const double a = g[first], b = r[first];
  return ::testing::AssertionFailure() << fmt::format(
             "{} ({} {}): {} of {} elements differ, {} of them NaN on CUDA (unwritten?); first at {}: cuda {:.9g}, "
             "cpu {:.9g}, |diff| {:.3g}, allowed {:.3g} (rtol {:g}, atol {:g}); worst finite error {:.3g}x allowed",
             what, shape_name(ref.shape()), nb::dtype_name(ref.dtype()), bad, g.size(), nans,
             index_str(ref.shape(), first), a, b, std::abs(a - b), tol.atol + tol.rtol * std::abs(b), tol.rtol,
             tol.atol, worst);
}

// Same bytes (after moving both to the CPU).
inline ::testing::AssertionResult same_bits(const Tensor& got, const Tensor& ref, const std::string& what) {
  if (got.shape() != ref.shape() || got.dtype() != ref.dtype())
    return ::testing::AssertionFailure() << what << ": shape or dtype differs: " << shape_name(got.shape()) << " "
                                         << nb::dtype_name(got.dtype()) << " vs " << shape_name(ref.shape()) << " "
                                         << nb::dtype_name(ref.dtype());
  Tensor g = got.detach().to(nb::Device::cpu()).contiguous(), r = ref.detach().to(nb::Device::cpu()).contiguous();
  const size_t es = nb::dtype_size(g.dtype());
  const auto* pg = static_cast<const unsigned char*>(g.data_ptr());
  const auto* pr = static_cast<const unsigned char*>(r.data_ptr());
  for (int64_t i = 0; i < g.numel(); ++i)
    if (std::memcmp(pg + i * es, pr + i * es, es) != 0) {
      int64_t bad = 0;
      for (int64_t j = i; j < g.numel(); ++j) bad += std::memcmp(pg + j * es, pr + j * es, es) != 0;
      const auto gv = g.to_vector<double>(), rv = r.to_vector<double>();
      return ::testing::AssertionFailure() << fmt::format("{} ({} {}): {} of {} elements differ; first at {}: cuda {:.17g}, cpu {:.17g}",
                                                          what, shape_name(r.shape()), nb::dtype_name(r.dtype()), bad,
                                                          g.numel(), index_str(r.shape(), i), gv[i], rv[i]);
    }
  return ::testing::AssertionSuccess();
}

// Each pair of parameters (after the same steps on both devices) within tol.
inline ::testing::AssertionResult params_close(const std::vector<Tensor>& gpu, const std::vector<Tensor>& cpu, Tol tol,
                                               const std::string& when) {
  if (gpu.size() != cpu.size()) return ::testing::AssertionFailure() << "parameter counts differ";
  for (size_t i = 0; i < cpu.size(); ++i) {
    auto r = allclose(gpu[i], cpu[i], tol, fmt::format("{}: parameter {}", when, i));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

// ---- the parity check --------------------------------------------------------------------------

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Options {
  DType dtype = DType::float32;
  Tol fwd;
  Tol bwd;
  bool backward = true;
  bool accumulate = false;  // every gradient starts at a random G0: backward must add to it
};

// Runs f on random CPU inputs and on their copies on cuda:0, and compares outputs and gradients.
inline ::testing::AssertionResult parity(const Fn& f, const std::vector<Arg>& args, const Options& o) {
  std::vector<Tensor> cpu_base, gpu_base, cpu_in, gpu_in;
  std::vector<bool> grad;
  for (const Arg& a : args) {
    Tensor base = a.make ? a.make() : random_base(a, o.dtype);
    const bool g = a.grad && nb::is_floating(base.dtype());
    Tensor c = base.detach().clone(), d = base.detach().to(kCuda);
    if (g) {
      c.requires_grad_(true);
      d.requires_grad_(true);
      if (o.accumulate) {
        Tensor g0 = nb::rand(base.shape(), {.dtype = base.dtype()}, -1, 1);
        c.set_grad(g0.clone());
        d.set_grad(g0.to(kCuda));
      }
    }
    cpu_base.push_back(c);
    gpu_base.push_back(d);
    grad.push_back(g);
    cpu_in.push_back(a.make ? c : view_of(c, a.shape, a.layout));
    gpu_in.push_back(a.make ? d : view_of(d, a.shape, a.layout));
  }
  Tensor out_c = f(cpu_in);
  Tensor out_g = f(gpu_in);
  auto r = allclose(out_g, out_c, o.fwd, "forward");
  if (!r) return r;
  if (!o.backward) return ::testing::AssertionSuccess();
  if (!out_c.requires_grad() || !out_g.requires_grad())
    return ::testing::AssertionFailure() << "output does not require grad (cpu " << out_c.requires_grad() << ", cuda "
                                         << out_g.requires_grad() << ")";
  Tensor w = nb::rand(out_c.shape(), {.dtype = out_c.dtype()}, 0.5, 1.5);
  nb::sum(nb::mul(out_c, w)).backward();
  nb::sum(nb::mul(out_g, w.to(kCuda))).backward();
  for (size_t i = 0; i < args.size(); ++i) {
    if (!grad[i]) continue;
    r = allclose(gpu_base[i].grad(), cpu_base[i].grad(), o.bwd, fmt::format("gradient of input {}", i));
    if (!r) return r;
  }
  if (nb::tape_size() != 0) return ::testing::AssertionFailure() << nb::tape_size() << " tape entries left";
  return ::testing::AssertionSuccess();
}

inline Options f32(Tol fwd = {}, Tol bwd = {}) { return {.dtype = DType::float32, .fwd = fwd, .bwd = bwd}; }
inline Options f64(Tol fwd = {1e-11, 1e-13}, Tol bwd = {1e-11, 1e-13}) {
  return {.dtype = DType::float64, .fwd = fwd, .bwd = bwd};
}
inline Options forward_only(Tol fwd = {}) {
  Options o;
  o.fwd = fwd;
  o.backward = false;
  return o;
}

enum class Precision { f32, f64, tf32 };

// Tolerance for a product whose longest sum (forward or either gradient) has `len` terms.
inline Options gemm_options(int64_t len, Precision p) {
  const double s = std::sqrt(double(std::max<int64_t>(len, 1)));
  switch (p) {
    case Precision::f64: return f64({1e-10, 1e-12 * s}, {1e-10, 1e-12 * s});
    case Precision::tf32: return f32({5e-3, 2e-3 * s}, {5e-3, 2e-3 * s});
    case Precision::f32: break;
  }
  const Tol t{len > 256 ? 1e-3 : 1e-4, 1e-5 * s};
  return f32(t, t);
}

// A named parity check: inputs, function, options.
struct Case {
  std::string name;
  std::vector<Arg> args;
  Fn f;
  Options o;
};
inline std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }
// gtest prints a parameter when a test fails: the name, not the struct's bytes.
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Parity : public CudaParamTest<Case> {};
TEST_P(Parity, ForwardBackward) {
  const Case& c = GetParam();
  EXPECT_TRUE(parity(c.f, c.args, c.o));
}
// Suites of the shared header that run no Parity case (the nn, rnn, memory suites) are fine.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Parity);

}  // namespace nabla::test::parity
