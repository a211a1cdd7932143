// Fault injection and inspection for the CUDA test suites: forces the rarely taken paths of cuda/
// on a GPU where they would not happen by themselves, and tells which path was taken. Internal (a .cuh: not installed, not in nabla.h); defined in
// backend.cu, conv.cu and rnn.cu, and as no-ops in test_hooks_stub.cpp when the CUDA backend is off.
#pragma once

#include <nabla/export.h>

#include <cstdint>

namespace nabla::cuda::test_hooks {

// The next `runs` cuDNN convolution calls report CUDNN_STATUS_EXECUTION_FAILED without running,
// and the next `workspaces` workspace allocations of a convolution fail as if the device were out
// of memory, so that the fallback to the next candidate algorithm (conv.cu) is taken. (0, 0)
// clears both.
NABLA_INTERNAL_API void inject_conv_failures(int runs, int workspaces);

// While on, RNN weight layouts made from now on (per dtype, cell, input, hidden, directions) take
// the copy fallback (rnn.cu): our contiguous layout, copied into a cuDNN weight space at every
// call. Layouts already made keep their path; use sizes no other test uses.
NABLA_INTERNAL_API void force_rnn_weight_copies(bool on);

// When on, every new device allocation is filled with 0xFF bytes (NaN as float32 or float64, -1
// as an integer), so that a kernel that leaves an output element unwritten is seen. Costs a
// memset per allocation; off by default.
NABLA_INTERNAL_API void set_poison_allocations(bool on);

// Whether device `index` runs a float32 LSTM (lstm) or GRU layer of these sizes on cuDNN's weight
// space in place (true: the packed parameters are views of cuDNN's layout), or through the copy
// fallback (false: our own contiguous layout, copied into cuDNN's weight space at every call; see
// cuda/rnn.cu). Throws without the CUDA backend.
NABLA_INTERNAL_API bool rnn_weights_in_place(int index, bool lstm, int64_t input, int64_t hidden, int64_t directions);

}  // namespace nabla::cuda::test_hooks
