// float32 LSTM and GRU layers on oneDNN's RNN primitives (Debian's libdnnl): its JIT GEMMs and
// fused gate kernels train the layer of the `lstm` workload about twice as fast as nabla's own
// kernels (cpu/rnn.cpp), which stay the float64 path and the reference in tests, and a GRU layer
// (sequence 100, batch 128, 300 -> 128) about 1.1 times as fast.
// Internal to cpu/: rnn.cpp routes float32 layers here when enabled(); the switch is the one of
// the convolutions (NABLA_CPU_DNNL=0 in the environment, or dnnl_common::set_enabled(false)).
//
// oneDNN's LSTM is PyTorch's (gates i, f, g, o) with one bias per gate: b_ih + b_hh goes in, and
// its gradient comes back for both. nabla's GRU (PyTorch's) is oneDNN's lbr_gru ("linear before
// reset"), whose gates (u, r, o) are nabla's (z, r, n), and whose 4 bias rows are b_iz + b_hz,
// b_ir + b_hr, b_in and b_hn. Weights are reordered from nabla's packed layout
// (rnn_weight_layout: w_ih, w_hh as (G hidden, input) and (G hidden, hidden) row-major, oneDNN's
// "ldgoi" up to the GRU's gate order) into the formats oneDNN picks, at each call.
#pragma once

#include <nabla/core/backend.h>

#include <cstddef>

namespace nabla::cpu::dnnl_rnn {

// Whether a layer of this dtype and shape runs here: oneDNN built and enabled, float32 (LSTM or
// GRU).
bool handles(DType dtype, const RnnShape& s);

// Bytes of the state a training forward keeps for the backward: oneDNN's workspace and the final
// h and (LSTM) c, which its backward reads.
size_t reserve_bytes(const RnnShape& s);

// As CpuBackend::rnn_forward / rnn_backward (core/backend.h), x and y sequence- or
// batch-major as s.batch_major says (oneDNN's tnc and ntc); reserve holds
// reserve_bytes(s) bytes, or is null for inference.
void forward(const RnnShape& s, float* y, float* hy, float* cy, void* reserve, const float* x, const float* hx,
             const float* cx, const float* w);
void backward(const RnnShape& s, float* dx, float* dhx, float* dcx, float* dw, const float* dy, const float* dhy,
              const float* dcy, const float* x, const float* hx, const float* cx, const float* w, const float* y,
              void* reserve);

}  // namespace nabla::cpu::dnnl_rnn
