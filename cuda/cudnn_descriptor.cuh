// RAII owners of cuDNN descriptors, shared by the cuDNN users of cuda/ (conv.cu, rnn.cu).
// Internal to cuda/.
#pragma once

#include <nabla/core/log.h>
#include <nabla/cuda/cuda_backend.h>

#include <string>
#include <utility>

namespace nabla::cuda {

inline void log_cudnn_failure(cudnnStatus_t st, const char* what) noexcept {
  if (st != CUDNN_STATUS_SUCCESS)
    log_message(LogLevel::error, std::string("nabla: ") + what + " failed: " + cudnnGetErrorString(st));
}

// Owner of one cuDNN descriptor: non-copyable, movable; created at construction, destroyed
// (failures logged, never thrown) at destruction.
template <typename H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
class CudnnDescriptor {
 public:
  CudnnDescriptor() { NABLA_CUDNN_CHECK(Create(&h_)); }
  ~CudnnDescriptor() {
    if (h_) log_cudnn_failure(Destroy(h_), "destroying a cuDNN descriptor");
  }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  CudnnDescriptor(CudnnDescriptor&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CudnnDescriptor& operator=(CudnnDescriptor&& o) noexcept {
    if (this != &o) {
      if (h_) log_cudnn_failure(Destroy(h_), "destroying a cuDNN descriptor");
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  H get() const { return h_; }

 private:
  H h_ = nullptr;
};

using CudnnTensorDesc =
    CudnnDescriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;

}  // namespace nabla::cuda
