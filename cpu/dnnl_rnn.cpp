// oneDNN LSTM and GRU (lbr_gru) for the CPU backend (see dnnl_rnn.h).
//
// A Plan holds, for one layer shape and cell, the primitives (training forward, inference forward
// and backward, each made at its first use with the weight formats oneDNN prefers), the weights in
// oneDNN's user layout ("ldgoi", both directions back to back), the reorders into the formats
// each primitive wants and out of the backward's gradient format, and zero buffers for absent
// states. Plans are per thread, like the convolutions' (dnnl_conv.cpp): no lock, no sharing.
//
// Reserve layout (training): oneDNN's workspace, then the final h and (LSTM) c (directions,
// batch, hidden) each, which the backward primitive takes as inputs.
#include <nabla/cpu/dnnl_rnn.h>

#include <nabla/core/error.h>
#include <nabla/cpu/dnnl_common.h>

#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nabla::cpu::dnnl_rnn {

#if NABLA_WITH_DNNL

namespace {

using dnnl::memory;
using dnnl_common::engine;
using dnnl_common::Staged;
using dnnl_common::stream;
using dnnl_common::user;
using dt = memory::data_type;
using tag = memory::format_tag;

memory::desc f32(const memory::dims& d, tag t) { return memory::desc(d, dt::f32, t); }

struct Forward {
  dnnl::primitive prim;  // lstm_forward or lbr_gru_forward
  Staged wl, wi;
  size_t workspace = 0;
};

struct Backward {
  dnnl::primitive prim;  // lstm_backward or lbr_gru_backward
  Staged wl, wi, dwl, dwi;
};

struct Plan {
  RnnShape s;
  memory::desc x_md, y_md, iter_md, wl_md, wi_md, bias_md;
  memory wl, wi, bias;          // the weights in oneDNN's user layout, filled at each call
  memory dwl, dwi, dbias;       // their gradients, in the same layout
  std::vector<float> zeros;     // (directions, batch, hidden) of zeros: absent states
  std::vector<float> scratch;   // outputs nobody asked for (dx, dhx, dcx, inference's hy, cy)
  dnnl::rnn_primitive_desc_base train_pd;  // the backward's hint, and the workspace's format
  std::unique_ptr<Forward> train, infer;
  std::unique_ptr<Backward> bwd;
};

dnnl::rnn_direction direction_of(const RnnShape& s) {
  return s.directions == 2 ? dnnl::rnn_direction::bidirectional_concat
                           : dnnl::rnn_direction::unidirectional_left2right;
}

bool is_lstm(const RnnShape& s) { return s.cell == RnnCell::lstm; }

using Key = std::array<int64_t, 7>;

Plan& plan_for(const RnnShape& s) {
  thread_local std::map<Key, std::unique_ptr<Plan>> plans;
  auto& slot = plans[Key{int64_t(s.cell), s.seq, s.batch, s.input, s.hidden, s.directions, s.batch_major}];
  if (slot) return *slot;
  auto p = std::make_unique<Plan>();
  const int64_t T = s.seq, N = s.batch, I = s.input, H = s.hidden, D = s.directions, G = s.gates();
  p->s = s;
  const tag order = s.batch_major ? tag::ntc : tag::tnc;  // memory order; the dims stay (T, N, C)
  p->x_md = f32({T, N, I}, order);
  p->y_md = f32({T, N, D * H}, order);
  p->iter_md = f32({1, D, N, H}, tag::ldnc);
  p->wl_md = f32({1, D, I, G, H}, tag::ldgoi);
  p->wi_md = f32({1, D, H, G, H}, tag::ldgoi);
  p->bias_md = f32({1, D, 4, H}, tag::ldgo);  // lbr_gru has 4 bias rows too (see load_weights)
  p->wl = memory(p->wl_md, engine());
  p->wi = memory(p->wi_md, engine());
  p->bias = memory(p->bias_md, engine());
  p->zeros.assign(size_t(D * N * H), 0.0f);
  slot = std::move(p);
  return *slot;
}

memory::desc any(const memory::desc& d) { return memory::desc(d.dims(), dt::f32, tag::any); }

// The forward and backward primitive descriptors of the plan's cell (the LSTM's with c states).
dnnl::rnn_primitive_desc_base forward_pd(const Plan& p, dnnl::prop_kind prop) {
  const auto dir = direction_of(p.s);
  const memory::desc &x = p.x_md, &st = p.iter_md, &b = p.bias_md, &y = p.y_md;
  const memory::desc wl = any(p.wl_md), wi = any(p.wi_md);
  if (is_lstm(p.s)) return dnnl::lstm_forward::primitive_desc({prop, dir, x, st, st, wl, wi, b, y, st, st}, engine());
  return dnnl::lbr_gru_forward::primitive_desc({prop, dir, x, st, wl, wi, b, y, st}, engine());
}

dnnl::rnn_primitive_desc_base backward_pd(const Plan& p) {
  const auto bwd = dnnl::prop_kind::backward;
  const auto dir = direction_of(p.s);
  const memory::desc &x = p.x_md, &st = p.iter_md, &b = p.bias_md, &y = p.y_md;
  const memory::desc wl = any(p.wl_md), wi = any(p.wi_md);
  if (is_lstm(p.s))
    return dnnl::lstm_backward::primitive_desc(
        {bwd, dir, x, st, st, wl, wi, b, y, st, st, x, st, st, wl, wi, b, y, st, st}, engine(),
        dnnl::lstm_forward::primitive_desc(p.train_pd.get()));
  return dnnl::lbr_gru_backward::primitive_desc({bwd, dir, x, st, wl, wi, b, y, st, x, st, wl, wi, b, y, st}, engine(),
                                                dnnl::lbr_gru_forward::primitive_desc(p.train_pd.get()));
}

std::unique_ptr<Forward> make_forward(Plan& p, bool training) {
  auto f = std::make_unique<Forward>();
  const auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  const dnnl::rnn_primitive_desc_base pd = forward_pd(p, prop);
  f->prim = dnnl::primitive(pd);
  f->wl.init(p.wl_md, pd.weights_layer_desc(), true);
  f->wi.init(p.wi_md, pd.weights_iter_desc(), true);
  if (training) {
    f->workspace = pd.workspace_desc().get_size();
    p.train_pd = pd;
  }
  return f;
}

Forward& train_of(Plan& p) {
  if (!p.train) p.train = make_forward(p, true);
  return *p.train;
}

Backward& backward_of(Plan& p) {
  if (p.bwd) return *p.bwd;
  train_of(p);
  const dnnl::rnn_primitive_desc_base pd = backward_pd(p);
  auto b = std::make_unique<Backward>();
  b->prim = dnnl::primitive(pd);
  p.dwl = memory(p.wl_md, engine());
  p.dwi = memory(p.wi_md, engine());
  p.dbias = memory(p.bias_md, engine());
  b->wl.init(p.wl_md, pd.weights_layer_desc(), true);
  b->wi.init(p.wi_md, pd.weights_iter_desc(), true);
  b->dwl.init(p.wl_md, pd.diff_weights_layer_desc(), false);
  b->dwi.init(p.wi_md, pd.diff_weights_iter_desc(), false);
  p.bwd = std::move(b);
  return *p.bwd;
}

int64_t per_direction(const RnnShape& s) {
  const int64_t gh = s.gates() * s.hidden;
  return gh * s.input + gh * s.hidden + 2 * gh;
}

// Gate g of oneDNN's layout is gate nabla_gate(s, g) of nabla's: the LSTM's are the same (i, f,
// g, o); lbr_gru's (u, r, o) are nabla's (z, r, n), the first two swapped.
int64_t nabla_gate(const RnnShape& s, int64_t g) { return !is_lstm(s) && g < 2 ? 1 - g : g; }

// Whether oneDNN's bias row g (g < gates) is b_ih + b_hh of its gate: all but lbr_gru's o, which
// is b_in alone; b_hn, inside the reset product, is lbr_gru's fourth row.
bool summed_bias(const RnnShape& s, int64_t g) { return is_lstm(s) || g < 2; }

// nabla's packed weights (per direction: w_ih, w_hh, b_ih, b_hh) into the plan's user layout.
void load_weights(Plan& p, const float* w) {
  const RnnShape& s = p.s;
  const int64_t G = s.gates(), H = s.hidden, gh = G * H, ih = H * s.input, hh = H * H;
  auto* wl = static_cast<float*>(p.wl.get_data_handle());
  auto* wi = static_cast<float*>(p.wi.get_data_handle());
  auto* b = static_cast<float*>(p.bias.get_data_handle());
  for (int64_t d = 0; d < s.directions; ++d) {
    const float* w_ih = w + d * per_direction(s);
    const float* w_hh = w_ih + gh * s.input;
    const float* b_ih = w_hh + gh * H;
    const float* b_hh = b_ih + gh;
    float* bd = b + d * 4 * H;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t n = nabla_gate(s, g);
      std::memcpy(wl + (d * G + g) * ih, w_ih + n * ih, size_t(ih) * sizeof(float));
      std::memcpy(wi + (d * G + g) * hh, w_hh + n * hh, size_t(hh) * sizeof(float));
      for (int64_t j = 0; j < H; ++j) bd[g * H + j] = b_ih[n * H + j] + (summed_bias(s, g) ? b_hh[n * H + j] : 0.0f);
    }
    if (!is_lstm(s)) std::memcpy(bd + 3 * H, b_hh + 2 * H, size_t(H) * sizeof(float));
  }
}

// The backward's gradients (plan's user layout) back into nabla's packed layout: a bias summed
// into one row gets that row's gradient for both of its parts.
void store_gradients(const Plan& p, float* dw) {
  const RnnShape& s = p.s;
  const int64_t G = s.gates(), H = s.hidden, gh = G * H, ih = H * s.input, hh = H * H;
  const auto* gwl = static_cast<const float*>(p.dwl.get_data_handle());
  const auto* gwi = static_cast<const float*>(p.dwi.get_data_handle());
  const auto* gb = static_cast<const float*>(p.dbias.get_data_handle());
  for (int64_t d = 0; d < s.directions; ++d) {
    float* dw_ih = dw + d * per_direction(s);
    float* dw_hh = dw_ih + gh * s.input;
    float* db_ih = dw_hh + gh * H;
    float* db_hh = db_ih + gh;
    const float* gbd = gb + d * 4 * H;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t n = nabla_gate(s, g);
      std::memcpy(dw_ih + n * ih, gwl + (d * G + g) * ih, size_t(ih) * sizeof(float));
      std::memcpy(dw_hh + n * hh, gwi + (d * G + g) * hh, size_t(hh) * sizeof(float));
      std::memcpy(db_ih + n * H, gbd + g * H, size_t(H) * sizeof(float));
      std::memcpy(db_hh + n * H, gbd + (summed_bias(s, g) ? g : 3) * H, size_t(H) * sizeof(float));
    }
  }
}

// The arguments a forward and its backward share: input, initial states (zeros when absent),
// weights in the primitive's formats (reordered now from the plan's user copy), bias, output and
// final states; the c states only for an LSTM.
std::unordered_map<int, memory> layer_args(Plan& p, Staged& wl, Staged& wi, const float* x, const float* hx,
                                           const float* cx, const float* y, const float* hy, const float* cy) {
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC_LAYER, user(p.x_md, x)},
                                       {DNNL_ARG_SRC_ITER, user(p.iter_md, hx ? hx : p.zeros.data())},
                                       {DNNL_ARG_WEIGHTS_LAYER, wl.in(p.wl)},
                                       {DNNL_ARG_WEIGHTS_ITER, wi.in(p.wi)},
                                       {DNNL_ARG_BIAS, p.bias},
                                       {DNNL_ARG_DST_LAYER, user(p.y_md, y)},
                                       {DNNL_ARG_DST_ITER, user(p.iter_md, hy)}};
  if (is_lstm(p.s)) {
    args.emplace(DNNL_ARG_SRC_ITER_C, user(p.iter_md, cx ? cx : p.zeros.data()));
    args.emplace(DNNL_ARG_DST_ITER_C, user(p.iter_md, cy));
  }
  return args;
}

size_t state_elems(const RnnShape& s) { return size_t(s.directions * s.batch * s.hidden); }

// The final states a training forward keeps for the backward: h, and c for an LSTM.
size_t saved_states(const RnnShape& s) { return is_lstm(s) ? 2 : 1; }

const char* cell_name(const RnnShape& s) { return is_lstm(s) ? "lstm" : "gru"; }

size_t round_up(size_t n) { return (n + 63) / 64 * 64; }

// Runs `body`; a oneDNN error becomes a nabla::Error that names the layer's shape.
template <typename Body>
void guarded(const char* what, const RnnShape& s, Body&& body) {
  const std::string op = fmt::format("{} {}", cell_name(s), what);
  dnnl_common::guarded(op.c_str(), body, [&] {
    return fmt::format("sequence {}, batch {}, input {}, hidden {}, directions {}", s.seq, s.batch, s.input, s.hidden,
                       s.directions);
  });
}

}  // namespace

bool handles(DType dtype, const RnnShape&) { return dtype == DType::float32 && dnnl_common::enabled(); }

size_t reserve_bytes(const RnnShape& s) {
  size_t bytes = 0;
  guarded("workspace query", s, [&] { bytes = round_up(train_of(plan_for(s)).workspace); });
  return bytes + saved_states(s) * state_elems(s) * sizeof(float);
}

void forward(const RnnShape& s, float* y, float* hy, float* cy, void* reserve, const float* x, const float* hx,
             const float* cx, const float* w) {
  guarded("forward", s, [&] {
    Plan& p = plan_for(s);
    const bool training = reserve != nullptr;
    std::unique_ptr<Forward>& slot = training ? p.train : p.infer;
    if (!slot) slot = make_forward(p, training);
    Forward& f = *slot;
    load_weights(p, w);
    // The final states: into the reserve when training (the backward reads them), else scratch.
    float* h_out;
    const size_t n = state_elems(s);
    if (training) {
      h_out = reinterpret_cast<float*>(static_cast<char*>(reserve) + round_up(f.workspace));
    } else {
      p.scratch.resize(saved_states(s) * n);
      h_out = p.scratch.data();
    }
    float* c_out = h_out + n;  // LSTM only
    std::unordered_map<int, memory> args = layer_args(p, f.wl, f.wi, x, hx, cx, y, h_out, c_out);
    if (training) args.emplace(DNNL_ARG_WORKSPACE, user(p.train_pd.workspace_desc(), reserve));
    f.prim.execute(stream(), args);
    stream().wait();
    if (hy) std::memcpy(hy, h_out, n * sizeof(float));
    if (cy && is_lstm(s)) std::memcpy(cy, c_out, n * sizeof(float));
  });
}

void backward(const RnnShape& s, float* dx, float* dhx, float* dcx, float* dw, const float* dy, const float* dhy,
              const float* dcy, const float* x, const float* hx, const float* cx, const float* w, const float* y,
              void* reserve) {
  guarded("backward", s, [&] {
    Plan& p = plan_for(s);
    Backward& b = backward_of(p);
    load_weights(p, w);
    const size_t n = state_elems(s);
    const auto* h_saved =
        reinterpret_cast<const float*>(static_cast<const char*>(reserve) + round_up(p.train->workspace));
    // Outputs nobody asked for still need somewhere to go.
    const size_t x_elems = size_t(s.seq * s.batch * s.input);
    p.scratch.resize(std::max(p.scratch.size(), (dx ? 0 : x_elems) + saved_states(s) * n));
    float* spare = p.scratch.data();
    float* dx_out = dx ? dx : spare;
    float* spare_states = dx ? spare : spare + x_elems;
    // The gradients are accumulated by oneDNN's RNN backward: start from zero.
    const memory dwl = b.dwl.out(p.dwl), dwi = b.dwi.out(p.dwi);
    std::memset(dwl.get_data_handle(), 0, dwl.get_desc().get_size());
    std::memset(dwi.get_data_handle(), 0, dwi.get_desc().get_size());
    std::memset(p.dbias.get_data_handle(), 0, p.dbias.get_desc().get_size());
    std::unordered_map<int, memory> args = layer_args(p, b.wl, b.wi, x, hx, cx, y, h_saved, h_saved + n);
    args.insert({{DNNL_ARG_WORKSPACE, user(p.train_pd.workspace_desc(), reserve)},
                 {DNNL_ARG_DIFF_SRC_LAYER, user(p.x_md, dx_out)},
                 {DNNL_ARG_DIFF_SRC_ITER, user(p.iter_md, dhx ? dhx : spare_states)},
                 {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl},
                 {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
                 {DNNL_ARG_DIFF_BIAS, p.dbias},
                 {DNNL_ARG_DIFF_DST_LAYER, user(p.y_md, dy)},
                 {DNNL_ARG_DIFF_DST_ITER, user(p.iter_md, dhy ? dhy : p.zeros.data())}});
    if (is_lstm(s)) {
      args.emplace(DNNL_ARG_DIFF_SRC_ITER_C, user(p.iter_md, dcx ? dcx : spare_states + n));
      args.emplace(DNNL_ARG_DIFF_DST_ITER_C, user(p.iter_md, dcy ? dcy : p.zeros.data()));
    }
    b.prim.execute(stream(), args);
    b.dwl.out_done(p.dwl);
    b.dwi.out_done(p.dwi);
    stream().wait();
    store_gradients(p, dw);
  });
}

#else  // no oneDNN in this build

bool handles(DType, const RnnShape&) { return false; }
size_t reserve_bytes(const RnnShape&) { fail("rnn: nabla was built without oneDNN"); }
void forward(const RnnShape&, float*, float*, float*, void*, const float*, const float*, const float*, const float*) {
  fail("rnn: nabla was built without oneDNN");
}
void backward(const RnnShape&, float*, float*, float*, float*, const float*, const float*, const float*, const float*,
              const float*, const float*, const float*, const float*, void*) {
  fail("rnn: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_rnn
