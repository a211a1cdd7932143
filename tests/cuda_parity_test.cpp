// CPU-vs-CUDA parity of every op, forward and backward, and of the optimizers and a training run.
//
// The CPU backend is the reference. Each check makes random CPU inputs (batch > 1, sizes that
// reach every launch branch: 1, 7, 1023, 4097 and 2^20 + 3 elements, contiguous, at an odd
// offset, transposed, strided and with a leading-dimension gap), copies them to cuda:0, runs the
// same function on both, compares the outputs with |cuda - cpu| <= atol + rtol * |cpu|, then runs
// backward of sum(out * w) with one random w on both and compares every input's gradient the
// same way. New device allocations are filled with NaN (cuda::set_poison_allocations), so an
// output element a kernel never writes shows up as NaN, and NaN on the CUDA side always fails.
//
// Tolerances, float32: 1e-4 relative for elementwise work; 1e-3 for reductions, softmax and
// products whose inner dimension is long; absolute terms scaled with sqrt(reduced length) where
// sums may cancel. float64: about 1e-11. TF32 (nb::set_tf32(true)): 5e-3.
//
// Every test skips itself without a CUDA device. NABLA_TEST_POISON=0 turns the NaN fill off (for
// compute-sanitizer's initcheck, which the fill would hide uninitialized reads from).
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include "cuda_test_util.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace nb = nabla;
using nb::DType;
using nb::Reduction;
using nb::Shape;
using nb::Tensor;

namespace {

using nabla_test::CudaParamTest;
using nabla_test::CudaTest;
using nabla_test::kCuda;
using nabla_test::poison_wanted;
using nabla_test::Tf32Guard;

constexpr int64_t kBig = (int64_t{1} << 20) + 3;  // past one grid of blocks, not a multiple of 4

// ---- names -------------------------------------------------------------------------------------

std::string shape_name(const Shape& s) {
  return s.empty() ? std::string("scalar") : fmt::format("{}", fmt::join(s, "x"));
}

std::string axes_name(const std::vector<int64_t>& axes) {
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

const char* layout_suffix(Layout l) {
  switch (l) {
    case Layout::contiguous: return "";
    case Layout::offset: return "_offset";
    case Layout::transposed: return "_transposed";
    case Layout::strided: return "_strided";
    case Layout::narrow: return "_narrow";
  }
  return "";
}

Shape base_shape(const Shape& s, Layout l) {
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

Tensor view_of(const Tensor& base, const Shape& s, Layout l) {
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

Arg arg(Shape shape, double lo = -2, double hi = 2, Layout layout = Layout::contiguous) {
  return Arg{.shape = std::move(shape), .layout = layout, .lo = lo, .hi = hi};
}
Arg given(std::function<Tensor()> make, bool grad = false) {
  Arg a;
  a.grad = grad;
  a.make = std::move(make);
  return a;
}

Tensor random_base(const Arg& a, DType dtype) {
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
Tensor labels(int64_t n, int64_t c, DType dtype = DType::int64, uint64_t seed = 5) {
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
Tol sum_tol(int64_t r) { return {r > 64 ? 1e-3 : 1e-4, r > 1 ? 1e-5 * std::sqrt(double(r)) : 1e-6}; }

std::string index_name(int64_t flat, const Shape& s) {
  if (s.empty()) return "[]";
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = s[d] > 0 ? flat % s[d] : 0;
    flat = s[d] > 0 ? flat / s[d] : 0;
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

// got (on CUDA) against ref (on the CPU). NaN on the CUDA side always fails: it is what an
// element no kernel wrote reads as.
::testing::AssertionResult allclose(const Tensor& got, const Tensor& ref, Tol tol, const std::string& what) {
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
      ok = false;
      ++nans;
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
             index_name(first, ref.shape()), a, b, std::abs(a - b), tol.atol + tol.rtol * std::abs(b), tol.rtol,
             tol.atol, worst);
}

// Same bytes (after moving both to the CPU).
::testing::AssertionResult same_bits(const Tensor& got, const Tensor& ref, const std::string& what) {
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
                                                          g.numel(), index_name(i, r.shape()), gv[i], rv[i]);
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
::testing::AssertionResult parity(const Fn& f, const std::vector<Arg>& args, const Options& o) {
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

Options f32(Tol fwd = {}, Tol bwd = {}) { return {.dtype = DType::float32, .fwd = fwd, .bwd = bwd}; }
Options f64(Tol fwd = {1e-11, 1e-13}, Tol bwd = {1e-11, 1e-13}) {
  return {.dtype = DType::float64, .fwd = fwd, .bwd = bwd};
}
Options forward_only(Tol fwd = {}) {
  Options o;
  o.fwd = fwd;
  o.backward = false;
  return o;
}

// A named parity check: inputs, function, options.
struct Case {
  std::string name;
  std::vector<Arg> args;
  Fn f;
  Options o;
};
std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }
// gtest prints a parameter when a test fails: the name, not the struct's bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Parity : public CudaParamTest<Case> {};
TEST_P(Parity, ForwardBackward) {
  const Case& c = GetParam();
  EXPECT_TRUE(parity(c.f, c.args, c.o));
}

// ---- the premise: new allocations read as NaN ----------------------------------------------

TEST_F(CudaTest, PoisonedAllocationsReadAsNanOrMinusOne) {
  if (!poison_wanted()) GTEST_SKIP() << "NABLA_TEST_POISON=0";
  for (DType t : {DType::float32, DType::float64}) {
    for (double v : Tensor::empty({kBig}, {.dtype = t, .device = kCuda}).to_vector<double>())
      ASSERT_TRUE(std::isnan(v)) << nb::dtype_name(t) << ": poisoning is off, so the parity checks cannot see "
                                 << "unwritten outputs";
  }
  for (DType t : {DType::int32, DType::int64})
    for (int64_t v : Tensor::empty({1023}, {.dtype = t, .device = kCuda}).to_vector<int64_t>()) ASSERT_EQ(v, -1);
}

// ---- elementwise: unary ------------------------------------------------------------------------

struct Geometry {
  Shape shape;
  Layout layout;
};
std::string geometry_name(const Geometry& g) { return shape_name(g.shape) + layout_suffix(g.layout); }
void PrintTo(const Geometry& g, std::ostream* os) { *os << geometry_name(g); }

const std::vector<Geometry>& elementwise_geometries() {
  static const std::vector<Geometry> g = {
      {{}, Layout::contiguous},        {{1}, Layout::contiguous},          {{7}, Layout::contiguous},
      {{3, 341}, Layout::contiguous},  {{17, 241}, Layout::contiguous},    {{kBig}, Layout::contiguous},
      {{7}, Layout::offset},           {{4097}, Layout::offset},           {{31, 33}, Layout::transposed},
      {{17, 241}, Layout::strided},    {{1025, 1023}, Layout::narrow},
  };
  return g;
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> f;
  double lo, hi;
};
void PrintTo(const UnaryCase& c, std::ostream* os) { *os << c.name; }

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> c = {
      {"neg", [](const Tensor& x) { return nb::neg(x); }, -2, 2},
      {"exp", [](const Tensor& x) { return nb::exp(x); }, -5, 5},
      {"log", [](const Tensor& x) { return nb::log(x); }, 0.05, 4},
      {"sqrt", [](const Tensor& x) { return nb::sqrt(x); }, 0.05, 4},
      {"abs", [](const Tensor& x) { return nb::abs(x); }, -2, 2},
      {"pow2p5", [](const Tensor& x) { return nb::pow(x, 2.5); }, 0.1, 3},
      {"pow3", [](const Tensor& x) { return nb::pow(x, 3); }, -2, 2},
      {"powm1p5", [](const Tensor& x) { return nb::pow(x, -1.5); }, 0.2, 3},
      {"clamp", [](const Tensor& x) { return nb::clamp(x, -0.5, 0.75); }, -2, 2},
      {"affine", [](const Tensor& x) { return nb::affine(x, -1.5, 0.25); }, -2, 2},
      {"relu", [](const Tensor& x) { return nb::relu(x); }, -2, 2},
      {"leaky_relu", [](const Tensor& x) { return nb::leaky_relu(x, 0.1); }, -2, 2},
      {"elu", [](const Tensor& x) { return nb::elu(x, 0.7); }, -3, 2},
      {"sigmoid", [](const Tensor& x) { return nb::sigmoid(x); }, -8, 8},
      {"tanh", [](const Tensor& x) { return nb::tanh(x); }, -4, 4},
      {"gelu", [](const Tensor& x) { return nb::gelu(x); }, -5, 5},
      {"softplus", [](const Tensor& x) { return nb::softplus(x); }, -20, 20},
      // Far from 0: naive formulas overflow (e^100 is inf in float32) and give inf or NaN.
      {"sigmoid_wide", [](const Tensor& x) { return nb::sigmoid(x); }, -100, 100},
      {"tanh_wide", [](const Tensor& x) { return nb::tanh(x); }, -60, 60},
      {"softplus_wide", [](const Tensor& x) { return nb::softplus(x); }, -100, 100},
      {"gelu_wide", [](const Tensor& x) { return nb::gelu(x); }, -40, 40},
      {"elu_wide", [](const Tensor& x) { return nb::elu(x); }, -100, 5},
  };
  return c;
}

using UnaryParam = std::tuple<UnaryCase, Geometry>;
class Unary : public CudaParamTest<UnaryParam> {};
TEST_P(Unary, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0]); }, {arg(g.shape, op.lo, op.hi, g.layout)}, f32()));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Unary, ::testing::Combine(::testing::ValuesIn(unary_cases()),
                                                         ::testing::ValuesIn(elementwise_geometries())),
                         [](const ::testing::TestParamInfo<UnaryParam>& i) {
                           return std::get<0>(i.param).name + "_" + geometry_name(std::get<1>(i.param));
                         });

class UnaryF64 : public CudaParamTest<UnaryParam> {};
TEST_P(UnaryF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0]); }, {arg(g.shape, op.lo, op.hi, g.layout)}, f64()));
}
const std::vector<UnaryCase>& unary_f64_cases() {
  static const std::vector<UnaryCase> c = [] {
    std::vector<UnaryCase> out;
    for (const auto& u : unary_cases())
      if (u.name.find("_wide") == std::string::npos) out.push_back(u);
    return out;
  }();
  return c;
}
INSTANTIATE_TEST_SUITE_P(Cuda, UnaryF64,
                         ::testing::Combine(::testing::ValuesIn(unary_f64_cases()),
                                            ::testing::Values(Geometry{{7}, Layout::contiguous},
                                                              Geometry{{17, 241}, Layout::strided},
                                                              Geometry{{kBig}, Layout::contiguous})),
                         [](const ::testing::TestParamInfo<UnaryParam>& i) {
                           return std::get<0>(i.param).name + "_" + geometry_name(std::get<1>(i.param));
                         });

// ---- elementwise: binary with broadcasting --------------------------------------------------

struct BinaryGeometry {
  std::string name;
  Shape a;
  Layout la;
  Shape b;
  Layout lb;
};
void PrintTo(const BinaryGeometry& g, std::ostream* os) { *os << g.name; }

const std::vector<BinaryGeometry>& binary_geometries() {
  using L = Layout;
  static const std::vector<BinaryGeometry> g = {
      {"same_1", {1}, L::contiguous, {1}, L::contiguous},
      {"same_7", {7}, L::contiguous, {7}, L::contiguous},
      {"same_3x341", {3, 341}, L::contiguous, {3, 341}, L::contiguous},
      {"same_big", {kBig}, L::contiguous, {kBig}, L::contiguous},
      {"row_17x241_241", {17, 241}, L::contiguous, {241}, L::contiguous},
      {"col_17x1_17x241", {17, 1}, L::contiguous, {17, 241}, L::contiguous},
      {"both_5x1x7_4x7", {5, 1, 7}, L::contiguous, {4, 7}, L::contiguous},
      {"rank4_2x3x1x5_3x4x1", {2, 3, 1, 5}, L::contiguous, {3, 4, 1}, L::contiguous},
      {"scalar_right_4097", {4097}, L::contiguous, {}, L::contiguous},
      {"scalar_left_1023", {}, L::contiguous, {1023}, L::contiguous},
      {"transposed_31x33", {31, 33}, L::transposed, {31, 33}, L::contiguous},
      {"offset_strided_4097", {4097}, L::offset, {4097}, L::strided},
      {"narrow_row_7x9_9", {7, 9}, L::narrow, {9}, L::contiguous},
      {"row_big_1025x1023_1023", {1025, 1023}, L::contiguous, {1023}, L::contiguous},
  };
  return g;
}

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
  double gap_b = 0;  // divisors stay away from 0
};
void PrintTo(const BinaryCase& c, std::ostream* os) { *os << c.name; }

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> c = {
      {"add", [](const Tensor& a, const Tensor& b) { return nb::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return nb::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return nb::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return nb::div(a, b); }, 0.5},
      {"maximum", [](const Tensor& a, const Tensor& b) { return nb::maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return nb::minimum(a, b); }},
  };
  return c;
}

const std::vector<BinaryCase>& comparison_cases() {
  static const std::vector<BinaryCase> c = {
      {"eq", [](const Tensor& a, const Tensor& b) { return nb::eq(a, b); }},
      {"ne", [](const Tensor& a, const Tensor& b) { return nb::ne(a, b); }},
      {"gt", [](const Tensor& a, const Tensor& b) { return nb::gt(a, b); }},
      {"ge", [](const Tensor& a, const Tensor& b) { return nb::ge(a, b); }},
      {"lt", [](const Tensor& a, const Tensor& b) { return nb::lt(a, b); }},
      {"le", [](const Tensor& a, const Tensor& b) { return nb::le(a, b); }},
  };
  return c;
}

using BinaryParam = std::tuple<BinaryCase, BinaryGeometry>;
std::string binary_name(const ::testing::TestParamInfo<BinaryParam>& i) {
  return std::get<0>(i.param).name + "_" + std::get<1>(i.param).name;
}

class Binary : public CudaParamTest<BinaryParam> {};
TEST_P(Binary, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  b.gap = op.gap_b;
  const int64_t out = nb::numel_of(nb::broadcast_shapes(g.a, g.b, "test"));
  // A broadcast operand's gradient is a sum over the broadcast axes.
  const int64_t r = std::max(out / std::max<int64_t>(nb::numel_of(g.a), 1), out / std::max<int64_t>(nb::numel_of(g.b), 1));
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f32({}, sum_tol(r))));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Binary,
                         ::testing::Combine(::testing::ValuesIn(binary_cases()), ::testing::ValuesIn(binary_geometries())),
                         binary_name);

// Comparisons: forward only, exact, on values on a coarse grid so that ties are common.
class Comparison : public CudaParamTest<BinaryParam> {};
TEST_P(Comparison, ForwardExact) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  a.quantum = b.quantum = 0.5;
  a.grad = b.grad = false;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, forward_only({0, 0})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Comparison,
                         ::testing::Combine(::testing::ValuesIn(comparison_cases()),
                                            ::testing::Values(binary_geometries()[2], binary_geometries()[3],
                                                              binary_geometries()[4], binary_geometries()[8],
                                                              binary_geometries()[10])),
                         binary_name);

// maximum / minimum with many ties: the gradient goes to a on ties, on both devices.
class BinaryTies : public CudaParamTest<BinaryParam> {};
TEST_P(BinaryTies, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  a.quantum = b.quantum = 0.5;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f32({0, 0}, sum_tol(17))));
}
INSTANTIATE_TEST_SUITE_P(Cuda, BinaryTies,
                         ::testing::Combine(::testing::Values(binary_cases()[4], binary_cases()[5]),
                                            ::testing::Values(binary_geometries()[2], binary_geometries()[4])),
                         binary_name);

class BinaryF64 : public CudaParamTest<BinaryParam> {};
TEST_P(BinaryF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.a, -2, 2, g.la), b = arg(g.b, -2, 2, g.lb);
  b.gap = op.gap_b;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], x[1]); }, {a, b}, f64({1e-12, 1e-14}, {1e-10, 1e-11})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, BinaryF64,
                         ::testing::Combine(::testing::ValuesIn(binary_cases()),
                                            ::testing::Values(binary_geometries()[3], binary_geometries()[6],
                                                              binary_geometries()[10])),
                         binary_name);

// ---- reductions --------------------------------------------------------------------------------

struct ReduceGeometry {
  Shape shape;
  std::vector<int64_t> axes;
  bool keepdim;
  Layout layout;
};
std::string reduce_geometry_name(const ReduceGeometry& g) {
  return shape_name(g.shape) + layout_suffix(g.layout) + "_" + axes_name(g.axes) + (g.keepdim ? "_keep" : "");
}
void PrintTo(const ReduceGeometry& g, std::ostream* os) { *os << reduce_geometry_name(g); }
int64_t reduced_count(const ReduceGeometry& g) {
  if (g.axes.empty()) return nb::numel_of(g.shape);
  int64_t r = 1;
  for (int64_t a : g.axes) r *= g.shape[static_cast<size_t>(a < 0 ? a + int64_t(g.shape.size()) : a)];
  return r;
}

const std::vector<ReduceGeometry>& reduce_geometries() {
  using L = Layout;
  static const std::vector<ReduceGeometry> g = {
      {{4, 1}, {1}, false, L::contiguous},          {{6, 7}, {1}, false, L::contiguous},
      {{4, 1023}, {1}, false, L::contiguous},       {{3, 4097}, {1}, true, L::contiguous},
      {{2, 7, 5}, {1}, true, L::contiguous},        {{2, 1023, 3}, {1}, false, L::contiguous},
      {{4097, 3}, {0}, false, L::contiguous},       {{1023, 7}, {0}, true, L::contiguous},
      {{2, 3, 4, 5}, {0, 2}, false, L::contiguous}, {{2, 3, 4, 5}, {1, 2}, true, L::contiguous},
      {{2, 3, 4, 5}, {-1}, false, L::contiguous},   {{5, 4097}, {}, false, L::contiguous},
      {{kBig}, {}, false, L::contiguous},           {{1025, 1023}, {1}, false, L::contiguous},
      {{1025, 1023}, {0}, true, L::contiguous},     {{33, 31}, {1}, false, L::transposed},
      {{17, 241}, {0, 1}, true, L::strided},        {{1}, {}, false, L::contiguous},
      {{}, {}, false, L::contiguous},               {{4097}, {0}, false, L::offset},
      // more rows than one launch's 65,535 blocks (kMaxRowBlocks): the grid-stride loop over rows
      {{70001, 5}, {1}, false, L::contiguous},      {{70001, 3, 2}, {1}, true, L::contiguous},
  };
  return g;
}

struct ReduceCase {
  std::string name;
  std::function<Tensor(const Tensor&, const std::vector<int64_t>&, bool)> f;
};
void PrintTo(const ReduceCase& c, std::ostream* os) { *os << c.name; }
const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> c = {
      {"sum", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::sum(x, a, k); }},
      {"mean", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::mean(x, a, k); }},
      {"max", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::max(x, a, k); }},
      {"min", [](const Tensor& x, const std::vector<int64_t>& a, bool k) { return nb::min(x, a, k); }},
  };
  return c;
}

Options reduce_options(const std::string& op, int64_t r, DType dtype) {
  if (dtype == DType::float64) return f64({1e-11, 1e-12 * std::sqrt(double(r) + 1)}, {1e-11, 1e-13});
  if (op == "max" || op == "min") return f32({0, 0}, {1e-6, 1e-7});  // the extremum is one of the inputs
  Tol t = sum_tol(r);
  if (op == "mean") t.atol = t.atol / double(r) + 1e-7;
  return f32(t, {1e-6, 1e-7});
}

using ReduceParam = std::tuple<ReduceCase, ReduceGeometry>;
std::string reduce_name(const ::testing::TestParamInfo<ReduceParam>& i) {
  return std::get<0>(i.param).name + "_" + reduce_geometry_name(std::get<1>(i.param));
}
class Reduce : public CudaParamTest<ReduceParam> {};
TEST_P(Reduce, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {arg(g.shape, -2, 2, g.layout)},
                     reduce_options(op.name, reduced_count(g), DType::float32)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, Reduce,
                         ::testing::Combine(::testing::ValuesIn(reduce_cases()), ::testing::ValuesIn(reduce_geometries())),
                         reduce_name);

class ReduceF64 : public CudaParamTest<ReduceParam> {};
TEST_P(ReduceF64, ForwardBackward) {
  const auto& [op, g] = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {arg(g.shape, -2, 2, g.layout)},
                     reduce_options(op.name, reduced_count(g), DType::float64)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, ReduceF64,
                         ::testing::Combine(::testing::ValuesIn(reduce_cases()),
                                            ::testing::Values(reduce_geometries()[3], reduce_geometries()[5],
                                                              reduce_geometries()[9], reduce_geometries()[12])),
                         reduce_name);

// max with ties: the gradient is shared equally among the tied maxima.
class ReduceTies : public CudaParamTest<ReduceParam> {};
TEST_P(ReduceTies, ForwardBackward) {
  const auto& [op, g] = GetParam();
  Arg a = arg(g.shape, -2, 2, g.layout);
  a.quantum = 1;
  EXPECT_TRUE(parity([&](const auto& x) { return op.f(x[0], g.axes, g.keepdim); }, {a}, f32({0, 0}, {1e-6, 1e-7})));
}
INSTANTIATE_TEST_SUITE_P(Cuda, ReduceTies,
                         ::testing::Combine(::testing::Values(reduce_cases()[2], reduce_cases()[3]),
                                            ::testing::Values(reduce_geometries()[2], reduce_geometries()[7],
                                                              reduce_geometries()[8])),
                         reduce_name);

// argmax: exact, the first maximum on ties.
struct ArgmaxCase {
  Shape shape;
  int64_t axis;
  bool keepdim;
  Layout layout;
  double quantum;
};
void PrintTo(const ArgmaxCase& c, std::ostream* os) {
  *os << shape_name(c.shape) << layout_suffix(c.layout) << " axis " << c.axis;
}
class Argmax : public CudaParamTest<ArgmaxCase> {};
TEST_P(Argmax, Exact) {
  const ArgmaxCase& c = GetParam();
  Arg a = arg(c.shape, -2, 2, c.layout);
  a.quantum = c.quantum;
  a.grad = false;
  EXPECT_TRUE(parity([&](const auto& x) { return nb::argmax(x[0], c.axis, c.keepdim); }, {a}, forward_only({0, 0})));
}
INSTANTIATE_TEST_SUITE_P(
    Cuda, Argmax,
    ::testing::Values(ArgmaxCase{{6, 7}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{4, 4097}, -1, false, Layout::contiguous, 0},
                      ArgmaxCase{{3, 1023, 5}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{4097, 3}, 0, true, Layout::contiguous, 0},
                      ArgmaxCase{{1025, 1023}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{64, 33}, 1, false, Layout::contiguous, 1},  // ties
                      ArgmaxCase{{7, 1025}, 0, false, Layout::contiguous, 1},
                      ArgmaxCase{{5, 9}, 0, true, Layout::contiguous, 0}, ArgmaxCase{{1}, 0, false, Layout::contiguous, 0},
                      ArgmaxCase{{33, 31}, 1, false, Layout::transposed, 0},
                      ArgmaxCase{{kBig}, 0, false, Layout::contiguous, 0},
                      // more rows than one launch's 65,535 blocks: the loop over rows
                      ArgmaxCase{{70001, 5}, 1, false, Layout::contiguous, 0},
                      ArgmaxCase{{70001, 6}, -1, false, Layout::contiguous, 1}),
    [](const ::testing::TestParamInfo<ArgmaxCase>& i) {
      const auto& c = i.param;
      return shape_name(c.shape) + layout_suffix(c.layout) + "_axis" + (c.axis < 0 ? "m1" : std::to_string(c.axis)) +
             (c.keepdim ? "_keep" : "") + (c.quantum > 0 ? "_ties" : "");
    });

// sum_to: the inverse of broadcasting, differentiable.
std::vector<Case> sum_to_cases() {
  return {
      {"sum_to_4x3x5_to_3x1", {arg({4, 3, 5})}, [](const auto& x) { return nb::sum_to(x[0], {3, 1}); }, f32(sum_tol(20))},
      {"sum_to_1025x1023_to_1023", {arg({1025, 1023})}, [](const auto& x) { return nb::sum_to(x[0], {1023}); },
       f32(sum_tol(1025))},
      {"sum_to_7x9_to_scalar", {arg({7, 9})}, [](const auto& x) { return nb::sum_to(x[0], {}); }, f32(sum_tol(63))},
  };
}
INSTANTIATE_TEST_SUITE_P(SumTo, Parity, ::testing::ValuesIn(sum_to_cases()), case_name);

// ---- softmax and log-softmax ------------------------------------------------------------------

struct SoftmaxCase {
  Shape shape;
  int64_t axis;
  Layout layout;
  double lo, hi;
  bool log;
};
void PrintTo(const SoftmaxCase& c, std::ostream* os) {
  *os << (c.log ? "log_softmax " : "softmax ") << shape_name(c.shape) << layout_suffix(c.layout) << " axis " << c.axis;
}
class Softmax : public CudaParamTest<SoftmaxCase> {};

Options softmax_options(const SoftmaxCase& c, DType dtype) {
  if (dtype == DType::float64) return f64({1e-11, 1e-14}, {1e-10, 1e-12});
  const int64_t n = c.shape[static_cast<size_t>(c.axis < 0 ? c.axis + int64_t(c.shape.size()) : c.axis)];
  const bool long_row = n > 64 || c.hi > 10;
  return f32({long_row ? 1e-3 : 1e-4, 1e-6}, {long_row ? 1e-3 : 1e-4, long_row ? 1e-5 : 1e-6});
}

TEST_P(Softmax, ForwardBackward) {
  const SoftmaxCase& c = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return c.log ? nb::log_softmax(x[0], c.axis) : nb::softmax(x[0], c.axis); },
                     {arg(c.shape, c.lo, c.hi, c.layout)}, softmax_options(c, DType::float32)));
}

std::vector<SoftmaxCase> softmax_cases(bool f64_subset) {
  std::vector<SoftmaxCase> out;
  for (bool log : {false, true}) {
    auto add = [&](Shape s, int64_t axis, Layout l = Layout::contiguous, double lo = -3, double hi = 3) {
      out.push_back({std::move(s), axis, l, lo, hi, log});
    };
    for (int64_t n : {1, 7, 1023, 4097}) add({3, n}, -1);
    if (f64_subset) {
      add({3, 1023, 5}, 1);
      continue;
    }
    for (int64_t n : {1, 7, 1023, 4097}) add({3, n, 5}, 1);
    for (int64_t n : {7, 1023}) add({n, 4}, 0);
    add({4097, 7}, -1);       // many short rows
    add({70001, 5}, -1);      // more rows than one launch's 65,535 blocks (kMaxRowBlocks)
    add({1025, 1023}, -1);    // many long rows
    add({8, 1023}, -1, Layout::contiguous, -100, 100);  // needs the max subtracted
    add({1023, 6}, -1, Layout::transposed);
    add({5, 1023}, -1, Layout::narrow);
  }
  return out;
}
std::string softmax_name(const ::testing::TestParamInfo<SoftmaxCase>& i) {
  const auto& c = i.param;
  return std::string(c.log ? "log_softmax_" : "softmax_") + shape_name(c.shape) + layout_suffix(c.layout) + "_axis" +
         (c.axis < 0 ? "m1" : std::to_string(c.axis)) + (c.hi > 10 ? "_wide" : "");
}
INSTANTIATE_TEST_SUITE_P(Cuda, Softmax, ::testing::ValuesIn(softmax_cases(false)), softmax_name);

class SoftmaxF64 : public CudaParamTest<SoftmaxCase> {};
TEST_P(SoftmaxF64, ForwardBackward) {
  const SoftmaxCase& c = GetParam();
  EXPECT_TRUE(parity([&](const auto& x) { return c.log ? nb::log_softmax(x[0], c.axis) : nb::softmax(x[0], c.axis); },
                     {arg(c.shape, c.lo, c.hi, c.layout)}, softmax_options(c, DType::float64)));
}
INSTANTIATE_TEST_SUITE_P(Cuda, SoftmaxF64, ::testing::ValuesIn(softmax_cases(true)), softmax_name);

// ---- matrix products ---------------------------------------------------------------------------

enum class Precision { f32, f64, tf32 };

// Tolerance for a product whose longest sum (forward or either gradient) has `len` terms.
Options gemm_options(int64_t len, Precision p) {
  const double s = std::sqrt(double(std::max<int64_t>(len, 1)));
  switch (p) {
    case Precision::f64: return f64({1e-10, 1e-12 * s}, {1e-10, 1e-12 * s});
    case Precision::tf32: return f32({5e-3, 2e-3 * s}, {5e-3, 2e-3 * s});
    case Precision::f32: break;
  }
  const Tol t{len > 256 ? 1e-3 : 1e-4, 1e-5 * s};
  return f32(t, t);
}

struct MatmulCase {
  std::string name;
  Shape a;
  Layout la;
  Shape b;
  Layout lb;
};
void PrintTo(const MatmulCase& c, std::ostream* os) { *os << c.name; }

int64_t matmul_longest_sum(const MatmulCase& c) {
  const int64_t k = c.a.back();
  const Shape a2 = c.a.size() == 1 ? Shape{1, k} : c.a;
  const Shape b2 = c.b.size() == 1 ? Shape{k, 1} : c.b;
  Shape ba(a2.begin(), a2.end() - 2), bb(b2.begin(), b2.end() - 2);
  Shape batch = nb::broadcast_shapes(ba, bb, "test");
  const int64_t m = a2[a2.size() - 2], n = b2.back(), out = nb::numel_of(batch) * m * n;
  // forward: k terms; da: n (times b's broadcast); db: rows of a (times a's broadcast)
  return std::max({k, n, out / std::max<int64_t>(m, 1), out / std::max<int64_t>(n, 1)});
}

const std::vector<MatmulCase>& matmul_cases() {
  using L = Layout;
  static const std::vector<MatmulCase> c = {
      {"2d_7x5_5x3", {7, 5}, L::contiguous, {5, 3}, L::contiguous},
      {"2d_1x1_1x1", {1, 1}, L::contiguous, {1, 1}, L::contiguous},
      {"2d_33x65_65x17", {33, 65}, L::contiguous, {65, 17}, L::contiguous},
      {"2d_long_k_128x4097_4097x64", {128, 4097}, L::contiguous, {4097, 64}, L::contiguous},
      {"2d_257x129_129x1023", {257, 129}, L::contiguous, {129, 1023}, L::contiguous},
      {"2d_512x512_512x512", {512, 512}, L::contiguous, {512, 512}, L::contiguous},
      {"gemv_1x4097_4097x1", {1, 4097}, L::contiguous, {4097, 1}, L::contiguous},
      {"vec_9_mat_9x5", {9}, L::contiguous, {9, 5}, L::contiguous},
      {"stack_2x3x4_vec_4", {2, 3, 4}, L::contiguous, {4}, L::contiguous},
      {"batched_4x7x9_4x9x5", {4, 7, 9}, L::contiguous, {4, 9, 5}, L::contiguous},
      {"broadcast_3x1x7x9_4x9x5", {3, 1, 7, 9}, L::contiguous, {4, 9, 5}, L::contiguous},
      {"stack_5x7x9_mat_9x11", {5, 7, 9}, L::contiguous, {9, 11}, L::contiguous},
      {"mat_7x9_stack_5x9x11", {7, 9}, L::contiguous, {5, 9, 11}, L::contiguous},
      {"aT_7x9_9x5", {7, 9}, L::transposed, {9, 5}, L::contiguous},
      {"bT_7x9_9x5", {7, 9}, L::contiguous, {9, 5}, L::transposed},
      {"abT_33x65_65x17", {33, 65}, L::transposed, {65, 17}, L::transposed},
      {"batched_abT_4x7x9_4x9x5", {4, 7, 9}, L::transposed, {4, 9, 5}, L::transposed},
      {"narrow_ld_gap_7x9_9x5", {7, 9}, L::narrow, {9, 5}, L::narrow},
      {"strided_copy_7x9_9x5", {7, 9}, L::strided, {9, 5}, L::contiguous},
      {"k0_3x0_0x4", {3, 0}, L::contiguous, {0, 4}, L::contiguous},
      {"batched_long_k_2x16x4097_2x4097x8", {2, 16, 4097}, L::contiguous, {2, 4097, 8}, L::contiguous},
  };
  return c;
}

std::vector<MatmulCase> pick(const std::vector<MatmulCase>& all, const std::vector<std::string>& names) {
  std::vector<MatmulCase> out;
  for (const auto& c : all)
    if (std::find(names.begin(), names.end(), c.name) != names.end()) out.push_back(c);
  return out;
}

class Matmul : public CudaParamTest<MatmulCase> {
 protected:
  void run(Precision p) {
    const MatmulCase& c = GetParam();
    Tf32Guard tf32(p == Precision::tf32);
    EXPECT_TRUE(parity([](const auto& x) { return nb::matmul(x[0], x[1]); },
                       {arg(c.a, -1, 1, c.la), arg(c.b, -1, 1, c.lb)}, gemm_options(matmul_longest_sum(c), p)));
  }
};
std::string matmul_name(const ::testing::TestParamInfo<MatmulCase>& i) { return i.param.name; }

class MatmulF32 : public Matmul {};
TEST_P(MatmulF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulF32, ::testing::ValuesIn(matmul_cases()), matmul_name);

class MatmulF64 : public Matmul {};
TEST_P(MatmulF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulF64,
                         ::testing::ValuesIn(pick(matmul_cases(), {"2d_7x5_5x3", "2d_33x65_65x17",
                                                                   "2d_long_k_128x4097_4097x64", "batched_4x7x9_4x9x5",
                                                                   "broadcast_3x1x7x9_4x9x5", "aT_7x9_9x5",
                                                                   "batched_abT_4x7x9_4x9x5", "narrow_ld_gap_7x9_9x5",
                                                                   "k0_3x0_0x4"})),
                         matmul_name);

class MatmulTf32 : public Matmul {};
TEST_P(MatmulTf32, ForwardBackward) { run(Precision::tf32); }
INSTANTIATE_TEST_SUITE_P(Cuda, MatmulTf32,
                         ::testing::ValuesIn(pick(matmul_cases(), {"2d_33x65_65x17", "2d_long_k_128x4097_4097x64",
                                                                   "2d_257x129_129x1023", "2d_512x512_512x512",
                                                                   "batched_4x7x9_4x9x5", "aT_7x9_9x5",
                                                                   "batched_long_k_2x16x4097_2x4097x8"})),
                         matmul_name);

// TF32 off (the default) must really be full float32, and on must really reach the tensor cores:
// on a 512^3 product they differ by far more than float32 rounding.
TEST_F(CudaTest, Tf32SwitchChangesProductsAndDefaultsOff) {
  EXPECT_FALSE(nb::tf32_enabled());
  Tensor a = nb::rand({512, 512}, {}, -1, 1), b = nb::rand({512, 512}, {}, -1, 1);
  Tensor ref = nb::matmul(a, b);
  Tensor ag = a.to(kCuda), bg = b.to(kCuda);
  Tensor strict = nb::matmul(ag, bg);
  EXPECT_TRUE(allclose(strict, ref, {1e-4, 1e-5 * std::sqrt(512.0)}, "TF32 off"));
  Tensor fast;
  {
    Tf32Guard on(true);
    fast = nb::matmul(ag, bg);
  }
  EXPECT_FALSE(nb::tf32_enabled()) << "the guard restores TF32 off";
  EXPECT_TRUE(allclose(fast, ref, {5e-3, 2e-3 * std::sqrt(512.0)}, "TF32 on"));
  const double diff = nb::max(nb::abs(nb::sub(fast, strict))).item();
  EXPECT_GT(diff, 1e-5) << "set_tf32(true) left the product bit-for-bit the float32 one: TF32 is not used";
}

// ---- linear ------------------------------------------------------------------------------------

struct LinearCase {
  std::string name;
  Shape x;
  Layout lx;
  int64_t out;
  bool bias;
};
void PrintTo(const LinearCase& c, std::ostream* os) { *os << c.name; }
const std::vector<LinearCase>& linear_cases() {
  using L = Layout;
  static const std::vector<LinearCase> c = {
      {"32x37_to_23_bias", {32, 37}, L::contiguous, 23, true},
      {"32x37_to_23_nobias", {32, 37}, L::contiguous, 23, false},
      {"4x5x37_to_23_bias", {4, 5, 37}, L::contiguous, 23, true},
      {"1x784_to_256_bias", {1, 784}, L::contiguous, 256, true},
      {"128x4097_to_33_bias", {128, 4097}, L::contiguous, 33, true},
      {"3x7_to_1_bias", {3, 7}, L::contiguous, 1, true},
      {"17x64T_to_10_bias", {17, 64}, L::transposed, 10, true},
      {"9x13narrow_to_5_bias", {9, 13}, L::narrow, 5, true},
      {"1025x129_to_257_bias", {1025, 129}, L::contiguous, 257, true},
  };
  return c;
}

class Linear : public CudaParamTest<LinearCase> {
 protected:
  void run(Precision p) {
    const LinearCase& c = GetParam();
    Tf32Guard tf32(p == Precision::tf32);
    const int64_t in = c.x.back(), rows = nb::numel_of(c.x) / in;
    std::vector<Arg> args = {arg(c.x, -1, 1, c.lx), arg({c.out, in}, -1, 1)};
    if (c.bias) args.push_back(arg({c.out}, -1, 1));
    auto f = [&](const std::vector<Tensor>& x) { return nb::linear(x[0], x[1], c.bias ? x[2] : Tensor()); };
    EXPECT_TRUE(parity(f, args, gemm_options(std::max({in, c.out, rows}), p)));
  }
};
std::string linear_name(const ::testing::TestParamInfo<LinearCase>& i) { return i.param.name; }

class LinearF32 : public Linear {};
TEST_P(LinearF32, ForwardBackward) { run(Precision::f32); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearF32, ::testing::ValuesIn(linear_cases()), linear_name);

class LinearF64 : public Linear {};
TEST_P(LinearF64, ForwardBackward) { run(Precision::f64); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearF64,
                         ::testing::Values(linear_cases()[0], linear_cases()[2], linear_cases()[4], linear_cases()[6]),
                         linear_name);

class LinearTf32 : public Linear {};
TEST_P(LinearTf32, ForwardBackward) { run(Precision::tf32); }
INSTANTIATE_TEST_SUITE_P(Cuda, LinearTf32,
                         ::testing::Values(linear_cases()[0], linear_cases()[3], linear_cases()[4], linear_cases()[8]),
                         linear_name);

// ---- losses ------------------------------------------------------------------------------------

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
  }
  return "?";
}

std::vector<Case> loss_cases() {
  std::vector<Case> out;
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    const std::string rn = reduction_name(r);
    auto tol = [&](int64_t n) {  // n: elements summed into the loss
      const Tol t = r == Reduction::none ? Tol{} : sum_tol(n);
      return f32(t, {n > 64 ? 1e-3 : 1e-4, r == Reduction::mean ? 1e-6 / double(n) + 1e-9 : 1e-6});
    };
    for (Shape s : {Shape{8, 13}, Shape{4097}, Shape{1}}) {
      const int64_t n = nb::numel_of(s);
      out.push_back({"mse_" + shape_name(s) + "_" + rn, {arg(s), arg(s)},
                     [r](const auto& x) { return nb::mse_loss(x[0], x[1], r); }, tol(n)});
      out.push_back({"l1_" + shape_name(s) + "_" + rn, {arg(s), arg(s)},
                     [r](const auto& x) { return nb::l1_loss(x[0], x[1], r); }, tol(n)});
      out.push_back({"bce_" + shape_name(s) + "_" + rn, {arg(s, 0.02, 0.98), arg(s, 0, 1)},
                     [r](const auto& x) { return nb::binary_cross_entropy(x[0], x[1], r); }, tol(n)});
      out.push_back({"bce_logits_" + shape_name(s) + "_" + rn, {arg(s, -6, 6), arg(s, 0, 1)},
                     [r](const auto& x) { return nb::binary_cross_entropy_with_logits(x[0], x[1], r); }, tol(n)});
    }
    const std::vector<std::pair<int64_t, int64_t>> batches = {{64, 10}, {5, 4097}, {3, 1}, {1025, 7}, {2, 1023}};
    for (const auto& batch : batches) {
      const int64_t n = batch.first, c = batch.second;
      const std::string nc = std::to_string(n) + "x" + std::to_string(c);
      Options o = tol(std::max(n, c));
      out.push_back({"cross_entropy_int64_" + nc + "_" + rn, {arg({n, c}, -4, 4), given([=] { return labels(n, c); })},
                     [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, o});
      out.push_back({"cross_entropy_probs_" + nc + "_" + rn,
                     {arg({n, c}, -4, 4),
                      given([=] { return nb::softmax(nb::randn({n, c}), 1); }, /*grad=*/true)},
                     [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, o});
      out.push_back({"nll_" + nc + "_" + rn, {arg({n, c}, -6, 0), given([=] { return labels(n, c, DType::int64, 9); })},
                     [r](const auto& x) { return nb::nll_loss(x[0], x[1], r); }, o});
    }
    out.push_back({"cross_entropy_int32_64x10_" + rn,
                   {arg({64, 10}, -4, 4), given([] { return labels(64, 10, DType::int32); })},
                   [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, tol(64)});
    out.push_back({"cross_entropy_transposed_logits_64x10_" + rn,
                   {arg({64, 10}, -4, 4, Layout::transposed), given([] { return labels(64, 10); })},
                   [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, tol(64)});
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(Loss, Parity, ::testing::ValuesIn(loss_cases()), case_name);

std::vector<Case> loss_f64_cases() {
  const Options o = f64({1e-10, 1e-12}, {1e-10, 1e-13});
  return {
      {"cross_entropy_int64_64x10_f64", {arg({64, 10}, -4, 4), given([] { return labels(64, 10); })},
       [](const auto& x) { return nb::cross_entropy(x[0], x[1]); }, o},
      {"cross_entropy_int64_5x4097_f64", {arg({5, 4097}, -4, 4), given([] { return labels(5, 4097); })},
       [](const auto& x) { return nb::cross_entropy(x[0], x[1], Reduction::sum); }, o},
      {"mse_8x13_f64", {arg({8, 13}), arg({8, 13})}, [](const auto& x) { return nb::mse_loss(x[0], x[1]); }, o},
  };
}
INSTANTIATE_TEST_SUITE_P(LossF64, Parity, ::testing::ValuesIn(loss_f64_cases()), case_name);

// ---- shape ops, views, dropout, scalar operators --------------------------------------------

std::vector<Case> shape_cases() {
  using L = Layout;
  const Options exact = f32({0, 0}, {0, 0});
  return {
      {"concat_axis0_2x5_3x5_1x5", {arg({2, 5}), arg({3, 5}), arg({1, 5})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, 0); }, exact},
      {"concat_axis1_4x1_4x7_4x1023", {arg({4, 1}), arg({4, 7}), arg({4, 1023})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, 1); }, exact},
      {"concat_axism1_transposed_2x3x4_2x3x1_2x3x5", {arg({2, 3, 4}, -2, 2, L::transposed), arg({2, 3, 1}), arg({2, 3, 5})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, -1); }, exact},
      {"concat_axis1_2x1x3_2x4x3", {arg({2, 1, 3}), arg({2, 4, 3}, -2, 2, L::strided)},
       [](const auto& x) { return nb::concat({x[0], x[1]}, 1); }, exact},
      {"concat_axis1_1025x512_1025x511", {arg({1025, 512}), arg({1025, 511})},
       [](const auto& x) { return nb::concat({x[0], x[1]}, 1); }, exact},
      {"reshape_6x35_to_5x42", {arg({6, 35})}, [](const auto& x) { return x[0].reshape({5, 42}); }, exact},
      {"reshape_transposed_35x6_to_flat", {arg({35, 6}, -2, 2, L::transposed)},
       [](const auto& x) { return x[0].reshape({-1}); }, exact},
      {"view_flatten_unsqueeze_squeeze_3x4x5", {arg({3, 4, 5})},
       [](const auto& x) { return x[0].flatten(1).unsqueeze(0).squeeze(0).view({60}); }, exact},
      {"transpose_0_2_contiguous_3x4x5", {arg({3, 4, 5})},
       [](const auto& x) { return x[0].transpose(0, 2).contiguous(); }, exact},
      {"slice_step3_4x33", {arg({4, 33})}, [](const auto& x) { return x[0].slice(1, 2, 30, 3); }, exact},
      {"slice_chain_contiguous_9x1023", {arg({9, 1023})},
       [](const auto& x) { return x[0].slice(0, 1, 8, 2).slice(1, 5, 1000, 7).contiguous().reshape({-1}); }, exact},
      {"expand_1x7_to_9x7", {arg({1, 7})}, [](const auto& x) { return x[0].expand({9, 7}); }, f32({0, 0}, sum_tol(9))},
      {"expand_contiguous_1025x1_to_1025x1023", {arg({1025, 1})},
       [](const auto& x) { return x[0].expand({1025, 1023}).contiguous(); }, f32({0, 0}, sum_tol(1023))},
      {"clone_strided_17x241", {arg({17, 241}, -2, 2, L::strided)}, [](const auto& x) { return x[0].clone(); }, exact},
      {"contiguous_big_narrow_1025x1023", {arg({1025, 1023}, -2, 2, L::narrow)},
       [](const auto& x) { return x[0].contiguous(); }, exact},
      {"to_float64_and_back_17x241", {arg({17, 241})},
       [](const auto& x) { return nb::mul(x[0].to(DType::float64), x[0].to(DType::float64)).to(DType::float32); },
       f32({1e-7, 0}, {1e-7, 0})},
      {"dropout_p0p3_17x241", {arg({17, 241})},
       [](const auto& x) {
         nb::manual_seed(99);  // the same mask on both devices
         return nb::dropout(x[0], 0.3, true);
       },
       f32({1e-6, 0}, {1e-6, 0})},
      {"dropout_p0p5_big", {arg({kBig})},
       [](const auto& x) {
         nb::manual_seed(98);
         return nb::dropout(x[0], 0.5, true);
       },
       f32({1e-6, 0}, {1e-6, 0})},
      {"dropout_p1_7x9", {arg({7, 9})}, [](const auto& x) { return nb::dropout(x[0], 1.0, true); }, exact},
      {"scalar_ops_17x241", {arg({17, 241}, -2, 2)},
       [](const auto& x) { return ((x[0] + 2.5) * -3.0 - 1.0) / 4.0 + (2.0 - x[0]) + -x[0]; }, f32()},
      {"scalar_over_tensor_17x241", {[] {
         Arg a = arg({17, 241});
         a.gap = 0.5;
         return a;
       }()},
       [](const auto& x) { return 3.0 / x[0]; }, f32()},
      {"scalar_tensor_0d_ops", {arg({}), arg({})},
       [](const auto& x) { return nb::exp(x[0]) * x[1] + nb::maximum(x[0], x[1]); }, f32()},
  };
}
INSTANTIATE_TEST_SUITE_P(Shapes, Parity, ::testing::ValuesIn(shape_cases()), case_name);

// Backward adds into an existing gradient on CUDA as on the CPU (every input starts at a random G0).
std::vector<Case> accumulate_cases() {
  Options o = f32({1e-4, 1e-6}, sum_tol(1025));
  o.accumulate = true;
  Options g = gemm_options(1025, Precision::f32);
  g.accumulate = true;
  return {
      {"add_row_broadcast_1025x1023", {arg({1025, 1023}), arg({1023})},
       [](const auto& x) { return nb::add(x[0], x[1]); }, o},
      {"reused_input_mul_exp_17x241", {arg({17, 241})},
       [](const auto& x) { return nb::mul(x[0], nb::exp(x[0])); }, o},
      {"softmax_7x1023", {arg({7, 1023})}, [](const auto& x) { return nb::softmax(x[0]); },
       [] { Options s = f32({1e-3, 1e-6}, {1e-3, 1e-5}); s.accumulate = true; return s; }()},
      {"sum_axis0_1025x7", {arg({1025, 7})}, [](const auto& x) { return nb::sum(x[0], {0}); }, o},
      {"matmul_33x1025_1025x17", {arg({33, 1025}, -1, 1), arg({1025, 17}, -1, 1)},
       [](const auto& x) { return nb::matmul(x[0], x[1]); }, g},
      {"linear_1025x37_23", {arg({1025, 37}, -1, 1), arg({23, 37}, -1, 1), arg({23}, -1, 1)},
       [](const auto& x) { return nb::linear(x[0], x[1], x[2]); }, g},
  };
}
INSTANTIATE_TEST_SUITE_P(Accumulate, Parity, ::testing::ValuesIn(accumulate_cases()), case_name);

// ---- empty tensors through every op -------------------------------------------------------------

// Zero-element inputs (a zero batch, a zero feature axis): every kernel must launch nothing, or a
// grid of at least one block that writes nothing, and the outputs that are not empty (a sum over
// nothing, a product with k = 0, a weight gradient from a zero batch) must be zeros or the bias.
std::vector<Case> empty_cases() {
  using V = std::vector<Tensor>;
  const auto fo = forward_only({0, 0});
  const auto ex = f32({0, 0}, {0, 0});
  std::vector<Case> c;
  for (const Shape& sh : {Shape{0}, Shape{0, 5}, Shape{2, 0, 3}}) {
    const std::string n = "empty_" + shape_name(sh) + "_";
    c.push_back({n + "relu", {arg(sh)}, [](const V& x) { return nb::relu(x[0]); }, ex});
    c.push_back({n + "exp", {arg(sh)}, [](const V& x) { return nb::exp(x[0]); }, ex});
    c.push_back({n + "log", {arg(sh, 0.5, 2)}, [](const V& x) { return nb::log(x[0]); }, ex});
    c.push_back({n + "tanh", {arg(sh)}, [](const V& x) { return nb::tanh(x[0]); }, ex});
    c.push_back({n + "sigmoid", {arg(sh)}, [](const V& x) { return nb::sigmoid(x[0]); }, ex});
    c.push_back({n + "gelu", {arg(sh)}, [](const V& x) { return nb::gelu(x[0]); }, ex});
    c.push_back({n + "softplus", {arg(sh)}, [](const V& x) { return nb::softplus(x[0]); }, ex});
    c.push_back({n + "pow", {arg(sh, 0.5, 2)}, [](const V& x) { return nb::pow(x[0], 3.0); }, ex});
    c.push_back({n + "clamp", {arg(sh)}, [](const V& x) { return nb::clamp(x[0], -1, 1); }, ex});
    c.push_back({n + "add", {arg(sh), arg(sh)}, [](const V& x) { return nb::add(x[0], x[1]); }, ex});
    c.push_back({n + "mul", {arg(sh), arg(sh)}, [](const V& x) { return nb::mul(x[0], x[1]); }, ex});
    c.push_back({n + "div", {arg(sh), arg(sh, 0.5, 2)}, [](const V& x) { return nb::div(x[0], x[1]); }, ex});
    c.push_back({n + "maximum", {arg(sh), arg(sh)}, [](const V& x) { return nb::maximum(x[0], x[1]); }, ex});
    c.push_back({n + "lt", {arg(sh), arg(sh)}, [](const V& x) { return nb::lt(x[0], x[1]); }, fo});
    c.push_back({n + "sum_all", {arg(sh)}, [](const V& x) { return nb::sum(x[0]); }, ex});  // 0
    c.push_back({n + "dropout", {arg(sh)}, [](const V& x) { return nb::dropout(x[0], 0.5, true); }, fo});
    c.push_back({n + "clone", {arg(sh)}, [](const V& x) { return x[0].clone(); }, ex});
  }
  // broadcasting an empty operand, and against one
  c.push_back({"empty_0x5_add_5", {arg({0, 5}), arg({5})}, [](const V& x) { return nb::add(x[0], x[1]); }, ex});
  c.push_back({"empty_0x5_mul_1x5", {arg({0, 5}), arg({1, 5})}, [](const V& x) { return nb::mul(x[0], x[1]); }, ex});
  // reductions: over an empty axis (sums of nothing: zeros), and along a full axis of nothing
  c.push_back({"empty_0x5_sum_axis0", {arg({0, 5})}, [](const V& x) { return nb::sum(x[0], {0}); }, ex});
  c.push_back({"empty_3x0_sum_axis1_keep", {arg({3, 0})}, [](const V& x) { return nb::sum(x[0], {1}, true); }, ex});
  c.push_back({"empty_0x5_sum_axis1", {arg({0, 5})}, [](const V& x) { return nb::sum(x[0], {1}); }, ex});
  c.push_back({"empty_0x5_mean_axis1", {arg({0, 5})}, [](const V& x) { return nb::mean(x[0], {1}); }, ex});
  c.push_back({"empty_0x5_argmax_axis1", {arg({0, 5})}, [](const V& x) { return nb::argmax(x[0], 1); }, fo});
  c.push_back({"empty_0x5_sum_to_5", {arg({0, 5})}, [](const V& x) { return nb::sum_to(x[0], {5}); }, ex});
  // softmax over rows of nothing, and of no rows
  c.push_back({"empty_0x5_softmax", {arg({0, 5})}, [](const V& x) { return nb::softmax(x[0], -1); }, ex});
  c.push_back({"empty_0x5_log_softmax", {arg({0, 5})}, [](const V& x) { return nb::log_softmax(x[0], -1); }, ex});
  c.push_back({"empty_3x0_softmax", {arg({3, 0})}, [](const V& x) { return nb::softmax(x[0], -1); }, ex});
  // products: m = 0, and k = 0 (the output is zeros: beta must not read the uninitialized C)
  c.push_back({"empty_0x5_matmul_5x3", {arg({0, 5}), arg({5, 3})}, [](const V& x) { return nb::matmul(x[0], x[1]); },
               ex});
  c.push_back({"empty_3x0_matmul_0x4", {arg({3, 0}), arg({0, 4})}, [](const V& x) { return nb::matmul(x[0], x[1]); },
               ex});
  c.push_back({"empty_batch0_matmul", {arg({0, 3, 4}), arg({0, 4, 2})},
               [](const V& x) { return nb::matmul(x[0], x[1]); }, ex});
  c.push_back({"empty_linear_batch0", {arg({0, 5}), arg({3, 5}), arg({3})},
               [](const V& x) { return nb::linear(x[0], x[1], x[2]); }, ex});
  c.push_back({"empty_linear_in0_is_bias", {arg({4, 0}), arg({3, 0}), arg({3})},
               [](const V& x) { return nb::linear(x[0], x[1], x[2]); }, ex});
  // losses summed over no rows: 0, and no gradient to anything
  c.push_back({"empty_cross_entropy_sum", {arg({0, 5}), given([] { return labels(0, 5); })},
               [](const V& x) { return nb::cross_entropy(x[0], x[1], Reduction::sum); }, ex});
  c.push_back({"empty_nll_loss_none", {arg({0, 5}), given([] { return labels(0, 5); })},
               [](const V& x) { return nb::nll_loss(x[0], x[1], Reduction::none); }, ex});
  c.push_back({"empty_mse_loss_sum", {arg({0, 3}), arg({0, 3})},
               [](const V& x) { return nb::mse_loss(x[0], x[1], Reduction::sum); }, ex});
  // convolution, pooling and normalization of a zero batch: the weight gradient is zeros
  c.push_back({"empty_conv2d_batch0", {arg({0, 3, 8, 8}), arg({4, 3, 3, 3}), arg({4})},
               [](const V& x) { return nb::conv2d(x[0], x[1], x[2], {.padding = 1}); }, ex});
  c.push_back({"empty_max_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::max_pool2d(x[0], 2); }, ex});
  c.push_back({"empty_avg_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::avg_pool2d(x[0], 2); }, ex});
  c.push_back({"empty_global_avg_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::global_avg_pool2d(x[0]); }, ex});
  c.push_back({"empty_batch_norm_eval_batch0",
               {arg({0, 3, 4, 4}), arg({3}), arg({3}), given([] { return nb::rand({3}, {}, -1, 1); }),
                given([] { return nb::rand({3}, {}, 0.5, 2); })},
               [](const V& x) { return nb::batch_norm(x[0], x[1], x[2], x[3], x[4], false); }, ex});
  // embedding of no indices: the weight gradient is zeros
  c.push_back({"empty_embedding_no_indices", {given([] { return labels(0, 10); }), arg({10, 4})},
               [](const V& x) { return nb::embedding(x[0], x[1]); }, ex});
  c.push_back({"empty_concat_0x5_3x5", {arg({0, 5}), arg({3, 5})},
               [](const V& x) { return nb::concat({x[0], x[1]}, 0); }, ex});
  return c;
}
INSTANTIATE_TEST_SUITE_P(Empty, Parity, ::testing::ValuesIn(empty_cases()), case_name);

// What the CPU refuses on empty inputs, CUDA refuses too, with the same message (max and min have
// no identity: nabla refuses an empty input outright).
TEST_F(CudaTest, EmptyRefusedAlikeOnBothDevices) {
  const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> ops = {
      {"max axis 1", [](const Tensor& x) { return nb::max(x, {1}); }},
      {"min", [](const Tensor& x) { return nb::min(x); }},
      // an LSTM over a batch of none (cuDNN has no empty RNN data either)
      {"lstm batch 0",
       [](const Tensor& x) {
         const Tensor w = nb::rand({16, 4}, {.device = x.device()}), b = nb::rand({16}, {.device = x.device()});
         return nb::rnn_layer(nb::RnnCell::lstm, nb::rand({3, 0, 4}, {.device = x.device()}), {}, {},
                              {{w, nb::rand({16, 4}, {.device = x.device()}), b, b}})
             .y;
       }},
  };
  for (const auto& [name, f] : ops) {
    SCOPED_TRACE(name);
    const Tensor x = nb::rand({0, 5});
    std::string on_cpu, on_cuda;
    try {
      f(x);
    } catch (const nb::Error& e) {
      on_cpu = e.what();
    }
    try {
      f(x.to(kCuda));
    } catch (const nb::Error& e) {
      on_cuda = e.what();
    }
    EXPECT_FALSE(on_cpu.empty()) << "the CPU accepts it now: move it to empty_cases()";
    EXPECT_EQ(on_cuda, on_cpu);
  }
}

// The CPU side of the cases above (runs without a GPU): the reference must be defined on empty
// inputs for the parity to mean anything.
TEST(EmptyOnTheCpu, EveryCaseRunsForwardAndBackward) {
  for (const Case& k : empty_cases()) {
    SCOPED_TRACE(k.name);
    std::vector<Tensor> in;
    for (const Arg& a : k.args) {
      Tensor t = a.make ? a.make() : random_base(a, k.o.dtype);
      if (!a.make && nb::is_floating(t.dtype())) t.requires_grad_(true);
      in.push_back(t);
    }
    Tensor out;
    EXPECT_NO_THROW(out = k.f(in));
    if (out.defined() && out.requires_grad()) {
      EXPECT_NO_THROW(nb::sum(out).backward());
    }
    EXPECT_EQ(nb::tape_size(), 0u);
  }
}

// ---- casts among all four dtypes ------------------------------------------------------------

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> d = {DType::float32, DType::float64, DType::int32, DType::int64};
  return d;
}

// Values every dtype pair converts the same way on both devices: floats on a 1/4 grid in
// [-1000, 1000] (truncation toward zero to integers), int32 over its whole range, int64 up to
// 2^62 (rounding to float), with the usual edge values first.
Tensor cast_source(DType t, int64_t n) {
  std::mt19937_64 gen(static_cast<uint64_t>(n) * 31 + static_cast<int>(t));
  std::vector<double> fv;
  std::vector<int64_t> iv;
  for (int64_t i = 0; i < n; ++i) {
    if (nb::is_floating(t)) {
      static const double edge[] = {0.0, -0.0, 0.25, -0.75, 999.75, -1000.0, 1.5, -2.5};
      fv.push_back(i < 8 ? edge[i] : std::round(std::uniform_real_distribution<double>(-1000, 1000)(gen) * 4) / 4);
    } else if (t == DType::int32) {
      static const int64_t edge[] = {0, -1, 1, INT32_MAX, INT32_MIN, 16777217, -16777217, 12345};
      iv.push_back(i < 8 ? edge[i] : std::uniform_int_distribution<int64_t>(INT32_MIN, INT32_MAX)(gen));
    } else {
      static const int64_t edge[] = {0, -1, (int64_t{1} << 53) + 1, -(int64_t{1} << 62), int64_t{1} << 62,
                                     16777217, int64_t{1} << 40, INT32_MIN - int64_t{5}};
      iv.push_back(i < 8 ? edge[i] : std::uniform_int_distribution<int64_t>(-(int64_t{1} << 62), int64_t{1} << 62)(gen));
    }
  }
  return nb::is_floating(t) ? nb::from_vector(fv, {n}, {.dtype = t}) : nb::from_vector(iv, {n}, {.dtype = t});
}

using CastParam = std::tuple<DType, DType, int64_t>;
class Cast : public CudaParamTest<CastParam> {};
TEST_P(Cast, BitExact) {
  const auto [from, to, n] = GetParam();
  Tensor src = cast_source(from, n);
  EXPECT_TRUE(same_bits(src.to(kCuda).to(to), src.to(to), "contiguous"));
  // A strided source goes through the strided copy first.
  if (n > 2) {
    Tensor strided = src.slice(0, 1, n, 2);
    EXPECT_TRUE(same_bits(src.to(kCuda).slice(0, 1, n, 2).to(to), strided.to(to), "strided source"));
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Cast,
                         ::testing::Combine(::testing::ValuesIn(all_dtypes()), ::testing::ValuesIn(all_dtypes()),
                                            ::testing::Values(int64_t{7}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<CastParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_to_" +
                                  nb::dtype_name(std::get<1>(i.param)) + "_n" + std::to_string(std::get<2>(i.param));
                         });

// ---- factories, fill and copy -----------------------------------------------------------------

using FactoryParam = std::tuple<DType, int64_t>;
class Factory : public CudaParamTest<FactoryParam> {};
TEST_P(Factory, ZerosOnesFullFillMatchCpu) {
  const auto [t, n] = GetParam();
  const Shape s = n == 1 ? Shape{1} : Shape{n};
  const nb::TensorOptions c{.dtype = t}, g{.dtype = t, .device = kCuda};
  EXPECT_TRUE(same_bits(nb::zeros(s, g), nb::zeros(s, c), "zeros"));
  EXPECT_TRUE(same_bits(nb::ones(s, g), nb::ones(s, c), "ones"));
  EXPECT_TRUE(same_bits(nb::full(s, -2.75, g), nb::full(s, -2.75, c), "full(-2.75)"));  // integers truncate
  const double big = nb::is_floating(t) ? 3.0e38 : 2147483647.0;
  EXPECT_TRUE(same_bits(nb::full(s, big, g), nb::full(s, big, c), "full(big)"));
  Tensor a = Tensor::empty(s, g);
  a.fill_(7.5);
  EXPECT_TRUE(same_bits(a, nb::full(s, 7.5, c), "fill_"));
  // In place on views: an odd offset (contiguous, misaligned) and a step-2 slice.
  if (n > 2) {
    Tensor gd = nb::zeros(s, g), cd = nb::zeros(s, c);
    gd.slice(0, 1, n).fill_(3);
    cd.slice(0, 1, n).fill_(3);
    gd.slice(0, 0, n, 2).fill_(-4);
    cd.slice(0, 0, n, 2).fill_(-4);
    EXPECT_TRUE(same_bits(gd, cd, "fill_ on views"));
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Factory,
                         ::testing::Combine(::testing::ValuesIn(all_dtypes()),
                                            ::testing::Values(int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<FactoryParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_n" +
                                  std::to_string(std::get<1>(i.param));
                         });

TEST_F(CudaTest, ArangeScalarFromVectorMatchCpu) {
  for (DType t : all_dtypes()) {
    SCOPED_TRACE(nb::dtype_name(t));
    const nb::TensorOptions c{.dtype = t}, g{.dtype = t, .device = kCuda};
    EXPECT_TRUE(same_bits(nb::arange(4097, g), nb::arange(4097, c), "arange(n)"));
    EXPECT_TRUE(same_bits(nb::arange(-3.0, 1000.5, 0.7, g), nb::arange(-3.0, 1000.5, 0.7, c), "arange(start, end, step)"));
    EXPECT_TRUE(same_bits(nb::scalar(-6.25, g), nb::scalar(-6.25, c), "scalar"));
    EXPECT_TRUE(same_bits(nb::from_vector({1.5, -2, 3.25, 4e6}, {2, 2}, g), nb::from_vector({1.5, -2, 3.25, 4e6}, {2, 2}, c),
                          "from_vector"));
  }
}

TEST_F(CudaTest, CopyIntoStridedViewsAcrossDevices) {
  Tensor src = nb::rand({5, 9}, {}, -2, 2);
  Tensor g = nb::zeros({5, 20}, {.device = kCuda}), c = nb::zeros({5, 20});
  g.slice(1, 1, 19, 2).copy_(src);           // host to a strided device view
  c.slice(1, 1, 19, 2).copy_(src);
  EXPECT_TRUE(same_bits(g, c, "host to strided device view"));
  Tensor back = nb::zeros({9, 5});
  back.copy_(g.slice(1, 1, 19, 2).transpose(0, 1));  // strided device view to host
  EXPECT_TRUE(same_bits(back, src.transpose(0, 1).contiguous(), "strided device view to host"));
  Tensor g2 = nb::zeros({9, 5}, {.device = kCuda});
  g2.copy_(g.slice(1, 1, 19, 2).transpose(0, 1));  // device to device, transposing
  EXPECT_TRUE(same_bits(g2, back, "device to device"));
  Tensor bcast = nb::zeros({4, 9}, {.device = kCuda, .requires_grad = false});
  bcast.copy_(src.slice(0, 2, 3));  // a [1, 9] row broadcast into [4, 9]
  EXPECT_TRUE(same_bits(bcast, src.slice(0, 2, 3).expand({4, 9}).contiguous(), "broadcast copy"));
}

// ---- random numbers: the same seed gives the same numbers on both devices --------------------

// Distance in units in the last place (0 where the bits are equal), through the sign-magnitude
// to two's-complement map that makes adjacent floats adjacent integers.
int64_t ulp_distance(double a, double b) {
  int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  if (ia < 0) ia = std::numeric_limits<int64_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int64_t>::min() - ib;
  return ia > ib ? ia - ib : ib - ia;
}

using RandomParam = std::tuple<DType, int64_t>;
class Random : public CudaParamTest<RandomParam> {};

// rand: bit-identical for both dtypes (ranges of power-of-two width keep the affine map exact).
TEST_P(Random, UniformBitIdentical) {
  const auto [t, n] = GetParam();
  const std::vector<std::pair<double, double>> ranges = {{0.0, 1.0}, {-2.0, 2.0}, {-3.0, 5.0}};
  for (const auto& [lo, hi] : ranges) {
    SCOPED_TRACE(fmt::format("[{}, {})", lo, hi));
    nb::manual_seed(1234);
    Tensor c = nb::rand({n}, {.dtype = t}, lo, hi);
    nb::manual_seed(1234);
    Tensor g = nb::rand({n}, {.dtype = t, .device = kCuda}, lo, hi);
    EXPECT_TRUE(same_bits(g, c, "rand"));
  }
}

// randn: float32 bit-identical but for the rare element whose double result lands across a float
// rounding boundary (core/philox.h: about 1 in 2^28); float64 within a few ulps, because CUDA's
// log/sin/cos are not glibc's.
// How far a CUDA normal draw may be from the CPU's. Both compute mean + stddev * z in double from
// the same Philox words, but z = sqrt(-2 log u1) * cos(2 pi u2) goes through log, sin and cos,
// which CUDA's libdevice and glibc round differently (each within 1-2 ulps). That puts an
// error of a few ulps *of z* into the result; near z = -mean / stddev the sum cancels, and the
// same absolute error is hundreds of ulps of the (tiny) result. So the bound is on the size of
// the terms: 16 ulps of |mean| + |stddev * z| (log 1 ulp, halved by the sqrt; cos 2 ulps; the
// product and the sum 1/2 ulp each: about 4, with room), z read back from the CPU's value. For
// float32, rounding the double to float adds at most 1 ulp of the float result.
double normal_allowed_error(DType t, double mean, double cpu_value) {
  const double terms = std::abs(mean) + std::abs(cpu_value - mean);
  double allowed = 16 * std::numeric_limits<double>::epsilon() * terms;
  if (t == DType::float32) {
    const float f = static_cast<float>(cpu_value);
    allowed += std::nextafter(std::abs(f), std::numeric_limits<float>::infinity()) - std::abs(f);
  }
  return allowed;
}

// The bound itself (runs without a GPU): a 1-ulp change of z at the cancellation point passes, an
// error of a thousand ulps of the terms does not, and far from it 16 ulps of the result pass.
TEST(NormalTolerance, BoundedByTheTermsNotTheResult) {
  const double mean = -1.0, stddev = 0.5;
  const double z = 2.0 + 0x1p-40;  // mean + stddev * z = 2^-41: cancellation
  const double cpu = mean + stddev * z;
  const double gpu = mean + stddev * std::nextafter(z, 3.0);  // z one ulp off
  EXPECT_GT(ulp_distance(gpu, cpu), 1000) << "the case must cancel, or it tests nothing";
  EXPECT_LE(std::abs(gpu - cpu), normal_allowed_error(DType::float64, mean, cpu));
  EXPECT_GT(1000 * std::numeric_limits<double>::epsilon() * 2, normal_allowed_error(DType::float64, mean, cpu));
  const double far = mean + stddev * 0.3;
  double off = far;
  for (int i = 0; i < 8; ++i) off = std::nextafter(off, 0.0);
  EXPECT_LE(std::abs(off - far), normal_allowed_error(DType::float64, mean, far));
  EXPECT_LE(std::abs(double(std::nextafter(float(far), 0.f)) - double(float(far))),
            normal_allowed_error(DType::float32, mean, double(float(far))));
}

TEST_P(Random, NormalMatches) {
  const auto [t, n] = GetParam();
  const std::vector<std::pair<double, double>> params = {{0.0, 1.0}, {-1.0, 0.5}};
  for (const auto& [mean, stddev] : params) {
    SCOPED_TRACE(fmt::format("mean {}, stddev {}", mean, stddev));
    nb::manual_seed(4321);
    Tensor c = nb::randn({n}, {.dtype = t}, mean, stddev);
    nb::manual_seed(4321);
    Tensor g = nb::randn({n}, {.dtype = t, .device = kCuda}, mean, stddev);
    const auto cv = c.to_vector<double>(), gv = g.to_vector<double>();
    int64_t differ = 0, bad = 0, at = -1;
    double worst = 0;  // error over allowed
    for (size_t i = 0; i < cv.size(); ++i) {
      const double err = std::isnan(gv[i]) ? std::numeric_limits<double>::infinity() : std::abs(gv[i] - cv[i]);
      if (err > 0) ++differ;
      const double r = err / normal_allowed_error(t, mean, cv[i]);
      if (r > 1) ++bad;
      if (r > worst) {
        worst = r;
        at = static_cast<int64_t>(i);
      }
    }
    EXPECT_EQ(bad, 0) << bad << " elements over the bound; worst at element " << at << ": cuda "
                      << fmt::format("{:.17g}, cpu {:.17g}, {:.3g}x allowed", gv[at], cv[at], worst);
    // In float32 the double results round to the same float almost always.
    if (t == DType::float32) {
      EXPECT_LE(differ, 1 + n / (1 << 22)) << differ << " of " << n << " elements differ";
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Cuda, Random,
                         ::testing::Combine(::testing::Values(DType::float32, DType::float64),
                                            ::testing::Values(int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{4097}, kBig)),
                         [](const ::testing::TestParamInfo<RandomParam>& i) {
                           return std::string(nb::dtype_name(std::get<0>(i.param))) + "_n" +
                                  std::to_string(std::get<1>(i.param));
                         });

// A sequence of calls of odd sizes advances the generator the same way on both devices.
TEST_F(CudaTest, RandomSequenceAdvancesAlike) {
  auto draw = [](nb::Device d) {
    nb::manual_seed(77);
    std::vector<Tensor> out;
    out.push_back(nb::rand({7}, {.device = d}));
    out.push_back(nb::rand({3, 5}, {.dtype = DType::float64, .device = d}, -1, 1));
    out.push_back(nb::rand({1023}, {.device = d}, -2, 2));
    out.push_back(nb::rand({1}, {.device = d}));
    out.push_back(nb::rand({4097}, {.dtype = DType::float64, .device = d}));
    return out;
  };
  auto c = draw(nb::Device::cpu());
  const uint64_t offset_cpu = nb::rng_state().offset;
  auto g = draw(kCuda);
  EXPECT_EQ(nb::rng_state().offset, offset_cpu) << "the CUDA draws consumed a different count of numbers";
  for (size_t i = 0; i < c.size(); ++i) EXPECT_TRUE(same_bits(g[i], c[i], fmt::format("draw {}", i)));
}

// The same seed gives the same initial weights on both devices (DESIGN: Numbers).
TEST_F(CudaTest, SameSeedSameDenseWeights) {
  nb::manual_seed(3);
  nb::Dense cpu(37, 23);
  nb::manual_seed(3);
  nb::Dense gpu(37, 23, {.device = kCuda});
  EXPECT_TRUE(same_bits(gpu.weight(), cpu.weight(), "weight"));
  EXPECT_TRUE(same_bits(gpu.bias(), cpu.bias(), "bias"));
  nb::manual_seed(4);
  nb::Dense cpu_normal(257, 129, {.weight_init = nb::Init::he_normal});
  nb::manual_seed(4);
  nb::Dense gpu_normal(257, 129, {.weight_init = nb::Init::he_normal, .device = kCuda});
  EXPECT_TRUE(same_bits(gpu_normal.weight(), cpu_normal.weight(), "he_normal weight"));
}

// ---- optimizers --------------------------------------------------------------------------------

struct OptCase {
  std::string name;
  std::function<std::unique_ptr<nb::Optimizer>(std::vector<Tensor>)> make;
};
void PrintTo(const OptCase& c, std::ostream* os) { *os << c.name; }

const std::vector<OptCase>& optimizer_cases() {
  static const std::vector<OptCase> c = {
      {"SGD", [](auto p) { return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.1}); }},
      {"SGD_momentum_nesterov_wd",
       [](auto p) {
         return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3,
                                                                        .nesterov = true});
       }},
      {"SGD_momentum_dampening",
       [](auto p) {
         return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.25});
       }},
      {"Adam", [](auto p) { return std::make_unique<nb::Adam>(std::move(p), nb::AdamOptions{.lr = 1e-2}); }},
      {"Adam_wd",
       [](auto p) { return std::make_unique<nb::Adam>(std::move(p), nb::AdamOptions{.lr = 1e-2, .weight_decay = 1e-2}); }},
      {"AdamW",
       [](auto p) { return std::make_unique<nb::AdamW>(std::move(p), nb::AdamWOptions{.lr = 1e-2, .weight_decay = 0.1}); }},
      {"Adagrad",
       [](auto p) {
         return std::make_unique<nb::Adagrad>(
             std::move(p), nb::AdagradOptions{.lr = 0.05, .lr_decay = 0.01, .weight_decay = 1e-3,
                                              .initial_accumulator_value = 0.1});
       }},
      {"RMSprop", [](auto p) { return std::make_unique<nb::RMSprop>(std::move(p), nb::RMSpropOptions{.lr = 1e-2}); }},
      {"RMSprop_centered_momentum_wd",
       [](auto p) {
         return std::make_unique<nb::RMSprop>(
             std::move(p), nb::RMSpropOptions{.lr = 1e-2, .weight_decay = 1e-3, .momentum = 0.9, .centered = true});
       }},
  };
  return c;
}
std::string optimizer_name(const ::testing::TestParamInfo<OptCase>& i) { return i.param.name; }

::testing::AssertionResult params_close(const std::vector<Tensor>& gpu, const std::vector<Tensor>& cpu, Tol tol,
                                        const std::string& when) {
  if (gpu.size() != cpu.size()) return ::testing::AssertionFailure() << "parameter counts differ";
  for (size_t i = 0; i < cpu.size(); ++i) {
    auto r = allclose(gpu[i], cpu[i], tol, fmt::format("{}: parameter {}", when, i));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

// The optimizers' state (moments, step counts) after the same steps.
::testing::AssertionResult state_close(const nb::Optimizer& gpu, const nb::Optimizer& cpu, Tol tol) {
  auto g = gpu.state(), c = cpu.state();
  if (g.size() != c.size()) return ::testing::AssertionFailure() << "state sizes differ: " << g.size() << " vs " << c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    if (g[i].first != c[i].first) return ::testing::AssertionFailure() << "state " << g[i].first << " vs " << c[i].first;
    if (!nb::is_floating(c[i].second.dtype())) {
      if (g[i].second.item() != c[i].second.item())
        return ::testing::AssertionFailure() << c[i].first << ": " << g[i].second.item() << " vs " << c[i].second.item();
      continue;
    }
    auto r = allclose(g[i].second, c[i].second, tol, "state " + c[i].first);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

class Optim : public CudaParamTest<OptCase> {
 protected:
  // Two copies of one model (same seed), one moved to CUDA; `steps` steps on the same batches.
  void run_model(const std::function<std::shared_ptr<nb::Module>()>& make, int64_t in, int64_t classes, int steps) {
    const OptCase& oc = GetParam();
    nb::manual_seed(7);
    auto cpu = make();
    nb::manual_seed(7);
    auto gpu = make();
    gpu->to(kCuda);
    ASSERT_TRUE(params_close(gpu->parameters(), cpu->parameters(), {0, 0}, "initial"));
    auto opt_c = oc.make(cpu->parameters());
    auto opt_g = oc.make(gpu->parameters());
    for (int step = 1; step <= steps; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      Tensor x = nb::randn({16, in});
      Tensor y = labels(16, classes, DType::int64, static_cast<uint64_t>(step));
      auto one = [](nb::Module& m, nb::Optimizer& opt, const Tensor& xs, const Tensor& ys) {
        opt.zero_grad();
        Tensor loss = nb::cross_entropy(m(xs), ys);
        loss.backward();
        opt.step();
        return loss;
      };
      Tensor lc = one(*cpu, *opt_c, x, y);
      Tensor lg = one(*gpu, *opt_g, x.to(kCuda), y.to(kCuda));
      EXPECT_TRUE(allclose(lg, lc, {1e-4, 1e-6}, "loss"));
      ASSERT_TRUE(params_close(gpu->parameters(), cpu->parameters(), {1e-5, 1e-6}, "after the step"));
    }
    EXPECT_TRUE(state_close(*opt_g, *opt_c, {1e-3, 1e-8}));
  }
};

TEST_P(Optim, SmallMlp37x23x5_3Steps) {
  run_model([] { return std::make_shared<nb::Sequential>(nb::Dense(37, 23), nb::ReLU(), nb::Dense(23, 5)); }, 37, 5, 3);
}

// 25 Dense layers, 50 parameter tensors: a group of more than kMaxTensors (48, cuda/optim.cu)
// tensors, so one update is two launches, the second of 2 tensors.
TEST_P(Optim, Deep25Dense_50Tensors_TwoLaunches_3Steps) {
  run_model(
      [] {
        auto m = std::make_shared<nb::Sequential>();
        for (int i = 0; i < 24; ++i) {
          m->add(nb::Dense(16, 16));
          m->add(nb::ReLU());
        }
        m->add(nb::Dense(16, 4));
        return m;
      },
      16, 4, 3);
}

// The update kernels alone: 100 tensors (three launches of at most kMaxTensors = 48: 48, 48, 4)
// of sizes that reach every branch (1 to 2^20 + 3 elements), given random gradients; at step 2
// every third tensor has no gradient, so at step 3 the tensors of one launch have different step
// counts.
void run_direct(const OptCase& oc, DType t, Tol tol) {
  std::vector<int64_t> sizes = {1, 7, 1023, 4097, 65537, kBig, 2, 3, 4, 5, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64};
  for (int64_t s = 65; sizes.size() < 40; s = s * 3 / 2 + 1) sizes.push_back(s);
  // and three empty tensors (no chunks: a launch must skip them)
  for (int64_t i = 0; sizes.size() < 100; ++i) sizes.push_back(i % 24 == 5 ? 0 : 1 + (i * 997) % 5003);
  std::vector<Tensor> pc, pg;
  for (int64_t n : sizes) {
    Tensor p = nb::rand({n}, {.dtype = t}, -1, 1);
    pc.push_back(p.clone().requires_grad_(true));
    pg.push_back(p.to(kCuda).requires_grad_(true));
  }
  auto opt_c = oc.make(pc);
  auto opt_g = oc.make(pg);
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (step == 2 && i % 3 == 1) {
        pc[i].zero_grad();
        pg[i].zero_grad();
        continue;
      }
      Tensor g = nb::rand({sizes[i]}, {.dtype = t}, -1, 1);
      pc[i].set_grad(g);
      pg[i].set_grad(g.to(kCuda));
    }
    opt_c->step();
    opt_g->step();
    ASSERT_TRUE(params_close(pg, pc, tol, "after the step"));
  }
  EXPECT_TRUE(state_close(*opt_g, *opt_c, {tol.rtol * 10, tol.atol * 1e-4}));
}

TEST_P(Optim, Direct100TensorsThreeLaunchesUnevenSteps_F32) { run_direct(GetParam(), DType::float32, {1e-5, 1e-6}); }
TEST_P(Optim, Direct100TensorsThreeLaunchesUnevenSteps_F64) { run_direct(GetParam(), DType::float64, {1e-11, 1e-13}); }

INSTANTIATE_TEST_SUITE_P(Cuda, Optim, ::testing::ValuesIn(optimizer_cases()), optimizer_name);

// The CPU side of the empty parameters in run_direct (runs without a GPU): every optimizer steps
// over a group holding an empty tensor.
TEST(EmptyOnTheCpu, EveryOptimizerStepsOverAnEmptyParameter) {
  for (const OptCase& oc : optimizer_cases()) {
    SCOPED_TRACE(oc.name);
    std::vector<Tensor> p = {nb::rand({0}).requires_grad_(true), nb::rand({3}).requires_grad_(true)};
    auto opt = oc.make(p);
    for (int step = 0; step < 2; ++step) {
      for (Tensor& t : p) t.set_grad(nb::rand(t.shape()));
      EXPECT_NO_THROW(opt->step());
    }
    EXPECT_EQ(p[0].numel(), 0);
  }
}

// ---- label errors ------------------------------------------------------------------------------

bool names_loss_op(const std::string& what) {
  return what.find("cross_entropy") != std::string::npos || what.find("nll_loss") != std::string::npos;
}

// The message of the nabla::Error that f throws, or "(no error)".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const nb::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// After a reported label error the device is usable: a correct step on CUDA gives the CPU's loss.
void expect_device_usable() {
  Tensor x = nb::randn({8, 5}), y = labels(8, 5);
  const double want = nb::cross_entropy(x, y).item();
  double got = 0;
  EXPECT_NO_THROW(got = nb::cross_entropy(x.to(kCuda), y.to(kCuda)).item());
  EXPECT_NEAR(got, want, 1e-5 * std::abs(want) + 1e-6);
  EXPECT_NO_THROW(nb::cuda::synchronize()) << "the reported error must not be reported again";
}

TEST_F(CudaTest, CrossEntropyLabelOutOfRangeThrowsAtItem) {
  Tensor logits = nb::randn({6, 10}, {.device = kCuda});
  // The last row's label points past the end of the logits: a kernel that indexes with it
  // unchecked reads (and, backward, writes) out of bounds, which compute-sanitizer reports.
  Tensor y = nb::from_vector(std::vector<int64_t>{0, 3, 10, 2, 9, 11}, {6}, {.dtype = DType::int64, .device = kCuda});
  const std::string what = error_of([&] { nb::cross_entropy(logits, y).item(); });
  EXPECT_TRUE(names_loss_op(what)) << what;
  EXPECT_NE(what.find("label 10 at index 2"), std::string::npos) << what;
  EXPECT_NE(what.find("10 classes"), std::string::npos) << what;
  // The CPU says the same at once.
  const std::string cpu = error_of([&] { nb::cross_entropy(logits.to(nb::Device::cpu()), y.to(nb::Device::cpu())); });
  EXPECT_NE(cpu.find("label 10 at index 2"), std::string::npos) << cpu;
  expect_device_usable();
}

TEST_F(CudaTest, CrossEntropyNegativeLabelThrowsAtSynchronize) {
  Tensor logits = nb::randn({4097, 3}, {.device = kCuda, .requires_grad = true});
  std::vector<int64_t> v(4097, 1);
  v[4000] = -3;
  v[4001] = 7;
  v[4096] = 5;  // past the end of the buffer if used unchecked
  Tensor y = nb::from_vector(v, {4097}, {.dtype = DType::int64, .device = kCuda});
  const std::string what = error_of([&] {
    Tensor loss = nb::cross_entropy(logits, y);
    loss.backward();
    nb::cuda::synchronize();
  });
  EXPECT_TRUE(names_loss_op(what)) << what;
  EXPECT_NE(what.find("label -3 at index 4000"), std::string::npos) << what;
  EXPECT_NE(what.find("3 bad labels"), std::string::npos) << what;
  expect_device_usable();
}

TEST_F(CudaTest, NllLossInt32LabelOutOfRangeThrowsAtCopyToHost) {
  Tensor logp = nb::log_softmax(nb::randn({5, 4}, {.device = kCuda}));
  Tensor y = nb::from_vector(std::vector<int32_t>{1, 2, 3, 4, 0}, {5}, {.dtype = DType::int32, .device = kCuda});
  const std::string what = error_of([&] { nb::nll_loss(logp, y, Reduction::none).to(nb::Device::cpu()); });
  EXPECT_NE(what.find("nll_loss"), std::string::npos) << what;
  EXPECT_NE(what.find("label 4 at index 3"), std::string::npos) << what;
  expect_device_usable();
}

// A training step with a bad batch fails; the next good step trains and matches the CPU.
TEST_F(CudaTest, TrainingContinuesAfterLabelError) {
  nb::manual_seed(11);
  nb::Sequential cpu{nb::Dense(12, 8), nb::ReLU(), nb::Dense(8, 3)};
  nb::manual_seed(11);
  nb::Sequential gpu{nb::Dense(12, 8), nb::ReLU(), nb::Dense(8, 3)};
  gpu.to(kCuda);
  nb::Adam oc(cpu.parameters(), {.lr = 1e-2}), og(gpu.parameters(), {.lr = 1e-2});
  Tensor x = nb::randn({9, 12});
  Tensor bad = nb::from_vector(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 0, 1}, {9}, {.dtype = DType::int64});
  const std::string what = error_of([&] {
    og.zero_grad();
    Tensor loss = nb::cross_entropy(gpu(x.to(kCuda)), bad.to(kCuda));
    loss.backward();
    loss.item();
  });
  EXPECT_TRUE(names_loss_op(what)) << what;
  // Whatever the failed step left in the gradients is discarded by zero_grad; the weights are
  // still the CPU's.
  ASSERT_TRUE(params_close(gpu.parameters(), cpu.parameters(), {0, 0}, "after the failed step"));
  Tensor good = labels(9, 3);
  for (int step = 0; step < 2; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = nb::cross_entropy(cpu(x), good), lg = nb::cross_entropy(gpu(x.to(kCuda)), good.to(kCuda));
    lc.backward();
    lg.backward();
    oc.step();
    og.step();
    EXPECT_TRUE(allclose(lg, lc, {1e-4, 1e-6}, "loss"));
  }
  EXPECT_TRUE(params_close(gpu.parameters(), cpu.parameters(), {1e-5, 1e-6}, "after two good steps"));
}

// Bad batches back to back, each with its own bad label: the flags must be reset (on the work
// stream) before the next check reads them, or a check sees the previous failure, skips its
// batch, and the error is lost or names the previous batch's label. Big batches keep the check
// kernel busy right after the reset, where an unordered reset would lose the race.
TEST_F(CudaTest, BackToBackLabelErrorsEachReportTheirOwnLabel) {
  const int64_t n = 1 << 20, classes = 10;
  Tensor logp = nb::log_softmax(nb::randn({n, classes}, {.device = kCuda}));
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<int64_t> v(static_cast<size_t>(n), 1);
    const int64_t at = 1000 + 37 * round, label = classes + round;
    v[static_cast<size_t>(at)] = label;
    Tensor y = nb::from_vector(v, {n}, {.dtype = DType::int64, .device = kCuda});
    const std::string what = error_of([&] { nb::nll_loss(logp, y).item(); });
    EXPECT_NE(what.find(fmt::format("label {} at index {}", label, at)), std::string::npos) << what;
    EXPECT_NE(what.find("1 bad labels"), std::string::npos) << what;
    // A good batch right after: no stale failure.
    Tensor good = nb::from_vector(std::vector<int64_t>(static_cast<size_t>(n), 2), {n},
                                  {.dtype = DType::int64, .device = kCuda});
    EXPECT_NO_THROW(nb::nll_loss(logp, good).item());
  }
}

// ---- end to end --------------------------------------------------------------------------------

// The MLP 784-256-128-10 trained 50 steps with Adam on random data from identical weights:
// the loss of every step agrees to 1e-3.
TEST_F(CudaTest, Mlp784x256x128x10_50AdamSteps_LossesMatch) {
  auto make = [] {
    return nb::Sequential{nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 128), nb::ReLU(), nb::Dense(128, 10)};
  };
  nb::manual_seed(0);
  nb::Sequential cpu = make();
  nb::manual_seed(0);
  nb::Sequential gpu = make();
  gpu.to(kCuda);
  nb::Adam oc(cpu.parameters(), {.lr = 1e-3}), og(gpu.parameters(), {.lr = 1e-3});
  std::vector<Tensor> xc, yc, xg, yg;
  for (int i = 0; i < 4; ++i) {
    xc.push_back(nb::randn({128, 784}));
    yc.push_back(labels(128, 10, DType::int64, 100 + i));
    xg.push_back(xc.back().to(kCuda));
    yg.push_back(yc.back().to(kCuda));
  }
  std::vector<Tensor> losses_g;
  std::vector<double> losses_c;
  for (int step = 0; step < 50; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = nb::cross_entropy(cpu(xc[step % 4]), yc[step % 4]);
    Tensor lg = nb::cross_entropy(gpu(xg[step % 4]), yg[step % 4]);
    lc.backward();
    lg.backward();
    oc.step();
    og.step();
    losses_c.push_back(lc.item());
    losses_g.push_back(lg.detach());  // read at the end: no synchronization inside the loop
  }
  for (int step = 0; step < 50; ++step) {
    const double g = losses_g[step].item(), c = losses_c[step];
    EXPECT_NEAR(g, c, 1e-3 * std::abs(c)) << "step " << step;
  }
  EXPECT_LT(losses_c.back(), losses_c.front()) << "the run did not train; the comparison means little";
}

}  // namespace
