// CPU batched GEMM on OpenBLAS (CBLAS, row-major), one cblas_?gemm call per batch item.
//
// OpenBLAS threads each large product itself. A batch of small products is spread over our
// OpenMP threads instead, when OpenBLAS is its OpenMP build: that build shares our pool and
// runs a call made inside a parallel region on the calling thread, so the two never
// oversubscribe.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_gemm.h>

#include <cblas.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <string>

namespace nabla::cpu {

namespace {

// Whether OpenBLAS, which picks its kernels by the CPU model it recognizes when it loads, fell back
// to its generic ones on a CPU that has AVX2 and FMA (its kernels for those are Haswell and newer).
bool openblas_generic() {
  static const bool generic = [] {
    const char* core = openblas_get_corename();
    const std::string name = core != nullptr ? core : "";
    static const char* const kFast[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    const bool fast_kernels = std::any_of(std::begin(kFast), std::end(kFast), [&](const char* k) {
      return name == k;
    });
#if defined(__x86_64__)
    return !fast_kernels && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    (void)fast_kernels;
    return false;
#endif
  }();
  return generic;
}

}  // namespace

void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (dnnl_gemm::use_for(trans_a, trans_b, m, n, k, openblas_generic())) return dnnl_gemm::sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
              blasint(ldc));
}

void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
               int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
              blasint(ldc));
}

namespace {

// Below this many multiply-adds one product is too small for OpenBLAS to thread well, so a
// batch of them is worth spreading over threads.
constexpr int64_t kSmallProduct = int64_t{1} << 18;

// C = beta * C, for k == 0 where BLAS may reject the leading dimensions. beta == 0 writes
// zeros without reading C, as BLAS does.
template <typename T>
void scale_c(T* c, int64_t m, int64_t n, int64_t ldc, T beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

// a: (batch, m, k) or (batch, k, m) when trans_a, rows lda apart, items stride_a apart;
// b: (batch, k, n) or (batch, n, k) when trans_b; c: (batch, m, n).
template <typename T>
void gemm_impl(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta,
               T* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < batch; ++i) scale_c(c + i * stride_c, m, n, ldc, beta);
    return;
  }
  // BLAS rejects (prints and ignores) a leading dimension shorter than a row; say so instead.
  const int64_t a_row = trans_a ? m : k, b_row = trans_b ? k : n;
  NABLA_ASSERT(lda >= a_row && ldb >= b_row && ldc >= n);
  constexpr int64_t kMaxInt = std::numeric_limits<blasint>::max();
  if (m > kMaxInt || n > kMaxInt || k > kMaxInt || lda > kMaxInt || ldb > kMaxInt || ldc > kMaxInt)
    fail("cpu gemm: sizes m={} n={} k={} (lda={} ldb={} ldc={}) exceed the {}-bit BLAS index", m, n,
         k, lda, ldb, ldc, 8 * sizeof(blasint));
  auto item = [&](int64_t i) {
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
              c + i * stride_c, ldc);
  };
  const int64_t flops = m * n * k;
  // stride_c == 0 would have the items race on one C.
  if (kBlasSharesOurThreads && batch > 1 && stride_c != 0 && flops < kSmallProduct) {
    parallel_for(batch, flops / 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) item(i);
    });
    return;
  }
  for (int64_t i = 0; i < batch; ++i) item(i);
}

}  // namespace

void CpuBackend::gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      double alpha, const void* a, int64_t lda, int64_t stride_a, const void* b,
                      int64_t ldb, int64_t stride_b, double beta, void* c, int64_t ldc,
                      int64_t stride_c, int64_t batch) {
  dispatch_floating(dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    gemm_impl(trans_a, trans_b, m, n, k, T(alpha), static_cast<const T*>(a), lda, stride_a,
              static_cast<const T*>(b), ldb, stride_b, T(beta), static_cast<T*>(c), ldc, stride_c,
              batch);
  });
}

}  // namespace nabla::cpu
