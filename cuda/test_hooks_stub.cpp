// The test hooks of cuda/test_hooks.cuh when the CUDA backend is off: nothing to inject into.
#include <nabla/cuda/test_hooks.cuh>

namespace nabla::cuda::test_hooks {

void inject_conv_failures(int, int) {}
void force_rnn_weight_copies(bool) {}

}  // namespace nabla::cuda::test_hooks
