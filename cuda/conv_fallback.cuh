// The walk over cuDNN's ranked convolution algorithms when the chosen one cannot run (conv.cu).
//
// Plain C++ (no CUDA headers), so that tests/cuda_nn_parity_test.cpp can check the walk with a
// fake runner on a machine without a GPU. Internal to cuda/ (a .cuh: not installed).
//
// A candidate is tried by a callable returning an Attempt: ran, or why not (its workspace could
// not be allocated, or cuDNN returned an error status such as CUDNN_STATUS_NOT_SUPPORTED or
// CUDNN_STATUS_EXECUTION_FAILED). The walk tries candidates [first, count) in order, as PyTorch
// does with its heuristic list, and returns the index of the first that ran; when none does it
// throws nabla::Error listing every attempt (the ones before `first` included, through
// `earlier`), so the user sees why each algorithm was refused.
#pragma once

#include <nabla/core/error.h>

#include <cstddef>
#include <string>

namespace nabla::cuda::conv_detail {

struct Attempt {
  bool ran = false;
  std::string why;  // when !ran: what went wrong
};

// try_one(i) -> Attempt. `what` names the call ("cuda conv2d forward for x (...)");
// `earlier` lists the attempts already made (e.g. the candidate that failed first), may be empty.
template <typename TryOne>
std::size_t run_first_that_works(std::size_t first, std::size_t count, TryOne&& try_one, const std::string& what,
                                 std::string earlier = {}) {
  for (std::size_t i = first; i < count; ++i) {
    const Attempt a = try_one(i);
    if (a.ran) return i;
    earlier += fmt::format("{}candidate {}: {}", earlier.empty() ? "" : "; ", i, a.why);
  }
  fail("{}: no algorithm of cuDNN's heuristic list could run ({} candidate{}): {}", what, count,
       count == 1 ? "" : "s", earlier.empty() ? "none listed" : earlier);
}

}  // namespace nabla::cuda::conv_detail
