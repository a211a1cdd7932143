// CUDA batched GEMM on cuBLAS. Same semantics as cpu/gemm.cpp, the reference: row-major
// C[m, n] = alpha * op(A) . op(B) + beta * C for each of `batch` items, k == 0 scaling C by beta
// (zeros, C unread, when beta == 0), bad leading dimensions an internal error.
//
// cuBLAS is column-major. A row-major matrix X (r rows, c columns, leading dimension ld) read
// column-major with the same ld is X^T (c rows, r columns). So:
//   C, row-major (m, n), ldc          -> column-major view C^T (n, m), ldc;
//   A, trans_a false: stored (m, k)   -> view A^T = op(A)^T (k, m), lda;
//      trans_a true:  stored (k, m)   -> view op(A) (m, k), lda;
//   B, trans_b false: stored (k, n)   -> view B^T = op(B)^T (n, k), ldb;
//      trans_b true:  stored (n, k)   -> view op(B) (k, n), ldb.
// C = op(A) op(B) is C^T = op(B)^T op(A)^T, an (n, k) by (k, m) product computed column-major:
//   first operand  = B's view, used as is when trans_b is false (it already is op(B)^T), else
//                    transposed: transa = trans_b ? T : N, its ld = ldb;
//   second operand = A's view, used as is when trans_a is false (it already is op(A)^T), else
//                    transposed: transb = trans_a ? T : N, its ld = lda;
//   sizes (cuBLAS m, n, k) = (n, m, k), output ld = ldc.
// cuBLAS's ld rules then read: ldb >= (trans_b ? k : n), lda >= (trans_a ? m : k), ldc >= n, the
// CPU's checks.
//
// Float32 runs in strict fp32 (CUBLAS_COMPUTE_32F; the handle keeps CUBLAS_DEFAULT_MATH, so no
// TF32) unless nabla::tf32_enabled(), which picks CUBLAS_COMPUTE_32F_FAST_TF32.
#include <nabla/core/config.h>
#include <nabla/cuda/cuda_backend.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>

namespace nabla::cuda {

namespace {

// c: (items, m, n), rows ldc apart, items stride_c apart (not overlapping). c = beta * c, the
// CPU's scale_c: beta == 0 writes zeros without reading c.
template <typename T>
__global__ void scale_kernel(T* c, int64_t items, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, T beta) {
  const int64_t per_item = m * n, total = items * per_item;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t item = k / per_item, rem = k - item * per_item;
    const int64_t row = rem / n, col = rem - row * n;
    T* p = c + item * stride_c + row * ldc + col;
    *p = beta == T(0) ? T(0) : beta * *p;
  }
}

template <typename T>
void launch_scale(const CudaBackend& be, T* c, int64_t items, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                  T beta) {
  scale_kernel<T><<<be.grid(items * m * n), kBlock, 0, be.stream()>>>(c, items, m, n, ldc, stride_c, beta);
  NABLA_CUDA_CHECK_LAUNCH();
}

// a: (batch, m, k) or (batch, k, m) when trans_a, rows lda apart, items stride_a apart;
// b: (batch, k, n) or (batch, n, k) when trans_b; c: (batch, m, n).
template <typename T>
void gemm_impl(CudaBackend& be, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
               int64_t stride_c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  // Items whose C overlap (stride_c == 0 accumulating into one C, above all) would race in one
  // batched call; the CPU runs them one after another, each with the same beta, and so do we,
  // in stream order. The test is conservative: an item spans (m - 1) * ldc + n elements.
  const bool c_overlaps = batch > 1 && std::abs(stride_c) < (m - 1) * ldc + n;
  if (k == 0) {
    if (c_overlaps) {
      for (int64_t i = 0; i < batch; ++i) launch_scale(be, c + i * stride_c, 1, m, n, ldc, 0, beta);
    } else {
      launch_scale(be, c, batch, m, n, ldc, stride_c, beta);
    }
    return;
  }
  const int64_t a_row = trans_a ? m : k, b_row = trans_b ? k : n;
  NABLA_ASSERT(lda >= a_row && ldb >= b_row && ldc >= n);
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (m > kMaxInt || n > kMaxInt || k > kMaxInt || lda > kMaxInt || ldb > kMaxInt || ldc > kMaxInt ||
      batch > kMaxInt)
    fail("cuda gemm: sizes m={} n={} k={} batch={} (lda={} ldb={} ldc={}) exceed cuBLAS's 32-bit int", m, n, k,
         batch, lda, ldb, ldc);

  constexpr bool kFloat = std::is_same_v<T, float>;
  constexpr cudaDataType_t type = kFloat ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      kFloat ? (tf32_enabled() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  // Derivation in the file comment: C^T = op(B)^T . op(A)^T, B first.
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int cm = static_cast<int>(n), cn = static_cast<int>(m), ck = static_cast<int>(k);
  // alpha and beta: host scalars of the compute type (float for both fp32 compute types).
  cublasHandle_t handle = be.cublas();
  if (batch == 1 || c_overlaps) {
    for (int64_t i = 0; i < batch; ++i) {
      NABLA_CUBLAS_CHECK(cublasGemmEx(handle, op_first, op_second, cm, cn, ck, &alpha, b + i * stride_b, type,
                                      static_cast<int>(ldb), a + i * stride_a, type, static_cast<int>(lda), &beta,
                                      c + i * stride_c, type, static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
    }
    return;
  }
  // A zero stride_a or stride_b reads one operand for every item; cuBLAS allows it.
  NABLA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, op_first, op_second, cm, cn, ck, &alpha, b, type,
                                                static_cast<int>(ldb), stride_b, a, type, static_cast<int>(lda),
                                                stride_a, &beta, c, type, static_cast<int>(ldc), stride_c,
                                                static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void CudaBackend::gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                       const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b,
                       double beta, void* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  DeviceGuard guard(device());
  dispatch_floating(dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    gemm_impl(*this, trans_a, trans_b, m, n, k, T(alpha), static_cast<const T*>(a), lda, stride_a,
              static_cast<const T*>(b), ldb, stride_b, T(beta), static_cast<T*>(c), ldc, stride_c, batch);
  });
}

}  // namespace nabla::cuda
