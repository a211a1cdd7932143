// float32 matrix products on oneDNN's GEMM (dnnl_sgemm: JIT kernels for the CPU it runs on, found
// at run time), an alternative to OpenBLAS for gemm.cpp. Internal to cpu/.
#pragma once

#include <nabla/export.h>

#include <cstdint>

namespace nabla::cpu::dnnl_gemm {

// Whether this float32 product goes to oneDNN (built with it). NABLA_CPU_GEMM ("onednn" or
// "openblas", read once) sends every product to one library. Otherwise, when OpenBLAS runs its
// generic kernels on a CPU with AVX2 (`blas_generic`: a CPU model it does not recognize, e.g. a
// new Xeon under a hypervisor, which it names "Prescott"), every product goes to oneDNN, whose
// JIT kernels follow the instruction sets the CPU reports. Else oneDNN takes the products where
// it measured faster on the workloads' shapes (2-core AMD EPYC, AVX2, 2026-12-03: 1.1x to 1.9x
// for the Dense and recurrent shapes below 2^30 multiply-adds, forward and input gradient),
// OpenBLAS the weight gradients (op(A) = A^T: a reduction over the batch, 0.8x to 1.1x on oneDNN)
// and the largest products (mlp_wide's 4096-wide layers: 0.95x to 1.05x).
NABLA_INTERNAL_API bool use_for(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, bool blas_generic);

// For tests, which compare the two: 1 sends every float32 product to oneDNN, 0 to OpenBLAS, -1
// restores the choice above. Returns the previous setting. Not while other threads compute.
NABLA_INTERNAL_API int force(int which);

// C[m, n] = alpha op(A) op(B) + beta C, row-major, as blas_gemm (cpu_backend.h).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace nabla::cpu::dnnl_gemm
