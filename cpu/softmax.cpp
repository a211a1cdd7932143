// CPU softmax and log-softmax over the middle axis of (outer, n, inner), their backward, and the
// negative log-likelihood loss on log-probabilities.
//
// Softmax subtracts the maximum of each slice before exponentiating, so no exponent is
// positive and nothing overflows. As in reduce.cpp, inner > 1 is processed a block of columns
// at a time so the column loops are contiguous.
#include <nabla/cpu/cpu_backend.h>

#include <cmath>
#include <limits>

namespace nabla::cpu {

namespace {

constexpr int64_t kColumnBlock = 256;

// x, y: (n) contiguous.
template <typename T>
void softmax_row(T* y, const T* x, int64_t n, bool log) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  // A row of all -inf gives (-inf) - (-inf) = NaN, as it does in PyTorch.
  T sum = 0;
  if (log) {
    for (int64_t j = 0; j < n; ++j) sum += std::exp(x[j] - mx);
    // (x - max) - log(sum), not x - (max + log(sum)): the sum would round away the small
    // log(sum) when max is large.
    const T log_sum = std::log(sum);
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mx) - log_sum;
  } else {
    for (int64_t j = 0; j < n; ++j) {
      y[j] = std::exp(x[j] - mx);
      sum += y[j];
    }
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
  }
}

// x, y: (n, inner) with w <= kColumnBlock columns starting at the given pointers.
template <typename T>
void softmax_columns(T* y, const T* x, int64_t n, int64_t inner, int64_t w, bool log) {
  T mx[kColumnBlock], sum[kColumnBlock];
  for (int64_t i = 0; i < w; ++i) {
    mx[i] = -std::numeric_limits<T>::infinity();
    sum[i] = 0;
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < w; ++i) mx[i] = std::max(mx[i], x[j * inner + i]);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < w; ++i) {
      const T e = std::exp(x[j * inner + i] - mx[i]);
      sum[i] += e;
      if (!log) y[j * inner + i] = e;
    }
  }
  if (log) {
    for (int64_t i = 0; i < w; ++i) sum[i] = std::log(sum[i]);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i) y[j * inner + i] = (x[j * inner + i] - mx[i]) - sum[i];
  } else {
    for (int64_t i = 0; i < w; ++i) sum[i] = T(1) / sum[i];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i) y[j * inner + i] *= sum[i];
  }
}

// softmax:     dx = y * (dy - sum_j dy*y)
// log-softmax: dx = dy - exp(y) * sum_j dy
template <typename T>
void softmax_backward_row(T* dx, const T* dy, const T* y, int64_t n, bool log) {
  T s = 0;
  if (log) {
    for (int64_t j = 0; j < n; ++j) s += dy[j];
    for (int64_t j = 0; j < n; ++j) dx[j] = dy[j] - std::exp(y[j]) * s;
  } else {
    for (int64_t j = 0; j < n; ++j) s += dy[j] * y[j];
    for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - s);
  }
}

template <typename T>
void softmax_backward_columns(T* dx, const T* dy, const T* y, int64_t n, int64_t inner, int64_t w,
                              bool log) {
  T s[kColumnBlock];
  for (int64_t i = 0; i < w; ++i) s[i] = 0;
  if (log) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i) s[i] += dy[j * inner + i];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i)
        dx[j * inner + i] = dy[j * inner + i] - std::exp(y[j * inner + i]) * s[i];
  } else {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i) s[i] += dy[j * inner + i] * y[j * inner + i];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < w; ++i)
        dx[j * inner + i] = y[j * inner + i] * (dy[j * inner + i] - s[i]);
  }
}

// Calls row(offset) for each (outer) slice when inner == 1, else block(offset, w) for each block
// of w columns; offsets are in elements from the start of the (outer, n, inner) tensor.
template <typename Row, typename Block>
void for_each_slice(int64_t outer, int64_t n, int64_t inner, Row&& row, Block&& block) {
  if (inner == 1) {
    parallel_for(outer, n, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) row(o * n);
    });
    return;
  }
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(outer * blocks, n * std::min(inner, kColumnBlock), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t o = item / blocks;
      const int64_t i0 = (item % blocks) * kColumnBlock;
      block(o * n * inner + i0, std::min(kColumnBlock, inner - i0));
    }
  });
}

}  // namespace

void CpuBackend::softmax(DType dtype, void* y, const void* x, int64_t outer, int64_t n,
                         int64_t inner, bool log) {
  dispatch_floating(dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    auto* out = static_cast<T*>(y);
    const auto* in = static_cast<const T*>(x);
    for_each_slice(
        outer, n, inner, [&](int64_t off) { softmax_row(out + off, in + off, n, log); },
        [&](int64_t off, int64_t w) { softmax_columns(out + off, in + off, n, inner, w, log); });
  });
}

void CpuBackend::softmax_backward(DType dtype, void* dx, const void* dy, const void* y,
                                  int64_t outer, int64_t n, int64_t inner, bool log) {
  dispatch_floating(dtype, "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    auto* g = static_cast<T*>(dx);
    const auto* gy = static_cast<const T*>(dy);
    const auto* out = static_cast<const T*>(y);
    for_each_slice(
        outer, n, inner,
        [&](int64_t off) { softmax_backward_row(g + off, gy + off, out + off, n, log); },
        [&](int64_t off, int64_t w) {
          softmax_backward_columns(g + off, gy + off, out + off, n, inner, w, log);
        });
  });
}

void CpuBackend::nll(DType dtype, void* loss, const void* logp, const int64_t* labels, int64_t n,
                     int64_t c) {
  dispatch_floating(dtype, "nll", [&](auto tag) {
    using T = decltype(tag);
    auto* out = static_cast<T*>(loss);
    const auto* lp = static_cast<const T*>(logp);
    for (int64_t i = 0; i < n; ++i) {
      NABLA_ASSERT(labels[i] >= 0 && labels[i] < c);
      out[i] = -lp[i * c + labels[i]];
    }
  });
}

void CpuBackend::nll_backward(DType dtype, void* dlogp, const void* dloss, const int64_t* labels,
                              int64_t n, int64_t c) {
  dispatch_floating(dtype, "nll_backward", [&](auto tag) {
    using T = decltype(tag);
    auto* g = static_cast<T*>(dlogp);
    const auto* gl = static_cast<const T*>(dloss);
    for (int64_t i = 0; i < n; ++i) NABLA_ASSERT(labels[i] >= 0 && labels[i] < c);
    parallel_for(n, c, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T* row = g + i * c;
        for (int64_t j = 0; j < c; ++j) row[j] = T(0);
        row[labels[i]] = -gl[i];
      }
    });
  });
}

void CpuBackend::check_indices(const int64_t* indices, int64_t n, int64_t limit, const char* op, IndexKind kind) {
  for (int64_t i = 0; i < n; ++i) {
    if (indices[i] < 0 || indices[i] >= limit) {
      int64_t bad = 0;
      for (int64_t j = i; j < n; ++j) bad += indices[j] < 0 || indices[j] >= limit;
      if (kind == IndexKind::label)
        fail<IndexError>(
            "{}: label {} at index {} is out of range for {} classes (expected 0..{}); {} bad labels in all", op,
            indices[i], i, limit, limit - 1, bad);
      fail<IndexError>(
          "{}: index {} at position {} is out of range for {} rows (expected 0..{}); {} bad indices in all", op,
          indices[i], i, limit, limit - 1, bad);
    }
  }
}

}  // namespace nabla::cpu
