// CpuBackend: the CPU implementation of nabla::Backend, and the helpers its kernel files share.
//
// Internal to cpu/: nothing outside this folder includes it. The methods are defined one op
// family per file (backend.cpp, elementwise.cpp, reduce.cpp, gemm.cpp, softmax.cpp, foreach.cpp,
// random.cpp, conv.cpp, pool.cpp, norm.cpp, embedding.cpp, rnn.cpp); the semantics of each are in core/backend.h.
#pragma once

#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/core/unary_ops.h>

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace nabla::cpu {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  int device_count() const override { return 1; }

  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) noexcept override;
  void copy(void* dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void synchronize() override {}
  DeviceProperties properties() override;

  void fill(DType dtype, void* out, int64_t n, double value) override;
  void copy_strided(DType dtype, void* out, const void* a, const StridedLayout& l) override;
  void cast(DType out_dtype, void* out, DType a_dtype, const void* a, int64_t n) override;

  void rand_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset, double lo,
                    double hi) override;
  void rand_normal(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset, double mean,
                   double stddev) override;

  void unary(UnaryOp op, DType dtype, void* y, const void* x, int64_t n, double a,
             double b) override;
  void unary_backward(UnaryOp op, DType dtype, void* dx, const void* dy, const void* x,
                      const void* y, int64_t n, double a, double b) override;
  void binary(BinaryOp op, DType dtype, void* out, const void* a, const void* b,
              const StridedLayout& l) override;

  void reduce(ReduceOp op, DType dtype, void* out, const void* x, int64_t outer, int64_t r,
              int64_t inner) override;
  void argmax(DType dtype, int64_t* out, const void* x, int64_t outer, int64_t r,
              int64_t inner) override;

  void gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
            const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb,
            int64_t stride_b, double beta, void* c, int64_t ldc, int64_t stride_c,
            int64_t batch) override;

  void softmax(DType dtype, void* y, const void* x, int64_t outer, int64_t n, int64_t inner,
               bool log) override;
  void softmax_backward(DType dtype, void* dx, const void* dy, const void* y, int64_t outer,
                        int64_t n, int64_t inner, bool log) override;
  void nll(DType dtype, void* loss, const void* logp, const int64_t* labels, int64_t n,
           int64_t c) override;
  void nll_backward(DType dtype, void* dlogp, const void* dloss, const int64_t* labels, int64_t n,
                    int64_t c) override;
  void check_indices(const int64_t* indices, int64_t n, int64_t limit, const char* op, IndexKind kind) override;

  void embedding_forward(DType dtype, void* y, const void* weight, const int64_t* indices, int64_t n, int64_t num,
                         int64_t dim) override;
  void embedding_backward(DType dtype, void* dweight, const void* dy, const int64_t* indices, int64_t n, int64_t num,
                          int64_t dim, int64_t padding_idx) override;

  int64_t rnn_weight_layout(DType dtype, const RnnShape& s, int64_t* offsets) override;
  size_t rnn_reserve_bytes(DType dtype, const RnnShape& s) override;
  bool rnn_batch_major(DType dtype, const RnnShape& s) override;
  void rnn_forward(DType dtype, const RnnShape& s, void* y, void* hy, void* cy, void* reserve, const void* x,
                   const void* hx, const void* cx, const void* w) override;
  void rnn_backward(DType dtype, const RnnShape& s, void* dx, void* dhx, void* dcx, void* dw, const void* dy,
                    const void* dhy, const void* dcy, const void* x, const void* hx, const void* cx, const void* w,
                    const void* y, void* reserve) override;

  void conv2d_forward(DType dtype, void* y, const void* x, const void* weight, const void* bias,
                      const Conv2dShape& s) override;
  void conv2d_backward_data(DType dtype, void* dx, const void* dy, const void* weight,
                            const Conv2dShape& s) override;
  void conv2d_backward_weight(DType dtype, void* dweight, const void* dy, const void* x,
                              const Conv2dShape& s) override;
  void conv2d_backward_bias(DType dtype, void* dbias, const void* dy, const Conv2dShape& s) override;
  void conv2d_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                       const void* weight, const void* y, const Conv2dShape& s) override;
  bool conv2d_fuses_relu(DType) const override { return true; }

  void max_pool2d_forward(DType dtype, void* y, int64_t* indices, const void* x,
                          const Pool2dShape& s) override;
  void max_pool2d_backward(DType dtype, void* dx, const void* dy, const int64_t* indices,
                           const Pool2dShape& s) override;
  void avg_pool2d_forward(DType dtype, void* y, const void* x, const Pool2dShape& s,
                          bool count_include_pad) override;
  void avg_pool2d_backward(DType dtype, void* dx, const void* dy, const Pool2dShape& s,
                           bool count_include_pad) override;

  void batch_norm_forward_train(DType dtype, void* y, void* save_mean, void* save_invstd,
                                void* running_mean, void* running_var, const void* x,
                                const void* weight, const void* bias, int64_t n, int64_t c,
                                int64_t m, double momentum, double eps) override;
  void batch_norm_forward_eval(DType dtype, void* y, const void* x, const void* running_mean,
                               const void* running_var, const void* weight, const void* bias,
                               int64_t n, int64_t c, int64_t m, double eps) override;
  void batch_norm_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy,
                           const void* x, const void* save_mean, const void* save_invstd,
                           const void* weight, int64_t n, int64_t c, int64_t m) override;

  void foreach(ForeachOp op, DType dtype, const ForeachLists& l) override;
};

// Below this much work (elements touched) a kernel runs on the calling thread: on a 2-core
// machine the fork/join of an OpenMP region costs more than it saves for small tensors.
constexpr int64_t kParallelWork = int64_t{1} << 15;

// Calls body(begin, end) on contiguous slices of [0, count) that cover it, in parallel when
// count * work_per_item reaches kParallelWork. Each thread gets one slice, so body can set up
// per-slice state (an index odometer, a partial sum) once.
template <typename Body>
void parallel_for(int64_t count, int64_t work_per_item, Body&& body) {
  if (count <= 0) return;
  if (count == 1 || count * std::max<int64_t>(work_per_item, 1) < kParallelWork ||
      omp_in_parallel() || omp_get_max_threads() == 1) {
    body(int64_t{0}, count);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t t = omp_get_thread_num();
    const int64_t begin = count * t / nt;
    const int64_t end = count * (t + 1) / nt;
    if (begin < end) body(begin, end);
  }
}

// A ReLU fused into another kernel (Conv2dShape::relu) computes what the relu op does
// (unary_ops::relu: max(v, 0) with NaN kept) and masks its gradient as the op's backward does.
template <typename T>
T fused_relu(T v) {
  return unary_ops::relu::value(v, T(0), T(0));
}
template <typename T>
T fused_relu_grad(T g, T y) {
  return unary_ops::relu::grad(g, y, T(0), T(0));  // y > 0 exactly where the input was > 0
}

template <typename T>
void relu_in_place(T* y, int64_t n) {
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = fused_relu(y[i]);
  });
}

// g = dy where y > 0, else 0.
template <typename T>
void relu_mask(T* g, const T* dy, const T* y, int64_t n) {
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) g[i] = fused_relu_grad(dy[i], y[i]);
  });
}

// Whether OpenBLAS runs on our OpenMP threads. Its OpenMP build shares our pool and runs a call
// made inside a parallel region on the calling thread, so many small products can be spread over
// our threads; the pthread build would start threads of its own from inside each of ours.
#ifdef NABLA_OPENBLAS_PTHREAD
constexpr bool kBlasSharesOurThreads = false;
#else
constexpr bool kBlasSharesOurThreads = true;
#endif

// One row-major product through CBLAS (gemm.cpp): C[m, n] = alpha op(A) op(B) + beta C. Sizes
// must fit BLAS's index type (checked by the callers).
void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
               int64_t ldc);

// Calls f(T{}) with T the C++ type of a floating dtype; other dtypes are an error naming the
// kernel.
template <typename F>
decltype(auto) dispatch_floating(DType dtype, const char* kernel, F&& f) {
  switch (dtype) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
    default: break;
  }
  fail("cpu {}: dtype {} is not supported (float32 or float64 expected)", kernel,
       dtype_name(dtype));
}

// As dispatch_floating, for kernels that take every dtype.
template <typename F>
decltype(auto) dispatch_all(DType dtype, const char* kernel, F&& f) {
  switch (dtype) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
    case DType::int32: return f(int32_t{});
    case DType::int64: return f(int64_t{});
  }
  fail("cpu {}: unknown dtype code {}", kernel, static_cast<int>(dtype));
}

}  // namespace nabla::cpu
