// CudaBackend: the CUDA implementation of nabla::Backend, one object per device, and the helpers
// its kernel files share.
//
// Internal to cuda/: nothing outside this folder includes it. The methods are defined one op
// family per file (backend.cu: memory and copies; elementwise.cu, random.cu, reduce.cu, gemm.cu,
// softmax.cu, foreach.cu, conv.cu, pool.cu, norm.cu, embedding.cu, rnn.cu); the semantics of each
// are in core/backend.h.
//
// Every method enqueues work on the device's one stream and returns; only copy_to_host and
// synchronize wait. Every launch is followed by NABLA_CUDA_CHECK_LAUNCH(), every runtime,
// cuBLAS and cuDNN call by a check that turns a failure into nabla::Error.
#pragma once

#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/cuda/check.cuh>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace nabla::cuda {

// Throws nabla::Error for a failed cuBLAS call: "<call> failed: <status name> (at file:line)".
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

// Throws nabla::Error for a failed cuDNN call: "<call> failed: <cudnnGetErrorString> (at file:line)".
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);
inline void check_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS) throw_cudnn_error(status, call, file, line);
}

// Owner of one cuDNN handle: non-copyable, movable; the destructor destroys the handle and logs
// (never throws) when that fails.
class CudnnHandle {
 public:
  CudnnHandle() = default;
  explicit CudnnHandle(cudnnHandle_t h) : h_(h) {}
  ~CudnnHandle();
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  CudnnHandle(CudnnHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CudnnHandle& operator=(CudnnHandle&& o) noexcept;
  cudnnHandle_t get() const { return h_; }

 private:
  cudnnHandle_t h_ = nullptr;
};

// The convolution plans of one device (conv.cu): descriptors and chosen algorithms per shape.
struct ConvPlanCache;
struct ConvPlanCacheDeleter {
  void operator()(ConvPlanCache* c) const noexcept;  // conv.cu, where the type is complete
};

// The RNN plans of one device (rnn.cu): cuDNN RNN descriptors, weight layouts and per-shape
// data descriptors, plus the device's one (dropout 0) dropout descriptor.
struct RnnPlanCache;
struct RnnPlanCacheDeleter {
  void operator()(RnnPlanCache* c) const noexcept;  // rnn.cu
};

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
  cudnnHandle_t cudnn();    // created at first use, bound to stream()
  ConvPlanCache& conv_plans();  // created at first use (conv.cu)
  RnnPlanCache& rnn_plans();    // created at first use (rnn.cu)
  // Most blocks a grid-stride kernel needs to fill the device (what grid() returns for large n).
  int64_t max_blocks() const { return max_blocks_; }
  int grid(int64_t n) const { return static_cast<int>(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, max_blocks_)); }

  const char* name() const override { return "cuda"; }
  int device_count() const override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) noexcept override;
  void copy(void* dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void synchronize() override;
  DeviceProperties properties() override;
  void* native_stream() const override { return stream_; }

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
  void check_indices(const int64_t* indices, int64_t n, int64_t limit, const char* op, IndexKind kind) override;

  void embedding_forward(DType dtype, void* y, const void* weight, const int64_t* indices, int64_t n, int64_t num,
                         int64_t dim) override;
  void embedding_backward(DType dtype, void* dweight, const void* dy, const int64_t* indices, int64_t n, int64_t num,
                          int64_t dim, int64_t padding_idx) override;

  int64_t rnn_weight_layout(DType dtype, const RnnShape& s, int64_t* offsets) override;
  size_t rnn_reserve_bytes(DType dtype, const RnnShape& s) override;
  void rnn_forward(DType dtype, const RnnShape& s, void* y, void* hy, void* cy, void* reserve, const void* x,
                   const void* hx, const void* cx, const void* w) override;
  void rnn_backward(DType dtype, const RnnShape& s, void* dx, void* dhx, void* dcx, void* dw, const void* dy,
                    const void* dhy, const void* dcy, const void* x, const void* hx, const void* cx, const void* w,
                    const void* y, void* reserve) override;

  void conv2d_forward(DType dtype, void* y, const void* x, const void* weight, const void* bias,
                      const Conv2dShape& s) override;
  void conv2d_backward_data(DType dtype, void* dx, const void* dy, const void* weight, const Conv2dShape& s) override;
  void conv2d_backward_weight(DType dtype, void* dweight, const void* dy, const void* x,
                              const Conv2dShape& s) override;
  void conv2d_backward_bias(DType dtype, void* dbias, const void* dy, const Conv2dShape& s) override;

  void max_pool2d_forward(DType dtype, void* y, int64_t* indices, const void* x, const Pool2dShape& s) override;
  void max_pool2d_backward(DType dtype, void* dx, const void* dy, const int64_t* indices,
                           const Pool2dShape& s) override;
  void avg_pool2d_forward(DType dtype, void* y, const void* x, const Pool2dShape& s, bool count_include_pad) override;
  void avg_pool2d_backward(DType dtype, void* dx, const void* dy, const Pool2dShape& s,
                           bool count_include_pad) override;

  void batch_norm_forward_train(DType dtype, void* y, void* save_mean, void* save_invstd, void* running_mean,
                                void* running_var, const void* x, const void* weight, const void* bias, int64_t n,
                                int64_t c, int64_t m, double momentum, double eps) override;
  void batch_norm_forward_eval(DType dtype, void* y, const void* x, const void* running_mean,
                               const void* running_var, const void* weight, const void* bias, int64_t n, int64_t c,
                               int64_t m, double eps) override;
  void batch_norm_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                           const void* save_mean, const void* save_invstd, const void* weight, int64_t n, int64_t c,
                           int64_t m) override;

  void foreach(ForeachOp op, DType dtype, const ForeachLists& l) override;

  // Device-side index checks (labels, embedding rows) record failures in flags_; the next
  // synchronizing call reads them and throws (backend.cu).
  static constexpr int kFlagsSize = 8;

 private:
  void throw_pending_check_failure();  // after a stream synchronization
  void reset_flags();

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  CudnnHandle cudnn_;
  std::unique_ptr<ConvPlanCache, ConvPlanCacheDeleter> conv_plans_;
  std::unique_ptr<RnnPlanCache, RnnPlanCacheDeleter> rnn_plans_;
  int64_t max_blocks_ = 1;
  int64_t* flags_ = nullptr;
  std::mutex mu_;
  bool checks_pending_ = false;  // index checks enqueued since the last synchronization

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

// Device scratch memory from a backend's stream-ordered pool for the length of a scope: freed
// (in stream order, after the work enqueued meanwhile) when the scope ends, also on a throw.
class ScratchLease {
 public:
  ScratchLease(CudaBackend& be, size_t nbytes) : be_(be), nbytes_(nbytes), p_(be.allocate(nbytes)) {}
  ~ScratchLease() { be_.deallocate(p_, nbytes_); }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  void* get() const { return p_; }
  size_t size() const { return nbytes_; }

 private:
  CudaBackend& be_;
  size_t nbytes_;
  void* p_;
};

// Per-channel sums over x (n, c, m) contiguous (norm.cu): out[ch] = sum over n and m, summed in
// double in a fixed order (deterministic). Assigns out (c); n == 0 gives zeros.
void channel_sum(CudaBackend& be, float* out, const float* x, int64_t n, int64_t c, int64_t m);
void channel_sum(CudaBackend& be, double* out, const double* x, int64_t n, int64_t c, int64_t m);

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

#define NABLA_CUDNN_CHECK(call)                                      \
  do {                                                               \
    ::nabla::cuda::check_cudnn((call), #call, __FILE__, __LINE__);   \
  } while (0)
