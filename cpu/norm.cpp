// CPU batch normalization: x (n, c, m), statistics per channel, parallel over channels.
// Sums are accumulated in double (two passes: mean, then squared deviations). float32 goes to
// oneDNN (dnnl_norm.h) where dnnl_norm::use_* says it is faster; float64 always stays here.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_norm.h>

#include <cmath>

namespace nabla::cpu {

namespace {

// Calls f(value) for every element of channel ch.
template <typename T, typename F>
void for_channel(const T* x, int64_t n, int64_t c, int64_t m, int64_t ch, F&& f) {
  for (int64_t i = 0; i < n; ++i) {
    const T* row = x + (i * c + ch) * m;
    for (int64_t j = 0; j < m; ++j) f(row[j]);
  }
}

template <typename T>
void bn_train(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x, const T* weight,
              const T* bias, int64_t n, int64_t c, int64_t m, double momentum, double eps) {
  const int64_t count = n * m;
  parallel_for(c, 3 * count, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      double sum = 0;
      for_channel(x, n, c, m, ch, [&](T v) { sum += double(v); });
      const double mean = sum / double(count);
      double sq = 0;
      for_channel(x, n, c, m, ch, [&](T v) { sq += (double(v) - mean) * (double(v) - mean); });
      const double var = sq / double(count);
      const double invstd = 1.0 / std::sqrt(var + eps);
      save_mean[ch] = T(mean);
      save_invstd[ch] = T(invstd);
      const double scale = (weight ? double(weight[ch]) : 1.0) * invstd;
      const double shift = (bias ? double(bias[ch]) : 0.0) - mean * scale;
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = x + (i * c + ch) * m;
        T* yr = y + (i * c + ch) * m;
        for (int64_t j = 0; j < m; ++j) yr[j] = T(double(xr[j]) * scale + shift);
      }
      if (running_mean) running_mean[ch] = T((1 - momentum) * double(running_mean[ch]) + momentum * mean);
      if (running_var && count > 1)
        running_var[ch] =
            T((1 - momentum) * double(running_var[ch]) + momentum * var * double(count) / double(count - 1));
    }
  });
}

template <typename T>
void bn_eval(T* y, const T* x, const T* running_mean, const T* running_var, const T* weight, const T* bias,
             int64_t n, int64_t c, int64_t m, double eps) {
  parallel_for(c, n * m, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      const double invstd = 1.0 / std::sqrt(double(running_var[ch]) + eps);
      const double scale = (weight ? double(weight[ch]) : 1.0) * invstd;
      const double shift = (bias ? double(bias[ch]) : 0.0) - double(running_mean[ch]) * scale;
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = x + (i * c + ch) * m;
        T* yr = y + (i * c + ch) * m;
        for (int64_t j = 0; j < m; ++j) yr[j] = T(double(xr[j]) * scale + shift);
      }
    }
  });
}

template <typename T>
void bn_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                 const T* weight, int64_t n, int64_t c, int64_t m) {
  const int64_t count = n * m;
  parallel_for(c, 3 * count, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      const double mean = double(save_mean[ch]), invstd = double(save_invstd[ch]);
      double sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = x + (i * c + ch) * m;
        const T* gr = dy + (i * c + ch) * m;
        for (int64_t j = 0; j < m; ++j) {
          sum_dy += double(gr[j]);
          sum_dy_xhat += double(gr[j]) * (double(xr[j]) - mean) * invstd;
        }
      }
      if (dweight) dweight[ch] = T(sum_dy_xhat);
      if (dbias) dbias[ch] = T(sum_dy);
      // dx = w invstd / N (N dy - sum dy - xhat sum(dy xhat))
      const double k = (weight ? double(weight[ch]) : 1.0) * invstd / double(count);
      for (int64_t i = 0; i < n; ++i) {
        const T* xr = x + (i * c + ch) * m;
        const T* gr = dy + (i * c + ch) * m;
        T* dr = dx + (i * c + ch) * m;
        for (int64_t j = 0; j < m; ++j) {
          const double xhat = (double(xr[j]) - mean) * invstd;
          dr[j] = T(k * (double(count) * double(gr[j]) - sum_dy - xhat * sum_dy_xhat));
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::batch_norm_forward_train(DType dtype, void* y, void* save_mean, void* save_invstd,
                                          void* running_mean, void* running_var, const void* x,
                                          const void* weight, const void* bias, int64_t n, int64_t c,
                                          int64_t m, double momentum, double eps) {
  if (dtype == DType::float32 && dnnl_norm::use_forward_train(n, c, m))
    return dnnl_norm::forward_train(static_cast<float*>(y), static_cast<float*>(save_mean),
                                    static_cast<float*>(save_invstd), static_cast<float*>(running_mean),
                                    static_cast<float*>(running_var), static_cast<const float*>(x),
                                    static_cast<const float*>(weight), static_cast<const float*>(bias), n, c, m,
                                    momentum, eps);
  dispatch_floating(dtype, "batch_norm_forward_train", [&](auto tag) {
    using T = decltype(tag);
    bn_train(static_cast<T*>(y), static_cast<T*>(save_mean), static_cast<T*>(save_invstd),
             static_cast<T*>(running_mean), static_cast<T*>(running_var), static_cast<const T*>(x),
             static_cast<const T*>(weight), static_cast<const T*>(bias), n, c, m, momentum, eps);
  });
}

void CpuBackend::batch_norm_forward_eval(DType dtype, void* y, const void* x, const void* running_mean,
                                         const void* running_var, const void* weight, const void* bias,
                                         int64_t n, int64_t c, int64_t m, double eps) {
  if (dtype == DType::float32 && dnnl_norm::use_forward_eval(n, c, m))
    return dnnl_norm::forward_eval(static_cast<float*>(y), static_cast<const float*>(x),
                                   static_cast<const float*>(running_mean), static_cast<const float*>(running_var),
                                   static_cast<const float*>(weight), static_cast<const float*>(bias), n, c, m, eps);
  dispatch_floating(dtype, "batch_norm_forward_eval", [&](auto tag) {
    using T = decltype(tag);
    bn_eval(static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(running_mean),
            static_cast<const T*>(running_var), static_cast<const T*>(weight), static_cast<const T*>(bias), n, c,
            m, eps);
  });
}

void CpuBackend::batch_norm_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy,
                                     const void* x, const void* save_mean, const void* save_invstd,
                                     const void* weight, int64_t n, int64_t c, int64_t m) {
  if (dtype == DType::float32 && dnnl_norm::use_backward(n, c, m))
    return dnnl_norm::backward(static_cast<float*>(dx), static_cast<float*>(dweight), static_cast<float*>(dbias),
                               static_cast<const float*>(dy), static_cast<const float*>(x),
                               static_cast<const float*>(save_mean), static_cast<const float*>(save_invstd),
                               static_cast<const float*>(weight), n, c, m);
  dispatch_floating(dtype, "batch_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    bn_backward(static_cast<T*>(dx), static_cast<T*>(dweight), static_cast<T*>(dbias), static_cast<const T*>(dy),
                static_cast<const T*>(x), static_cast<const T*>(save_mean), static_cast<const T*>(save_invstd),
                static_cast<const T*>(weight), n, c, m);
  });
}

}  // namespace nabla::cpu
