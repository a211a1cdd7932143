#include <nabla/layers/rnn.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/shape.h>

#include <cmath>

namespace nabla {

RnnBase::RnnBase(RnnCell cell, int64_t input_size, int64_t hidden_size, RnnOptions opts)
    : cell_(cell), input_(input_size), hidden_(hidden_size), opts_(opts) {
  const char* type = cell == RnnCell::lstm ? "LSTM" : "GRU";
  NABLA_CHECK(input_size > 0 && hidden_size > 0, "{}: input and hidden sizes must be positive, got {} and {}", type,
              input_size, hidden_size);
  NABLA_CHECK(opts.num_layers >= 1, "{}: num_layers must be at least 1, got {}", type, opts.num_layers);
  check_number(opts.dropout, type, "dropout");
  NABLA_CHECK(opts.dropout >= 0 && opts.dropout < 1, "{}: dropout {} is outside [0, 1)", type, opts.dropout);
  NABLA_CHECK_DTYPE(is_floating(opts.dtype), "{}: dtype must be float32 or float64, got {}", type, opts.dtype);
  label_ = fmt::format("{}({}->{})", type, input_size, hidden_size);
  const int64_t G = cell == RnnCell::lstm ? 4 : 3, D = directions();
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  const TensorOptions to{opts.dtype, opts.device};
  const int64_t rows = checked_mul(G, hidden_size, label_.c_str(), "the gates' rows");
  const int64_t stacked = checked_mul(D, hidden_size, label_.c_str(), "the stacked layers' input size");
  // Allocation errors (out of memory) name the layer and the parameter.
  auto param = [&](const std::string& name, const Shape& shape) {
    try {
      return register_parameter(name, rand(shape, to, -bound, bound));
    } catch (const Error& e) {
      e.rethrow_with(fmt::format("{} {}: {}", label_, name, e.what()));
    }
  };
  for (int64_t l = 0; l < opts.num_layers; ++l) {
    Layer layer;
    const int64_t in = l == 0 ? input_size : stacked;
    for (int64_t d = 0; d < D; ++d) {
      const std::string sfx = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
      RnnWeights w;
      w.w_ih = param("weight_ih" + sfx, {rows, in});
      w.w_hh = param("weight_hh" + sfx, {rows, hidden_size});
      w.b_ih = param("bias_ih" + sfx, {rows});
      w.b_hh = param("bias_hh" + sfx, {rows});
      layer.w.push_back(w);
    }
    layers_.push_back(std::move(layer));
  }
  pack();
}

void RnnBase::pack() {
  for (Layer& layer : layers_) {
    const Tensor& first = layer.w[0].w_ih;
    const int64_t in = first.shape()[1];
    const int64_t total =
        rnn_packed_layout(cell_, in, hidden_, directions(), first.dtype(), first.device(), &layer.offsets);
    std::vector<Tensor*> ws;
    for (RnnWeights& w : layer.w) ws.insert(ws.end(), {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh});
    bool packed = layer.packed.defined() && layer.packed.device() == first.device() &&
                  layer.packed.dtype() == first.dtype() && layer.packed.numel() == total;
    for (size_t j = 0; packed && j < ws.size(); ++j) {
      const Tensor& t = *ws[j];
      packed = t.impl()->storage == layer.packed.impl()->storage && t.offset() == layer.offsets[j] &&
               t.is_contiguous() && t.device() == first.device();
    }
    if (packed) continue;
    // A new buffer on the parameters' device; each parameter becomes a view of it, keeping its
    // identity (and gradient), so optimizers made before still update it.
    NoGrad ng;
    Tensor buffer = zeros({total}, first.options());
    for (size_t j = 0; j < ws.size(); ++j) {
      Tensor view = buffer.slice(0, layer.offsets[j], layer.offsets[j] + ws[j]->numel()).view(ws[j]->shape());
      view.copy_(*ws[j]);
      ws[j]->set_data(view);
    }
    layer.packed = buffer;
  }
}

Tensor RnnBase::forward(const Tensor& x) { return forward_state(x, {}).output; }

RnnOutput RnnBase::forward_state(const Tensor& x, const RnnState& state) {
  NABLA_CHECK_SHAPE(
      x.defined() && x.dim() == 3 && x.shape()[2] == input_, "{}: input has shape {}, expected {}", label_,
      x.defined() ? shape_str(x.shape()) : "undefined",
      opts_.batch_first ? fmt::format("[batch, seq, {}]", input_) : fmt::format("[seq, batch, {}]", input_));
  const bool lstm = cell_ == RnnCell::lstm;
  NABLA_CHECK(lstm || !state.c.defined(), "{}: a GRU has no cell state, but state.c was given", label_);
  pack();
  const int64_t D = directions(), L = opts_.num_layers;
  const int64_t batch = x.shape()[opts_.batch_first ? 0 : 1];
  const Shape state_shape{L * D, batch, hidden_};
  for (const Tensor* s : {&state.h, &state.c})
    NABLA_CHECK_SHAPE(!s->defined() || s->shape() == state_shape,
                      "{}: initial state has shape {}, expected {} (num_layers * directions, batch, hidden)", label_,
                      shape_str(s->shape()), shape_str(state_shape));
  Tensor seq = x;  // batch-major when batch_first: rnn_layer takes it so
  std::vector<Tensor> hs, cs;
  for (int64_t l = 0; l < L; ++l) {
    if (l > 0 && opts_.dropout > 0) seq = dropout(seq, opts_.dropout, is_training());
    const Tensor h0 = state.h.defined() ? state.h.slice(0, l * D, (l + 1) * D) : Tensor();
    const Tensor c0 = state.c.defined() ? state.c.slice(0, l * D, (l + 1) * D) : Tensor();
    const Layer& layer = layers_[size_t(l)];
    RnnLayerResult r = rnn_layer(cell_, seq, h0, c0, layer.w, layer.packed, label_.c_str(), opts_.batch_first);
    seq = r.y;
    hs.push_back(r.h);
    if (lstm) cs.push_back(r.c);
  }
  RnnOutput out;
  out.output = seq;
  out.h = L == 1 ? hs[0] : concat(hs, 0);
  if (lstm) out.c = L == 1 ? cs[0] : concat(cs, 0);
  return out;
}

std::string RnnBase::to_string() const {
  std::string s = fmt::format("{}({}->{}", type_name(), input_, hidden_);
  if (opts_.num_layers > 1) s += fmt::format(", layers {}", opts_.num_layers);
  if (opts_.bidirectional) s += ", bidirectional";
  if (opts_.batch_first) s += ", batch_first";
  if (opts_.dropout > 0) s += fmt::format(", dropout {}", opts_.dropout);
  return s + ")";
}

}  // namespace nabla
