// oneDNN batch normalization for the CPU backend (see dnnl_norm.h).
//
// A Plan holds, for one (n, c, m), the primitives (made at their first use: one per combination
// of weight / bias present and eps for the forwards), the blocked copies of the data and the
// per-channel buffers oneDNN needs where nabla passes null. Plans are per thread, as in
// dnnl_conv.cpp: no lock.
#include <nabla/cpu/dnnl_norm.h>

#include <nabla/core/error.h>

#include <array>
#include <bit>
#include <cmath>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nabla::cpu::dnnl_norm {

#if NABLA_WITH_DNNL

namespace {

using namespace dnnl_common;  // f32, engine, user, Planned, Staged, execute, guarded
using dnnl::memory;
using flag = dnnl::normalization_flags;
using fwd = dnnl::batch_normalization_forward;
using bwd = dnnl::batch_normalization_backward;

struct Plan {
  memory::desc data_user, data, channel;
  Staged x, y, dy, dx;  // x and y for the forwards, x, dy and dx for the backward
  // forward_training / forward_inference by (flags, eps's bits)
  std::map<std::pair<int, uint32_t>, std::unique_ptr<Planned<fwd>>> train, eval;
  std::unique_ptr<Planned<bwd>> back;
  // The backward's per-channel inputs and outputs: the variance it wants (1 / invstd^2, with eps
  // 0), the scale 1 and shift 0 for a null weight, and where dweight / dbias go when null.
  std::vector<float> var, ones, zeros, dweight, dbias;
};

Plan& plan_for(int64_t n, int64_t c, int64_t m) {
  thread_local std::map<std::array<int64_t, 3>, std::unique_ptr<Plan>> plans;
  auto& slot = plans[{n, c, m}];
  if (slot) return *slot;
  auto p = std::make_unique<Plan>();
  // (n, c, 1, m): with 3 axes (ncw) oneDNN 2.6 has only its reference kernel for blocked data.
  p->data_user = memory::desc({n, c, 1, m}, f32, memory::format_tag::nchw);
  p->data = memory::desc({n, c, 1, m}, f32, blocked_tag());
  p->channel = memory::desc({c}, f32, memory::format_tag::x);
  p->x.init(p->data_user, p->data, true);
  p->y.init(p->data_user, p->data, false);
  slot = std::move(p);
  return *slot;
}

flag flags_of(bool weight, bool bias) {
  flag f = flag::none;
  if (weight) f = f | flag::use_scale;
  if (bias) f = f | flag::use_shift;
  return f;
}

Planned<fwd>& forward_of(Plan& p, dnnl::prop_kind prop, bool weight, bool bias, float eps) {
  const bool train = prop == dnnl::prop_kind::forward_training;
  flag f = flags_of(weight, bias);
  if (!train) f = f | flag::use_global_stats;
  auto& slot = (train ? p.train : p.eval)[{static_cast<int>(f), std::bit_cast<uint32_t>(eps)}];
  if (!slot)
    slot = std::make_unique<Planned<fwd>>(
        fwd::primitive_desc(fwd::desc(prop, p.data, eps, f), user_scratchpad(), engine()));
  return *slot;
}

// Always with scale and shift (1 and 0 for a null weight), which gives dweight and dbias; eps 0,
// with the variance 1 / invstd^2, so that oneDNN's 1 / sqrt(variance + eps) is the saved invstd.
Planned<bwd>& backward_of(Plan& p, int64_t c) {
  if (p.back) return *p.back;
  const flag f = flags_of(true, true);
  const fwd::primitive_desc& hint = forward_of(p, dnnl::prop_kind::forward_training, true, true, 0.0f).pd;
  p.back = std::make_unique<Planned<bwd>>(bwd::primitive_desc(
      bwd::desc(dnnl::prop_kind::backward, p.data, p.data, 0.0f, f), user_scratchpad(), engine(), hint));
  p.dy.init(p.data_user, p.back->pd.diff_dst_desc(), true);
  p.dx.init(p.data_user, p.back->pd.diff_src_desc(), false);
  const auto size = static_cast<size_t>(c);
  p.var.resize(size);
  p.ones.assign(size, 1.0f);
  p.zeros.assign(size, 0.0f);
  p.dweight.resize(size);
  p.dbias.resize(size);
  return *p.back;
}

template <typename Body>
void guarded(const char* op, int64_t n, int64_t c, int64_t m, Body&& body) {
  dnnl_common::guarded(op, body, [&] { return fmt::format("input (n, c, m) = ({}, {}, {})", n, c, m); });
}

// The forward of `prop`: mean and var are outputs in training, inputs in evaluation.
void forward(const char* op, dnnl::prop_kind prop, float* y, const float* x, const float* mean, const float* var,
             const float* weight, const float* bias, int64_t n, int64_t c, int64_t m, double eps) {
  guarded(op, n, c, m, [&] {
    Plan& p = plan_for(n, c, m);
    Planned<fwd>& f = forward_of(p, prop, weight != nullptr, bias != nullptr, float(eps));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.x.in(user(p.data_user, x))},
                                         {DNNL_ARG_MEAN, user(p.channel, mean)},
                                         {DNNL_ARG_VARIANCE, user(p.channel, var)}};
    if (weight != nullptr) args.emplace(DNNL_ARG_SCALE, user(p.channel, weight));
    if (bias != nullptr) args.emplace(DNNL_ARG_SHIFT, user(p.channel, bias));
    execute(f, std::move(args), DNNL_ARG_DST, p.y, user(p.data_user, y));
  });
}

}  // namespace

// Where oneDNN (nChw8c with both reorders) measured faster than norm.cpp's kernels, on AVX2 with
// 2 threads; below 2^15 elements neither wins by more than a few microseconds:
//   training forward: up to 3.5x with m == 1, 1.05-2x with m >= 8; with 2 <= m <= 4 about 20% slower;
//   backward: up to 2.5x with m == 1, up to 1.3x with 8 <= m <= 64; 1.1-1.7x slower from m = 100 on;
//   evaluation: 1.5x with m == 1; elsewhere norm.cpp's one pass is 2-4x faster.
constexpr int64_t kMinElements = int64_t{1} << 15;

bool use_forward_train(int64_t n, int64_t c, int64_t m) {
  return dnnl_common::enabled() && n * c * m >= kMinElements && (m == 1 || m >= 8);
}
bool use_forward_eval(int64_t n, int64_t c, int64_t m) {
  return dnnl_common::enabled() && n * c * m >= kMinElements && m == 1;
}
bool use_backward(int64_t n, int64_t c, int64_t m) {
  return dnnl_common::enabled() && n * c * m >= kMinElements && (m == 1 || (m >= 8 && m <= 64));
}

void forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                   const float* x, const float* weight, const float* bias, int64_t n, int64_t c, int64_t m,
                   double momentum, double eps) {
  // The variance goes into save_invstd, which then becomes 1 / sqrt(variance + eps).
  forward("batch_norm_forward_train", dnnl::prop_kind::forward_training, y, x, save_mean, save_invstd, weight, bias, n,
          c, m, eps);
  const int64_t count = n * m;
  for (int64_t ch = 0; ch < c; ++ch) {
    const double mean = save_mean[ch], var = save_invstd[ch];
    save_invstd[ch] = float(1.0 / std::sqrt(var + eps));
    if (running_mean) running_mean[ch] = float((1 - momentum) * double(running_mean[ch]) + momentum * mean);
    if (running_var && count > 1)
      running_var[ch] =
          float((1 - momentum) * double(running_var[ch]) + momentum * var * double(count) / double(count - 1));
  }
}

void forward_eval(float* y, const float* x, const float* running_mean, const float* running_var, const float* weight,
                  const float* bias, int64_t n, int64_t c, int64_t m, double eps) {
  forward("batch_norm_forward_eval", dnnl::prop_kind::forward_inference, y, x, running_mean, running_var, weight, bias,
          n, c, m, eps);
}

void backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* save_mean,
              const float* save_invstd, const float* weight, int64_t n, int64_t c, int64_t m) {
  guarded("batch_norm_backward", n, c, m, [&] {
    Plan& p = plan_for(n, c, m);
    Planned<bwd>& b = backward_of(p, c);
    for (int64_t ch = 0; ch < c; ++ch) {
      const double invstd = save_invstd[ch];
      p.var[size_t(ch)] = float(1.0 / (invstd * invstd));
    }
    execute(b,
                         {{DNNL_ARG_SRC, p.x.in(user(p.data_user, x))},
                          {DNNL_ARG_DIFF_DST, p.dy.in(user(p.data_user, dy))},
                          {DNNL_ARG_MEAN, user(p.channel, save_mean)},
                          {DNNL_ARG_VARIANCE, user(p.channel, p.var.data())},
                          {DNNL_ARG_SCALE, user(p.channel, weight ? weight : p.ones.data())},
                          {DNNL_ARG_SHIFT, user(p.channel, p.zeros.data())},
                          {DNNL_ARG_DIFF_SCALE, user(p.channel, dweight ? dweight : p.dweight.data())},
                          {DNNL_ARG_DIFF_SHIFT, user(p.channel, dbias ? dbias : p.dbias.data())}},
                         DNNL_ARG_DIFF_SRC, p.dx, user(p.data_user, dx));
  });
}

#else  // no oneDNN in this build

bool use_forward_train(int64_t, int64_t, int64_t) { return false; }
bool use_forward_eval(int64_t, int64_t, int64_t) { return false; }
bool use_backward(int64_t, int64_t, int64_t) { return false; }
void forward_train(float*, float*, float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t,
                   int64_t, double, double) {
  fail("batch_norm_forward_train: nabla was built without oneDNN");
}
void forward_eval(float*, const float*, const float*, const float*, const float*, const float*, int64_t, int64_t,
                  int64_t, double) {
  fail("batch_norm_forward_eval: nabla was built without oneDNN");
}
void backward(float*, float*, float*, const float*, const float*, const float*, const float*, const float*, int64_t,
              int64_t, int64_t) {
  fail("batch_norm_backward: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_norm
