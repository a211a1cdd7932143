// oneDNN convolution for the CPU backend (see dnnl_conv.h).
//
// A Plan holds, for one convolution shape, the primitives of each direction (made at its first
// use, with the memory formats oneDNN prefers: format_tag::any), the reorders between NCHW and
// those formats, and the buffers of the blocked copies and of each primitive's scratchpad. Plans
// are per thread: two threads never share a primitive, a scratchpad or a buffer, so concurrent
// training in several threads (tests/threads_test.cpp) needs no lock.
//
// A fused ReLU (Conv2dShape::relu) costs no pass of its own: when y comes out of oneDNN in its
// channel-blocked layout, the copy back into NCHW (a loop here instead of oneDNN's reorder)
// applies it, and in the backward the copy of dy into the blocked layout masks it. oneDNN's own
// ReLU post-op is not used: its JIT kernel (vmaxps) turns NaN into 0, which would hide a NaN from
// the loss (measured: oneDNN 2.6, avx2). The two backward primitives share one blocked copy of dy,
// and the weight gradient's primitive sums the bias gradient too.
#include <nabla/cpu/dnnl_conv.h>

#include <nabla/core/error.h>
#include <nabla/cpu/cpu_backend.h>

#include <array>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

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
  std::unique_ptr<BackwardWeight> bwd_weight;       // with the bias gradient
  std::unique_ptr<BackwardWeight> bwd_weight_no_bias;
  std::vector<float> masked;     // dy masked by the ReLU, when no blocked copy takes it
  std::vector<float> spare_dw;   // a weight gradient nobody asked for (only the bias's was)
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

BackwardWeight& backward_weight_of(Plan& p, bool bias) {
  auto& slot = bias ? p.bwd_weight : p.bwd_weight_no_bias;
  if (slot) return *slot;
  const auto algo = dnnl::algorithm::convolution_direct;
  const auto d = bias ? dnnl::convolution_backward_weights::desc(algo, any(p.x_user.dims()), any(p.w_user.dims()),
                                                                 p.b_user, any(p.y_user.dims()), p.strides,
                                                                 p.dilates, p.pad_l, p.pad_r)
                      : dnnl::convolution_backward_weights::desc(algo, any(p.x_user.dims()), any(p.w_user.dims()),
                                                                 any(p.y_user.dims()), p.strides, p.dilates,
                                                                 p.pad_l, p.pad_r);
  const dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad(), engine(), hint_of(p).pd);
  auto b = std::make_unique<BackwardWeight>();
  b->prim = dnnl::convolution_backward_weights(pd);
  b->dy.init(p.y_user, pd.diff_dst_desc(), true);
  b->x.init(p.x_user, pd.src_desc(), true);
  b->dw.init(p.w_user, pd.diff_weights_desc(), false);
  b->scratch = memory(pd.scratchpad_desc(), engine());
  slot = std::move(b);
  return *slot;
}

// The channels per block if d is oneDNN's channel-blocked layout of (n, c, h, w) (nChw8c or
// nChw16c, channels padded to whole blocks), else 0.
int64_t block_of(const memory::desc& d) {
  const memory::dims dims = d.dims();
  if (dims.size() != 4) return 0;
  if (d == memory::desc(dims, dt::f32, tag::nChw8c)) return 8;
  if (d == memory::desc(dims, dt::f32, tag::nChw16c)) return 16;
  return 0;
}

// Between NCHW (n, c, hw) and the blocked layout (n, c / B, hw, B) with B channels per block and
// zeros in the padding channels: out = f(in) element by element, in the direction `to_blocked` says.
// f takes the element's index in the NCHW layout.
template <typename F>
void blocked_copy(bool to_blocked, float* out, const float* in, int64_t n, int64_t c, int64_t hw, int64_t block,
                  F&& f) {
  const int64_t cb = (c + block - 1) / block;
  parallel_for(n * cb, hw * block, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t i = plane / cb, c0 = (plane % cb) * block, lanes = std::min(block, c - c0);
      const int64_t blk = plane * hw * block;  // this block's first element in the blocked layout
      for (int64_t l = 0; l < lanes; ++l) {
        const int64_t row = (i * c + c0 + l) * hw;  // this channel's first element in NCHW
        if (to_blocked) {
          for (int64_t j = 0; j < hw; ++j) out[blk + j * block + l] = f(in, row + j);
        } else {
          for (int64_t j = 0; j < hw; ++j) out[row + j] = f(in, blk + j * block + l);
        }
      }
      if (to_blocked)
        for (int64_t l = lanes; l < block; ++l)
          for (int64_t j = 0; j < hw; ++j) out[blk + j * block + l] = 0.0f;
    }
  });
}

// The dy a backward primitive reads through `st`: dy reordered, or for a fused ReLU dy masked by
// y > 0 on its way (in the blocked copy, else into p.masked first).
memory stage_dy(Plan& p, Staged& st, const float* dy, const float* y, const Conv2dShape& s) {
  if (!s.relu) return st.in(user(p.y_user, dy));
  const int64_t block = st.mem ? block_of(st.mem->get_desc()) : 0;
  if (block != 0) {
    // Reads dy at NCHW index i and y at the same index.
    blocked_copy(true, static_cast<float*>(st.mem->get_data_handle()), dy, s.n, s.k, s.oh * s.ow, block,
                 [y](const float* g, int64_t i) { return fused_relu_grad(g[i], y[i]); });
    return *st.mem;
  }
  p.masked.resize(size_t(s.n * s.k * s.oh * s.ow));
  relu_mask(p.masked.data(), dy, y, int64_t(p.masked.size()));
  return st.in(user(p.y_user, p.masked.data()));
}

// Whether two stagings hold dy in the same layout (then one copy serves both).
bool same_layout(const Staged& a, const Staged& b) {
  if (!a.mem || !b.mem) return !a.mem && !b.mem;
  return a.mem->get_desc() == b.mem->get_desc();
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
    const int64_t block = s.relu && f.y.mem ? block_of(f.y.mem->get_desc()) : 0;
    if (block != 0) {
      stream().wait();
      blocked_copy(false, y, static_cast<const float*>(f.y.mem->get_data_handle()), s.n, s.k, s.oh * s.ow, block,
                   [](const float* v, int64_t i) { return fused_relu(v[i]); });
      return;
    }
    f.y.out_done(yu);
    stream().wait();
    if (s.relu) relu_in_place(y, s.n * s.k * s.oh * s.ow);
  });
}

void backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, const float* y,
              const Conv2dShape& s) {
  guarded("conv2d backward", s, [&] {
    Plan& p = plan_for(s);
    BackwardData* bd = dx ? &backward_data_of(p) : nullptr;
    BackwardWeight* bw = dw || db ? &backward_weight_of(p, db != nullptr) : nullptr;
    memory dy_data, dy_weight;
    if (bd) dy_data = stage_dy(p, bd->dy, dy, y, s);
    if (bw) dy_weight = bd && same_layout(bd->dy, bw->dy) ? dy_data : stage_dy(p, bw->dy, dy, y, s);
    if (bd) {
      const memory dxu = user(p.x_user, dx);
      bd->prim.execute(stream(), {{DNNL_ARG_DIFF_DST, dy_data},
                                  {DNNL_ARG_WEIGHTS, bd->w.in(user(p.w_user, w))},
                                  {DNNL_ARG_DIFF_SRC, bd->dx.out(dxu)},
                                  {DNNL_ARG_SCRATCHPAD, bd->scratch}});
      bd->dx.out_done(dxu);
    }
    if (bw) {
      if (!dw) {
        p.spare_dw.resize(p.w_user.get_size() / sizeof(float));
        dw = p.spare_dw.data();
      }
      const memory dwu = user(p.w_user, dw);
      std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, dy_weight},
                                           {DNNL_ARG_SRC, bw->x.in(user(p.x_user, x))},
                                           {DNNL_ARG_DIFF_WEIGHTS, bw->dw.out(dwu)},
                                           {DNNL_ARG_SCRATCHPAD, bw->scratch}};
      if (db) args.emplace(DNNL_ARG_DIFF_BIAS, user(p.b_user, db));
      bw->prim.execute(stream(), args);
      bw->dw.out_done(dwu);
    }
    stream().wait();
  });
}

void backward_data(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  NABLA_ASSERT(!s.relu);
  backward(dx, nullptr, nullptr, dy, nullptr, w, nullptr, s);
}

void backward_weight(float* dw, const float* dy, const float* x, const Conv2dShape& s) {
  NABLA_ASSERT(!s.relu);
  backward(nullptr, dw, nullptr, dy, x, nullptr, nullptr, s);
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
void backward(float*, float*, float*, const float*, const float*, const float*, const float*, const Conv2dShape&) {
  fail("conv2d: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_conv
