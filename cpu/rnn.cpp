// CPU LSTM and GRU layers over whole sequences (see RnnShape in core/backend.h).
//
// Forward, per direction: the input projections of all steps in one GEMM (x W_ih^T, (seq batch,
// G hidden)), then per step one recurrent GEMM (h W_hh^T) and one fused pass over the gates.
// Backward walks the steps in reverse, one GEMM per step for the recurrent gradient; the
// gradients of x, W_ih, W_hh and the biases are then one GEMM (or sum) each over all steps.
//
// Packed weights: per direction w_ih, w_hh, b_ih, b_hh back to back. Reserve, per direction:
// the activated gates (seq, batch, G hidden) and one more (seq, batch, hidden) block: the cell
// state c (LSTM) or the recurrent projection of the candidate, h W_hn^T + b_hn (GRU).
//
// float32 LSTMs and GRUs run on oneDNN when the build has it and it is on (dnnl_rnn.h); these
// kernels are then the float64 path and the reference. The reserve starts with a header that
// says which path wrote it, so that the backward reads it the same way.
#include <nabla/cpu/cpu_backend.h>
#include <nabla/cpu/dnnl_rnn.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

namespace nabla::cpu {

namespace {

template <typename T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

struct Dims {
  int64_t T, B, I, H, D, G, GH, ldy;  // ldy: row stride of y, D * H
};

Dims dims_of(const RnnShape& s) {
  return {s.seq, s.batch, s.input, s.hidden, s.directions, s.gates(), s.gates() * s.hidden, s.directions * s.hidden};
}

int64_t weights_per_direction(const RnnShape& s) {
  const int64_t gh = s.gates() * s.hidden;
  return gh * s.input + gh * s.hidden + 2 * gh;
}

int64_t reserve_per_direction(const RnnShape& s) { return s.seq * s.batch * (s.gates() + 1) * s.hidden; }

template <typename T>
struct DirWeights {
  const T *w_ih, *w_hh, *b_ih, *b_hh;
};

template <typename T>
DirWeights<T> weights_of(const T* w, const RnnShape& s, int64_t d) {
  const int64_t gh = s.gates() * s.hidden;
  const T* base = w + d * weights_per_direction(s);
  return {base, base + gh * s.input, base + gh * s.input + gh * s.hidden, base + gh * s.input + gh * s.hidden + gh};
}

// Step s of direction d is time t.
int64_t time_of(const Dims& m, int64_t d, int64_t s) { return d == 0 ? s : m.T - 1 - s; }

template <typename T>
void forward_direction(const RnnShape& rs, int64_t d, T* y, T* hy, T* cy, T* act, T* extra, const T* x, const T* hx,
                       const T* cx, const T* w) {
  const Dims m = dims_of(rs);
  const DirWeights<T> wd = weights_of(w, rs, d);
  const bool lstm = rs.cell == RnnCell::lstm;
  // act (T B, G H) starts as the input projections plus the biases that add to them.
  blas_gemm(false, true, m.T * m.B, m.GH, m.I, T(1), x, m.I, wd.w_ih, m.I, T(0), act, m.GH);
  parallel_for(m.T * m.B, m.GH, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* row = act + r * m.GH;
      for (int64_t j = 0; j < m.GH; ++j) row[j] += wd.b_ih[j] + (lstm ? wd.b_hh[j] : T(0));
    }
  });
  const std::vector<T> zeros(size_t(m.B * m.H), T(0));
  std::vector<T> hproj(lstm ? 0 : size_t(m.B * m.GH));
  const T* h_prev = hx ? hx + d * m.B * m.H : zeros.data();
  int64_t ld_prev = m.H;
  const T* c_prev = lstm && cx ? cx + d * m.B * m.H : zeros.data();
  for (int64_t s = 0; s < m.T; ++s) {
    const int64_t t = time_of(m, d, s);
    T* g = act + t * m.B * m.GH;
    T* h = y + t * m.B * m.ldy + d * m.H;
    T* e = extra + t * m.B * m.H;
    if (lstm) {
      blas_gemm(false, true, m.B, m.GH, m.H, T(1), h_prev, ld_prev, wd.w_hh, m.H, T(1), g, m.GH);
      parallel_for(m.B, 8 * m.H, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          T* gb = g + b * m.GH;
          const T* cp = c_prev + b * m.H;
          T* cb = e + b * m.H;
          T* hb = h + b * m.ldy;
          for (int64_t j = 0; j < m.H; ++j) {
            const T ig = sigmoid(gb[j]), fg = sigmoid(gb[m.H + j]), gg = std::tanh(gb[2 * m.H + j]),
                    og = sigmoid(gb[3 * m.H + j]);
            const T c = fg * cp[j] + ig * gg;
            gb[j] = ig;
            gb[m.H + j] = fg;
            gb[2 * m.H + j] = gg;
            gb[3 * m.H + j] = og;
            cb[j] = c;
            hb[j] = og * std::tanh(c);
          }
        }
      });
      c_prev = e;
    } else {
      // hproj (B, 3H) = h W_hh^T + b_hh
      for (int64_t b = 0; b < m.B; ++b) std::memcpy(hproj.data() + b * m.GH, wd.b_hh, size_t(m.GH) * sizeof(T));
      blas_gemm(false, true, m.B, m.GH, m.H, T(1), h_prev, ld_prev, wd.w_hh, m.H, T(1), hproj.data(), m.GH);
      const T* hp_base = h_prev;
      const int64_t ldp = ld_prev;
      parallel_for(m.B, 8 * m.H, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          T* gb = g + b * m.GH;
          const T* pb = hproj.data() + b * m.GH;
          const T* hp = hp_base + b * ldp;
          T* eb = e + b * m.H;
          T* hb = h + b * m.ldy;
          for (int64_t j = 0; j < m.H; ++j) {
            const T r = sigmoid(gb[j] + pb[j]), z = sigmoid(gb[m.H + j] + pb[m.H + j]);
            const T hn = pb[2 * m.H + j];
            const T n = std::tanh(gb[2 * m.H + j] + r * hn);
            gb[j] = r;
            gb[m.H + j] = z;
            gb[2 * m.H + j] = n;
            eb[j] = hn;
            hb[j] = (T(1) - z) * n + z * hp[j];
          }
        }
      });
    }
    h_prev = h;
    ld_prev = m.ldy;
  }
  for (int64_t b = 0; b < m.B; ++b) {
    if (hy) std::memcpy(hy + (d * m.B + b) * m.H, h_prev + b * ld_prev, size_t(m.H) * sizeof(T));
    if (cy && lstm) std::memcpy(cy + (d * m.B + b) * m.H, c_prev + b * m.H, size_t(m.H) * sizeof(T));
  }
}

template <typename T>
void rnn_forward_impl(const RnnShape& rs, T* y, T* hy, T* cy, T* reserve, const T* x, const T* hx, const T* cx,
                      const T* w) {
  const Dims m = dims_of(rs);
  // Inference has no reserve: the per-direction scratch lives here instead.
  std::vector<T> scratch(reserve ? 0 : size_t(reserve_per_direction(rs)));
  for (int64_t d = 0; d < m.D; ++d) {
    T* base = reserve ? reserve + d * reserve_per_direction(rs) : scratch.data();
    forward_direction(rs, d, y, hy, cy, base, base + m.T * m.B * m.GH, x, hx, cx, w);
  }
}

// Column sums of a row-major (rows, cols) matrix into out (cols), each in double over the rows
// in order. Threads take blocks of columns and walk the rows, so every read is a contiguous run
// of a row (a column-at-a-time walk strides by cols and misses the cache on every element).
template <typename T>
void column_sums(T* out, const T* a, int64_t rows, int64_t cols) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  parallel_for(blocks, rows * kBlock, [&](int64_t begin, int64_t end) {
    double acc[kBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t j0 = blk * kBlock, nj = std::min(kBlock, cols - j0);
      std::fill(acc, acc + nj, 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = a + r * cols + j0;
        for (int64_t j = 0; j < nj; ++j) acc[j] += double(row[j]);
      }
      for (int64_t j = 0; j < nj; ++j) out[j0 + j] = T(acc[j]);
    }
  });
}

template <typename T>
void backward_direction(const RnnShape& rs, int64_t d, T* dx, T* dhx, T* dcx, T* dw, const T* dy, const T* dhy,
                        const T* dcy, const T* x, const T* hx, const T* cx, const T* w, const T* y, const T* act,
                        const T* extra) {
  const Dims m = dims_of(rs);
  const DirWeights<T> wd = weights_of(w, rs, d);
  const bool lstm = rs.cell == RnnCell::lstm;
  const size_t bh = size_t(m.B * m.H);
  // dgx: gradient of the input-side pre-activations (T B, G H); dgh of the recurrent side (the
  // same matrix for an LSTM).
  std::vector<T> dgx(size_t(m.T * m.B * m.GH)), dgh_store(lstm ? 0 : dgx.size());
  T* dgh = lstm ? dgx.data() : dgh_store.data();
  std::vector<T> dh(bh, T(0)), dc(bh, T(0)), dh_next(bh);
  if (dhy) std::memcpy(dh.data(), dhy + d * m.B * m.H, bh * sizeof(T));
  if (lstm && dcy) std::memcpy(dc.data(), dcy + d * m.B * m.H, bh * sizeof(T));
  const std::vector<T> zeros(bh, T(0));
  const T* h0 = hx ? hx + d * m.B * m.H : zeros.data();
  const T* c0 = lstm && cx ? cx + d * m.B * m.H : zeros.data();
  for (int64_t s = m.T - 1; s >= 0; --s) {
    const int64_t t = time_of(m, d, s);
    const int64_t tp = s == 0 ? -1 : time_of(m, d, s - 1);  // the step before, in this direction
    const T* hp_base = tp < 0 ? h0 : y + tp * m.B * m.ldy + d * m.H;
    const int64_t ldp = tp < 0 ? m.H : m.ldy;
    const T* g = act + t * m.B * m.GH;
    const T* e = extra + t * m.B * m.H;
    const T* dyt = dy + t * m.B * m.ldy + d * m.H;
    T* gx = dgx.data() + t * m.B * m.GH;
    T* gh = dgh + t * m.B * m.GH;
    const T* cprev_base = lstm ? (tp < 0 ? c0 : extra + tp * m.B * m.H) : nullptr;
    parallel_for(m.B, 10 * m.H, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const T* gb = g + b * m.GH;
        const T* eb = e + b * m.H;
        const T* dyb = dyt + b * m.ldy;
        T* dhb = dh.data() + b * m.H;
        T* gxb = gx + b * m.GH;
        if (lstm) {
          T* dcb = dc.data() + b * m.H;
          const T* cp = cprev_base + b * m.H;
          for (int64_t j = 0; j < m.H; ++j) {
            const T ig = gb[j], fg = gb[m.H + j], gg = gb[2 * m.H + j], og = gb[3 * m.H + j];
            const T tc = std::tanh(eb[j]);
            const T dhv = dhb[j] + dyb[j];
            const T dcv = dcb[j] + dhv * og * (T(1) - tc * tc);
            gxb[j] = dcv * gg * ig * (T(1) - ig);
            gxb[m.H + j] = dcv * cp[j] * fg * (T(1) - fg);
            gxb[2 * m.H + j] = dcv * ig * (T(1) - gg * gg);
            gxb[3 * m.H + j] = dhv * tc * og * (T(1) - og);
            dcb[j] = dcv * fg;
          }
        } else {
          const T* hp = hp_base + b * ldp;
          T* ghb = gh + b * m.GH;
          T* dnext = dh_next.data() + b * m.H;
          for (int64_t j = 0; j < m.H; ++j) {
            const T r = gb[j], z = gb[m.H + j], n = gb[2 * m.H + j], hn = eb[j];
            const T dhv = dhb[j] + dyb[j];
            const T dn_pre = dhv * (T(1) - z) * (T(1) - n * n);
            const T dr_pre = dn_pre * hn * r * (T(1) - r);
            const T dz_pre = dhv * (hp[j] - n) * z * (T(1) - z);
            gxb[j] = ghb[j] = dr_pre;
            gxb[m.H + j] = ghb[m.H + j] = dz_pre;
            gxb[2 * m.H + j] = dn_pre;
            ghb[2 * m.H + j] = dn_pre * r;
            dnext[j] = dhv * z;
          }
        }
      }
    });
    // dh for the step before: dgh[t] . W_hh (+ the direct path z dh for a GRU)
    if (lstm) {
      blas_gemm(false, false, m.B, m.H, m.GH, T(1), gh, m.GH, wd.w_hh, m.H, T(0), dh.data(), m.H);
    } else {
      blas_gemm(false, false, m.B, m.H, m.GH, T(1), gh, m.GH, wd.w_hh, m.H, T(1), dh_next.data(), m.H);
      std::swap(dh, dh_next);
    }
  }
  if (dhx) std::memcpy(dhx + d * m.B * m.H, dh.data(), bh * sizeof(T));
  if (dcx && lstm) std::memcpy(dcx + d * m.B * m.H, dc.data(), bh * sizeof(T));

  const int64_t gh_n = m.GH;
  T* dw_ih = dw + d * weights_per_direction(rs);
  T* dw_hh = dw_ih + gh_n * m.I;
  T* db_ih = dw_hh + gh_n * m.H;
  T* db_hh = db_ih + gh_n;
  if (dx) blas_gemm(false, false, m.T * m.B, m.I, m.GH, T(1), dgx.data(), m.GH, wd.w_ih, m.I, d == 0 ? T(0) : T(1), dx, m.I);
  blas_gemm(true, false, m.GH, m.I, m.T * m.B, T(1), dgx.data(), m.GH, x, m.I, T(0), dw_ih, m.I);
  // dW_hh = sum over steps of dgh[t]^T h_prev(t): the steps whose h_prev is an output of this
  // direction form one block of rows, the first step's h_prev is h0.
  const int64_t first = time_of(m, d, 0);
  const T* dgh_rest = d == 0 ? dgh + m.B * m.GH : dgh;     // times 1..T-1 or 0..T-2
  const T* h_rest = d == 0 ? y + d * m.H : y + m.B * m.ldy + d * m.H;  // y at times 0..T-2 or 1..T-1
  blas_gemm(true, false, m.GH, m.H, m.B, T(1), dgh + first * m.B * m.GH, m.GH, h0, m.H, T(0), dw_hh, m.H);
  if (m.T > 1) blas_gemm(true, false, m.GH, m.H, (m.T - 1) * m.B, T(1), dgh_rest, m.GH, h_rest, m.ldy, T(1), dw_hh, m.H);
  column_sums(db_ih, dgx.data(), m.T * m.B, m.GH);
  if (lstm)  // both biases add to the same pre-activations: the same gradient
    std::memcpy(db_hh, db_ih, size_t(m.GH) * sizeof(T));
  else
    column_sums(db_hh, dgh, m.T * m.B, m.GH);
}

template <typename T>
void rnn_backward_impl(const RnnShape& rs, T* dx, T* dhx, T* dcx, T* dw, const T* dy, const T* dhy, const T* dcy,
                       const T* x, const T* hx, const T* cx, const T* w, const T* y, const T* reserve) {
  const Dims m = dims_of(rs);
  for (int64_t d = 0; d < m.D; ++d) {
    const T* base = reserve + d * reserve_per_direction(rs);
    backward_direction(rs, d, dx, dhx, dcx, dw, dy, dhy, dcy, x, hx, cx, w, y, base, base + m.T * m.B * m.GH);
  }
}

void check_shape(const RnnShape& s) {  // batch_major is checked where the path is chosen
  NABLA_ASSERT(s.seq >= 1 && s.batch >= 1 && s.input >= 1 && s.hidden >= 1 && (s.directions == 1 || s.directions == 2));
}

}  // namespace

int64_t CpuBackend::rnn_weight_layout(DType, const RnnShape& s, int64_t* offsets) {
  const int64_t gh = s.gates() * s.hidden, per = weights_per_direction(s);
  for (int64_t d = 0; d < s.directions; ++d) {
    offsets[4 * d + 0] = d * per;
    offsets[4 * d + 1] = d * per + gh * s.input;
    offsets[4 * d + 2] = d * per + gh * s.input + gh * s.hidden;
    offsets[4 * d + 3] = d * per + gh * s.input + gh * s.hidden + gh;
  }
  return s.directions * per;
}

namespace {

// The reserve's first bytes: which path wrote the rest.
constexpr size_t kHeader = 64;
enum class Path : uint64_t { own = 0x6e61626c61726e31, dnnl = 0x6e61626c61726e32 };

void* payload(void* reserve) { return reserve ? static_cast<char*>(reserve) + kHeader : nullptr; }

}  // namespace

size_t CpuBackend::rnn_reserve_bytes(DType dtype, const RnnShape& s) {
  check_shape(s);
  if (dnnl_rnn::handles(dtype, s)) return kHeader + dnnl_rnn::reserve_bytes(s);
  return kHeader + size_t(s.directions * reserve_per_direction(s)) * dtype_size(dtype);
}

bool CpuBackend::rnn_batch_major(DType dtype, const RnnShape& s) { return dnnl_rnn::handles(dtype, s); }

void CpuBackend::rnn_forward(DType dtype, const RnnShape& s, void* y, void* hy, void* cy, void* reserve, const void* x,
                             const void* hx, const void* cx, const void* w) {
  check_shape(s);
  if (dnnl_rnn::handles(dtype, s)) {
    if (reserve) *static_cast<Path*>(reserve) = Path::dnnl;
    return dnnl_rnn::forward(s, static_cast<float*>(y), static_cast<float*>(hy), static_cast<float*>(cy),
                             payload(reserve), static_cast<const float*>(x), static_cast<const float*>(hx),
                             static_cast<const float*>(cx), static_cast<const float*>(w));
  }
  NABLA_CHECK(!s.batch_major, "rnn_forward: a batch-major layer needs oneDNN, which was turned off after the layer "
                              "asked for it (rnn_batch_major)");
  if (reserve) *static_cast<Path*>(reserve) = Path::own;
  dispatch_floating(dtype, "rnn_forward", [&](auto tag) {
    using T = decltype(tag);
    rnn_forward_impl(s, static_cast<T*>(y), static_cast<T*>(hy), static_cast<T*>(cy), static_cast<T*>(payload(reserve)),
                     static_cast<const T*>(x), static_cast<const T*>(hx), static_cast<const T*>(cx),
                     static_cast<const T*>(w));
  });
}

void CpuBackend::rnn_backward(DType dtype, const RnnShape& s, void* dx, void* dhx, void* dcx, void* dw, const void* dy,
                              const void* dhy, const void* dcy, const void* x, const void* hx, const void* cx,
                              const void* w, const void* y, void* reserve) {
  check_shape(s);
  const Path path = *static_cast<const Path*>(reserve);
  if (path == Path::dnnl) {
    return dnnl_rnn::backward(s, static_cast<float*>(dx), static_cast<float*>(dhx), static_cast<float*>(dcx),
                              static_cast<float*>(dw), static_cast<const float*>(dy), static_cast<const float*>(dhy),
                              static_cast<const float*>(dcy), static_cast<const float*>(x),
                              static_cast<const float*>(hx), static_cast<const float*>(cx),
                              static_cast<const float*>(w), static_cast<const float*>(y), payload(reserve));
  }
  NABLA_ASSERT(path == Path::own && !s.batch_major);
  dispatch_floating(dtype, "rnn_backward", [&](auto tag) {
    using T = decltype(tag);
    rnn_backward_impl(s, static_cast<T*>(dx), static_cast<T*>(dhx), static_cast<T*>(dcx), static_cast<T*>(dw),
                      static_cast<const T*>(dy), static_cast<const T*>(dhy), static_cast<const T*>(dcy),
                      static_cast<const T*>(x), static_cast<const T*>(hx), static_cast<const T*>(cx),
                      static_cast<const T*>(w), static_cast<const T*>(y), static_cast<const T*>(payload(reserve)));
  });
}

}  // namespace nabla::cpu
