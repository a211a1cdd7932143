// The test hooks of cuda/test_hooks.cuh when the CUDA backend is off: nothing to inject into,
// no device to inspect.
#include <nabla/core/error.h>
#include <nabla/cuda/test_hooks.cuh>

namespace nabla::cuda::test_hooks {

void inject_conv_failures(int, int) {}
void force_rnn_weight_copies(bool) {}
void set_poison_allocations(bool) {}

bool rnn_weights_in_place(int index, bool, int64_t, int64_t, int64_t) {
  fail("cuda::test_hooks::rnn_weights_in_place: no CUDA device {}: nabla was built without CUDA", index);
}

}  // namespace nabla::cuda::test_hooks
