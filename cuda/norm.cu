// CUDA batch normalization over x (n, c, m) contiguous, statistics per channel over n and m, and
// the per-channel sum that the convolution's bias gradient uses. Semantics: core/backend.h; the
// CPU backend (cpu/) is the reference.
//
// Every per-channel statistic goes through channel_reduce.cuh: partials over pieces of a
// channel, then one thread per channel merging its partials in order, so the results do not
// depend on timing (deterministic, no atomics) and a channel with many elements is spread over
// many blocks. Then an elementwise kernel applies the statistics.
//
// Numerics: mean and variance by Welford's update per thread, Chan's merge between partials,
// both in double for either dtype, so neither large means nor long channels lose the variance to
// cancellation (the textbook E[x^2] - E[x]^2 would). y is formed in double as x * scale + shift
// from the unrounded statistics, like the CPU. The backward sums (of dy and dy * xhat)
// accumulate in double too, and dx is formed in double before rounding to the element type.
//
// Scratch (partials, per-channel coefficients) comes from the stream-ordered pool and is freed
// in stream order right after the launches that use it. Nothing here synchronizes.
#include <nabla/cuda/channel_reduce.cuh>
#include <nabla/cuda/cuda_backend.h>

#include <cstdint>
#include <type_traits>

namespace nabla::cuda {

namespace {

using channel::Split;


// Mean and sum of squared deviations of the elements seen (Welford / Chan).
template <typename T>
struct MeanVarOp {
  struct Acc {
    double count, mean, m2;
  };
  const T* x;  // (n, c, m)
  static __device__ Acc identity() { return {0.0, 0.0, 0.0}; }
  static __device__ Acc merge(const Acc& a, const Acc& b) {
    const double count = a.count + b.count;
    if (count == 0) return a;
    const double d = b.mean - a.mean, fb = b.count / count;
    return {count, a.mean + d * fb, a.m2 + b.m2 + d * d * a.count * fb};
  }
  __device__ void push(Acc& a, int64_t idx, int64_t) const {
    const double v = static_cast<double>(x[idx]);
    a.count += 1;
    const double d = v - a.mean;
    a.mean += d / a.count;
    a.m2 += d * (v - a.mean);
  }
};

// Sums of dy and of dy * xhat, xhat = (x - mean) * invstd, for the backward.
template <typename T>
struct GradSumsOp {
  struct Acc {
    double dy, dy_xhat;
  };
  const T* dy;      // (n, c, m)
  const T* x;       // (n, c, m)
  const T* mean;    // (c)
  const T* invstd;  // (c)
  static __device__ Acc identity() { return {0.0, 0.0}; }
  static __device__ Acc merge(const Acc& a, const Acc& b) { return {a.dy + b.dy, a.dy_xhat + b.dy_xhat}; }
  __device__ void push(Acc& a, int64_t idx, int64_t ch) const {
    const double g = static_cast<double>(dy[idx]);
    const double xhat = (static_cast<double>(x[idx]) - static_cast<double>(mean[ch])) * static_cast<double>(invstd[ch]);
    a.dy += g;
    a.dy_xhat += g * xhat;
  }
};

// ---- forward, training -------------------------------------------------------------------------

// save_mean, save_invstd: (c); running_mean, running_var: (c) or null; coef: (c, 2) = (scale,
// shift) with y = x * scale + shift, in double from the unrounded statistics (as the CPU);
// weight, bias: (c) or null; partials: (c, pieces). One thread per channel.
template <typename T>
__global__ void bn_stats_kernel(T* save_mean, T* save_invstd, T* running_mean, T* running_var, double* coef,
                                const T* weight, const T* bias, const typename MeanVarOp<T>::Acc* partials, int64_t c,
                                int64_t pieces, double momentum, double eps) {
  for (int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; ch < c; ch += int64_t{gridDim.x} * blockDim.x) {
    const auto acc = channel::merge_pieces<MeanVarOp<T>>(partials + ch * pieces, pieces);
    const double var = acc.m2 / acc.count;  // biased: normalization uses it
    const double invstd = 1.0 / ::sqrt(var + eps);
    save_mean[ch] = static_cast<T>(acc.mean);
    save_invstd[ch] = static_cast<T>(invstd);
    const double scale = (weight ? static_cast<double>(weight[ch]) : 1.0) * invstd;
    coef[2 * ch] = scale;
    coef[2 * ch + 1] = (bias ? static_cast<double>(bias[ch]) : 0.0) - acc.mean * scale;
    if (running_mean)
      running_mean[ch] = static_cast<T>((1 - momentum) * static_cast<double>(running_mean[ch]) + momentum * acc.mean);
    // Unbiased for the running estimate; with a single element there is none, so it stays.
    if (running_var && acc.count > 1)
      running_var[ch] = static_cast<T>((1 - momentum) * static_cast<double>(running_var[ch]) +
                                       momentum * (acc.m2 / (acc.count - 1)));
  }
}

// y, x: (n, c, m); coef: (c, 2), see bn_stats_kernel. y may equal x.
template <typename T>
__global__ void bn_apply_kernel(T* y, const T* x, const double* coef, int64_t total, int64_t c, int64_t m) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ch = (i / m) % c;
    y[i] = static_cast<T>(static_cast<double>(x[i]) * coef[2 * ch] + coef[2 * ch + 1]);
  }
}

// ---- forward, evaluation -------------------------------------------------------------------------

// y, x: (n, c, m); running_mean, running_var: (c); weight, bias: (c) or null. y may equal x.
// In double, as y = x * scale + shift with the channel's scale and shift (as the CPU).
template <typename T>
__global__ void bn_eval_kernel(T* y, const T* x, const T* running_mean, const T* running_var, const T* weight,
                               const T* bias, int64_t total, int64_t c, int64_t m, double eps) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ch = (i / m) % c;
    const double scale =
        (weight ? static_cast<double>(weight[ch]) : 1.0) / ::sqrt(static_cast<double>(running_var[ch]) + eps);
    const double shift = (bias ? static_cast<double>(bias[ch]) : 0.0) - static_cast<double>(running_mean[ch]) * scale;
    y[i] = static_cast<T>(static_cast<double>(x[i]) * scale + shift);
  }
}

// ---- backward ------------------------------------------------------------------------------------

// Per channel: coef (c, 3) = (weight * invstd, mean of dy, mean of dy * xhat), from which
// dx = coef0 * (dy - coef1 - xhat * coef2), the contract's
// weight * invstd / N * (N dy - dbias - xhat dweight). dweight, dbias: (c) or null; weight: (c)
// or null (1). One thread per channel.
template <typename T>
__global__ void bn_backward_sums_kernel(T* dweight, T* dbias, double* coef, const typename GradSumsOp<T>::Acc* partials,
                                        const T* weight, const T* invstd, int64_t c, int64_t pieces, double count) {
  for (int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; ch < c; ch += int64_t{gridDim.x} * blockDim.x) {
    const auto acc = channel::merge_pieces<GradSumsOp<T>>(partials + ch * pieces, pieces);
    if (dweight) dweight[ch] = static_cast<T>(acc.dy_xhat);
    if (dbias) dbias[ch] = static_cast<T>(acc.dy);
    const double w = weight ? static_cast<double>(weight[ch]) : 1.0;
    coef[3 * ch] = w * static_cast<double>(invstd[ch]);
    coef[3 * ch + 1] = acc.dy / count;
    coef[3 * ch + 2] = acc.dy_xhat / count;
  }
}

// dx, dy, x: (n, c, m); mean, invstd: (c); coef: (c, 3). dx may equal dy.
template <typename T>
__global__ void bn_backward_dx_kernel(T* dx, const T* dy, const T* x, const T* mean, const T* invstd,
                                      const double* coef, int64_t total, int64_t c, int64_t m) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ch = (i / m) % c;
    const double xhat = (static_cast<double>(x[i]) - static_cast<double>(mean[ch])) * static_cast<double>(invstd[ch]);
    dx[i] = static_cast<T>(coef[3 * ch] * (static_cast<double>(dy[i]) - coef[3 * ch + 1] - xhat * coef[3 * ch + 2]));
  }
}

// ---- per-channel sum -----------------------------------------------------------------------------

// out: (c); partials: (c, pieces). One thread per channel.
template <typename T>
__global__ void channel_sum_finish_kernel(T* out, const typename channel::SumOp<T>::Acc* partials, int64_t c,
                                          int64_t pieces) {
  for (int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; ch < c; ch += int64_t{gridDim.x} * blockDim.x)
    out[ch] = static_cast<T>(channel::merge_pieces<channel::SumOp<T>>(partials + ch * pieces, pieces).s);
}

// ---- launchers -----------------------------------------------------------------------------------

template <typename T>
void bn_train(CudaBackend& be, T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x,
              const T* weight, const T* bias, int64_t n, int64_t c, int64_t m, double momentum, double eps) {
  using Op = MeanVarOp<T>;
  const Split s = channel::split_for(be, n, c, m);
  const size_t partial_bytes = sizeof(typename Op::Acc) * size_t(c * s.pieces);  // a multiple of 8
  ScratchLease scratch(be, partial_bytes + sizeof(double) * 2 * size_t(c));
  auto* p = static_cast<typename Op::Acc*>(scratch.get());
  auto* coef = reinterpret_cast<double*>(static_cast<char*>(scratch.get()) + partial_bytes);
  channel::launch_partials(be, p, Op{x}, s, n, c, m);
  bn_stats_kernel<T><<<be.grid(c), kBlock, 0, be.stream()>>>(save_mean, save_invstd, running_mean, running_var, coef,
                                                               weight, bias, p, c, s.pieces, momentum, eps);
  NABLA_CUDA_CHECK_LAUNCH();
  const int64_t total = n * c * m;
  bn_apply_kernel<T><<<be.grid(total), kBlock, 0, be.stream()>>>(y, x, coef, total, c, m);
  NABLA_CUDA_CHECK_LAUNCH();
}

template <typename T>
void bn_backward(CudaBackend& be, T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean,
                 const T* invstd, const T* weight, int64_t n, int64_t c, int64_t m) {
  using Op = GradSumsOp<T>;
  const Split s = channel::split_for(be, n, c, m);
  const size_t partial_bytes = sizeof(typename Op::Acc) * size_t(c * s.pieces);
  ScratchLease scratch(be, partial_bytes + sizeof(double) * 3 * size_t(c));  // Acc is 16 bytes: coef stays aligned
  auto* p = static_cast<typename Op::Acc*>(scratch.get());
  auto* coef = reinterpret_cast<double*>(static_cast<char*>(scratch.get()) + partial_bytes);
  channel::launch_partials(be, p, Op{dy, x, mean, invstd}, s, n, c, m);
  bn_backward_sums_kernel<T><<<be.grid(c), kBlock, 0, be.stream()>>>(dweight, dbias, coef, p, weight, invstd, c,
                                                                       s.pieces, static_cast<double>(n * m));
  NABLA_CUDA_CHECK_LAUNCH();
  const int64_t total = n * c * m;
  bn_backward_dx_kernel<T><<<be.grid(total), kBlock, 0, be.stream()>>>(dx, dy, x, mean, invstd, coef, total, c, m);
  NABLA_CUDA_CHECK_LAUNCH();
}

template <typename T>
void channel_sum_impl(CudaBackend& be, T* out, const T* x, int64_t n, int64_t c, int64_t m) {
  if (c == 0) return;
  if (n * m == 0) {
    be.fill(std::is_same_v<T, float> ? DType::float32 : DType::float64, out, c, 0.0);
    return;
  }
  using Op = channel::SumOp<T>;
  const Split s = channel::split_for(be, n, c, m);
  ScratchLease partials(be, sizeof(typename Op::Acc) * size_t(c * s.pieces));
  auto* p = static_cast<typename Op::Acc*>(partials.get());
  channel::launch_partials(be, p, Op{x}, s, n, c, m);
  channel_sum_finish_kernel<T><<<be.grid(c), kBlock, 0, be.stream()>>>(out, p, c, s.pieces);
  NABLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void channel_sum(CudaBackend& be, float* out, const float* x, int64_t n, int64_t c, int64_t m) {
  channel_sum_impl(be, out, x, n, c, m);
}
void channel_sum(CudaBackend& be, double* out, const double* x, int64_t n, int64_t c, int64_t m) {
  channel_sum_impl(be, out, x, n, c, m);
}

void CudaBackend::batch_norm_forward_train(DType dtype, void* y, void* save_mean, void* save_invstd,
                                           void* running_mean, void* running_var, const void* x, const void* weight,
                                           const void* bias, int64_t n, int64_t c, int64_t m, double momentum,
                                           double eps) {
  if (c == 0) return;
  NABLA_ASSERT(n * m >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "batch_norm_forward_train", [&](auto tag) {
    using T = decltype(tag);
    bn_train(*this, static_cast<T*>(y), static_cast<T*>(save_mean), static_cast<T*>(save_invstd),
             static_cast<T*>(running_mean), static_cast<T*>(running_var), static_cast<const T*>(x),
             static_cast<const T*>(weight), static_cast<const T*>(bias), n, c, m, momentum, eps);
  });
}

void CudaBackend::batch_norm_forward_eval(DType dtype, void* y, const void* x, const void* running_mean,
                                          const void* running_var, const void* weight, const void* bias, int64_t n,
                                          int64_t c, int64_t m, double eps) {
  const int64_t total = n * c * m;
  if (total == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "batch_norm_forward_eval", [&](auto tag) {
    using T = decltype(tag);
    bn_eval_kernel<T><<<grid(total), kBlock, 0, stream()>>>(
        static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(running_mean),
        static_cast<const T*>(running_var), static_cast<const T*>(weight), static_cast<const T*>(bias), total, c, m,
        eps);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::batch_norm_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy,
                                      const void* x, const void* save_mean, const void* save_invstd,
                                      const void* weight, int64_t n, int64_t c, int64_t m) {
  if (c == 0) return;
  NABLA_ASSERT(n * m >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "batch_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    bn_backward(*this, static_cast<T*>(dx), static_cast<T*>(dweight), static_cast<T*>(dbias),
                static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(save_mean),
                static_cast<const T*>(save_invstd), static_cast<const T*>(weight), n, c, m);
  });
}

}  // namespace nabla::cuda
