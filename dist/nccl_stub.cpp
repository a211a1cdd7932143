// The NCCL engine of a build without NCCL (no CUDA, no MPI, or NABLA_NCCL=OFF): CUDA tensors in
// a collective are an error that says so. Never staged through the host instead: a program
// that meant to use NCCL would otherwise run many times slower without a word.
#include <nabla/dist/detail.h>

namespace nabla::dist::detail {

std::shared_ptr<WorkState> nccl_collective(Kind kind, const Tensor& in, const Tensor&, ReduceOp, int) {
  fail("nabla::dist::{}: the tensor is on {}, and this build of nabla has no NCCL engine (it needs the "
       "CUDA backend, MPI and NCCL at build time: NABLA_NCCL=ON, nccl.h and libnccl found); move the tensor "
       "to the CPU for MPI",
       to_string(kind), in.device());
}

void nccl_shutdown() noexcept {}

}  // namespace nabla::dist::detail
