// CudaBackend: the CUDA implementation of nabla::Backend, one object per device, and the helpers
// its kernel files share.
//
// Internal to cuda/: nothing outside this folder includes it. The methods are defined one op
// family per file (backend.cu: memory and copies; elementwise.cu, random.cu, reduce.cu, gemm.cu,
// softmax.cu, optim.cu); the semantics of each are in core/backend.h.
//
// Every method enqueues work on the device's one stream and returns; only copy_to_host and
// synchronize wait. Every launch is followed by NABLA_CUDA_CHECK_LAUNCH(), every runtime and
// cuBLAS call by a check that turns a failure into nabla::Error.
#pragma once

#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/cuda/check.cuh>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

namespace nabla::cuda {

// Throws nabla::Error for a failed cuBLAS call: "<call> failed: <status name> (at file:line)".
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

// Makes `device` current for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

// Threads per block of the elementwise kernels, and a grid for n elements processed by
// grid-stride loops: enough blocks to fill the device, never more than the work needs.
constexpr int kBlock = 256;
int grid_for(int64_t n, int device);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas();  // created at first use, bound to stream()
  int grid(int64_t n) const { return static_cast<int>(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, max_blocks_)); }

  const char* name() const override { return "cuda"; }
  int device_count() const override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) noexcept override;
  void copy(void* dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void synchronize() override;

  void fill(DType dtype, void* out, int64_t n, double value) override;
  void copy_strided(DType dtype, void* out, const void* a, const StridedLayout& l) override;
  void cast(DType out_dtype, void* out, DType a_dtype, const void* a, int64_t n) override;

  void rand_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset, double lo,
                    double hi) override;
  void rand_normal(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset, double mean,
                   double stddev) override;

  void unary(UnaryOp op, DType dtype, void* y, const void* x, int64_t n, double a, double b) override;
  void unary_backward(UnaryOp op, DType dtype, void* dx, const void* dy, const void* x, const void* y,
                      int64_t n, double a, double b) override;
  void binary(BinaryOp op, DType dtype, void* out, const void* a, const void* b,
              const StridedLayout& l) override;

  void reduce(ReduceOp op, DType dtype, void* out, const void* x, int64_t outer, int64_t r,
              int64_t inner) override;
  void argmax(DType dtype, int64_t* out, const void* x, int64_t outer, int64_t r, int64_t inner) override;

  void gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
            const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b,
            double beta, void* c, int64_t ldc, int64_t stride_c, int64_t batch) override;

  void softmax(DType dtype, void* y, const void* x, int64_t outer, int64_t n, int64_t inner,
               bool log) override;
  void softmax_backward(DType dtype, void* dx, const void* dy, const void* y, int64_t outer, int64_t n,
                        int64_t inner, bool log) override;
  void nll(DType dtype, void* loss, const void* logp, const int64_t* labels, int64_t n, int64_t c) override;
  void nll_backward(DType dtype, void* dlogp, const void* dloss, const int64_t* labels, int64_t n,
                    int64_t c) override;
  void check_labels(const int64_t* labels, int64_t n, int64_t c, const char* op) override;

  void sgd_step(DType dtype, const ParamGroup& g, double lr, double momentum, double dampening,
                double weight_decay, bool nesterov) override;
  void adam_step(DType dtype, const ParamGroup& g, double lr, double beta1, double beta2, double eps,
                 double weight_decay, bool decoupled) override;
  void adagrad_step(DType dtype, const ParamGroup& g, double lr, double lr_decay, double weight_decay,
                    double eps) override;
  void rmsprop_step(DType dtype, const ParamGroup& g, double lr, double alpha, double eps,
                    double weight_decay, double momentum, bool centered) override;

  // Device-side label checks record failures in flags_; the next synchronizing call reads them
  // and throws (backend.cu).
  static constexpr int kFlagsSize = 8;

 private:
  void throw_pending_check_failure();  // after a stream synchronization
  void reset_flags();

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int64_t max_blocks_ = 1;
  int64_t* flags_ = nullptr;
  std::mutex mu_;
  bool checks_pending_ = false;  // label checks enqueued since the last synchronization

  // Pinned buffers for host transfers (backend.cu), allocated at the first transfer.
  static constexpr size_t kStagingBytes = size_t{8} << 20;
  struct Staging {
    void* host = nullptr;
    cudaEvent_t done = nullptr;  // the last copy that used `host`
  };
  std::mutex staging_mu_;
  Staging staging_[2];
  int next_staging_ = 0;
};

// Registered backend of device `index` (created at first use).
CudaBackend& backend_of(int index);

// Dispatch on a floating dtype: f(float{}) or f(double{}); anything else is an Error naming `op`.
template <typename F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::float32: f(float{}); return;
    case DType::float64: f(double{}); return;
    default: fail("cuda {}: dtype {} is not supported (float32 or float64 expected)", op, dtype_name(dtype));
  }
}

}  // namespace nabla::cuda

#define NABLA_CUBLAS_CHECK(call)                                     \
  do {                                                               \
    ::nabla::cuda::check_cublas((call), #call, __FILE__, __LINE__);  \
  } while (0)
