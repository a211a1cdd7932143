// conv2d, conv1d, max/avg/global pooling and batch_norm on the CPU: forward values against naive
// float64 loops, float64 gradient checks (stride, padding, "same", dilation, groups, odd sizes),
// float32 against float64, batch-norm train/eval behaviour and running statistics, shape errors,
// and the layers (Conv2d, Conv1d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, BatchNorm1d/2d).
#include "test_util.h"

#include <nabla/cpu/dnnl_conv.h>
#include <nabla/cpu/dnnl_norm.h>
#include <nabla/cpu/dnnl_pool.h>
#include <nabla/layers/layers.h>

#include <cmath>
#include <functional>
#include <limits>

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::HasSubstr;

namespace {

// ---- naive references (float64, straight from the definitions) ------------------------------

struct ConvCfg {
  int64_t n, c, h, w, k, kh, kw;
  nb::Conv2dParams p;
};

// y[n, o, oy, ox] = b[o] + sum_{ci in group, r, q} x[n, ci, oy*sh - ph + r*dh, ox*sw - pw + q*dw] w[o, ci', r, q]
// with explicit symmetric padding (ph, pw) and optional extra zeros at the end (eh, ew).
std::vector<double> naive_conv(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>* b,
                               int64_t n, int64_t c, int64_t h, int64_t wd, int64_t k, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t g,
                               int64_t eh, int64_t ew, int64_t* oh_out, int64_t* ow_out) {
  const int64_t hp = h + 2 * ph + eh, wp = wd + 2 * pw + ew;
  const int64_t oh = (hp - (dh * (kh - 1) + 1)) / sh + 1, ow = (wp - (dw * (kw - 1) + 1)) / sw + 1;
  *oh_out = oh;
  *ow_out = ow;
  const int64_t cg = c / g, kg = k / g;
  std::vector<double> y(size_t(n * k * oh * ow));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < k; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double acc = b ? (*b)[size_t(o)] : 0.0;
          const int64_t grp = o / kg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t r = 0; r < kh; ++r)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t iy = oy * sh - ph + r * dh, ix = ox * sw - pw + q * dw;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += x[size_t(((i * c + grp * cg + ci) * h + iy) * wd + ix)] *
                       w[size_t(((o * cg + ci) * kh + r) * kw + q)];
              }
          y[size_t(((i * k + o) * oh + oy) * ow + ox)] = acc;
        }
  return y;
}

// ---- forward values -------------------------------------------------------------------------

struct ConvValueCase {
  std::string name;
  int64_t n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, g;
  bool bias;
};

class ConvValues : public ::testing::TestWithParam<ConvValueCase> {};

TEST_P(ConvValues, MatchesNaiveLoops) {
  const auto& t = GetParam();
  nb::manual_seed(7);
  Tensor x = input({t.n, t.c, t.h, t.w}), w = input({t.k, t.c / t.g, t.kh, t.kw}), b = input({t.k});
  nb::Conv2dParams p{.stride = {t.sh, t.sw}, .padding = {t.ph, t.pw}, .dilation = {t.dh, t.dw}, .groups = t.g};
  Tensor y = nb::conv2d(x, w, t.bias ? b : Tensor(), p);
  const auto bv = b.to_vector<double>();
  int64_t oh = 0, ow = 0;
  auto ref = naive_conv(x.to_vector<double>(), w.to_vector<double>(), t.bias ? &bv : nullptr, t.n, t.c, t.h, t.w, t.k,
                        t.kh, t.kw, t.sh, t.sw, t.ph, t.pw, t.dh, t.dw, t.g, 0, 0, &oh, &ow);
  EXPECT_TRUE(near(y, ref, {t.n, t.k, oh, ow}, 1e-12, 1e-12));
  // float32 through the same kernels
  Tensor y32 = nb::conv2d(x.to(DType::float32), w.to(DType::float32), t.bias ? b.to(DType::float32) : Tensor(), p);
  EXPECT_EQ(y32.dtype(), DType::float32);
  EXPECT_TRUE(near(y32, ref, {t.n, t.k, oh, ow}, 1e-4, 1e-4));
}

std::vector<ConvValueCase> conv_value_cases() {
  return {
      {"3x3_pad1", 2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
      {"3x3_valid_nobias", 2, 3, 6, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, false},
      {"1x1_direct", 3, 5, 4, 4, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},
      {"1x1_stride2", 2, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, true},
      {"5x5_stride2_pad2", 2, 2, 9, 11, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1, true},
      {"3x2_stride_2x1_pad_1x0", 2, 2, 7, 6, 3, 3, 2, 2, 1, 1, 0, 1, 1, 1, true},
      {"dilation2", 2, 2, 9, 8, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, true},
      {"groups2", 2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
      {"depthwise", 2, 4, 5, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, true},
      {"depthwise_multiplier2", 2, 3, 5, 5, 6, 3, 3, 2, 2, 1, 1, 1, 1, 3, false},
      {"kernel_equals_input", 2, 2, 4, 3, 5, 4, 3, 1, 1, 0, 0, 1, 1, 1, true},
      {"wide_pad", 1, 1, 3, 3, 2, 3, 3, 1, 1, 3, 2, 1, 1, 1, true},
      {"batch1", 1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
      // enough images for the batch to be spread over threads
      {"batch64_threads", 64, 3, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
  };
}

INSTANTIATE_TEST_SUITE_P(Conv2d, ConvValues, ::testing::ValuesIn(conv_value_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Conv2dValues, HandComputed) {
  // x = 1..9 in a 3x3 plane, w = [[1, 0], [0, -1]]: y[i, j] = x[i, j] - x[i+1, j+1] = -4.
  Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}), w = f64({1, 0, 0, -1}, {1, 1, 2, 2});
  EXPECT_TRUE(near(nb::conv2d(x, w), {-4, -4, -4, -4}, {1, 1, 2, 2}));
  // padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1)
  EXPECT_TRUE(near(nb::conv2d(x, w, f64({10}), {.stride = 2, .padding = 1}), {10 - 1, 10 - 3, 10 - 7, 10 + 5 - 9},
                   {1, 1, 2, 2}));
}

TEST(Conv2dValues, SamePaddingKeepsSizeAndPadsTheExtraAtTheEnd) {
  nb::manual_seed(3);
  for (int64_t kk : {2, 3, 4, 5}) {
    Tensor x = input({2, 2, 7, 6}), w = input({3, 2, kk, kk});
    Tensor y = nb::conv2d(x, w, {}, {.padding = "same"});
    EXPECT_EQ(y.shape(), (Shape{2, 3, 7, 6})) << "kernel " << kk;
    // The reference pads (kk-1)/2 before and kk-1-(kk-1)/2 after.
    const int64_t total = kk - 1, before = total / 2, extra = total - 2 * before;
    int64_t oh = 0, ow = 0;
    auto ref = naive_conv(x.to_vector<double>(), w.to_vector<double>(), nullptr, 2, 2, 7, 6, 3, kk, kk, 1, 1, before,
                          before, 1, 1, 1, extra, extra, &oh, &ow);
    EXPECT_TRUE(near(y, ref, {2, 3, oh, ow}, 1e-12, 1e-12)) << "kernel " << kk;
  }
  // stride 2: ceil(7 / 2) = 4, ceil(6 / 2) = 3
  Tensor y = nb::conv2d(input({1, 1, 7, 6}), input({1, 1, 3, 3}), {}, {.stride = 2, .padding = "same"});
  EXPECT_EQ(y.shape(), (Shape{1, 1, 4, 3}));
  // "valid" is no padding
  EXPECT_EQ(nb::conv2d(input({1, 1, 7, 6}), input({1, 1, 3, 3}), {}, {.padding = "valid"}).shape(),
            (Shape{1, 1, 5, 4}));
}

TEST(Conv2dValues, NonContiguousInputIsReadCorrectly) {
  nb::manual_seed(5);
  Tensor base = input({2, 3, 6, 5});
  Tensor xt = base.transpose(2, 3);  // (2, 3, 5, 6), not contiguous
  Tensor w = input({4, 3, 3, 3});
  EXPECT_TRUE(near(nb::conv2d(xt, w, {}, {.padding = 1}), nb::conv2d(xt.contiguous(), w, {}, {.padding = 1})
                                                              .to_vector<double>(),
                   {2, 4, 5, 6}, 0, 0));
}

TEST(Conv2dValues, EmptyBatch) {
  Tensor y = nb::conv2d(nb::zeros({0, 2, 5, 5}, kF64), input({3, 2, 3, 3}));
  EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 3}));
}

TEST(Conv1dValues, MatchesConv2dOnAHeightOfOne) {
  nb::manual_seed(11);
  Tensor x = input({3, 4, 17}), w = input({6, 2, 5}), b = input({6});
  Tensor y = nb::conv1d(x, w, b, {.stride = 2, .padding = 3, .dilation = 2, .groups = 2});
  const auto bv = b.to_vector<double>();
  int64_t oh = 0, ow = 0;
  auto ref = naive_conv(x.to_vector<double>(), w.to_vector<double>(), &bv, 3, 4, 1, 17, 6, 1, 5, 1, 2, 0, 3, 1, 2, 2,
                        0, 0, &oh, &ow);
  EXPECT_TRUE(near(y, ref, {3, 6, ow}, 1e-12, 1e-12));
  EXPECT_EQ(nb::conv1d(x, w.slice(0, 0, 6), {}, {.padding = "same", .groups = 2}).shape(), (Shape{3, 6, 17}));
}

// ---- gradient checks --------------------------------------------------------------------------

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> cases;
  auto conv = [&](std::string name, Shape xs, Shape ws, bool bias, nb::Conv2dParams p) {
    cases.push_back({"conv2d_" + name,
                     [bias, p](const Tensors& x) { return nb::conv2d(x[0], x[1], bias ? x[2] : Tensor(), p); },
                     [xs, ws, bias] {
                       Tensors in{input(xs), input(ws)};
                       if (bias) in.push_back(input({ws[0]}));
                       return in;
                     }});
  };
  conv("3x3_pad1", {2, 3, 5, 6}, {4, 3, 3, 3}, true, {.padding = 1});
  conv("3x3_valid", {2, 2, 5, 5}, {3, 2, 3, 3}, true, {});
  conv("stride2_pad1", {2, 2, 7, 6}, {3, 2, 3, 3}, true, {.stride = 2, .padding = 1});
  conv("stride_2x1_kernel_2x3", {2, 2, 6, 5}, {2, 2, 2, 3}, true, {.stride = {2, 1}});
  conv("dilation2", {2, 2, 7, 7}, {2, 2, 3, 3}, true, {.padding = 2, .dilation = 2});
  conv("groups2", {2, 4, 5, 5}, {6, 2, 3, 3}, true, {.padding = 1, .groups = 2});
  conv("depthwise", {2, 3, 5, 4}, {3, 1, 3, 3}, false, {.padding = 1, .groups = 3});
  conv("1x1", {2, 3, 4, 3}, {5, 3, 1, 1}, true, {});
  conv("1x1_stride2", {2, 3, 5, 5}, {2, 3, 1, 1}, false, {.stride = 2});
  conv("same_even_kernel", {2, 2, 5, 6}, {2, 2, 2, 4}, true, {.padding = "same"});
  conv("same_stride2_odd", {1, 2, 7, 5}, {2, 2, 3, 3}, true, {.stride = 2, .padding = "same"});
  conv("odd_sizes_5x5_pad2_stride3", {3, 1, 11, 9}, {2, 1, 5, 5}, true, {.stride = 3, .padding = 2});
  conv("batch_over_threads", {40, 2, 6, 6}, {2, 2, 3, 3}, true, {.padding = 1});
  // The ReLU fused into the convolution (float32: through oneDNN's blocked copies when built with it).
  conv("relu_fused_3x3_pad1", {2, 3, 5, 6}, {4, 3, 3, 3}, true, {.padding = 1, .relu = true});
  conv("relu_fused_stride2_no_bias", {2, 2, 7, 6}, {9, 2, 3, 3}, false, {.stride = 2, .padding = 1, .relu = true});
  cases.push_back({"conv2d_transposed_input",
                   [](const Tensors& x) { return nb::conv2d(x[0].transpose(2, 3), x[1], x[2], {.padding = 1}); },
                   [] { return Tensors{input({2, 2, 4, 5}), input({3, 2, 3, 3}), input({3})}; }});
  cases.push_back({"conv1d_stride2_pad1",
                   [](const Tensors& x) { return nb::conv1d(x[0], x[1], x[2], {.stride = 2, .padding = 1}); },
                   [] { return Tensors{input({2, 3, 9}), input({4, 3, 3}), input({4})}; }});
  cases.push_back({"conv1d_same_dilation2_groups2",
                   [](const Tensors& x) {
                     return nb::conv1d(x[0], x[1], {}, {.padding = "same", .dilation = 2, .groups = 2});
                   },
                   [] { return Tensors{input({2, 4, 8}), input({2, 2, 4})}; }});

  auto pool = [&](std::string name, Shape xs, bool max, nb::Size2 k, nb::Pool2dParams p) {
    cases.push_back({(max ? "max_pool2d_" : "avg_pool2d_") + name,
                     [max, k, p](const Tensors& x) { return max ? nb::max_pool2d(x[0], k, p) : nb::avg_pool2d(x[0], k, p); },
                     [xs] { return Tensors{input(xs)}; }});
  };
  pool("2x2", {2, 3, 6, 6}, true, 2, {});
  pool("2x2_odd_input", {2, 2, 7, 5}, true, 2, {});
  pool("3x3_stride1_pad1_overlap", {2, 2, 5, 5}, true, 3, {.stride = 1, .padding = 1});
  pool("3x3_stride2_overlap", {2, 2, 7, 7}, true, 3, {.stride = 2});
  pool("2x3_stride_1x2", {1, 2, 5, 7}, true, {2, 3}, {.stride = {1, 2}});
  pool("2x2", {2, 3, 6, 6}, false, 2, {});
  pool("3x3_stride1_pad1", {2, 2, 5, 4}, false, 3, {.stride = 1, .padding = 1});
  pool("3x3_stride1_pad1_exclude_pad", {2, 2, 5, 4}, false, 3, {.stride = 1, .padding = 1, .count_include_pad = false});
  pool("3x3_stride2_overlap", {1, 2, 7, 6}, false, 3, {.stride = 2});
  cases.push_back({"global_avg_pool2d", [](const Tensors& x) { return nb::global_avg_pool2d(x[0]); },
                   [] { return Tensors{input({3, 4, 5, 2})}; }});

  auto bn = [&](std::string name, Shape xs, bool affine) {
    cases.push_back({"batch_norm_train_" + name,
                     [affine](const Tensors& x) {
                       return nb::batch_norm(x[0], affine ? x[1] : Tensor(), affine ? x[2] : Tensor(), {}, {}, true);
                     },
                     [xs, affine] {
                       Tensors in{input(xs)};
                       if (affine) {
                         in.push_back(input({xs[1]}, 0.5, 1.5));
                         in.push_back(input({xs[1]}));
                       }
                       return in;
                     }});
  };
  bn("nchw", {3, 2, 3, 4}, true);
  bn("nc", {5, 3}, true);
  bn("ncl", {3, 2, 4}, true);
  bn("no_affine", {4, 3, 2, 2}, false);
  cases.push_back({"batch_norm_eval",
                   [](const Tensors& x) {
                     Tensor rm = nb::from_vector<double>({0.3, -0.2}, {2}, {.dtype = x[0].dtype()});
                     Tensor rv = nb::from_vector<double>({1.5, 0.7}, {2}, {.dtype = x[0].dtype()});
                     return nb::batch_norm(x[0], x[1], x[2], rm, rv, false);
                   },
                   [] { return Tensors{input({3, 2, 2, 3}), input({2}, 0.5, 1.5), input({2})}; }});
  return cases;
}

class ConvGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(ConvGrad, Float64GradientAndFloat32Agreement) {
  nb::manual_seed(20240611);
  const GradCase& c = GetParam();
  Tensors inputs = c.make_inputs();
  EXPECT_TRUE(gradcheck(c.f, inputs, c.options));
  EXPECT_TRUE(float32_agrees(c.f, inputs, 2e-4));
}

INSTANTIATE_TEST_SUITE_P(Nn, ConvGrad, ::testing::ValuesIn(grad_cases()), grad_case_name);

// ---- float32 on oneDNN against the reference kernels ------------------------------------------

// float32 convolutions run on oneDNN when the build has it (cpu/dnnl_conv.h); nabla's im2col +
// GEMM kernels are the reference. Both compute each output as a float32 sum of the same K terms
// in some order, so each is within gamma_K * sum|terms| of the exact value (gamma_K = K u / (1 - K u),
// u = 2^-24) and they differ by at most twice that. sum|terms| is the same convolution of the
// absolute values, in float64: forward conv(|x|, |w|) + |b| (K = c/groups kh kw + 1), backward data
// conv^T(|dy|, |w|) (K = k/groups kh kw), backward weight corr(|dy|, |x|) (K = n oh ow), bias
// sum |dy| (K = n oh ow).
struct DnnlCase {
  std::string name;
  int64_t n, c, h, w, k, kh, kw;
  nb::Conv2dParams p;
};

void PrintTo(const DnnlCase& c, std::ostream* os) { *os << c.name; }

class ConvDnnl : public ::testing::TestWithParam<DnnlCase> {};

struct ConvRun {
  std::vector<double> y, dx, dw, db;
};

ConvRun run_conv(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& dy, const nb::Conv2dParams& p) {
  Tensor x = x0.detach().clone(), w = w0.detach().clone(), b = b0.detach().clone();
  x.requires_grad_(true);
  w.requires_grad_(true);
  b.requires_grad_(true);
  Tensor y = nb::conv2d(x, w, b, p);
  nb::sum(nb::mul(y, dy)).backward();
  return {y.to_vector<double>(), x.grad().to_vector<double>(), w.grad().to_vector<double>(),
          b.grad().to_vector<double>()};
}

// The float32 unit roundoff, and gamma_k = k u / (1 - k u): the bound of a float32 sum of k terms
// (or k roundings in a row) relative to the sum of their absolute values.
constexpr double kU32 = 0x1p-24;
double gamma32(double k) { return k * kU32 / (1 - k * kU32); }

// |got[i] - ref[i]| <= allowed[i] for every i.
::testing::AssertionResult within_bounds(const std::vector<double>& got, const std::vector<double>& ref,
                                         const std::vector<double>& allowed, const std::string& what) {
  if (got.size() != ref.size() || got.size() != allowed.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, reference " << ref.size()
                                         << ", bounds " << allowed.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(got[i] - ref[i]) <= allowed[i]))
      return ::testing::AssertionFailure() << what << "[" << i << "]: oneDNN " << got[i] << ", reference " << ref[i]
                                           << ", |diff| " << std::abs(got[i] - ref[i]) << " > bound " << allowed[i];
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult within(const std::vector<double>& got, const std::vector<double>& ref,
                                  const std::vector<double>& magnitude, int64_t terms, const std::string& what) {
  std::vector<double> allowed(magnitude.size());
  for (size_t i = 0; i < allowed.size(); ++i) allowed[i] = 2 * gamma32(double(terms)) * magnitude[i] + 1e-30;
  return within_bounds(got, ref, allowed, what + " (K = " + std::to_string(terms) + ")");
}

TEST_P(ConvDnnl, Float32MatchesTheReferenceKernelsWithinTheRoundingBound) {
  if (!nb::cpu::dnnl_conv::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  const DnnlCase& c = GetParam();
  nb::manual_seed(7);
  Tensor x = nb::rand({c.n, c.c, c.h, c.w}, kF32, -1, 1);
  Tensor w = nb::rand({c.k, c.c / c.p.groups, c.kh, c.kw}, kF32, -1, 1);
  Tensor b = nb::rand({c.k}, kF32, -1, 1);
  Tensor y_shape = nb::conv2d(x, w, b, c.p);
  Tensor dy = nb::rand(y_shape.shape(), kF32, -1, 1);

  const ConvRun on = run_conv(x, w, b, dy, c.p);
  const bool was = nb::cpu::dnnl_conv::set_enabled(false);
  const ConvRun ref = run_conv(x, w, b, dy, c.p);
  nb::cpu::dnnl_conv::set_enabled(was);

  // The magnitudes: the same convolution of |x|, |w|, |b|, |dy| in float64.
  Tensor ax = nb::abs(x).to(DType::float64), aw = nb::abs(w).to(DType::float64), ab = nb::abs(b).to(DType::float64);
  const ConvRun mag = run_conv(ax, aw, ab, nb::abs(dy).to(DType::float64), c.p);
  const int64_t oh = y_shape.size(2), ow = y_shape.size(3);
  EXPECT_TRUE(within(on.y, ref.y, mag.y, c.c / c.p.groups * c.kh * c.kw + 1, "y"));
  EXPECT_TRUE(within(on.dx, ref.dx, mag.dx, c.k / c.p.groups * c.kh * c.kw, "dx"));
  EXPECT_TRUE(within(on.dw, ref.dw, mag.dw, c.n * oh * ow, "dweight"));
  EXPECT_TRUE(within(on.db, ref.db, mag.db, c.n * oh * ow, "dbias"));
}

std::vector<DnnlCase> dnnl_cases() {
  using P = nb::Conv2dParams;
  return {
      {"k3_p1", 2, 3, 9, 11, 4, 3, 3, P{.padding = 1}},
      {"k3_s2", 3, 4, 10, 9, 5, 3, 3, P{.stride = 2}},
      {"k5_s2_p2", 2, 3, 13, 12, 4, 5, 5, P{.stride = 2, .padding = 2}},
      {"dilation2", 2, 3, 11, 10, 4, 3, 3, P{.padding = 2, .dilation = 2}},
      {"rect_s2x1_p1x2", 2, 3, 9, 8, 4, 3, 5, P{.stride = nb::Size2(2, 1), .padding = nb::Padding(1, 2)}},
      {"groups2", 2, 6, 8, 8, 4, 3, 3, P{.padding = 1, .groups = 2}},
      {"depthwise", 2, 8, 9, 9, 8, 3, 3, P{.padding = 1, .groups = 8}},
      {"k1", 3, 16, 7, 7, 24, 1, 1, P{}},
      {"k1_s2", 2, 8, 9, 9, 8, 1, 1, P{.stride = 2}},
      {"batch1_c1", 1, 1, 28, 28, 32, 3, 3, P{.padding = 1}},
      {"same", 2, 3, 10, 11, 4, 4, 4, P{.padding = nb::Padding("same")}},
      {"cifar_like", 4, 32, 15, 15, 64, 3, 3, P{}},
      {"mnist_like", 8, 32, 14, 14, 64, 3, 3, P{.padding = 1}},
  };
}

INSTANTIATE_TEST_SUITE_P(Conv2d, ConvDnnl, ::testing::ValuesIn(dnnl_cases()),
                         [](const auto& info) { return info.param.name; });

// ---- the fused ReLU (Conv2dParams::relu) -------------------------------------------------------

// conv2d with relu = true gives what relu(conv2d(...)) gives, values and gradients, bit for bit:
// the same convolution kernels run on the same data, and the fused ReLU is the relu op's formula
// (NaN kept, the gradient masked where y > 0), applied in the copies between layouts on oneDNN's
// path. Both paths (oneDNN and the reference kernels), float32 and float64; output channels that
// fill oneDNN's channel blocks (8, 16, 64) and that do not (5, 20); a NaN in x reaches y. The fused
// op records one tape entry instead of two.
TEST(Conv2dFusedRelu, SameValuesAndGradientsAsConvThenRelu) {
  struct Case {
    int64_t n, c, h, w, k;
    nb::Conv2dParams p;
  };
  const std::vector<Case> cases{{2, 3, 9, 8, 5, {.padding = 1}},
                                {3, 8, 7, 7, 8, {.stride = 2}},
                                {2, 4, 10, 9, 20, {.padding = 1}},
                                {2, 16, 6, 6, 16, {.padding = 1, .groups = 2}},
                                {4, 32, 14, 14, 64, {.padding = 1}}};
  auto equal = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
    return true;
  };
  for (const bool dnnl : {true, false}) {
    const bool was = nb::cpu::dnnl_conv::set_enabled(dnnl);
    for (const DType dtype : {DType::float32, DType::float64}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << (dnnl ? "oneDNN " : "own ") << nb::dtype_name(dtype) << " k " << c.k);
        nb::manual_seed(11);
        Tensor x0 = nb::rand({c.n, c.c, c.h, c.w}, {.dtype = dtype}, -1, 1);
        Tensor w0 = nb::rand({c.k, c.c / c.p.groups, 3, 3}, {.dtype = dtype}, -1, 1);
        Tensor b0 = nb::rand({c.k}, {.dtype = dtype}, -1, 1);
        auto run = [&](bool fused, bool with_nan) {
          std::vector<double> xv = x0.to_vector<double>();
          if (with_nan) xv[size_t(1 * c.w + 1)] = std::numeric_limits<double>::quiet_NaN();  // x[0, 0, 1, 1]
          Tensor x = nb::from_vector<double>(xv, x0.shape(), {.dtype = dtype}).requires_grad_(true);
          Tensor w = w0.detach().clone().requires_grad_(true), b = b0.detach().clone().requires_grad_(true);
          const size_t tape = nb::tape_size();
          nb::Conv2dParams p = c.p;
          p.relu = fused;
          Tensor y = fused ? nb::conv2d(x, w, b, p) : nb::relu(nb::conv2d(x, w, b, p));
          const size_t entries = nb::tape_size() - tape;
          Tensor r = nb::rand(y.shape(), {.dtype = dtype}, -1, 1);
          nb::sum(nb::mul(y, r)).backward();
          return std::make_tuple(ConvRun{y.to_vector<double>(), x.grad().to_vector<double>(),
                                         w.grad().to_vector<double>(), b.grad().to_vector<double>()},
                                 entries);
        };
        nb::manual_seed(12);
        const auto [fused, fused_entries] = run(true, false);
        nb::manual_seed(12);
        const auto [plain, plain_entries] = run(false, false);
        EXPECT_EQ(fused_entries, 1u);
        EXPECT_EQ(plain_entries, 2u);
        EXPECT_TRUE(equal(fused.y, plain.y)) << "y";
        EXPECT_TRUE(equal(fused.dx, plain.dx)) << "dx";
        EXPECT_TRUE(equal(fused.dw, plain.dw)) << "dweight";
        EXPECT_TRUE(equal(fused.db, plain.db)) << "dbias";
        int64_t zeros = 0;
        for (double v : fused.y) zeros += v == 0;
        EXPECT_GT(zeros, 0) << "no output was negative: the ReLU was not exercised";
        nb::manual_seed(12);
        const auto [fused_nan, e1] = run(true, true);
        nb::manual_seed(12);
        const auto [plain_nan, e2] = run(false, true);
        int64_t nans = 0;
        for (double v : fused_nan.y) nans += std::isnan(v);
        EXPECT_GE(nans, c.k / c.p.groups) << "a NaN in x must reach y through the ReLU, as the relu op's does";
        EXPECT_TRUE(equal(fused_nan.y, plain_nan.y)) << "y with a NaN";
      }
    }
    nb::cpu::dnnl_conv::set_enabled(was);
  }
}

// ---- pooling values ---------------------------------------------------------------------------

TEST(PoolValues, MaxAndAvgByHand) {
  Tensor x = f64({1, 5, 2, 0, 3, 4, 9, 8, 7, 6, -1, -2, 0, 0, 0, 10}, {1, 1, 4, 4});
  Tensor y = nb::max_pool2d(x, 2);
  EXPECT_TRUE(near(y, {5, 9, 7, 10}, {1, 1, 2, 2}));
  EXPECT_TRUE(near(nb::avg_pool2d(x, 2), {13.0 / 4, 19.0 / 4, 13.0 / 4, 7.0 / 4}, {1, 1, 2, 2}));
  // padding 1, kernel 2, stride 2 -> 3x3; the corner window holds only x[0, 0]
  EXPECT_TRUE(near(nb::avg_pool2d(x, 2, {.padding = 1}).slice(2, 0, 1).slice(3, 0, 1), {0.25}, {1, 1, 1, 1}));
  EXPECT_TRUE(near(nb::avg_pool2d(x, 2, {.padding = 1, .count_include_pad = false}).slice(2, 0, 1).slice(3, 0, 1),
                   {1.0}, {1, 1, 1, 1}));
  EXPECT_TRUE(near(nb::max_pool2d(x, 2, {.padding = 1}).slice(2, 0, 1).slice(3, 0, 1), {1.0}, {1, 1, 1, 1}));
  EXPECT_TRUE(near(nb::global_avg_pool2d(x), {(13.0 + 19 + 13 + 7) / 16}, {1, 1}));
}

TEST(PoolValues, MaxGradientGoesToTheFirstMaximumAndAddsOverOverlaps) {
  // Overlapping 2x2 windows with stride 1 over a plane whose maximum is at the centre.
  Tensor x = f64({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}).requires_grad_(true);
  Tensor y = nb::max_pool2d(x, 2, {.stride = 1});
  EXPECT_TRUE(near(y, {9, 9, 9, 9}, {1, 1, 2, 2}));
  nb::sum(y).backward();
  EXPECT_TRUE(near(x.grad(), {0, 0, 0, 0, 4, 0, 0, 0, 0}, {1, 1, 3, 3}));
  // ties: the first in row-major window order takes it
  Tensor t = f64({2, 2, 2, 2}, {1, 1, 2, 2}).requires_grad_(true);
  nb::sum(nb::max_pool2d(t, 2)).backward();
  EXPECT_TRUE(near(t.grad(), {1, 0, 0, 0}, {1, 1, 2, 2}));
}

TEST(PoolValues, MaxPoolPropagatesNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = f64({1, nan, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2});
  auto v = nb::max_pool2d(x, 2).to_vector<double>();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[1], 8);
}

// Every kernel size, stride and padding the fast paths of the CPU max pool (full 2x2 and 3x3
// windows) and its general loop split between, against a brute-force reference written here:
// values drawn from a handful of levels so that windows hold ties, and a few NaNs. The gradient
// of the sum shows which element each window picked (the first maximum in row-major order, or
// the first NaN).
TEST(PoolValues, MaxPoolMatchesABruteForceReferenceWithTiesAndNaNs) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t h = 7, w = 9;
  std::vector<double> data(size_t(2 * h * w));
  uint32_t state = 12345;
  for (size_t i = 0; i < data.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 24;
    data[i] = r < 8 ? nan : double(r % 4);
  }
  for (DType dtype : {DType::float32, DType::float64}) {
    for (int64_t k = 1; k <= 4; ++k) {
      for (int64_t stride = 1; stride <= 3; ++stride) {
        for (int64_t pad = 0; pad <= k / 2; ++pad) {
          SCOPED_TRACE(::testing::Message() << nb::dtype_name(dtype) << " k " << k << " stride " << stride
                                            << " pad " << pad);
          Tensor x = nb::from_vector(data, {1, 2, h, w}, {.dtype = dtype}).requires_grad_(true);
          Tensor y = nb::max_pool2d(x, k, {.stride = stride, .padding = pad});
          nb::sum(y).backward();
          const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
          ASSERT_EQ(y.shape(), Shape({1, 2, oh, ow}));
          const auto got = y.to(DType::float64).to_vector<double>();
          const auto grad = x.grad().to(DType::float64).to_vector<double>();
          std::vector<double> want_grad(data.size(), 0.0);
          for (int64_t c = 0; c < 2; ++c) {
            for (int64_t oy = 0; oy < oh; ++oy) {
              for (int64_t ox = 0; ox < ow; ++ox) {
                int64_t best = -1;
                for (int64_t iy = oy * stride - pad; iy < oy * stride - pad + k; ++iy) {
                  for (int64_t ix = ox * stride - pad; ix < ox * stride - pad + k; ++ix) {
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                    const int64_t at = (c * h + iy) * w + ix;
                    if (best < 0) {
                      best = at;
                    } else if (!std::isnan(data[size_t(best)]) &&
                               (std::isnan(data[size_t(at)]) || data[size_t(at)] > data[size_t(best)])) {
                      best = at;
                    }
                  }
                }
                ASSERT_GE(best, 0);
                const double v = got[size_t((c * oh + oy) * ow + ox)];
                if (std::isnan(data[size_t(best)]))
                  EXPECT_TRUE(std::isnan(v)) << "output " << c << "," << oy << "," << ox;
                else
                  EXPECT_EQ(v, data[size_t(best)]) << "output " << c << "," << oy << "," << ox;
                want_grad[size_t(best)] += 1.0;
              }
            }
          }
          EXPECT_EQ(grad, want_grad);
        }
      }
    }
  }
}

// ---- float32 average pooling on oneDNN against the reference kernels ------------------------

// float32 average pooling runs on oneDNN when the build has it (cpu/dnnl_pool.h); pool.cpp's
// kernels are the reference. Forward: each output is a float32 sum of the K <= kh kw elements of
// its window, divided by the divisor d (oneDNN may multiply by 1 / d instead: one more rounding),
// so each path is within gamma_{kh kw + 1} sum|x| / d of the exact mean, and they differ by at most
// twice that; sum|x| / d is the same pooling of |x| in float64. Backward: each dx element is a
// float32 sum of dy / d over the K <= ceil(kh / sh) ceil(kw / sw) windows holding it, each term
// rounded once or twice, so the bound is 2 gamma_{K + 2} times the same backward of |dy| in float64.
struct PoolDnnlCase {
  std::string name;
  int64_t n, c, h, w, kh, kw, sh, sw, ph, pw;
};

void PrintTo(const PoolDnnlCase& c, std::ostream* os) { *os << c.name; }

nb::Pool2dShape pool_shape_of(const PoolDnnlCase& c) {
  nb::Pool2dShape s{.n = c.n, .c = c.c, .h = c.h, .w = c.w, .kh = c.kh, .kw = c.kw, .stride_h = c.sh,
                    .stride_w = c.sw, .pad_h = c.ph, .pad_w = c.pw};
  s.oh = (c.h + 2 * c.ph - c.kh) / c.sh + 1;
  s.ow = (c.w + 2 * c.pw - c.kw) / c.sw + 1;
  return s;
}

// What the backend should do on its own: `direct` (the oneDNN function) where `use` is true, else
// `backend` with oneDNN off (nabla's kernels).
void expected_path(bool use, const std::function<void()>& direct, const std::function<void()>& backend) {
  if (use) return direct();
  const bool was = nb::cpu::dnnl_common::set_enabled(false);
  backend();
  nb::cpu::dnnl_common::set_enabled(was);
}

class PoolDnnl : public ::testing::TestWithParam<std::tuple<PoolDnnlCase, bool>> {};

TEST_P(PoolDnnl, AvgFloat32MatchesTheReferenceKernelsWithinTheRoundingBound) {
  if (!nb::cpu::dnnl_common::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  const auto& [c, include_pad] = GetParam();
  const nb::Pool2dShape s = pool_shape_of(c);
  const auto in_size = size_t(c.n * c.c * c.h * c.w), out_size = size_t(c.n * c.c * s.oh * s.ow);
  const std::vector<float> x = to_float(random_values(in_size, -1, 1, 11));
  const std::vector<float> dy = to_float(random_values(out_size, -1, 1, 12));

  std::vector<float> y(out_size), dx(in_size), y_ref(out_size), dx_ref(in_size);
  nb::cpu::dnnl_pool::avg_forward(y.data(), x.data(), s, include_pad);
  nb::cpu::dnnl_pool::avg_backward(dx.data(), dy.data(), s, include_pad);
  const bool was = nb::cpu::dnnl_common::set_enabled(false);
  cpu().avg_pool2d_forward(DType::float32, y_ref.data(), x.data(), s, include_pad);
  cpu().avg_pool2d_backward(DType::float32, dx_ref.data(), dy.data(), s, include_pad);
  nb::cpu::dnnl_common::set_enabled(was);

  std::vector<double> ax(in_size), ady(out_size), y_mag(out_size), dx_mag(in_size);
  for (size_t i = 0; i < in_size; ++i) ax[i] = std::abs(double(x[i]));
  for (size_t i = 0; i < out_size; ++i) ady[i] = std::abs(double(dy[i]));
  cpu().avg_pool2d_forward(DType::float64, y_mag.data(), ax.data(), s, include_pad);
  cpu().avg_pool2d_backward(DType::float64, dx_mag.data(), ady.data(), s, include_pad);
  const auto overlap = double(((c.kh + c.sh - 1) / c.sh) * ((c.kw + c.sw - 1) / c.sw));
  std::vector<double> y_allowed(out_size), dx_allowed(in_size);
  for (size_t i = 0; i < out_size; ++i) y_allowed[i] = 2 * gamma32(double(c.kh * c.kw + 1)) * y_mag[i];
  for (size_t i = 0; i < in_size; ++i) dx_allowed[i] = 2 * gamma32(overlap + 2) * dx_mag[i];
  const std::vector<double> yd(y.begin(), y.end()), yr(y_ref.begin(), y_ref.end());
  const std::vector<double> dxd(dx.begin(), dx.end()), dxr(dx_ref.begin(), dx_ref.end());
  EXPECT_TRUE(within_bounds(yd, yr, y_allowed, "y"));
  EXPECT_TRUE(within_bounds(dxd, dxr, dx_allowed, "dx"));
}

std::vector<PoolDnnlCase> pool_dnnl_cases() {
  return {
      {"k2_s2", 2, 3, 8, 8, 2, 2, 2, 2, 0, 0},
      {"k3_s2_p1", 2, 5, 9, 11, 3, 3, 2, 2, 1, 1},
      {"k3_s1_p1", 2, 4, 7, 7, 3, 3, 1, 1, 1, 1},
      {"rect_k3x2_s1x2_p1x0", 3, 3, 10, 9, 3, 2, 1, 2, 1, 0},
      {"k5_s3_p2_odd", 1, 9, 13, 12, 5, 5, 3, 3, 2, 2},
      {"k4_s2_p2_c20", 2, 20, 10, 10, 4, 4, 2, 2, 2, 2},
      {"c1_k2x3_p1", 1, 1, 5, 6, 2, 3, 1, 1, 1, 1},
      {"global_7x7", 2, 16, 7, 7, 7, 7, 1, 1, 0, 0},
      {"mnist_like", 8, 32, 14, 14, 2, 2, 2, 2, 0, 0},
  };
}

INSTANTIATE_TEST_SUITE_P(Pool2d, PoolDnnl,
                         ::testing::Combine(::testing::ValuesIn(pool_dnnl_cases()), ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param).name +
                                  (std::get<1>(info.param) ? "_include_pad" : "_exclude_pad");
                         });

// The backend sends float32 average pooling to oneDNN exactly where dnnl_pool::use says so (the
// same bits as calling it directly) and keeps pool.cpp's kernels elsewhere.
TEST(PoolDnnlDispatch, BackendUsesOneDnnExactlyWhereUseSaysSo) {
  if (!nb::cpu::dnnl_common::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  const std::vector<std::pair<PoolDnnlCase, bool>> cases = {
      {{"c8_k3_s2_p1", 2, 8, 9, 9, 3, 3, 2, 2, 1, 1}, true},
      {{"c4", 2, 4, 9, 9, 3, 3, 2, 2, 1, 1}, false},
      {{"one_output_per_plane", 2, 16, 7, 7, 7, 7, 1, 1, 0, 0}, false},
  };
  for (const auto& [c, on] : cases) {
    SCOPED_TRACE(c.name);
    const nb::Pool2dShape s = pool_shape_of(c);
    EXPECT_EQ(nb::cpu::dnnl_pool::use(s), on);
    const auto in_size = size_t(c.n * c.c * c.h * c.w), out_size = size_t(c.n * c.c * s.oh * s.ow);
    const std::vector<float> x = to_float(random_values(in_size, -1, 1, 13));
    const std::vector<float> dy = to_float(random_values(out_size, -1, 1, 14));
    std::vector<float> y(out_size), dx(in_size), y_want(out_size), dx_want(in_size);
    cpu().avg_pool2d_forward(DType::float32, y.data(), x.data(), s, true);
    cpu().avg_pool2d_backward(DType::float32, dx.data(), dy.data(), s, true);
    expected_path(
        on, [&] { nb::cpu::dnnl_pool::avg_forward(y_want.data(), x.data(), s, true); },
        [&] { cpu().avg_pool2d_forward(DType::float32, y_want.data(), x.data(), s, true); });
    expected_path(
        on, [&] { nb::cpu::dnnl_pool::avg_backward(dx_want.data(), dy.data(), s, true); },
        [&] { cpu().avg_pool2d_backward(DType::float32, dx_want.data(), dy.data(), s, true); });
    EXPECT_EQ(y, y_want);
    EXPECT_EQ(dx, dx_want);
  }
}

// ---- batch norm behaviour -----------------------------------------------------------------------

TEST(BatchNormValues, TrainNormalizesPerChannelAndUpdatesRunningStats) {
  nb::manual_seed(1);
  Tensor x = input({4, 2, 3, 3}, -1, 3);
  Tensor rm = nb::zeros({2}, kF64), rv = nb::ones({2}, kF64);
  Tensor y = nb::batch_norm(x, {}, {}, rm, rv, true, 0.1, 1e-5);
  const auto xv = x.to_vector<double>();
  const auto yv = y.to_vector<double>();
  for (int64_t ch = 0; ch < 2; ++ch) {
    double s = 0, ss = 0, ys = 0, yss = 0;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 9; ++j) {
        const size_t at = size_t((i * 2 + ch) * 9 + j);
        s += xv[at];
        ys += yv[at];
        yss += yv[at] * yv[at];
      }
    const double mean = s / 36;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 9; ++j) ss += std::pow(xv[size_t((i * 2 + ch) * 9 + j)] - mean, 2);
    const double var = ss / 36;
    EXPECT_NEAR(ys / 36, 0, 1e-12);
    EXPECT_NEAR(yss / 36, var / (var + 1e-5), 1e-9);
    EXPECT_NEAR(rm.to_vector<double>()[size_t(ch)], 0.1 * mean, 1e-12);
    EXPECT_NEAR(rv.to_vector<double>()[size_t(ch)], 0.9 + 0.1 * var * 36 / 35, 1e-12);
  }
}

TEST(BatchNormValues, EvalUsesRunningStats) {
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor rm = f64({1, 2}), rv = f64({4, 0.25}), w = f64({2, 1}), b = f64({0, 1});
  // ch0: (x - 1) / 2 * 2 + 0; ch1: (x - 2) / 0.5 + 1
  Tensor y2 = nb::batch_norm(x, w, b, rm, rv, false, 0.1, 1e-12);
  EXPECT_TRUE(near(y2, {0, 1, 2, 5}, {2, 2}, 1e-9, 1e-9));
  // evaluation never changes the running statistics
  EXPECT_TRUE(near(rm, {1, 2}, {2}, 0, 0));
  EXPECT_TRUE(near(rv, {4, 0.25}, {2}, 0, 0));
}

TEST(BatchNormLayer, TrainAndEvalModesDiffer) {
  nb::manual_seed(2);
  nb::BatchNorm2d bn(3, {.momentum = 0.5, .dtype = DType::float64});
  Tensor x = input({8, 3, 4, 4}, 1, 5);  // mean about 3, far from the initial running mean 0
  Tensor y_train = bn(x);
  // a training forward: zero mean per channel
  EXPECT_NEAR(nb::mean(y_train).item(), 0, 1e-9);
  EXPECT_EQ(bn.named_buffers().size(), 3u);
  EXPECT_EQ(bn.named_buffers()[2].first, "num_batches_tracked");
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 1);
  for (int i = 0; i < 30; ++i) bn(x);  // running stats converge to the batch's
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 31);
  bn.eval();
  Tensor y_eval = bn(x);
  EXPECT_EQ(bn.named_buffers()[2].second.item(), 31);  // eval does not count
  // eval with converged stats ~ train output (unbiased vs biased variance: a small difference)
  EXPECT_TRUE(near(y_eval, y_train.to_vector<double>(), x.shape(), 2e-2, 2e-2));
  // but not identical: the running variance is the unbiased one
  EXPECT_GT(nb::max(nb::abs(nb::sub(y_eval, y_train))).item(), 1e-6);
  // eval of a shifted input is not renormalized
  Tensor shifted = nb::affine(x, 1, 10);
  EXPECT_GT(nb::mean(bn(shifted)).item(), 1);
  bn.train();
  EXPECT_NEAR(nb::mean(bn(shifted)).item(), 0, 1e-9);
}

TEST(BatchNormLayer, NoRunningStatsUsesBatchStatsInEval) {
  nb::BatchNorm1d bn(4, {.track_running_stats = false, .dtype = DType::float64});
  EXPECT_TRUE(bn.named_buffers().empty());
  bn.eval();
  EXPECT_NEAR(nb::mean(bn(input({6, 4}, 2, 4))).item(), 0, 1e-9);
}

TEST(BatchNormLayer, ParametersBuffersAndDtype) {
  nb::BatchNorm2d bn(5);
  auto names = bn.named_parameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "weight");
  EXPECT_EQ(names[1].first, "bias");
  EXPECT_EQ(bn.num_parameters(), 10);
  bn.to(DType::float64);
  EXPECT_EQ(bn.running_mean().dtype(), DType::float64);
  EXPECT_EQ(bn.named_buffers()[2].second.dtype(), DType::int64);  // the counter stays an integer
  EXPECT_EQ(bn.to_string(), "BatchNorm2d(5)");
  EXPECT_EQ(nb::BatchNorm1d(3, {.momentum = 0.01, .affine = false}).to_string(),
            "BatchNorm1d(3, momentum 0.01, no affine)");
  EXPECT_EQ(nb::BatchNorm1d(3, {.affine = false}).num_parameters(), 0);
}

// ---- float32 batch norm on oneDNN against the reference kernels ------------------------------

// cpu/dnnl_norm.h runs float32 batch norm on oneDNN (where it is faster); norm.cpp's kernels,
// which compute in double and round once (within u |value|, u = 2^-24), are the reference. The
// bounds below follow oneDNN's float32 arithmetic per channel of N = n m values, from the data in
// float64 (mean, biased var, invstd = 1 / sqrt(var + eps), A = sum|x| / N):
//   mean: a sum of N terms and a division:          dm = gamma_{N+1} A
//   var: sum (x - mean')^2 / N, two passes; a mean off by dm adds dm^2:
//                                                   dv = dm^2 + gamma_{N+3} (var + dm^2)
//   invstd: eps rounded to float, add, sqrt, divide: relative rho = (dv + u eps) / (var + eps) + gamma_3
//   y = (x - mean') invstd' w + b:  |w| invstd (|x - mean| rho + dm (1 + rho))
//        + gamma_4 (|w| invstd (|x| + |mean| + dm) + |b|)   (the last four roundings)
// save_invstd and the running statistics are computed in double from oneDNN's mean and var, so
// they carry dv / (var + eps), momentum dm and momentum dv N / (N - 1) (plus two roundings).
// Evaluation: as y with dm = dv = 0 (the running statistics are exact inputs).
// Backward (mean, invstd given; oneDNN gets variance 1 / invstd^2 with eps 0: rho_b = gamma_3),
// with xhat = (x - mean) invstd, S1 = sum dy, S2 = sum dy xhat, A1 = sum|dy|, A2 = sum|dy xhat|:
//   dbias = S1 within e1 = gamma_N A1; dweight = S2 within e2 = (gamma_{N+3} + rho_b) A2;
//   dx = w invstd (dy - S1 / N - xhat S2 / N) within
//        |w| invstd ((3 rho_b + gamma_6) (|dy| + A1 / N + |xhat| A2 / N) + (e1 + |xhat| e2) / N (1 + gamma_6)).
// Each bound adds the reference's own rounding, u |value| (gamma_1, or gamma_2 for two roundings).
struct BnDnnlCase {
  std::string name;
  int64_t n, c, m;
  bool weight, bias, running;
  double momentum = 0.1, eps = 1e-5;
};

void PrintTo(const BnDnnlCase& c, std::ostream* os) { *os << c.name; }

struct BnData {
  std::vector<float> x, dy, w, b, rm, rv;
};

// x with a different offset (in [-3, 3]) and spread (in [0.5, 2]) per channel.
BnData bn_data(const BnDnnlCase& c) {
  const auto size = size_t(c.n * c.c * c.m), cs = size_t(c.c);
  const std::vector<double> u = random_values(size, -1, 1, 21), off = random_values(cs, -3, 3, 22),
                            spread = random_values(cs, 0.5, 2, 23);
  std::vector<double> x(size);
  for (size_t i = 0; i < size; ++i) {
    const size_t ch = (i / size_t(c.m)) % cs;
    x[i] = off[ch] + spread[ch] * u[i];
  }
  return {to_float(x),
          to_float(random_values(size, -1, 1, 24)),
          to_float(random_values(cs, -1.5, 1.5, 25)),
          to_float(random_values(cs, -1, 1, 26)),
          to_float(random_values(cs, -1, 1, 27)),
          to_float(random_values(cs, 0.5, 2, 28))};
}

// The data of the case; weight and bias null where the case has none.
class BatchNormDnnl : public ::testing::TestWithParam<BnDnnlCase> {
 protected:
  void SetUp() override {
    if (!nb::cpu::dnnl_common::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
    d = bn_data(GetParam());
    w = GetParam().weight ? d.w.data() : nullptr;
    b = GetParam().bias ? d.b.data() : nullptr;
  }
  BnData d;
  const float* w = nullptr;
  const float* b = nullptr;
};

// Calls f(i, v) for the index i and value v of every element of channel ch of x (n, c, m).
template <typename F>
void for_channel(const std::vector<float>& x, const BnDnnlCase& c, int64_t ch, F&& f) {
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t j = 0; j < c.m; ++j) {
      const auto at = size_t((i * c.c + ch) * c.m + j);
      f(at, double(x[at]));
    }
}

std::vector<double> doubles(const std::vector<float>& v) { return {v.begin(), v.end()}; }

TEST_P(BatchNormDnnl, TrainFloat32MatchesTheReferenceKernelsWithinTheRoundingBound) {
  const BnDnnlCase& c = GetParam();
  const auto size = d.x.size(), cs = size_t(c.c);
  std::vector<float> y(size), mean(cs), invstd(cs), rm = d.rm, rv = d.rv;
  std::vector<float> y_ref(size), mean_ref(cs), invstd_ref(cs), rm_ref = d.rm, rv_ref = d.rv;
  nb::cpu::dnnl_norm::forward_train(y.data(), mean.data(), invstd.data(), c.running ? rm.data() : nullptr,
                                    c.running ? rv.data() : nullptr, d.x.data(), w, b, c.n, c.c, c.m, c.momentum,
                                    c.eps);
  const bool was = nb::cpu::dnnl_common::set_enabled(false);
  cpu().batch_norm_forward_train(DType::float32, y_ref.data(), mean_ref.data(), invstd_ref.data(),
                                 c.running ? rm_ref.data() : nullptr, c.running ? rv_ref.data() : nullptr,
                                 d.x.data(), w, b, c.n, c.c, c.m, c.momentum, c.eps);
  nb::cpu::dnnl_common::set_enabled(was);

  const double count = double(c.n * c.m), mom = c.momentum, eps = c.eps;
  std::vector<double> y_ok(size), mean_ok(cs), invstd_ok(cs), rm_ok(cs), rv_ok(cs);
  for (int64_t ch = 0; ch < c.c; ++ch) {
    const auto k = size_t(ch);
    double sum = 0, abs_sum = 0, sq = 0;
    for_channel(d.x, c, ch, [&](size_t, double v) { sum += v, abs_sum += std::abs(v); });
    const double mu = sum / count;
    for_channel(d.x, c, ch, [&](size_t, double v) { sq += (v - mu) * (v - mu); });
    const double var = sq / count, is = 1 / std::sqrt(var + eps);
    const double dm = gamma32(count + 1) * abs_sum / count;
    const double dv = dm * dm + gamma32(count + 3) * (var + dm * dm);
    const double rho = (dv + kU32 * eps) / (var + eps) + gamma32(3);
    const double wc = w ? double(w[k]) : 1.0, bc = b ? double(b[k]) : 0.0;
    mean_ok[k] = dm + gamma32(1) * std::abs(mu);
    invstd_ok[k] = is * (dv / (var + eps) + gamma32(2));
    rm_ok[k] = mom * dm + gamma32(2) * std::abs((1 - mom) * d.rm[k] + mom * mu);
    rv_ok[k] = count > 1 ? mom * dv * count / (count - 1) +
                               gamma32(2) * std::abs((1 - mom) * d.rv[k] + mom * var * count / (count - 1))
                         : 0.0;  // n m == 1: left unchanged
    for_channel(d.x, c, ch, [&](size_t at, double v) {
      const double exact = (v - mu) * is * wc + bc;
      y_ok[at] = std::abs(wc) * is * (std::abs(v - mu) * rho + dm * (1 + rho)) +
                 gamma32(4) * (std::abs(wc) * is * (std::abs(v) + std::abs(mu) + dm) + std::abs(bc)) +
                 gamma32(1) * std::abs(exact);
    });
  }
  EXPECT_TRUE(within_bounds(doubles(y), doubles(y_ref), y_ok, "y"));
  EXPECT_TRUE(within_bounds(doubles(mean), doubles(mean_ref), mean_ok, "save_mean"));
  EXPECT_TRUE(within_bounds(doubles(invstd), doubles(invstd_ref), invstd_ok, "save_invstd"));
  EXPECT_TRUE(within_bounds(doubles(rm), doubles(rm_ref), rm_ok, "running_mean"));
  EXPECT_TRUE(within_bounds(doubles(rv), doubles(rv_ref), rv_ok, "running_var"));
  if (!c.running || count == 1) {
    EXPECT_EQ(rm == d.rm, !c.running) << "running_mean changed without running statistics";
    EXPECT_EQ(rv, d.rv) << "running_var changed without running statistics, or with n m == 1";
  }
}

TEST_P(BatchNormDnnl, EvalFloat32MatchesTheReferenceKernelsWithinTheRoundingBound) {
  const BnDnnlCase& c = GetParam();
  std::vector<float> y(d.x.size()), y_ref(d.x.size());
  nb::cpu::dnnl_norm::forward_eval(y.data(), d.x.data(), d.rm.data(), d.rv.data(), w, b, c.n, c.c, c.m, c.eps);
  const bool was = nb::cpu::dnnl_common::set_enabled(false);
  cpu().batch_norm_forward_eval(DType::float32, y_ref.data(), d.x.data(), d.rm.data(), d.rv.data(), w, b, c.n, c.c,
                                c.m, c.eps);
  nb::cpu::dnnl_common::set_enabled(was);

  std::vector<double> y_ok(d.x.size());
  for (int64_t ch = 0; ch < c.c; ++ch) {
    const auto k = size_t(ch);
    const double mu = d.rm[k], var = d.rv[k], is = 1 / std::sqrt(var + c.eps);
    const double rho = kU32 * c.eps / (var + c.eps) + gamma32(3);
    const double wc = w ? double(w[k]) : 1.0, bc = b ? double(b[k]) : 0.0;
    for_channel(d.x, c, ch, [&](size_t at, double v) {
      y_ok[at] = std::abs(wc) * is * std::abs(v - mu) * rho +
                 gamma32(4) * (std::abs(wc) * is * (std::abs(v) + std::abs(mu)) + std::abs(bc)) +
                 gamma32(1) * std::abs((v - mu) * is * wc + bc);
    });
  }
  EXPECT_TRUE(within_bounds(doubles(y), doubles(y_ref), y_ok, "y"));
}

TEST_P(BatchNormDnnl, BackwardFloat32MatchesTheReferenceKernelsWithinTheRoundingBound) {
  const BnDnnlCase& c = GetParam();
  const auto size = d.x.size(), cs = size_t(c.c);
  // The saved statistics of the reference forward, the same input to both backwards.
  std::vector<float> y(size), mean(cs), invstd(cs);
  const bool was = nb::cpu::dnnl_common::set_enabled(false);
  cpu().batch_norm_forward_train(DType::float32, y.data(), mean.data(), invstd.data(), nullptr, nullptr, d.x.data(),
                                 w, nullptr, c.n, c.c, c.m, c.momentum, c.eps);
  std::vector<float> dx_ref(size), dw_ref(cs), db_ref(cs);
  cpu().batch_norm_backward(DType::float32, dx_ref.data(), dw_ref.data(), db_ref.data(), d.dy.data(), d.x.data(),
                            mean.data(), invstd.data(), w, c.n, c.c, c.m);
  nb::cpu::dnnl_common::set_enabled(was);
  std::vector<float> dx(size), dw(cs), db(cs), dx_only(size);
  nb::cpu::dnnl_norm::backward(dx.data(), dw.data(), db.data(), d.dy.data(), d.x.data(), mean.data(), invstd.data(), w,
                               c.n, c.c, c.m);
  nb::cpu::dnnl_norm::backward(dx_only.data(), nullptr, nullptr, d.dy.data(), d.x.data(), mean.data(), invstd.data(),
                               w, c.n, c.c, c.m);

  const double count = double(c.n * c.m), rho = gamma32(3);
  std::vector<double> dx_ok(size), dw_ok(cs), db_ok(cs);
  for (int64_t ch = 0; ch < c.c; ++ch) {
    const auto k = size_t(ch);
    const double mu = mean[k], is = invstd[k], wc = w ? double(w[k]) : 1.0;
    double s1 = 0, s2 = 0, a1 = 0, a2 = 0;
    for_channel(d.x, c, ch, [&](size_t at, double v) {
      const double g = d.dy[at], xhat = (v - mu) * is;
      s1 += g, s2 += g * xhat, a1 += std::abs(g), a2 += std::abs(g * xhat);
    });
    const double e1 = gamma32(count) * a1, e2 = (gamma32(count + 3) + rho) * a2;
    db_ok[k] = e1 + gamma32(1) * std::abs(s1);
    dw_ok[k] = e2 + gamma32(1) * std::abs(s2);
    for_channel(d.x, c, ch, [&](size_t at, double v) {
      const double g = d.dy[at], xhat = std::abs((v - mu) * is);
      const double exact = wc * is / count * (count * g - s1 - (v - mu) * is * s2);
      dx_ok[at] = std::abs(wc) * is *
                      ((3 * rho + gamma32(6)) * (std::abs(g) + a1 / count + xhat * a2 / count) +
                       (e1 + xhat * e2) / count * (1 + gamma32(6))) +
                  gamma32(1) * std::abs(exact);
    });
  }
  EXPECT_TRUE(within_bounds(doubles(dx), doubles(dx_ref), dx_ok, "dx"));
  EXPECT_TRUE(within_bounds(doubles(dw), doubles(dw_ref), dw_ok, "dweight"));
  EXPECT_TRUE(within_bounds(doubles(db), doubles(db_ref), db_ok, "dbias"));
  EXPECT_EQ(dx_only, dx) << "dx with dweight and dbias null";
}

std::vector<BnDnnlCase> bn_dnnl_cases() {
  return {
      {"n4_c3_m25", 4, 3, 25, true, true, true},
      {"odd_n5_c7_m13_momentum03_eps1e-3", 5, 7, 13, true, true, true, 0.3, 1e-3},
      {"no_weight_no_bias", 3, 6, 10, false, false, true},
      {"weight_only_no_running_stats", 2, 5, 9, true, false, false},
      {"bias_only", 3, 4, 11, false, true, true},
      {"n1_m1", 1, 5, 1, true, true, true},
      {"batchnorm1d_m1", 64, 17, 1, true, true, true},
      {"c1", 8, 1, 49, true, true, true},
      {"c20_m16", 4, 20, 16, true, true, true},
      {"n1_m1000", 1, 3, 1000, true, true, true},
      {"cifar_like", 16, 32, 196, true, true, true},
  };
}

INSTANTIATE_TEST_SUITE_P(BatchNorm, BatchNormDnnl, ::testing::ValuesIn(bn_dnnl_cases()),
                         [](const auto& info) { return test_name(info.param.name); });

// The backend sends float32 batch norm to oneDNN exactly where dnnl_norm::use_* say so (the same
// bits as calling it directly) and keeps norm.cpp's kernels elsewhere; the cases: (train, eval,
// backward) on oneDNN.
TEST(BatchNormDnnlDispatch, BackendUsesOneDnnExactlyWhereUseSaysSo) {
  if (!nb::cpu::dnnl_common::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  namespace dn = nb::cpu::dnnl_norm;
  const std::vector<std::tuple<BnDnnlCase, bool, bool, bool>> cases = {
      {{"m16", 64, 32, 16, true, true, true}, true, false, true},
      {{"m1", 256, 128, 1, true, true, true}, true, true, true},
      {{"m4", 128, 64, 4, true, true, true}, false, false, false},
      {{"m196", 8, 32, 196, false, true, true}, true, false, false},
      {{"small", 4, 16, 16, true, true, true}, false, false, false},
  };
  for (const auto& [c, train_on, eval_on, back_on] : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(dn::use_forward_train(c.n, c.c, c.m), train_on);
    EXPECT_EQ(dn::use_forward_eval(c.n, c.c, c.m), eval_on);
    EXPECT_EQ(dn::use_backward(c.n, c.c, c.m), back_on);
    const BnData d = bn_data(c);
    const float* w = c.weight ? d.w.data() : nullptr;
    const auto size = d.x.size(), cs = size_t(c.c);
    struct Out {
      std::vector<float> y, mean, invstd, rm, rv, y_eval, dx, dw, db;
    };
    // Through the backend alone, or along the expected path.
    auto run = [&](bool backend) {
      Out o{std::vector<float>(size), std::vector<float>(cs), std::vector<float>(cs), d.rm, d.rv,
            std::vector<float>(size), std::vector<float>(size), std::vector<float>(cs), std::vector<float>(cs)};
      const std::function<void()> train[] = {
          [&] {
            dn::forward_train(o.y.data(), o.mean.data(), o.invstd.data(), o.rm.data(), o.rv.data(), d.x.data(), w,
                              d.b.data(), c.n, c.c, c.m, c.momentum, c.eps);
          },
          [&] {
            cpu().batch_norm_forward_train(DType::float32, o.y.data(), o.mean.data(), o.invstd.data(), o.rm.data(),
                                           o.rv.data(), d.x.data(), w, d.b.data(), c.n, c.c, c.m, c.momentum, c.eps);
          }};
      const std::function<void()> eval[] = {
          [&] { dn::forward_eval(o.y_eval.data(), d.x.data(), d.rm.data(), d.rv.data(), w, d.b.data(), c.n, c.c, c.m,
                                 c.eps); },
          [&] {
            cpu().batch_norm_forward_eval(DType::float32, o.y_eval.data(), d.x.data(), d.rm.data(), d.rv.data(), w,
                                          d.b.data(), c.n, c.c, c.m, c.eps);
          }};
      const std::function<void()> back[] = {
          [&] {
            dn::backward(o.dx.data(), o.dw.data(), o.db.data(), d.dy.data(), d.x.data(), o.mean.data(),
                         o.invstd.data(), w, c.n, c.c, c.m);
          },
          [&] {
            cpu().batch_norm_backward(DType::float32, o.dx.data(), o.dw.data(), o.db.data(), d.dy.data(), d.x.data(),
                                      o.mean.data(), o.invstd.data(), w, c.n, c.c, c.m);
          }};
      for (auto [fns, on] : {std::pair{train, train_on}, {eval, eval_on}, {back, back_on}}) {
        if (backend) fns[1]();
        else expected_path(on, fns[0], fns[1]);
      }
      return o;
    };
    const Out got = run(true), want = run(false);
    EXPECT_EQ(got.y, want.y);
    EXPECT_EQ(got.mean, want.mean);
    EXPECT_EQ(got.invstd, want.invstd);
    EXPECT_EQ(got.rm, want.rm);
    EXPECT_EQ(got.rv, want.rv);
    EXPECT_EQ(got.y_eval, want.y_eval);
    EXPECT_EQ(got.dx, want.dx);
    EXPECT_EQ(got.dw, want.dw);
    EXPECT_EQ(got.db, want.db);
  }
}

// ---- layers ---------------------------------------------------------------------------------

TEST(ConvLayers, ParametersNamesAndStrings) {
  nb::Conv2d c(3, 8, 5, {.stride = 2, .padding = "same"});
  EXPECT_EQ(c.weight().shape(), (Shape{8, 3, 5, 5}));
  EXPECT_EQ(c.bias().shape(), (Shape{8}));
  EXPECT_EQ(c.num_parameters(), 8 * 3 * 25 + 8);
  EXPECT_EQ(c.to_string(), "Conv2d(3->8, 5x5, stride 2, padding same)");
  nb::Conv2d g(4, 8, {3, 1}, {.groups = 2, .bias = false});
  EXPECT_EQ(g.weight().shape(), (Shape{8, 2, 3, 1}));
  EXPECT_EQ(g.num_parameters(), 8 * 2 * 3);
  EXPECT_EQ(g.to_string(), "Conv2d(4->8, 3x1, groups 2, no bias)");
  nb::Conv1d c1(4, 6, 3, {.padding = 1});
  EXPECT_EQ(c1.weight().shape(), (Shape{6, 4, 3}));
  EXPECT_EQ(c1.to_string(), "Conv1d(4->6, 3, padding 1)");
  // PyTorch's default bound: 1 / sqrt(fan_in), fan_in = 3 * 25
  const double bound = 1 / std::sqrt(75.0);
  EXPECT_LE(nb::max(nb::abs(c.weight())).item(), bound);
  EXPECT_GT(nb::max(nb::abs(c.weight())).item(), 0.8 * bound);
  EXPECT_EQ(nb::MaxPool2d(2).to_string(), "MaxPool2d(2x2)");
  EXPECT_EQ(nb::AvgPool2d(3, {.stride = 1, .padding = 1, .count_include_pad = false}).to_string(),
            "AvgPool2d(3x3, stride (1, 1), padding 1, exclude padding)");
}

TEST(ConvLayers, SequentialCnnShapesAndBackward) {
  nb::manual_seed(9);
  nb::Sequential model{nb::Conv2d(1, 4, 3, {.padding = 1}), nb::BatchNorm2d(4), nb::ReLU(), nb::MaxPool2d(2),
                       nb::Conv2d(4, 6, 3), nb::ReLU(), nb::AvgPool2d(2), nb::Flatten(), nb::Dense(6 * 2 * 2, 3)};
  Tensor x = nb::randn({5, 1, 12, 12});
  Tensor y = model(x);
  EXPECT_EQ(y.shape(), (Shape{5, 3}));
  nb::cross_entropy(y, nb::from_vector<int64_t>({0, 1, 2, 0, 1})).backward();
  for (auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(nb::sum(nb::abs(p.grad())).item(), 0) << name;
  }
  EXPECT_EQ(model.named_buffers()[0].first, "1.running_mean");
  nb::Sequential gap{nb::Conv2d(1, 4, 3), nb::GlobalAvgPool2d(), nb::Dense(4, 2)};
  EXPECT_EQ(gap(x).shape(), (Shape{5, 2}));
}

// ---- errors -------------------------------------------------------------------------------------

TEST(ConvErrors, NameTheLayerAndTheShapes) {
  nb::Conv2d c(3, 8, 3);
  EXPECT_THAT(error_of([&] { c(nb::zeros({2, 1, 28, 28})); }),
              HasSubstr("Conv2d(3->8, 3x3): input has 1 channels (shape [2, 1, 28, 28]), expected 3"));
  EXPECT_THAT(error_of([&] { c(nb::zeros({2, 3, 28})); }),
              HasSubstr("Conv2d(3->8, 3x3): input has shape [2, 3, 28], expected 4 axes [N, C, H, W]"));
  EXPECT_THAT(error_of([&] { c(nb::zeros({2, 3, 2, 5})); }),
              HasSubstr("Conv2d(3->8, 3x3): kernel 3x3 (dilated 3x3) is larger than the input 2x5 padded to 2x5"));
  EXPECT_THAT(error_of([] { nb::Conv2d(3, 8, 3, {.groups = 2}); }), HasSubstr("groups=2 must divide"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 4, 5, 5}), nb::zeros({6, 2, 3, 3}), {}, {.groups = 3}); }),
              HasSubstr("groups=3 does not divide the input's 4 channels"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 2, 5, 5}), nb::zeros({4, 2, 3, 3}), nb::zeros({3})); }),
              HasSubstr("bias has shape [3], expected [4]"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 2, 5, 5}), nb::zeros({4, 2, 3, 3}), {}, {.stride = 0}); }),
              HasSubstr("stride must be at least 1"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 2, 5, 5}), nb::zeros({4, 2, 3, 3}), {}, {.padding = -1}); }),
              HasSubstr("padding must not be negative"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 2, 5, 5}), nb::zeros({4, 2, 3, 3}, kF64)); }),
              HasSubstr("is float32 but 'weight'"));
  EXPECT_THAT(error_of([] { nb::Padding p("full"); }), HasSubstr("padding: unknown mode 'full'"));
  EXPECT_THAT(error_of([] { nb::conv2d(nb::zeros({1, 2, 5, 5}, {.dtype = DType::int64}), nb::zeros({4, 2, 3, 3})); }),
              HasSubstr("expected float32 or float64"));
  nb::Conv1d c1(2, 4, 5);
  EXPECT_THAT(error_of([&] { c1(nb::zeros({1, 2, 3})); }),
              HasSubstr("Conv1d(2->4, 5): kernel 5 (dilated 5) is larger than the input length 3 padded by 0"));
  EXPECT_THAT(error_of([&] { c1(nb::zeros({1, 3, 9})); }), HasSubstr("Conv1d(2->4, 5): input has 3 channels"));
}

TEST(PoolErrors, NameTheLayerAndTheShapes) {
  EXPECT_THAT(error_of([] { nb::MaxPool2d(2)(nb::zeros({2, 3, 8})); }),
              HasSubstr("MaxPool2d(2x2): input has shape [2, 3, 8], expected 4 axes"));
  EXPECT_THAT(error_of([] { nb::MaxPool2d(3)(nb::zeros({1, 1, 2, 8})); }),
              HasSubstr("MaxPool2d(3x3): kernel 3x3 is larger than the input 2x8"));
  EXPECT_THAT(error_of([] { nb::AvgPool2d(2, {.padding = 2})(nb::zeros({1, 1, 8, 8})); }),
              HasSubstr("AvgPool2d(2x2): padding 2 must be between 0 and half the kernel 2x2"));
  EXPECT_THAT(error_of([] { nb::max_pool2d(nb::zeros({1, 1, 8, 8}), 2, {.padding = "same"}); }),
              HasSubstr("padding \"same\" is not supported for pooling"));
  EXPECT_THAT(error_of([] { nb::MaxPool2d(0); }), HasSubstr("kernel size must be at least 1"));
  EXPECT_THAT(error_of([] { nb::GlobalAvgPool2d()(nb::zeros({2, 3})); }),
              HasSubstr("GlobalAvgPool2d: input has shape [2, 3], expected 4 axes"));
}

TEST(BatchNormErrors, NameTheLayerAndTheShapes) {
  nb::BatchNorm2d bn(3);
  EXPECT_THAT(error_of([&] { bn(nb::zeros({2, 4, 5, 5})); }),
              HasSubstr("BatchNorm2d(3): input has shape [2, 4, 5, 5], expected [N, 3, H, W]"));
  EXPECT_THAT(error_of([&] { bn(nb::zeros({2, 3})); }), HasSubstr("expected [N, 3, H, W]"));
  nb::BatchNorm1d b1(3);
  EXPECT_THAT(error_of([&] { b1(nb::zeros({1, 3})); }),
              HasSubstr("BatchNorm1d(3): training needs more than one value per channel, got input [1, 3]"));
  b1.eval();
  EXPECT_EQ(b1(nb::zeros({1, 3})).shape(), (Shape{1, 3}));  // evaluation of one sample is fine
  EXPECT_THAT(error_of([] { nb::batch_norm(nb::zeros({2, 3}), nb::zeros({2}), {}, {}, {}, true); }),
              HasSubstr("weight has shape [2], expected [3]"));
  EXPECT_THAT(error_of([] { nb::batch_norm(nb::zeros({2, 3}), {}, {}, {}, {}, false); }),
              HasSubstr("evaluation mode needs running statistics"));
  EXPECT_THAT(error_of([] { nb::BatchNorm2d(0); }), HasSubstr("num_features must be positive"));
}

}  // namespace
