// CUDA max and average pooling over NCHW planes, forward and backward; own kernels, no cuDNN.
// Semantics: core/backend.h (Pool2dShape); the CPU backend (cpu/) is the reference.
//
// Forward: one thread per output element, walking its window in row-major order.
// Backward: one thread per *input* element, gathering from the output windows that cover it, in
// row-major window order. Every dx element is written exactly once, by one thread, summing in a
// fixed order: deterministic, no atomics, and no separate zero fill. Windows covering input row
// iy are those oy with oy * stride_h - pad_h <= iy <= oy * stride_h - pad_h + kh - 1 (columns
// likewise); see covering().
//
// Indices are 64-bit throughout; planes are (n * c) of h * w elements, walked by grid-stride
// loops over every element of the output (forward) or input (backward).
#include <nabla/cuda/cuda_backend.h>

#include <cstdint>

namespace nabla::cuda {

namespace {

// Plain-data copy of Pool2dShape for kernel arguments.
struct PoolGeom {
  int64_t h, w, oh, ow, kh, kw, sh, sw, ph, pw;
};

PoolGeom geom_of(const Pool2dShape& s) {
  return {s.h, s.w, s.oh, s.ow, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
}

// Outputs o in [first, last] (inclusive; empty when first > last) whose window along one axis
// covers input position i: o * stride - pad <= i and i <= o * stride - pad + k - 1, 0 <= o < out.
struct Range {
  int64_t first, last;
};
__device__ inline Range covering(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t out) {
  const int64_t hi = i + pad;      // o * stride <= hi
  const int64_t lo = hi - k + 1;   // o * stride >= lo
  int64_t first = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  int64_t last = hi / stride;      // hi >= 0 since pad >= 0 and i >= 0
  if (last > out - 1) last = out - 1;
  return {first, last};
}

// ---- max --------------------------------------------------------------------------------------

// y, indices: (planes, oh, ow); x: (planes, h, w). The first maximum in row-major window order
// wins; a NaN beats everything and the first NaN stays (v > best is false for NaN best).
template <typename T>
__global__ void max_pool_forward_kernel(T* y, int64_t* indices, const T* x, int64_t planes, PoolGeom g) {
  const int64_t total = planes * g.oh * g.ow;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < total; o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ox = o % g.ow, oy = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
    const T* in = x + plane * g.h * g.w;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    T best = T(0);
    int64_t where = -1;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = y0 + ky;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = x0 + kx;
        if (ix < 0 || ix >= g.w) continue;
        const T v = in[iy * g.w + ix];
        if (where < 0 || v > best || (v != v && best == best)) {
          best = v;
          where = iy * g.w + ix;
        }
      }
    }
    y[o] = best;  // every window holds an element of x (Pool2dShape), so where >= 0
    indices[o] = where;
  }
}

// dx: (planes, h, w); dy, indices: (planes, oh, ow).
template <typename T>
__global__ void max_pool_backward_kernel(T* dx, const T* dy, const int64_t* indices, int64_t planes, PoolGeom g) {
  const int64_t total = planes * g.h * g.w;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pos = i % (g.h * g.w), plane = i / (g.h * g.w);
    const int64_t iy = pos / g.w, ix = pos % g.w;
    const Range ry = covering(iy, g.kh, g.sh, g.ph, g.oh), rx = covering(ix, g.kw, g.sw, g.pw, g.ow);
    const int64_t base = plane * g.oh * g.ow;
    T sum = T(0);
    for (int64_t oy = ry.first; oy <= ry.last; ++oy)
      for (int64_t ox = rx.first; ox <= rx.last; ++ox) {
        const int64_t o = base + oy * g.ow + ox;
        if (indices[o] == pos) sum += dy[o];
      }
    dx[i] = sum;
  }
}

// ---- average ----------------------------------------------------------------------------------

// The divisor of window (oy, ox): kh * kw when padding counts, else the elements inside x.
__device__ inline int64_t avg_divisor(int64_t oy, int64_t ox, const PoolGeom& g, bool count_include_pad) {
  if (count_include_pad) return g.kh * g.kw;
  const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  const int64_t y_lo = y0 < 0 ? 0 : y0, y_hi = y0 + g.kh < g.h ? y0 + g.kh : g.h;
  const int64_t x_lo = x0 < 0 ? 0 : x0, x_hi = x0 + g.kw < g.w ? x0 + g.kw : g.w;
  return (y_hi - y_lo) * (x_hi - x_lo);
}

// y: (planes, oh, ow); x: (planes, h, w).
template <typename T>
__global__ void avg_pool_forward_kernel(T* y, const T* x, int64_t planes, PoolGeom g, bool count_include_pad) {
  const int64_t total = planes * g.oh * g.ow;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < total; o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ox = o % g.ow, oy = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
    const T* in = x + plane * g.h * g.w;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    T sum = T(0);
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = y0 + ky;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = x0 + kx;
        if (ix >= 0 && ix < g.w) sum += in[iy * g.w + ix];
      }
    }
    y[o] = sum / static_cast<T>(avg_divisor(oy, ox, g, count_include_pad));
  }
}

// dx: (planes, h, w); dy: (planes, oh, ow). dx = sum over covering windows of dy / divisor.
template <typename T>
__global__ void avg_pool_backward_kernel(T* dx, const T* dy, int64_t planes, PoolGeom g, bool count_include_pad) {
  const int64_t total = planes * g.h * g.w;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pos = i % (g.h * g.w), plane = i / (g.h * g.w);
    const int64_t iy = pos / g.w, ix = pos % g.w;
    const Range ry = covering(iy, g.kh, g.sh, g.ph, g.oh), rx = covering(ix, g.kw, g.sw, g.pw, g.ow);
    const T* g_out = dy + plane * g.oh * g.ow;
    T sum = T(0);
    for (int64_t oy = ry.first; oy <= ry.last; ++oy)
      for (int64_t ox = rx.first; ox <= rx.last; ++ox)
        sum += g_out[oy * g.ow + ox] / static_cast<T>(avg_divisor(oy, ox, g, count_include_pad));
    dx[i] = sum;
  }
}

}  // namespace

void CudaBackend::max_pool2d_forward(DType dtype, void* y, int64_t* indices, const void* x, const Pool2dShape& s) {
  const int64_t planes = s.n * s.c, total = planes * s.oh * s.ow;
  if (total == 0) return;
  NABLA_ASSERT(s.h >= 1 && s.w >= 1 && s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "max_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    max_pool_forward_kernel<T><<<grid(total), kBlock, 0, stream()>>>(static_cast<T*>(y), indices,
                                                                      static_cast<const T*>(x), planes, geom_of(s));
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::max_pool2d_backward(DType dtype, void* dx, const void* dy, const int64_t* indices,
                                      const Pool2dShape& s) {
  const int64_t planes = s.n * s.c, total = planes * s.h * s.w;
  if (total == 0) return;
  NABLA_ASSERT(s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    max_pool_backward_kernel<T><<<grid(total), kBlock, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), indices, planes, geom_of(s));
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::avg_pool2d_forward(DType dtype, void* y, const void* x, const Pool2dShape& s,
                                     bool count_include_pad) {
  const int64_t planes = s.n * s.c, total = planes * s.oh * s.ow;
  if (total == 0) return;
  NABLA_ASSERT(s.h >= 1 && s.w >= 1 && s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "avg_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    avg_pool_forward_kernel<T><<<grid(total), kBlock, 0, stream()>>>(static_cast<T*>(y), static_cast<const T*>(x),
                                                                      planes, geom_of(s), count_include_pad);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::avg_pool2d_backward(DType dtype, void* dx, const void* dy, const Pool2dShape& s,
                                      bool count_include_pad) {
  const int64_t planes = s.n * s.c, total = planes * s.h * s.w;
  if (total == 0) return;
  NABLA_ASSERT(s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    avg_pool_backward_kernel<T><<<grid(total), kBlock, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), planes, geom_of(s), count_include_pad);
    NABLA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace nabla::cuda
