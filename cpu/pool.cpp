// CPU max and average pooling, parallel over the (n, c) planes.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_pool.h>

#include <cmath>

namespace nabla::cpu {

namespace {

// The window of output (oy, ox), clipped to the input: rows [y0, y1), columns [x0, x1).
struct Window {
  int64_t y0, y1, x0, x1;
};

Window window(const Pool2dShape& s, int64_t oy, int64_t ox) {
  const int64_t ys = oy * s.stride_h - s.pad_h, xs = ox * s.stride_w - s.pad_w;
  return {std::max<int64_t>(ys, 0), std::min(ys + s.kh, s.h), std::max<int64_t>(xs, 0), std::min(xs + s.kw, s.w)};
}

// Runs body(plane) for each of the n * c planes.
template <typename Body>
void for_each_plane(const Pool2dShape& s, Body&& body) {
  parallel_for(s.n * s.c, s.h * s.w + s.oh * s.ow * s.kh * s.kw, [&](int64_t begin, int64_t end) {
    for (int64_t pl = begin; pl < end; ++pl) body(pl);
  });
}

template <typename T>
void max_forward(T* y, int64_t* indices, const T* x, const Pool2dShape& s) {
  for_each_plane(s, [&](int64_t pl) {
    const T* xp = x + pl * s.h * s.w;
    T* yp = y + pl * s.oh * s.ow;
    int64_t* ip = indices + pl * s.oh * s.ow;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const Window wd = window(s, oy, ox);
        // Branch-free (random data would mispredict every comparison): an element takes over
        // when it is larger, or when it is the first NaN.
        int64_t best = wd.y0 * s.w + wd.x0;
        T bv = xp[best];
        for (int64_t iy = wd.y0; iy < wd.y1; ++iy) {
          for (int64_t ix = wd.x0; ix < wd.x1; ++ix) {
            const T v = xp[iy * s.w + ix];
            const bool take = (v > bv) | ((v != v) & (bv == bv));
            bv = take ? v : bv;
            best = take ? iy * s.w + ix : best;
          }
        }
        yp[oy * s.ow + ox] = bv;
        ip[oy * s.ow + ox] = best;
      }
    }
  });
}

template <typename T>
void max_backward(T* dx, const T* dy, const int64_t* indices, const Pool2dShape& s) {
  for_each_plane(s, [&](int64_t pl) {
    T* dxp = dx + pl * s.h * s.w;
    const T* dyp = dy + pl * s.oh * s.ow;
    const int64_t* ip = indices + pl * s.oh * s.ow;
    std::fill(dxp, dxp + s.h * s.w, T(0));
    for (int64_t j = 0; j < s.oh * s.ow; ++j) dxp[ip[j]] += dyp[j];
  });
}

template <typename T>
T divisor(const Pool2dShape& s, const Window& wd, bool count_include_pad) {
  return count_include_pad ? T(s.kh * s.kw) : T((wd.y1 - wd.y0) * (wd.x1 - wd.x0));
}

template <typename T>
void avg_forward(T* y, const T* x, const Pool2dShape& s, bool count_include_pad) {
  for_each_plane(s, [&](int64_t pl) {
    const T* xp = x + pl * s.h * s.w;
    T* yp = y + pl * s.oh * s.ow;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const Window wd = window(s, oy, ox);
        T acc = 0;
        for (int64_t iy = wd.y0; iy < wd.y1; ++iy)
          for (int64_t ix = wd.x0; ix < wd.x1; ++ix) acc += xp[iy * s.w + ix];
        yp[oy * s.ow + ox] = acc / divisor<T>(s, wd, count_include_pad);
      }
    }
  });
}

template <typename T>
void avg_backward(T* dx, const T* dy, const Pool2dShape& s, bool count_include_pad) {
  for_each_plane(s, [&](int64_t pl) {
    T* dxp = dx + pl * s.h * s.w;
    const T* dyp = dy + pl * s.oh * s.ow;
    std::fill(dxp, dxp + s.h * s.w, T(0));
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const Window wd = window(s, oy, ox);
        const T g = dyp[oy * s.ow + ox] / divisor<T>(s, wd, count_include_pad);
        for (int64_t iy = wd.y0; iy < wd.y1; ++iy)
          for (int64_t ix = wd.x0; ix < wd.x1; ++ix) dxp[iy * s.w + ix] += g;
      }
    }
  });
}

}  // namespace

void CpuBackend::max_pool2d_forward(DType dtype, void* y, int64_t* indices, const void* x, const Pool2dShape& s) {
  dispatch_floating(dtype, "max_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    max_forward(static_cast<T*>(y), indices, static_cast<const T*>(x), s);
  });
}

void CpuBackend::max_pool2d_backward(DType dtype, void* dx, const void* dy, const int64_t* indices,
                                     const Pool2dShape& s) {
  dispatch_floating(dtype, "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    max_backward(static_cast<T*>(dx), static_cast<const T*>(dy), indices, s);
  });
}

void CpuBackend::avg_pool2d_forward(DType dtype, void* y, const void* x, const Pool2dShape& s,
                                    bool count_include_pad) {
  // float32 on oneDNN (dnnl_pool.h) when the build has it and the shape suits it; float64 always here.
  if (dtype == DType::float32 && dnnl_pool::use(s))
    return dnnl_pool::avg_forward(static_cast<float*>(y), static_cast<const float*>(x), s, count_include_pad);
  dispatch_floating(dtype, "avg_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    avg_forward(static_cast<T*>(y), static_cast<const T*>(x), s, count_include_pad);
  });
}

void CpuBackend::avg_pool2d_backward(DType dtype, void* dx, const void* dy, const Pool2dShape& s,
                                     bool count_include_pad) {
  if (dtype == DType::float32 && dnnl_pool::use(s))
    return dnnl_pool::avg_backward(static_cast<float*>(dx), static_cast<const float*>(dy), s, count_include_pad);
  dispatch_floating(dtype, "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    avg_backward(static_cast<T*>(dx), static_cast<const T*>(dy), s, count_include_pad);
  });
}

}  // namespace nabla::cpu
