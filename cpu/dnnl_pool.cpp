// oneDNN average pooling for the CPU backend (see dnnl_pool.h).
//
// A Plan holds, for one pooling shape and divisor rule, the forward and backward primitives (made
// at their first use), the blocked copies of the input and output and each primitive's
// scratchpad. Plans are per thread, as in dnnl_conv.cpp: no lock.
#include <nabla/cpu/dnnl_pool.h>

#include <nabla/core/error.h>

#include <array>
#include <map>
#include <memory>

namespace nabla::cpu::dnnl_pool {

#if NABLA_WITH_DNNL

namespace {

using namespace dnnl_common;  // f32, engine, user, Planned, Staged, execute, guarded
using dnnl::memory;
using fwd = dnnl::pooling_forward;
using bwd = dnnl::pooling_backward;

struct Plan {
  memory::desc x_user, y_user, x, y;
  dnnl::algorithm algo;
  memory::dims strides, kernel, pad_l, pad_r;
  std::unique_ptr<Planned<fwd>> forward;
  std::unique_ptr<Planned<bwd>> backward;
  Staged x_in, y_out, dy_in, dx_out;
};

using Key = std::array<int64_t, 13>;

Plan& plan_for(const Pool2dShape& s, bool count_include_pad) {
  thread_local std::map<Key, std::unique_ptr<Plan>> plans;
  auto& slot = plans[Key{s.n, s.c, s.h, s.w, s.oh, s.ow, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                         count_include_pad ? 1 : 0}];
  if (slot) return *slot;
  auto p = std::make_unique<Plan>();
  const memory::dims xd{s.n, s.c, s.h, s.w}, yd{s.n, s.c, s.oh, s.ow};
  p->x_user = memory::desc(xd, f32, memory::format_tag::nchw);
  p->y_user = memory::desc(yd, f32, memory::format_tag::nchw);
  p->x = memory::desc(xd, f32, blocked_tag());
  p->y = memory::desc(yd, f32, blocked_tag());
  p->algo = count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                              : dnnl::algorithm::pooling_avg_exclude_padding;
  p->strides = {s.stride_h, s.stride_w};
  p->kernel = {s.kh, s.kw};
  // nabla's output size rounds down (core/ops/pool.cpp), for which oneDNN wants the same padding
  // on both sides: (h + 2 pad - kh) / stride + 1 == oh.
  p->pad_l = {s.pad_h, s.pad_w};
  p->pad_r = {s.pad_h, s.pad_w};
  slot = std::move(p);
  return *slot;
}

Planned<fwd>& forward_of(Plan& p) {
  if (p.forward) return *p.forward;
  p.forward = std::make_unique<Planned<fwd>>(fwd::primitive_desc(
      fwd::desc(dnnl::prop_kind::forward_training, p.algo, p.x, p.y, p.strides, p.kernel, p.pad_l, p.pad_r),
      user_scratchpad(), engine()));
  p.x_in.init(p.x_user, p.x, true);
  p.y_out.init(p.y_user, p.y, false);
  return *p.forward;
}

Planned<bwd>& backward_of(Plan& p) {
  if (p.backward) return *p.backward;
  p.backward = std::make_unique<Planned<bwd>>(
      bwd::primitive_desc(bwd::desc(p.algo, p.x, p.y, p.strides, p.kernel, p.pad_l, p.pad_r),
                          user_scratchpad(), engine(), forward_of(p).pd));
  p.dy_in.init(p.y_user, p.y, true);
  p.dx_out.init(p.x_user, p.x, false);
  return *p.backward;
}

template <typename Body>
void guarded(const char* op, const Pool2dShape& s, bool count_include_pad, Body&& body) {
  dnnl_common::guarded(op, body, [&] {
    return fmt::format("input [{}, {}, {}, {}], kernel {}x{}, stride {}x{}, padding {}x{}, count_include_pad {}", s.n,
                       s.c, s.h, s.w, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w, count_include_pad);
  });
}

}  // namespace

// Measured on AVX2 with 2 threads (nChw8c): with fewer than 8 channels the blocked copies are
// mostly padding, and with 4 outputs or fewer per plane (e.g. a 7x7 window over a 7x7 plane, or
// 4x4 windows over 8x8) the reorders cost more than pool.cpp's whole kernel.
bool use(const Pool2dShape& s) { return dnnl_common::enabled() && s.n > 0 && s.c >= 8 && s.oh * s.ow > 4; }

void avg_forward(float* y, const float* x, const Pool2dShape& s, bool count_include_pad) {
  guarded("avg_pool2d_forward", s, count_include_pad, [&] {
    Plan& p = plan_for(s, count_include_pad);
    Planned<fwd>& f = forward_of(p);
    execute(f, {{DNNL_ARG_SRC, p.x_in.in(user(p.x_user, x))}}, DNNL_ARG_DST, p.y_out,
                         user(p.y_user, y));
  });
}

void avg_backward(float* dx, const float* dy, const Pool2dShape& s, bool count_include_pad) {
  guarded("avg_pool2d_backward", s, count_include_pad, [&] {
    Plan& p = plan_for(s, count_include_pad);
    Planned<bwd>& b = backward_of(p);
    execute(b, {{DNNL_ARG_DIFF_DST, p.dy_in.in(user(p.y_user, dy))}}, DNNL_ARG_DIFF_SRC, p.dx_out,
                         user(p.x_user, dx));
  });
}

#else  // no oneDNN in this build

bool use(const Pool2dShape&) { return false; }
void avg_forward(float*, const float*, const Pool2dShape&, bool) {
  fail("avg_pool2d_forward: nabla was built without oneDNN");
}
void avg_backward(float*, const float*, const Pool2dShape&, bool) {
  fail("avg_pool2d_backward: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_pool
