// oneDNN GEMM for the CPU backend (see dnnl_gemm.h).
#include <nabla/cpu/dnnl_gemm.h>

#include <nabla/core/error.h>

#if NABLA_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace nabla::cpu::dnnl_gemm {

#if NABLA_WITH_DNNL

namespace {

enum class Choice { by_shape, onednn, openblas };

Choice read_choice() {
  const char* e = std::getenv("NABLA_CPU_GEMM");
  if (e == nullptr || *e == '\0') return Choice::by_shape;
  if (std::strcmp(e, "onednn") == 0) return Choice::onednn;
  if (std::strcmp(e, "openblas") == 0) return Choice::openblas;
  fail("NABLA_CPU_GEMM is '{}', expected 'onednn' or 'openblas'", e);
}

constexpr double kLargest = 1073741824.0;  // 2^30 multiply-adds: from there OpenBLAS keeps the product

}  // namespace

std::atomic<int> g_forced{-1};

bool use_for(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, bool blas_generic) {
  static const Choice configured = read_choice();
  const int forced = g_forced.load(std::memory_order_relaxed);
  const Choice choice = forced < 0 ? configured : forced == 1 ? Choice::onednn : Choice::openblas;
  switch (choice) {
    case Choice::onednn: return true;
    case Choice::openblas: return false;
    case Choice::by_shape: break;
  }
  if (blas_generic) return true;
  if (trans_a && !trans_b) return false;
  return double(m) * double(n) * double(k) < kLargest;
}

int force(int which) { return g_forced.exchange(which < 0 ? -1 : which > 0 ? 1 : 0); }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const dnnl_status_t st =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    fail("cpu gemm (oneDNN): status {} for m={} n={} k={} lda={} ldb={} ldc={}; NABLA_CPU_GEMM=openblas uses "
         "OpenBLAS",
         static_cast<int>(st), m, n, k, lda, ldb, ldc);
}

#else  // no oneDNN in this build

bool use_for(bool, bool, int64_t, int64_t, int64_t, bool) { return false; }
int force(int) { return -1; }
void sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
           int64_t) {
  fail("cpu gemm: nabla was built without oneDNN");
}

#endif

}  // namespace nabla::cpu::dnnl_gemm
