// CPU reductions over the middle axis of a contiguous (outer, r, inner) tensor: sum, max, min,
// and argmax.
//
// inner == 1 reduces contiguous rows; inner > 1 walks r with a block of inner columns held in
// a local accumulator, so the loop over columns is contiguous and vectorizes. Sums accumulate
// in double for both dtypes, so the CPU result is the accurate reference the other backends
// are compared with. Work is split into fixed chunks, never by thread count, so the result
// does not depend on how many threads ran.
#include <nabla/cpu/cpu_backend.h>

#include <limits>
#include <vector>

namespace nabla::cpu {

namespace {

constexpr int64_t kColumnBlock = 256;            // columns held in a local accumulator
constexpr int64_t kRowChunk = int64_t{1} << 14;  // elements per partial sum of one long row

template <ReduceOp op, typename T>
struct Reducer;

template <typename T>
struct Reducer<ReduceOp::sum, T> {
  using Acc = double;
  static constexpr Acc init() { return 0; }
  static Acc combine(Acc acc, T x) { return acc + static_cast<Acc>(x); }
};

// max and min let NaN win, as torch.amax/amin.
template <typename T>
struct Reducer<ReduceOp::max, T> {
  using Acc = T;
  static constexpr Acc init() { return -std::numeric_limits<T>::infinity(); }
  static Acc combine(Acc acc, T x) { return x > acc || x != x ? x : acc; }
};

template <typename T>
struct Reducer<ReduceOp::min, T> {
  using Acc = T;
  static constexpr Acc init() { return std::numeric_limits<T>::infinity(); }
  static Acc combine(Acc acc, T x) { return x < acc || x != x ? x : acc; }
};

// Reduces x[0, n) with 8 independent lanes, which the compiler keeps in vector registers.
template <ReduceOp op, typename T>
typename Reducer<op, T>::Acc reduce_contiguous(const T* x, int64_t n) {
  using R = Reducer<op, T>;
  constexpr int kLanes = 8;
  typename R::Acc lane[kLanes];
  for (auto& l : lane) l = R::init();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] = R::combine(lane[l], x[i + l]);
  for (; i < n; ++i) lane[0] = R::combine(lane[0], x[i]);
  auto acc = lane[0];
  for (int l = 1; l < kLanes; ++l) {
    if constexpr (op == ReduceOp::sum)
      acc += lane[l];
    else
      acc = R::combine(acc, static_cast<T>(lane[l]));
  }
  return acc;
}

template <ReduceOp op, typename T>
typename Reducer<op, T>::Acc merge(typename Reducer<op, T>::Acc a, typename Reducer<op, T>::Acc b) {
  if constexpr (op == ReduceOp::sum)
    return a + b;
  else
    return Reducer<op, T>::combine(a, b);
}

// A row of any length, as the same sequence of fixed chunks whether or not they run in parallel.
template <ReduceOp op, typename T>
typename Reducer<op, T>::Acc reduce_row(const T* x, int64_t r, bool parallel) {
  using Acc = typename Reducer<op, T>::Acc;
  if (r <= kRowChunk) return reduce_contiguous<op>(x, r);
  const int64_t chunks = (r + kRowChunk - 1) / kRowChunk;
  auto chunk = [&](int64_t c) {
    return reduce_contiguous<op>(x + c * kRowChunk, std::min(kRowChunk, r - c * kRowChunk));
  };
  Acc acc = chunk(0);
  if (!parallel) {
    for (int64_t c = 1; c < chunks; ++c) acc = merge<op, T>(acc, chunk(c));
    return acc;
  }
  std::vector<Acc> partial(chunks);
  partial[0] = acc;
  parallel_for(chunks - 1, kRowChunk, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin + 1; c < end + 1; ++c) partial[c] = chunk(c);
  });
  for (int64_t c = 1; c < chunks; ++c) acc = merge<op, T>(acc, partial[c]);
  return acc;
}

template <ReduceOp op, typename T>
void reduce_impl(T* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  using R = Reducer<op, T>;
  using Acc = typename R::Acc;
  if (inner == 1 && outer == 1) {
    out[0] = static_cast<T>(reduce_row<op>(x, r, true));
    return;
  }
  if (inner == 1) {
    parallel_for(outer, r, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o)
        out[o] = static_cast<T>(reduce_row<op>(x + o * r, r, false));
    });
    return;
  }
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(outer * blocks, r * std::min(inner, kColumnBlock), [&](int64_t begin, int64_t end) {
    Acc acc[kColumnBlock];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t o = item / blocks;
      const int64_t i0 = (item % blocks) * kColumnBlock;
      const int64_t w = std::min(kColumnBlock, inner - i0);
      for (int64_t i = 0; i < w; ++i) acc[i] = R::init();
      for (int64_t j = 0; j < r; ++j) {
        const T* row = x + (o * r + j) * inner + i0;
        for (int64_t i = 0; i < w; ++i) acc[i] = R::combine(acc[i], row[i]);
      }
      T* dst = out + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) dst[i] = static_cast<T>(acc[i]);
    }
  });
}

// NaN counts as the maximum (its first occurrence wins), as torch.argmax.
template <typename T>
bool better(T x, T best) {
  return x > best || (x != x && best == best);
}

template <typename T>
void argmax_impl(int64_t* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  if (r == 0) {
    for (int64_t i = 0; i < outer * inner; ++i) out[i] = 0;
    return;
  }
  if (inner == 1) {
    parallel_for(outer, r, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const T* row = x + o * r;
        int64_t arg = 0;
        for (int64_t j = 1; j < r; ++j)
          if (better(row[j], row[arg])) arg = j;
        out[o] = arg;
      }
    });
    return;
  }
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  parallel_for(outer * blocks, r * std::min(inner, kColumnBlock), [&](int64_t begin, int64_t end) {
    T best[kColumnBlock];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t o = item / blocks;
      const int64_t i0 = (item % blocks) * kColumnBlock;
      const int64_t w = std::min(kColumnBlock, inner - i0);
      const T* first = x + o * r * inner + i0;
      int64_t* arg = out + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) {
        best[i] = first[i];
        arg[i] = 0;
      }
      for (int64_t j = 1; j < r; ++j) {
        const T* row = first + j * inner;
        for (int64_t i = 0; i < w; ++i) {
          if (better(row[i], best[i])) {
            best[i] = row[i];
            arg[i] = j;
          }
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, DType dtype, void* out, const void* x, int64_t outer,
                        int64_t r, int64_t inner) {
  dispatch_floating(dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    auto* y = static_cast<T*>(out);
    const auto* in = static_cast<const T*>(x);
    switch (op) {
      case ReduceOp::sum: return reduce_impl<ReduceOp::sum>(y, in, outer, r, inner);
      case ReduceOp::max: return reduce_impl<ReduceOp::max>(y, in, outer, r, inner);
      case ReduceOp::min: return reduce_impl<ReduceOp::min>(y, in, outer, r, inner);
    }
    fail("cpu reduce: unknown op code {}", static_cast<int>(op));
  });
}

void CpuBackend::argmax(DType dtype, int64_t* out, const void* x, int64_t outer, int64_t r,
                        int64_t inner) {
  dispatch_floating(dtype, "argmax", [&](auto tag) {
    using T = decltype(tag);
    argmax_impl(out, static_cast<const T*>(x), outer, r, inner);
  });
}

}  // namespace nabla::cpu
