// Helpers shared by the test suites: float64 inputs kept off kinks, the central-difference
// gradient checker, literal tensors, value comparison, error-message capture, and the helpers of
// the CPU kernel tests (host buffers, strided layouts) that call nabla::Backend directly.
#pragma once

#include <nabla/core/backend.h>
#include <nabla/core/log.h>
#include <nabla/core/ops.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

namespace nabla::test {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
using Tensors = std::vector<Tensor>;

inline const TensorOptions kF64{.dtype = DType::float64};
inline const TensorOptions kF32{.dtype = DType::float32};

// A float64 tensor from literal values (1-D when shape is empty).
inline Tensor f64(std::vector<double> v, Shape shape = {}) {
  return from_vector(v, shape, kF64);
}
inline Tensor f32(std::vector<double> v, Shape shape = {}) {
  return from_vector(v, shape, kF32);
}
inline Tensor i64(std::vector<int64_t> v, Shape shape = {}) { return from_vector(v, shape); }
inline Tensor i32(std::vector<int32_t> v, Shape shape = {}) { return from_vector(v, shape); }

// Random float64 input of `shape` with values in [lo, hi), each at least `gap` away from every
// point of `kinks` (so that a central difference never straddles a kink).
inline Tensor input(const Shape& shape, double lo = -2, double hi = 2, std::vector<double> kinks = {0.0},
                    double gap = 0.05) {
  NoGrad ng;
  std::vector<double> v = rand(shape, kF64, lo, hi).to_vector<double>();
  for (double& x : v)
    for (double k : kinks)
      if (std::abs(x - k) < gap) x = x < k ? k - gap : k + gap;
  if (shape.empty()) return scalar(v[0], kF64);
  return from_vector(v, shape, kF64);
}

// "2x3x4" for a shape, "0d" for a scalar: for test names.
inline std::string shape_name(const Shape& s) {
  if (s.empty()) return "0d";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0) out += 'x';
    out += std::to_string(s[i]);
  }
  return out;
}

// "[i, j, k]" for flat index `flat` of a row-major tensor of `shape`.
inline std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] > 0 ? flat % shape[d] : 0;
    flat = shape[d] > 0 ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 20240611;  // weighting w and starting gradients G0
};

// Checks the gradient of f at `inputs` against central differences.
//
// f may return any shape; it is reduced to the scalar L = sum(f(x) * w) with w a fixed random
// weighting, so every output element's gradient path is exercised with a distinct weight. Each
// float64 input becomes a fresh leaf that requires grad; other inputs (integer labels) are passed
// through untouched. Before backward, each leaf's .grad() is set to a known non-zero G0, so that
// the check also proves that backward adds: expected = G0 + dL/dx (numeric).
inline ::testing::AssertionResult gradcheck(const Fn& f, std::vector<Tensor> inputs,
                                            GradCheckOptions o = {}) {
  const RngState saved = rng_state();
  manual_seed(o.seed);
  std::vector<bool> checked(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    checked[i] = inputs[i].dtype() == DType::float64;
    if (is_floating(inputs[i].dtype()) && !checked[i])
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " is " << dtype_name(inputs[i].dtype())
                                           << "; the checker runs in float64";
    if (checked[i]) inputs[i] = inputs[i].detach().clone().requires_grad_(true);
  }
  Tensor out = f(inputs);
  if (!out.requires_grad()) return ::testing::AssertionFailure() << "gradcheck: output does not require grad";
  Tensor w = rand(out.shape(), kF64, 0.5, 1.5);
  std::vector<Tensor> g0(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!checked[i]) continue;
    g0[i] = rand(inputs[i].shape(), kF64, -1, 1);
    inputs[i].set_grad(g0[i].clone());  // a copy: backward accumulates into it in place
  }
  set_rng_state(saved);
  sum(mul(out, w)).backward();

  NoGrad ng;
  auto loss = [&](const std::vector<Tensor>& xs) { return sum(mul(f(xs), w)).item(); };
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!checked[i]) continue;
    Tensor g = inputs[i].grad();
    if (!g.defined()) return ::testing::AssertionFailure() << "input " << i << " got no gradient";
    if (g.shape() != inputs[i].shape())
      return ::testing::AssertionFailure() << "input " << i << " " << shape_str(inputs[i].shape())
                                           << " got a gradient of shape " << shape_str(g.shape());
    const std::vector<double> analytic = g.to_vector<double>();
    const std::vector<double> base = g0[i].to_vector<double>();
    const std::vector<double> v = inputs[i].to_vector<double>();
    std::vector<Tensor> xs(inputs.size());
    for (size_t k = 0; k < inputs.size(); ++k) xs[k] = inputs[k].detach();
    for (size_t j = 0; j < v.size(); ++j) {
      auto at = [&](double val) {
        std::vector<double> p = v;
        p[j] = val;
        xs[i] = inputs[i].dim() == 0 ? scalar(val, kF64) : from_vector(p, inputs[i].shape(), kF64);
        return loss(xs);
      };
      const double numeric = (at(v[j] + o.eps) - at(v[j] - o.eps)) / (2 * o.eps);
      const double expected = base[j] + numeric;
      if (!(std::abs(analytic[j] - expected) <= o.atol + o.rtol * std::abs(expected)))
        return ::testing::AssertionFailure()
               << "input " << i << " " << shape_str(inputs[i].shape()) << " at " << index_str(inputs[i].shape(), j)
               << ": analytic " << analytic[j] - base[j] << " (grad " << analytic[j] << " minus G0 " << base[j]
               << "), numeric " << numeric;
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs f on float32 copies of the float64 inputs and checks that the float32 forward values and
// gradients (of the same weighted sum as gradcheck) agree with float64 to |d| <= tol*(1 + |ref|):
// catches float32-only kernel paths that the float64 gradient check cannot see.
inline ::testing::AssertionResult float32_agrees(const Fn& f, const std::vector<Tensor>& inputs, double tol = 1e-4,
                                                 uint64_t seed = 20240611) {
  const RngState saved = rng_state();
  manual_seed(seed);
  std::vector<Tensor> x64(inputs.size()), x32(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype() == DType::float64) {
      x64[i] = inputs[i].detach().clone().requires_grad_(true);
      x32[i] = inputs[i].detach().to(DType::float32).requires_grad_(true);
    } else {
      x64[i] = x32[i] = inputs[i];
    }
  }
  Tensor o64 = f(x64), o32 = f(x32);
  if (o32.dtype() != DType::float32)
    return ::testing::AssertionFailure() << "float32 inputs gave a " << dtype_name(o32.dtype()) << " output";
  if (o32.shape() != o64.shape())
    return ::testing::AssertionFailure() << "float32 output " << shape_str(o32.shape()) << " vs float64 "
                                         << shape_str(o64.shape());
  Tensor w = rand(o64.shape(), kF64, 0.5, 1.5);
  set_rng_state(saved);
  sum(mul(o64, w)).backward();
  sum(mul(o32, w.to(DType::float32))).backward();
  auto compare = [tol](const Tensor& a, const Tensor& ref, const std::string& what) -> ::testing::AssertionResult {
    const auto av = a.to_vector<double>(), rv = ref.to_vector<double>();
    for (size_t j = 0; j < rv.size(); ++j)
      if (!(std::abs(av[j] - rv[j]) <= tol * (1 + std::abs(rv[j]))))
        return ::testing::AssertionFailure() << what << " at " << index_str(ref.shape(), static_cast<int64_t>(j))
                                             << ": float32 " << av[j] << ", float64 " << rv[j];
    return ::testing::AssertionSuccess();
  };
  if (auto r = compare(o32, o64, "forward"); !r) return r;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype() != DType::float64) continue;
    if (!x32[i].grad().defined()) return ::testing::AssertionFailure() << "float32 input " << i << " got no gradient";
    if (x32[i].grad().dtype() != DType::float32)
      return ::testing::AssertionFailure() << "float32 input " << i << " got a " << dtype_name(x32[i].grad().dtype())
                                           << " gradient";
    if (auto r = compare(x32[i].grad(), x64[i].grad(), "gradient of input " + std::to_string(i)); !r) return r;
  }
  return ::testing::AssertionSuccess();
}

// Element-wise |actual - expected| <= atol + rtol*|expected|, with shapes equal.
inline ::testing::AssertionResult near(const Tensor& actual, const std::vector<double>& expected,
                                       const Shape& shape, double atol = 1e-6, double rtol = 1e-6) {
  if (!actual.defined()) return ::testing::AssertionFailure() << "tensor is undefined";
  if (actual.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << ", expected " << shape_str(shape);
  const std::vector<double> a = actual.to_vector<double>();
  if (a.size() != expected.size())
    return ::testing::AssertionFailure() << a.size() << " values, expected " << expected.size();
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(expected[i]);
    const bool same_inf = std::isinf(expected[i]) && a[i] == expected[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(a[i] - expected[i]) <= atol + rtol * std::abs(expected[i])))
      return ::testing::AssertionFailure() << "at " << index_str(shape, static_cast<int64_t>(i)) << ": " << a[i]
                                           << ", expected " << expected[i];
  }
  return ::testing::AssertionSuccess();
}

// t has `shape` and each element is within tol * max(1, |want|) of `want` (row-major); +-inf must
// match exactly, NaN must be NaN. Unlike near(), the failure message prints the whole tensor.
inline ::testing::AssertionResult values(const Tensor& t, const Shape& shape, const std::vector<double>& want,
                                         double tol = 1e-6) {
  if (!t.defined()) return ::testing::AssertionFailure() << "tensor is undefined";
  if (t.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(t.shape()) << ", expected " << shape_str(shape);
  std::vector<double> got = t.to_vector<double>();
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << got.size() << " values, expected " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w))
      ok = std::isnan(g);
    else if (std::isinf(w))
      ok = g == w;
    else
      ok = std::abs(g - w) <= tol * std::max(1.0, std::abs(w));
    if (!ok)
      return ::testing::AssertionFailure() << "element " << i << " is " << ::testing::PrintToString(g)
                                           << ", expected " << ::testing::PrintToString(w) << " (tol " << tol
                                           << ")\n"
                                           << t;
  }
  return ::testing::AssertionSuccess();
}

// A tight tolerance for values() of float64 results.
inline constexpr double kTight = 1e-12;

// The message of the nabla::Error that f throws, or "(no error)" / "(other exception: ...)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(other exception: ") + e.what() + ")";
  }
  return "(no error)";
}

// Records the messages logged while it lives (core/log.h), in place of the sink there was.
struct LogCapture {
  using Message = std::pair<LogLevel, std::string>;
  std::shared_ptr<std::vector<Message>> messages = std::make_shared<std::vector<Message>>();
  ScopedLogSink sink{[m = messages](LogLevel level, std::string_view text) { m->emplace_back(level, text); }};

  // The texts logged at `level`.
  std::vector<std::string> at(LogLevel level) const {
    std::vector<std::string> out;
    for (const auto& [l, text] : *messages)
      if (l == level) out.push_back(text);
    return out;
  }
};

// `name` in a scratch folder of this test binary and process (<tmp>/<suite>_<pid>/), created.
inline std::string temp_path(const std::string& suite, const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (suite + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// A gtest-safe name from free text: "matmul [2,3]x[3]" -> "matmul__2_3_x_3_".
inline std::string test_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

// A named gradient-check case, for parameterized suites.
struct GradCase {
  std::string name;                       // op and shapes: becomes the test name
  Fn f;                                   // the function whose gradient is checked
  std::function<Tensors()> make_inputs;   // called inside the test, after seeding
  GradCheckOptions options = {};
};

inline std::string grad_case_name(const ::testing::TestParamInfo<GradCase>& info) {
  return test_name(info.param.name);
}

inline void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

// ---- CPU kernels called directly through nabla::Backend on host buffers --------------------------

inline nabla::Backend& cpu() { return nabla::backend_for(nabla::Device::Kind::CPU); }

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kInf = std::numeric_limits<double>::infinity();

inline std::vector<double> random_values(size_t n, double lo, double hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

inline nabla::StridedLayout layout(std::vector<int64_t> shape, std::vector<int64_t> out, std::vector<int64_t> a,
                                   std::vector<int64_t> b = {}) {
  nabla::StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    l.shape[d] = shape[d];
    l.out_stride[d] = out[d];
    l.a_stride[d] = a[d];
    l.b_stride[d] = b.empty() ? 0 : b[d];
  }
  return l;
}

inline std::vector<int64_t> contiguous(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

// Calls f(out_offset, a_offset, b_offset) for every index of l, in row-major order.
inline void for_each_index(const nabla::StridedLayout& l,
                           const std::function<void(int64_t, int64_t, int64_t)>& f) {
  int64_t total = 1;
  for (int d = 0; d < l.ndim; ++d) total *= l.shape[d];
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t rest = flat, o = 0, a = 0, b = 0;
    for (int d = l.ndim - 1; d >= 0; --d) {
      const int64_t i = rest % l.shape[d];
      rest /= l.shape[d];
      o += i * l.out_stride[d];
      a += i * l.a_stride[d];
      b += i * l.b_stride[d];
    }
    f(o, a, b);
  }
}

inline void expect_close(double got, double want, double rtol, double atol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": got " << got << ", want NaN";
    return;
  }
  EXPECT_LE(std::abs(got - want), atol + rtol * std::abs(want))
      << what << ": got " << got << ", want " << want;
}

}  // namespace nabla::test
