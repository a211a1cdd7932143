// CPU embedding lookup and its backward (a scatter-add of rows, in index order).
#include <nabla/cpu/cpu_backend.h>

#include <cstring>

namespace nabla::cpu {

namespace {

template <typename T>
void embedding_forward_impl(T* y, const T* weight, const int64_t* indices, int64_t n, int64_t dim) {
  parallel_for(n, dim, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(y + i * dim, weight + indices[i] * dim, size_t(dim) * sizeof(T));
  });
}

// Threads split the columns, so every row of dweight is summed over i in the same order.
template <typename T>
void embedding_backward_impl(T* dweight, const T* dy, const int64_t* indices, int64_t n, int64_t num, int64_t dim,
                             int64_t padding_idx) {
  std::memset(dweight, 0, size_t(num * dim) * sizeof(T));
  parallel_for(dim, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = indices[i];
      if (r == padding_idx) continue;
      T* dst = dweight + r * dim;
      const T* src = dy + i * dim;
      for (int64_t j = begin; j < end; ++j) dst[j] += src[j];
    }
  });
}

}  // namespace

void CpuBackend::embedding_forward(DType dtype, void* y, const void* weight, const int64_t* indices, int64_t n,
                                   int64_t /*num*/, int64_t dim) {
  dispatch_floating(dtype, "embedding_forward", [&](auto tag) {
    using T = decltype(tag);
    embedding_forward_impl(static_cast<T*>(y), static_cast<const T*>(weight), indices, n, dim);
  });
}

void CpuBackend::embedding_backward(DType dtype, void* dweight, const void* dy, const int64_t* indices, int64_t n,
                                    int64_t num, int64_t dim, int64_t padding_idx) {
  dispatch_floating(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    embedding_backward_impl(static_cast<T*>(dweight), static_cast<const T*>(dy), indices, n, num, dim, padding_idx);
  });
}

}  // namespace nabla::cpu
