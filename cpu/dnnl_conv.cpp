// oneDNN convolution for the CPU backend (see dnnl_conv.h).
//
// A Plan holds, for one convolution shape, the primitives of each direction (made at its first
// use, with the memory formats oneDNN prefers: format_tag::any), the reorders between NCHW and
// those formats, and the buffers of the blocked copies and of each primitive's scratchpad. Plans
// are per thread: two threads never share a primitive, a scratchpad or a buffer, so concurrent
// training in several threads (tests/threads_test.cpp) needs no lock.
#include <nabla/cpu/dnnl_conv.h>

#include <nabla/core/error.h>

#include <array>
#include <map>
#include <memory>
#include <unordered_map>

namespace nabla::cpu::dnnl_conv {

#if NABLA_WITH_DNNL

namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

using dnnl_common::engine;
using dnnl_common::stream;
using dnnl_common::Staged;
using dnnl_common::user;
using dnnl_common::user_scratchpad;

struct Forward {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  Staged x, w, y;
  memory scratch;
};
struct BackwardData {
  dnnl::convolution_backward_data prim;
  Staged dy, w, dx;
  memory scratch;
};
struct BackwardWeight {
  dnnl::convolution_backward_weights prim;
  Staged dy, x, dw;
  memory scratch;
};

struct Plan {
  memory::desc x_user, w_user, y_user, b_user;
  memory::dims strides, dilates, pad_l, pad_r;
  std::unique_ptr<Forward> fwd;           // with bias
  std::unique_ptr<Forward> fwd_no_bias;
  std::unique_ptr<BackwardData> bwd_data;
  std::unique_ptr<BackwardWeight> bwd_weight;
};

using Key = std::array<int64_t, 16>;

Key key_of(const Conv2dShape& s) {
  return {s.n, s.c, s.h, s.w, s.k, s.kh, s.kw, s.oh, s.ow, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h, s.dil_w,
          s.groups};
}

memory::desc any(const memory::dims& d) { return memory::desc(d, dt::f32, tag::any); }

Plan& plan_for(const Conv2dShape& s) {
  thread_local std::map<Key, std::unique_ptr<Plan>> plans;
  auto& slot = plans[key_of(s)];
  if (slot) return *slot;
  auto p = std::make_unique<Plan>();
  p->x_user = memory::desc({s.n, s.c, s.h, s.w}, dt::f32, tag::nchw);
  p->y_user = memory::desc({s.n, s.k, s.oh, s.ow}, dt::f32, tag::nchw);
  p->w_user = s.groups == 1
                  ? memory::desc({s.k, s.c, s.kh, s.kw}, dt::f32, tag::oihw)
                  : memory::desc({s.groups, s.k / s.groups, s.c / s.groups, s.kh, s.kw}, dt::f32, tag::goihw);
  p->b_user = memory::desc({s.k}, dt::f32, tag::x);
  p->strides = {s.stride_h, s.stride_w};
  p->dilates = {s.dil_h - 1, s.dil_w - 1};
  p->pad_l = {s.pad_h, s.pad_w};
  p->pad_r = {s.pad_h, s.pad_w};
  slot = std::move(p);
  return *slot;
}

dnnl::convolution_forward::desc forward_desc(const Plan& p, bool bias) {
  const auto prop = dnnl::prop_kind::forward_training;
  const auto algo = dnnl::algorithm::convolution_direct;
  if (bias)
    return {prop, algo, any(p.x_user.dims()), any(p.w_user.dims()), p.b_user, any(p.y_user.dims()),
            p.strides, p.dilates, p.pad_l, p.pad_r};
  return {prop, algo, any(p.x_user.dims()), any(p.w_user.dims()), any(p.y_user.dims()),
          p.strides, p.dilates, p.pad_l, p.pad_r};
}

std::unique_ptr<Forward> make_forward(const Plan& p, bool bias) {
  auto f = std::make_unique<Forward>();
  f->pd = dnnl::convolution_forward::primitive_desc(forward_desc(p, bias), user_scratchpad(), engine());
  f->prim = dnnl::convolution_forward(f->pd);
  f->x.init(p.x_user, f->pd.src_desc(), true);
  f->w.init(p.w_user, f->pd.weights_desc(), true);
  f->y.init(p.y_user, f->pd.dst_desc(), false);
  f->scratch = memory(f->pd.scratchpad_desc(), engine());
  return f;
}

Forward& forward_of(Plan& p, bool bias) {
  auto& f = bias ? p.fwd : p.fwd_no_bias;
  if (!f) f = make_forward(p, bias);
  return *f;
}

// The backward primitives take the forward one as a hint (the same algorithm and formats).
Forward& hint_of(Plan& p) { return p.fwd_no_bias ? *p.fwd_no_bias : p.fwd ? *p.fwd : forward_of(p, false); }

BackwardData& backward_data_of(Plan& p) {
  if (p.bwd_data) return *p.bwd_data;
  const dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, any(p.x_user.dims()),
                                                any(p.w_user.dims()), any(p.y_user.dims()), p.strides, p.dilates,
                                                p.pad_l, p.pad_r);
  const dnnl::convolution_backward_data::primitive_desc pd(d, user_scratchpad(), engine(), hint_of(p).pd);
  auto b = std::make_unique<BackwardData>();
  b->prim = dnnl::convolution_backward_data(pd);
  b->dy.init(p.y_user, pd.diff_dst_desc(), true);
  b->w.init(p.w_user, pd.weights_desc(), true);
  b->dx.init(p.x_user, pd.diff_src_desc(), false);
  b->scratch = memory(pd.scratchpad_desc(), engine());
  p.bwd_data = std::move(b);
  return *p.bwd_data;
}

BackwardWeight& backward_weight_of(Plan& p) {
  if (p.bwd_weight) return *p.bwd_weight;
  const dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, any(p.x_user.dims()),
                                                   any(p.w_user.dims()), any(p.y_user.dims()), p.strides, p.dilates,
                                                   p.pad_l, p.pad_r);
  const dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad(), engine(), hint_of(p).pd);
  auto b = std::make_unique<BackwardWeight>();
  b->prim = dnnl::convolution_backward_weights(pd);
  b->dy.init(p.y_user, pd.diff_dst_desc(), true);
  b->x.init(p.x_user, pd.src_desc(), true);
  b->dw.init(p.w_user, pd.diff_weights_desc(), false);
  b->scratch = memory(pd.scratchpad_desc(), engine());
  p.bwd_weight = std::move(b);
  return *p.bwd_weight;
}

// Runs `body`, turning a oneDNN error into a nabla::Error that names the convolution.
template <typename Body>
void guarded(const char* what, const Conv2dShape& s, Body&& body) {
  dnnl_common::guarded(what, body, [&] {
    return fmt::format("input [{}, {}, {}, {}], weight [{}, {}, {}, {}], stride {}x{}, padding {}x{}, dilation {}x{}, "
                       "groups {}",
                       s.n, s.c, s.h, s.w, s.k, s.c / s.groups, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                       s.dil_h, s.dil_w, s.groups);
  });
}

}  // namespace

void forward(float* y, const float* x, const float* w, const float* bias, const Conv2dShape& s) {
  guarded("conv2d forward", s, [&] {
    Plan& p = plan_for(s);
    Forward& f = forward_of(p, bias != nullptr);
    const memory yu = user(p.y_user, y);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, f.x.in(user(p.x_user, x))},
                                         {DNNL_ARG_WEIGHTS, f.w.in(user(p.w_user, w))},
                                         {DNNL_ARG_DST, f.y.out(yu)},
                                         {DNNL_ARG_SCRATCHPAD, f.scratch}};
    if (bias != nullptr) args.emplace(DNNL_ARG_BIAS, user(p.b_user, bias));
    f.prim.execute(stream(), args);
    f.y.out_done(yu);
    stream().wait();
  });
}

void backward_data(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  guarded("conv2d backward data", s, [&] {
    Plan& p = plan_for(s);
    BackwardData& b = backward_data_of(p);
    const memory dxu = user(p.x_user, dx);
    b.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, b.dy.in(user(p.y_user, dy))},
                              {DNNL_ARG_WEIGHTS, b.w.in(user(p.w_user, w))},
                              {DNNL_ARG_DIFF_SRC, b.dx.out(dxu)},
                              {DNNL_ARG_SCRATCHPAD, b.scratch}});
    b.dx.out_done(dxu);
    stream().wait();
  });
}

void backward_weight(float* dw, const float* dy, const float* x, const Conv2dShape& s) {
  guarded("conv2d backward weight", s, [&] {
    Plan& p = plan_for(s);
    BackwardWeight& b = backward_weight_of(p);
    const memory dwu = user(p.w_user, dw);
    b.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, b.dy.in(user(p.y_user, dy))},
                              {DNNL_ARG_SRC, b.x.in(user(p.x_user, x))},
                              {DNNL_ARG_DIFF_WEIGHTS, b.dw.out(dwu)},
                              {DNNL_ARG_SCRATCHPAD, b.scratch}});
    b.dw.out_done(dwu);
    stream().wait();
  });
}

#else  // no oneDNN in this build

void forward(float*, const float*, const float*, const float*, const Conv2dShape&) {
  fail("conv2d: nabla was built without oneDNN");
}
void backward_data(float*, const float*, const float*, const Conv2dShape&) {
  fail("conv2d: nabla was built without oneDNN");
}
void backward_weight(float*, const float*, const float*, const Conv2dShape&) {
  fail("conv2d: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_conv
