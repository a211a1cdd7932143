// Recurrent layers as ops: one LSTM or GRU layer over a whole sequence (one or two directions),
// in PyTorch's equations and parameter layout (see RnnShape in core/backend.h: gates i, f, g, o
// for an LSTM and r, z, n for a GRU). Differentiable in x, the initial states and every weight;
// float32 (CPU and CUDA) and float64 (CPU).
#pragma once

#include <nabla/export.h>

#include <nabla/core/backend.h>
#include <nabla/core/tensor.h>

#include <vector>

namespace nabla {

// The weights of one direction: w_ih (G hidden, input), w_hh (G hidden, hidden),
// b_ih, b_hh (G hidden), G = 4 (LSTM) or 3 (GRU).
struct RnnWeights {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

struct RnnLayerResult {
  Tensor y;  // (seq, batch, directions * hidden)
  Tensor h;  // (directions, batch, hidden): the state after the last step of each direction
  Tensor c;  // the LSTM's cell state, like h; undefined for a GRU
};

// x: (seq, batch, input), sequence-major; h0, c0: (directions, batch, hidden) or undefined for
// zeros (c0: LSTM only). w: one entry per direction (1 or 2). `packed`, when defined, is a
// buffer that already holds every weight in the device's packed layout (rnn_packed_layout) with
// each weight tensor a view of it at its offset; the weights are then used in place, otherwise
// they are packed into a temporary buffer first. `name` names the layer in error messages.
// batch_first: x is (batch, seq, input) and y (batch, seq, directions * hidden); the backend takes
// them so where it can (Backend::rnn_batch_major), else they are transposed around it.
NABLA_API RnnLayerResult rnn_layer(RnnCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0,
                         const std::vector<RnnWeights>& w, const Tensor& packed = {},
                         const char* name = "rnn", bool batch_first = false);

// The packed layout of one layer's weights on `device`: element offsets of
// (w_ih, w_hh, b_ih, b_hh) of direction d at offsets[4 d + j], and the total element count.
NABLA_API int64_t rnn_packed_layout(RnnCell cell, int64_t input, int64_t hidden, int64_t directions, DType dtype,
                          Device device, std::vector<int64_t>* offsets);

// x[:, -1] when batch_first (x: (batch, seq, features)), else x[-1] (x: (seq, batch, features)):
// the last step of a sequence, as a differentiable view.
NABLA_API Tensor last_step(const Tensor& x, bool batch_first = false);

}  // namespace nabla
