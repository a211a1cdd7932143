// rnn_layer: shape checks, packing of the weights, the kernels of Backend, and the tape entry.
#include <nabla/core/ops/rnn.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/util.h>

namespace nabla {

using detail::be;

namespace {

const char* cell_name(RnnCell c) { return c == RnnCell::lstm ? "LSTM" : "GRU"; }

void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

void check_weight(const Tensor& x, const Tensor& t, const Shape& expect, const char* name, const char* what, int64_t d) {
  NABLA_CHECK(t.defined(), "{}: {} of direction {} is undefined", name, what, d);
  detail::check_same(x, t, name, "input", what);
  NABLA_CHECK_SHAPE(t.shape() == expect, "{}: {} of direction {} has shape {}, expected {}", name, what, d,
                    shape_str(t.shape()), shape_str(expect));
}

void check_state(const Tensor& x, const Tensor& t, const Shape& expect, const char* name, const char* what) {
  if (!t.defined()) return;
  detail::check_same(x, t, name, "input", what);
  NABLA_CHECK_SHAPE(t.shape() == expect, "{}: initial state {} has shape {}, expected {} (directions, batch, hidden)",
                    name, what, shape_str(t.shape()), shape_str(expect));
}

bool is_view_at(const Tensor& t, const Tensor& packed, int64_t offset) {
  return t.impl()->storage == packed.impl()->storage && t.offset() == packed.offset() + offset && t.is_contiguous();
}

}  // namespace

int64_t rnn_packed_layout(RnnCell cell, int64_t input, int64_t hidden, int64_t directions, DType dtype, Device device,
                          std::vector<int64_t>* offsets) {
  NABLA_CHECK(input >= 1 && hidden >= 1 && (directions == 1 || directions == 2),
              "{}: input size {} and hidden size {} must be positive and directions {} 1 or 2", cell_name(cell), input,
              hidden, directions);
  RnnShape s{cell, 1, 1, input, hidden, directions};
  offsets->assign(size_t(4 * directions), 0);
  return backend(device).rnn_weight_layout(dtype, s, offsets->data());
}

RnnLayerResult rnn_layer(RnnCell cell, const Tensor& x_given, const Tensor& h0_in, const Tensor& c0_in,
                         const std::vector<RnnWeights>& w, const Tensor& packed, const char* name, bool batch_first) {
  detail::check_float(x_given, name, "input");
  NABLA_CHECK_SHAPE(x_given.dim() == 3, "{}: input has shape {}, expected {}", name, shape_str(x_given.shape()),
                    batch_first ? "[batch, seq, input] (batch-major)" : "[seq, batch, input] (sequence-major)");
  // Batch-major input goes to the backend as it is when the backend takes it so, else transposed.
  RnnShape probe{cell, x_given.shape()[batch_first ? 1 : 0], x_given.shape()[batch_first ? 0 : 1], x_given.shape()[2],
                 1, int64_t(w.size())};
  const bool batch_major = batch_first && be(x_given).rnn_batch_major(x_given.dtype(), probe);
  const Tensor x_in = batch_first && !batch_major ? x_given.transpose(0, 1) : x_given;
  NABLA_CHECK(w.size() == 1 || w.size() == 2, "{}: {} sets of weights given, expected 1 or 2 directions", name,
              w.size());
  const bool lstm = cell == RnnCell::lstm;
  NABLA_CHECK(lstm || !c0_in.defined(), "{}: a GRU has no cell state, but c0 was given", name);
  const int64_t T = x_in.shape()[batch_major ? 1 : 0], B = x_in.shape()[batch_major ? 0 : 1], I = x_in.shape()[2];
  const int64_t D = int64_t(w.size());
  NABLA_CHECK_SHAPE(w[0].w_hh.defined() && w[0].w_hh.dim() == 2, "{}: w_hh of direction 0 must be a matrix", name);
  const int64_t H = w[0].w_hh.shape()[1];
  RnnShape s{cell, T, B, I, H, D, batch_major};
  const int64_t GH = s.gates() * H;
  NABLA_CHECK_SHAPE(T >= 1 && B >= 1, "{}: input {} has an empty sequence or batch", name, shape_str(x_in.shape()));
  NABLA_CHECK(H >= 1, "{}: hidden size must be positive", name);
  for (int64_t d = 0; d < D; ++d) {
    const RnnWeights& wd = w[size_t(d)];
    if (wd.w_ih.defined() && wd.w_ih.dim() == 2 && wd.w_ih.shape()[0] == GH)
      NABLA_CHECK_SHAPE(wd.w_ih.shape()[1] == I, "{}: input has {} features (shape {}), expected {}", name, I,
                        shape_str(x_in.shape()), wd.w_ih.shape()[1]);
    check_weight(x_in, wd.w_ih, {GH, I}, name, "w_ih", d);
    check_weight(x_in, wd.w_hh, {GH, H}, name, "w_hh", d);
    check_weight(x_in, wd.b_ih, {GH}, name, "b_ih", d);
    check_weight(x_in, wd.b_hh, {GH}, name, "b_hh", d);
  }
  check_state(x_in, h0_in, {D, B, H}, name, "h0");
  check_state(x_in, c0_in, {D, B, H}, name, "c0");

  // The weights, packed as the backend wants them: in place when they already are.
  const Device dev = x_in.device();
  std::vector<int64_t> off;
  const int64_t total = rnn_packed_layout(cell, I, H, D, x_in.dtype(), dev, &off);
  std::vector<const Tensor*> ws;
  for (const RnnWeights& wd : w) ws.insert(ws.end(), {&wd.w_ih, &wd.w_hh, &wd.b_ih, &wd.b_hh});
  bool in_place = packed.defined() && packed.device() == dev && packed.dtype() == x_in.dtype() &&
                  packed.numel() >= total;
  for (size_t j = 0; in_place && j < ws.size(); ++j) in_place = is_view_at(*ws[j], packed, off[j]);
  Tensor flat;
  if (in_place) {
    flat = packed.detach();
  } else {
    flat = Tensor::empty({total}, x_in.options(), name);
    NoGrad ng;
    for (size_t j = 0; j < ws.size(); ++j)
      flat.slice(0, off[j], off[j] + ws[j]->numel()).view(ws[j]->shape()).copy_(*ws[j]);
  }

  const Tensor x = x_in.contiguous();
  const Tensor h0 = h0_in.defined() ? h0_in.contiguous() : Tensor();
  const Tensor c0 = c0_in.defined() ? c0_in.contiguous() : Tensor();
  RnnLayerResult r;
  r.y = Tensor::empty(batch_major ? Shape{B, T, D * H} : Shape{T, B, D * H}, x.options(), name);
  r.h = Tensor::empty({D, B, H}, x.options(), name);
  if (lstm) r.c = Tensor::empty({D, B, H}, x.options(), name);

  std::vector<Tensor> inputs{x, h0, c0};
  for (const Tensor* t : ws) inputs.push_back(*t);
  const bool training = needs_grad(inputs);
  Tensor reserve;
  if (training) {
    const size_t bytes = be(x).rnn_reserve_bytes(x.dtype(), s);
    reserve = Tensor::empty({int64_t((bytes + 7) / 8)}, {.dtype = DType::int64, .device = dev}, name);
  }
  be(x).rnn_forward(x.dtype(), s, r.y.data_ptr(), r.h.data_ptr(), ptr_or_null(r.c), ptr_or_null(reserve),
                    x.data_ptr(), ptr_or_null(h0), ptr_or_null(c0), flat.data_ptr());
  const bool transposed = batch_first && !batch_major;
  if (!training) {
    if (transposed) r.y = r.y.transpose(0, 1);
    return r;
  }

  std::vector<Tensor*> outputs{&r.y, &r.h};
  if (lstm) outputs.push_back(&r.c);
  std::vector<Shape> shapes;
  for (const Tensor* t : ws) shapes.push_back(t->shape());
  const Tensor xs = x.detach(), h0s = h0.defined() ? h0.detach() : Tensor(), c0s = c0.defined() ? c0.detach() : Tensor();
  const bool gx = x.requires_grad(), gh = h0.defined() && h0.requires_grad(), gc = c0.defined() && c0.requires_grad();
  const Tensor ys = r.y.detach();
  record(name, std::move(inputs), outputs,
         [s, lstm, xs, h0s, c0s, flat, ys, reserve, off, total, shapes, gx, gh, gc](
             const std::vector<Tensor>& g) -> std::vector<Tensor> {
           Tensor dx = gx ? Tensor::empty(xs.shape(), xs.options()) : Tensor();
           Tensor dh0 = gh ? Tensor::empty(h0s.shape(), h0s.options()) : Tensor();
           Tensor dc0 = gc ? Tensor::empty(c0s.shape(), c0s.options()) : Tensor();
           Tensor dw = Tensor::empty({total}, xs.options());
           be(xs).rnn_backward(xs.dtype(), s, ptr_or_null(dx), ptr_or_null(dh0), ptr_or_null(dc0), dw.data_ptr(),
                               g[0].data_ptr(), g[1].data_ptr(), lstm ? g[2].data_ptr() : nullptr, xs.data_ptr(),
                               ptr_or_null(h0s), ptr_or_null(c0s), flat.data_ptr(), ys.data_ptr(),
                               reserve.data_ptr());
           std::vector<Tensor> grads{dx, dh0, dc0};
           for (size_t j = 0; j < shapes.size(); ++j)
             grads.push_back(dw.slice(0, off[j], off[j] + numel_of(shapes[j])).view(shapes[j]));
           return grads;
         },
         {ys});
  if (transposed) r.y = r.y.transpose(0, 1);
  return r;
}

Tensor last_step(const Tensor& x, bool batch_first) {
  detail::check_defined(x, "last_step", "x");
  NABLA_CHECK_SHAPE(x.dim() >= 2, "last_step: input has shape {}, expected {}", shape_str(x.shape()),
                    batch_first ? "[batch, seq, ...]" : "[seq, batch, ...]");
  const int64_t axis = batch_first ? 1 : 0, n = x.shape()[axis];
  NABLA_CHECK_SHAPE(n >= 1, "last_step: input {} has an empty sequence", shape_str(x.shape()));
  return x.slice(axis, n - 1, n).squeeze(axis);
}

}  // namespace nabla
