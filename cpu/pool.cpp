// CPU max and average pooling, parallel over the (n, c) planes.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_pool.h>

#include <algorithm>
#include <cmath>
#include <vector>

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

// The maximum of the window whose rows are [y0, y1) and columns [x0, x1) of plane xp (row
// length w), and its index: the first maximum in row-major order wins, and the first NaN wins over
// everything. Branch-free (random data would mispredict every comparison).
template <typename T>
inline void window_max(const T* xp, int64_t w, int64_t y0, int64_t y1, int64_t x0, int64_t x1, T* out,
                       int64_t* out_index) {
  int64_t best = y0 * w + x0;
  T bv = xp[best];
  for (int64_t iy = y0; iy < y1; ++iy) {
    for (int64_t ix = x0; ix < x1; ++ix) {
      const T v = xp[iy * w + ix];
      const bool take = (v > bv) | ((v != v) & (bv == bv));
      bv = take ? v : bv;
      best = take ? iy * w + ix : best;
    }
  }
  *out = bv;
  *out_index = best;
}

// window_max for a K x K window that lies inside the plane, K known at compile time so the
// loops unroll (the common 2 x 2 and 3 x 3 pools spend most of their time in the general loop's
// bookkeeping otherwise). The same comparisons in the same order: the same result.
template <int K, typename T>
inline void window_max_fixed(const T* xp, int64_t w, int64_t y0, int64_t x0, T* out, int64_t* out_index) {
  int64_t best = y0 * w + x0;
  T bv = xp[best];
#pragma GCC unroll 4
  for (int iy = 0; iy < K; ++iy) {
#pragma GCC unroll 4
    for (int ix = 0; ix < K; ++ix) {
      const int64_t at = (y0 + iy) * w + x0 + ix;
      const T v = xp[at];
      const bool take = (v > bv) | ((v != v) & (bv == bv));
      bv = take ? v : bv;
      best = take ? at : best;
    }
  }
  *out = bv;
  *out_index = best;
}

// Outputs [ox0, ox1) of one row of a 2 x 2, stride 2 pool whose windows lie inside the plane,
// starting at input row r0 (the next row r1 = r0 + w) and column 2 ox - pad_w: the same choices as
// window_max (first maximum in row-major order, first NaN), made for many outputs at once so that
// the loop vectorizes; `pick` is scratch for the position (0..3) chosen in each window.
template <typename T>
void max_row_2x2s2(const T* r0, int64_t w, int64_t row_start, int64_t col_shift, int64_t ox0, int64_t ox1,
                   T* yr, int64_t* ir, int32_t* pick) {
  const T* r1 = r0 + w;
  for (int64_t ox = ox0; ox < ox1; ++ox) {
    const int64_t xs = 2 * ox - col_shift;
    const T a = r0[xs], b = r0[xs + 1], c = r1[xs], d = r1[xs + 1];
    // Written as ifs, which GCC if-converts and vectorizes (the branch-free select form of
    // window_max it does not): take when larger, or when NaN over a number (!(v <= bv)), and
    // never over a NaN (bv == bv).
    T bv = a;
    int32_t k = 0;
    if (!(b <= bv) && bv == bv) {
      bv = b;
      k = 1;
    }
    if (!(c <= bv) && bv == bv) {
      bv = c;
      k = 2;
    }
    if (!(d <= bv) && bv == bv) {
      bv = d;
      k = 3;
    }
    yr[ox] = bv;
    pick[ox] = k;
  }
  for (int64_t ox = ox0; ox < ox1; ++ox)
    ir[ox] = row_start + 2 * ox - col_shift + (pick[ox] & 1) + (pick[ox] >> 1) * w;
}

template <typename T>
void max_forward(T* y, int64_t* indices, const T* x, const Pool2dShape& s) {
  // Outputs [ox_lo, ox_hi) of a row have windows inside the plane in x (no padding, no clipping).
  const int64_t ox_lo = std::min(s.ow, (s.pad_w + s.stride_w - 1) / s.stride_w);
  const int64_t room = s.w + s.pad_w - s.kw;  // the last start column whose window fits, padded
  const int64_t ox_hi = room < 0 ? ox_lo : std::max(ox_lo, std::min(s.ow, room / s.stride_w + 1));
  const int fixed = s.kh == s.kw && (s.kh == 2 || s.kh == 3) ? int(s.kh) : 0;
  const bool two_by_two = fixed == 2 && s.stride_h == 2 && s.stride_w == 2;
  for_each_plane(s, [&](int64_t pl) {
    const T* xp = x + pl * s.h * s.w;
    T* yp = y + pl * s.oh * s.ow;
    int64_t* ip = indices + pl * s.oh * s.ow;
    std::vector<int32_t> pick(two_by_two ? size_t(s.ow) : 0);
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      T* yr = yp + oy * s.ow;
      int64_t* ir = ip + oy * s.ow;
      const int64_t ys = oy * s.stride_h - s.pad_h;
      const bool rows_inside = ys >= 0 && ys + s.kh <= s.h;
      if (rows_inside && two_by_two && ox_lo < ox_hi)
        max_row_2x2s2(xp + ys * s.w, s.w, ys * s.w, s.pad_w, ox_lo, ox_hi, yr, ir, pick.data());
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t xs = ox * s.stride_w - s.pad_w;
        if (rows_inside && ox >= ox_lo && ox < ox_hi) {
          if (two_by_two) {
            ox = ox_hi - 1;  // done above
            continue;
          }
          if (fixed == 2) {
            window_max_fixed<2>(xp, s.w, ys, xs, yr + ox, ir + ox);
            continue;
          }
          if (fixed == 3) {
            window_max_fixed<3>(xp, s.w, ys, xs, yr + ox, ir + ox);
            continue;
          }
        }
        const Window wd = window(s, oy, ox);
        window_max(xp, s.w, wd.y0, wd.y1, wd.x0, wd.x1, yr + ox, ir + ox);
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
