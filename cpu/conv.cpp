// CPU 2-D convolution. float32 goes to oneDNN (dnnl_conv.h) when the build has it; float64, and
// float32 without oneDNN, take im2col lowering + OpenBLAS GEMM, parallel over the batch with
// OpenMP, below: the reference the oneDNN path is tested against.
//
// For image i and group g, with Kc = (c / groups) kh kw rows and P = oh ow columns:
//   col (Kc, P)       = im2col(x[i, group g])
//   y[i, g] (kg, P)   = W_g (kg, Kc) . col                       forward
//   dcol (Kc, P)      = W_g^T . dy[i, g];  dx[i, g] = col2im(dcol)  backward data
//   dW_g (kg, Kc)    += dy[i, g] . col^T                           backward weight
// A 1x1 kernel with stride 1 and no padding needs no lowering: col is x itself.
//
// A fused ReLU (Conv2dShape::relu) is applied here in one pass over y, and its backward masks dy
// into a buffer first; oneDNN's path does both inside its reorders (dnnl_conv.cpp).
//
// Images are spread over the OpenMP threads, each with its own column buffer; a product made
// inside the parallel region runs on its thread (OpenBLAS's OpenMP build). The weight gradient
// sums over images: each thread accumulates its images into a buffer of its own, and the buffers
// are added in thread order at the end, so the result does not depend on timing.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_conv.h>

#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace nabla::cpu {

namespace {

struct ConvDims {
  int64_t cg, kg;  // input and output channels per group
  int64_t kc;      // rows of a column matrix: cg * kh * kw
  int64_t p;       // columns: oh * ow
  int64_t plane;   // h * w
  bool direct;     // 1x1, stride 1, no padding: x is its own column matrix
};

ConvDims dims_of(const Conv2dShape& s) {
  ConvDims d;
  d.cg = s.c / s.groups;
  d.kg = s.k / s.groups;
  d.kc = d.cg * s.kh * s.kw;
  d.p = s.oh * s.ow;
  d.plane = s.h * s.w;
  d.direct = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
             s.pad_w == 0;
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  if (d.kc > kMaxInt || d.p > kMaxInt || d.kg > kMaxInt)
    fail("cpu conv2d: a lowered product of {} x {} x {} exceeds the 32-bit BLAS index", d.kg, d.p, d.kc);
  return d;
}

// col (kc, p) from x (cg, h, w) of one image and group; out-of-image taps are 0.
template <typename T>
void im2col(T* col, const T* x, const Conv2dShape& s, const ConvDims& d) {
  for (int64_t ci = 0; ci < d.cg; ++ci) {
    const T* xc = x + ci * d.plane;
    for (int64_t r = 0; r < s.kh; ++r) {
      for (int64_t q = 0; q < s.kw; ++q) {
        T* row = col + ((ci * s.kh + r) * s.kw + q) * d.p;
        const int64_t dy = r * s.dil_h - s.pad_h, dx = q * s.dil_w - s.pad_w;
        for (int64_t oy = 0; oy < s.oh; ++oy) {
          T* out = row + oy * s.ow;
          const int64_t iy = oy * s.stride_h + dy;
          if (iy < 0 || iy >= s.h) {
            std::fill(out, out + s.ow, T(0));
            continue;
          }
          const T* xr = xc + iy * s.w;
          if (s.stride_w == 1) {
            // ix = ox + dx: zeros where it falls outside [0, w), a copy in between.
            const int64_t lo = std::clamp<int64_t>(-dx, 0, s.ow), hi = std::clamp<int64_t>(s.w - dx, lo, s.ow);
            std::fill(out, out + lo, T(0));
            std::memcpy(out + lo, xr + lo + dx, size_t(hi - lo) * sizeof(T));
            std::fill(out + hi, out + s.ow, T(0));
          } else {
            for (int64_t ox = 0; ox < s.ow; ++ox) {
              const int64_t ix = ox * s.stride_w + dx;
              out[ox] = ix >= 0 && ix < s.w ? xr[ix] : T(0);
            }
          }
        }
      }
    }
  }
}

// dx (cg, h, w) += col2im(dcol (kc, p)) for one image and group.
template <typename T>
void col2im_add(T* dx, const T* dcol, const Conv2dShape& s, const ConvDims& d) {
  for (int64_t ci = 0; ci < d.cg; ++ci) {
    T* xc = dx + ci * d.plane;
    for (int64_t r = 0; r < s.kh; ++r) {
      for (int64_t q = 0; q < s.kw; ++q) {
        const T* row = dcol + ((ci * s.kh + r) * s.kw + q) * d.p;
        const int64_t dy = r * s.dil_h - s.pad_h, dxo = q * s.dil_w - s.pad_w;
        for (int64_t oy = 0; oy < s.oh; ++oy) {
          const int64_t iy = oy * s.stride_h + dy;
          if (iy < 0 || iy >= s.h) continue;
          const T* in = row + oy * s.ow;
          T* xr = xc + iy * s.w;
          if (s.stride_w == 1) {
            const int64_t lo = std::clamp<int64_t>(-dxo, 0, s.ow), hi = std::clamp<int64_t>(s.w - dxo, lo, s.ow);
            T* xo = xr + dxo;
            for (int64_t ox = lo; ox < hi; ++ox) xo[ox] += in[ox];
          } else {
            for (int64_t ox = 0; ox < s.ow; ++ox) {
              const int64_t ix = ox * s.stride_w + dxo;
              if (ix >= 0 && ix < s.w) xr[ix] += in[ox];
            }
          }
        }
      }
    }
  }
}

// Number of thread slots for_each_image may use: body's thread_slot is below it.
int image_slots() { return kBlasSharesOurThreads && !omp_in_parallel() ? std::max(omp_get_max_threads(), 1) : 1; }

// Runs body(image, thread_slot, col_buffer) for every image, in parallel over images when BLAS
// shares our threads and the work is worth it; each thread takes a contiguous run of images.
// col_buffer holds kc * p elements (null when the lowering is direct).
template <typename T, typename Body>
void for_each_image(const Conv2dShape& s, const ConvDims& d, int64_t work_per_image, Body&& body) {
  const size_t col_elems = d.direct ? 0 : size_t(d.kc * d.p);
  if (image_slots() == 1 || s.n == 1 || s.n * std::max<int64_t>(work_per_image, 1) < kParallelWork) {
    std::vector<T> col(col_elems);
    for (int64_t i = 0; i < s.n; ++i) body(i, 0, col.data());
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = s.n * t / nt, end = s.n * (t + 1) / nt;
    if (begin < end) {
      std::vector<T> col(col_elems);
      for (int64_t i = begin; i < end; ++i) body(i, int(t), col.data());
    }
  }
}

template <typename T>
void conv_forward(T* y, const T* x, const T* w, const T* bias, const Conv2dShape& s) {
  const ConvDims d = dims_of(s);
  for_each_image<T>(s, d, d.kg * d.p * d.kc * s.groups, [&](int64_t i, int, T* col) {
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = x + (i * s.c + g * d.cg) * d.plane;
      T* yg = y + (i * s.k + g * d.kg) * d.p;
      const T* cm = xg;
      if (!d.direct) {
        im2col(col, xg, s, d);
        cm = col;
      }
      blas_gemm(false, false, d.kg, d.p, d.kc, T(1), w + g * d.kg * d.kc, d.kc, cm, d.p, T(0), yg, d.p);
    }
    if (bias != nullptr) {
      for (int64_t o = 0; o < s.k; ++o) {
        T* yo = y + (i * s.k + o) * d.p;
        const T b = bias[o];
        for (int64_t j = 0; j < d.p; ++j) yo[j] += b;
      }
    }
  });
}

template <typename T>
void conv_backward_data(T* dx, const T* dy, const T* w, const Conv2dShape& s) {
  const ConvDims d = dims_of(s);
  for_each_image<T>(s, d, d.kg * d.p * d.kc * s.groups, [&](int64_t i, int, T* col) {
    for (int64_t g = 0; g < s.groups; ++g) {
      T* dxg = dx + (i * s.c + g * d.cg) * d.plane;
      const T* dyg = dy + (i * s.k + g * d.kg) * d.p;
      const T* wg = w + g * d.kg * d.kc;
      if (d.direct) {
        blas_gemm(true, false, d.kc, d.p, d.kg, T(1), wg, d.kc, dyg, d.p, T(0), dxg, d.p);
        continue;
      }
      blas_gemm(true, false, d.kc, d.p, d.kg, T(1), wg, d.kc, dyg, d.p, T(0), col, d.p);
      std::fill(dxg, dxg + d.cg * d.plane, T(0));
      col2im_add(dxg, col, s, d);
    }
  });
}

template <typename T>
void conv_backward_weight(T* dw, const T* dy, const T* x, const Conv2dShape& s) {
  const ConvDims d = dims_of(s);
  const int64_t wsize = s.k * d.kc;
  const int slots = image_slots();
  // Slot 0 accumulates into dw itself; the others into buffers of their own, added at the end.
  std::vector<std::unique_ptr<T[]>> partial(static_cast<size_t>(slots));
  std::vector<char> used(static_cast<size_t>(slots), 0);
  auto target = [&](int slot) -> T* {
    if (slot == 0) return dw;
    if (!partial[size_t(slot)]) partial[size_t(slot)].reset(new T[size_t(wsize)]);
    return partial[size_t(slot)].get();
  };
  std::fill(dw, dw + wsize, T(0));
  for_each_image<T>(s, d, d.kg * d.p * d.kc * s.groups, [&](int64_t i, int slot, T* col) {
    T* acc = target(slot);
    const T beta = used[size_t(slot)] || slot == 0 ? T(1) : T(0);
    used[size_t(slot)] = 1;
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = x + (i * s.c + g * d.cg) * d.plane;
      const T* dyg = dy + (i * s.k + g * d.kg) * d.p;
      const T* cm = xg;
      if (!d.direct) {
        im2col(col, xg, s, d);
        cm = col;
      }
      blas_gemm(false, true, d.kg, d.kc, d.p, T(1), dyg, d.p, cm, d.p, beta, acc + g * d.kg * d.kc, d.kc);
    }
  });
  for (int slot = 1; slot < slots; ++slot) {
    if (!used[size_t(slot)]) continue;
    const T* part = partial[size_t(slot)].get();
    for (int64_t j = 0; j < wsize; ++j) dw[j] += part[j];
  }
}

template <typename T>
void conv_backward_bias(T* db, const T* dy, const Conv2dShape& s) {
  const int64_t p = s.oh * s.ow;
  parallel_for(s.k, s.n * p, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < s.n; ++i) {
        const T* row = dy + (i * s.k + o) * p;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < p; ++j) acc += double(row[j]);
      }
      db[o] = T(acc);
    }
  });
}

}  // namespace

void CpuBackend::conv2d_forward(DType dtype, void* y, const void* x, const void* weight, const void* bias,
                                const Conv2dShape& s) {
  if (dtype == DType::float32 && dnnl_conv::enabled())
    return dnnl_conv::forward(static_cast<float*>(y), static_cast<const float*>(x), static_cast<const float*>(weight),
                              static_cast<const float*>(bias), s);
  dispatch_floating(dtype, "conv2d_forward", [&](auto tag) {
    using T = decltype(tag);
    conv_forward(static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(weight),
                 static_cast<const T*>(bias), s);
    if (s.relu) relu_in_place(static_cast<T*>(y), s.n * s.k * s.oh * s.ow);
  });
}

void CpuBackend::conv2d_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                                 const void* weight, const void* y, const Conv2dShape& s) {
  if (dtype == DType::float32 && dnnl_conv::enabled())
    return dnnl_conv::backward(static_cast<float*>(dx), static_cast<float*>(dweight), static_cast<float*>(dbias),
                               static_cast<const float*>(dy), static_cast<const float*>(x),
                               static_cast<const float*>(weight), static_cast<const float*>(y), s);
  dispatch_floating(dtype, "conv2d_backward", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> masked;
    const T* g = static_cast<const T*>(dy);
    if (s.relu) {
      masked.resize(size_t(s.n * s.k * s.oh * s.ow));
      relu_mask(masked.data(), g, static_cast<const T*>(y), int64_t(masked.size()));
      g = masked.data();
    }
    if (dx) conv_backward_data(static_cast<T*>(dx), g, static_cast<const T*>(weight), s);
    if (dweight) conv_backward_weight(static_cast<T*>(dweight), g, static_cast<const T*>(x), s);
    if (dbias) conv_backward_bias(static_cast<T*>(dbias), g, s);
  });
}

void CpuBackend::conv2d_backward_data(DType dtype, void* dx, const void* dy, const void* weight,
                                      const Conv2dShape& s) {
  if (dtype == DType::float32 && dnnl_conv::enabled())
    return dnnl_conv::backward_data(static_cast<float*>(dx), static_cast<const float*>(dy),
                                    static_cast<const float*>(weight), s);
  dispatch_floating(dtype, "conv2d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    conv_backward_data(static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(weight), s);
  });
}

void CpuBackend::conv2d_backward_weight(DType dtype, void* dweight, const void* dy, const void* x,
                                        const Conv2dShape& s) {
  if (dtype == DType::float32 && dnnl_conv::enabled())
    return dnnl_conv::backward_weight(static_cast<float*>(dweight), static_cast<const float*>(dy),
                                      static_cast<const float*>(x), s);
  dispatch_floating(dtype, "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    conv_backward_weight(static_cast<T*>(dweight), static_cast<const T*>(dy), static_cast<const T*>(x), s);
  });
}

void CpuBackend::conv2d_backward_bias(DType dtype, void* dbias, const void* dy, const Conv2dShape& s) {
  dispatch_floating(dtype, "conv2d_backward_bias", [&](auto tag) {
    using T = decltype(tag);
    conv_backward_bias(static_cast<T*>(dbias), static_cast<const T*>(dy), s);
  });
}

}  // namespace nabla::cpu
