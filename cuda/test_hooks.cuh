// Fault injection for the CUDA test suites: forces the rarely taken paths of cuda/ on a GPU where
// they would not happen by themselves. Internal (a .cuh: not installed, not in nabla.h); defined in
// conv.cu and rnn.cu, and as no-ops in test_hooks_stub.cpp when the CUDA backend is off.
#pragma once

namespace nabla::cuda::test_hooks {

// The next `runs` cuDNN convolution calls report CUDNN_STATUS_EXECUTION_FAILED without running,
// and the next `workspaces` workspace allocations of a convolution fail as if the device were out
// of memory, so that the fallback to the next candidate algorithm (conv.cu) is taken. (0, 0)
// clears both.
void inject_conv_failures(int runs, int workspaces);

// While on, RNN weight layouts made from now on (per dtype, cell, input, hidden, directions) take
// the copy fallback (rnn.cu): our contiguous layout, copied into a cuDNN weight space at every
// call. Layouts already made keep their path; use sizes no other test uses.
void force_rnn_weight_copies(bool on);

}  // namespace nabla::cuda::test_hooks
