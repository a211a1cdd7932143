// CUDA optimizer updates: SGD, Adam/AdamW, Adagrad, RMSprop over a whole ParamGroup, in place.
// Same formulas as cpu/optim.cpp, the reference, operation for operation: its lerp, its order of
// products and sums, its per-call scalars computed in double on the host and then rounded to T.
// Every product goes through mul_rn, so that nvcc does not fuse it with the following sum into
// one fma (the CPU rounds twice). With nvcc's defaults (IEEE division and sqrt, denormals kept)
// every operation is rounded as on the CPU, so the two backends should agree bit for bit.
//
// Multi-tensor launches (the idea of PyTorch's multi_tensor_apply, simplified): the group's host
// arrays of device pointers are packed into one kernel argument, TensorChunks, holding up to
// kMaxTensors tensors: their pointers, sizes, per-tensor scalars (Adam's bias corrections,
// Adagrad's decayed rate, SGD's first-step flag) and a prefix sum of their chunk counts (a chunk
// is kChunk consecutive elements of one tensor). Blocks take chunks in a grid-stride loop over
// the launch's chunks and find a chunk's tensor by walking the prefix sums forward from the
// previous chunk's tensor, so the grid is sized by the device, never by the tensors, and any
// sizes fit in one launch. A group of up to kMaxTensors tensors is one launch; a larger one
// takes ceil(count / kMaxTensors) launches, in stream order. Nothing is allocated, nothing waits.
#include <nabla/core/flags.h>
#include <nabla/cuda/cuda_backend.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace nabla::cuda {

namespace {

// Tensors per launch. TensorChunks<double> plus the largest update functor stays under 4 KB,
// the kernel-parameter limit of every toolkit (static_assert in launch_updates).
constexpr int kMaxTensors = 48;
constexpr size_t kMaxParamBytes = 4096;
// Elements of one tensor that one block updates per step of its grid-stride loop.
constexpr int64_t kChunk = 4 * kBlock;

// Per-tensor scalars; their meaning depends on the update (see each functor).
template <typename T>
struct TensorScalars {
  T a, b;
  bool first;
};

// Tensors [0, count) of one launch. first_chunk[t] is the launch-wide index of tensor t's first
// chunk; first_chunk[count] is the number of chunks in the launch.
template <typename T>
struct TensorChunks {
  int count;
  T* param[kMaxTensors];
  const T* grad[kMaxTensors];
  T* state0[kMaxTensors];  // null where the update does not use it
  T* state1[kMaxTensors];
  T* state2[kMaxTensors];
  int64_t size[kMaxTensors];
  int64_t first_chunk[kMaxTensors + 1];
  T a[kMaxTensors], b[kMaxTensors];
  bool first[kMaxTensors];
};

// What the update functors see of one tensor.
template <typename T>
struct TensorRef {
  T* param;
  const T* grad;
  T* state0;
  T* state1;
  T* state2;
  T a, b;
  bool first;
};

// Launch chunk c: its tensor and its element range [begin, end) there. `t` is the tensor of an
// earlier chunk (or 0): chunks of a tensor are consecutive and tensors in order, so the walk
// only moves forward, past tensors without chunks (size 0) too. Requires c < first_chunk[count].
struct ChunkRange {
  int tensor;
  int64_t begin, end;
};
template <typename T>
__host__ __device__ __forceinline__ ChunkRange chunk_range(const TensorChunks<T>& tl, int64_t c, int t) {
  while (c >= tl.first_chunk[t + 1]) ++t;
  const int64_t begin = (c - tl.first_chunk[t]) * kChunk;
  const int64_t end = begin + kChunk < tl.size[t] ? begin + kChunk : tl.size[t];
  return {t, begin, end};
}

// Tensors [begin, end) of g (end - begin <= kMaxTensors), with per_tensor(i) giving tensor i's
// TensorScalars.
template <typename T, typename PerTensor>
TensorChunks<T> pack_tensors(const ParamGroup& g, int64_t begin, int64_t end, const PerTensor& per_tensor) {
  NABLA_ASSERT(begin >= 0 && begin < end && end - begin <= kMaxTensors && end <= g.count);
  TensorChunks<T> tl{};
  tl.count = static_cast<int>(end - begin);
  int64_t chunks = 0;
  for (int j = 0; j < tl.count; ++j) {
    const int64_t i = begin + j;
    NABLA_ASSERT(g.sizes[i] >= 0);
    tl.param[j] = static_cast<T*>(g.params[i]);
    tl.grad[j] = static_cast<const T*>(g.grads[i]);
    tl.state0[j] = g.state0 ? static_cast<T*>(g.state0[i]) : nullptr;
    tl.state1[j] = g.state1 ? static_cast<T*>(g.state1[i]) : nullptr;
    tl.state2[j] = g.state2 ? static_cast<T*>(g.state2[i]) : nullptr;
    tl.size[j] = g.sizes[i];
    tl.first_chunk[j] = chunks;
    chunks += (g.sizes[i] + kChunk - 1) / kChunk;
    const TensorScalars<T> s = per_tensor(i);
    tl.a[j] = s.a;
    tl.b[j] = s.b;
    tl.first[j] = s.first;
  }
  tl.first_chunk[tl.count] = chunks;
  return tl;
}

// op(tensor, i) updates element i of one tensor.
template <typename T, typename Op>
__global__ void __launch_bounds__(kBlock) multi_tensor_kernel(const TensorChunks<T> tl, const Op op) {
  const int64_t chunks = tl.first_chunk[tl.count];
  int t = 0;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const ChunkRange r = chunk_range(tl, c, t);
    t = r.tensor;
    const TensorRef<T> ref{tl.param[t], tl.grad[t], tl.state0[t], tl.state1[t], tl.state2[t],
                           tl.a[t],     tl.b[t],    tl.first[t]};
    for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kBlock) op(ref, i);
  }
}

// One launch per kMaxTensors tensors of g.
template <typename T, typename Op, typename PerTensor>
void launch_updates(const CudaBackend& be, const ParamGroup& g, const Op& op, const PerTensor& per_tensor) {
  static_assert(sizeof(TensorChunks<T>) + sizeof(Op) <= kMaxParamBytes, "kernel arguments over 4 KB");
  for (int64_t begin = 0; begin < g.count; begin += kMaxTensors) {
    const int64_t end = std::min<int64_t>(g.count, begin + kMaxTensors);
    const TensorChunks<T> tl = pack_tensors<T>(g, begin, end, per_tensor);
    const int64_t chunks = tl.first_chunk[tl.count];
    if (chunks == 0) continue;
    // grid(chunks * kBlock): one block per chunk, at most what fills the device.
    multi_tensor_kernel<T, Op><<<be.grid(chunks * kBlock), kBlock, 0, be.stream()>>>(tl, op);
    NABLA_CUDA_CHECK_LAUNCH();
  }
}

// Internal invariants the CPU checks too: steps count from 1; the states an update uses exist.
void check_group(const ParamGroup& g, bool uses_steps, bool uses0, bool uses1, bool uses2) {
  for (int64_t i = 0; i < g.count; ++i) {
    if (uses_steps) NABLA_ASSERT(g.steps[i] >= 1);
    if (uses0) NABLA_ASSERT(g.state0 && g.state0[i]);
    if (uses1) NABLA_ASSERT(g.state1 && g.state1[i]);
    if (uses2) NABLA_ASSERT(g.state2 && g.state2[i]);
  }
}


// ---- device arithmetic ------------------------------------------------------------------------

template <typename T>
constexpr bool kIsFloat = std::is_same_v<T, float>;

// A separately rounded product: never fused into an fma with the sum that uses it.
template <typename T> __device__ __forceinline__ T mul_rn(T p, T q) { if constexpr (kIsFloat<T>) return __fmul_rn(p, q); else return __dmul_rn(p, q); }
template <typename T> __device__ __forceinline__ T d_sqrt(T v) { if constexpr (kIsFloat<T>) return ::sqrtf(v); else return ::sqrt(v); }
template <typename T> __device__ __forceinline__ T d_abs(T v) { if constexpr (kIsFloat<T>) return ::fabsf(v); else return ::fabs(v); }

// a + w * (b - a), as torch.lerp (and cpu/optim.cpp) evaluates it.
template <typename T>
__device__ __forceinline__ T lerp(T a, T b, T w) {
  return d_abs(w) < T(0.5) ? a + mul_rn(w, b - a) : b - mul_rn(b - a, T(1) - w);
}

// ---- updates (cpu/optim.cpp's loops, one element each) ----------------------------------------

// state0 = momentum buffer (read only after the first step); per tensor: first = step == 1.
template <typename T, bool kDecay, bool kMomentum, bool kNesterov>
struct SgdOp {
  T lr, momentum, keep, wd;  // keep = 1 - dampening
  __device__ void operator()(const TensorRef<T>& r, int64_t i) const {
    const T p = r.param[i];
    T g = r.grad[i];
    if constexpr (kDecay) g += mul_rn(wd, p);
    if constexpr (kMomentum) {
      const T b = r.first ? g : mul_rn(momentum, r.state0[i]) + mul_rn(keep, g);
      r.state0[i] = b;
      if constexpr (kNesterov)
        g = g + mul_rn(momentum, b);
      else
        g = b;
    }
    r.param[i] = p - mul_rn(lr, g);
  }
};

// state0 = exp_avg, state1 = exp_avg_sq; per tensor: a = lr / bias1, b = sqrt(bias2).
template <typename T, bool kDecoupled, bool kDecay>
struct AdamOp {
  T w1, b2, w2, eps, wd, decay;  // w1 = 1 - beta1, w2 = 1 - beta2, decay = 1 - lr * wd
  __device__ void operator()(const TensorRef<T>& r, int64_t i) const {
    T p = r.param[i];
    T g = r.grad[i];
    if constexpr (kDecoupled) p = mul_rn(p, decay);
    if constexpr (kDecay) g += mul_rn(wd, p);
    const T m = lerp(r.state0[i], g, w1);
    const T v = mul_rn(b2, r.state1[i]) + mul_rn(mul_rn(w2, g), g);
    r.state0[i] = m;
    r.state1[i] = v;
    const T denom = d_sqrt(v) / r.b + eps;
    r.param[i] = p - mul_rn(r.a, m / denom);
  }
};

// state0 = sum of squared gradients; per tensor: a = lr / (1 + (step - 1) * lr_decay).
template <typename T, bool kDecay>
struct AdagradOp {
  T wd, eps;
  __device__ void operator()(const TensorRef<T>& r, int64_t i) const {
    const T p = r.param[i];
    T g = r.grad[i];
    if constexpr (kDecay) g += mul_rn(wd, p);
    const T s = r.state0[i] + mul_rn(g, g);
    r.state0[i] = s;
    r.param[i] = p - mul_rn(r.a, g / (d_sqrt(s) + eps));
  }
};

// state0 = square_avg, state1 = momentum buffer (kMomentum), state2 = grad_avg (kCentered).
template <typename T, bool kDecay, bool kCentered, bool kMomentum>
struct RmspropOp {
  T lr, alpha, w, eps, wd, momentum;  // w = 1 - alpha
  __device__ void operator()(const TensorRef<T>& r, int64_t i) const {
    const T p = r.param[i];
    T g = r.grad[i];
    if constexpr (kDecay) g += mul_rn(wd, p);
    const T sq = mul_rn(alpha, r.state0[i]) + mul_rn(mul_rn(w, g), g);
    r.state0[i] = sq;
    T avg;
    if constexpr (kCentered) {
      const T ga = lerp(r.state2[i], g, w);
      r.state2[i] = ga;
      avg = d_sqrt(sq - mul_rn(ga, ga)) + eps;
    } else {
      avg = d_sqrt(sq) + eps;
    }
    if constexpr (kMomentum) {
      const T b = mul_rn(momentum, r.state1[i]) + g / avg;
      r.state1[i] = b;
      r.param[i] = p - mul_rn(lr, b);
    } else {
      r.param[i] = p - mul_rn(lr, g / avg);
    }
  }
};

}  // namespace

void CudaBackend::sgd_step(DType dtype, const ParamGroup& g, double lr, double momentum, double dampening,
                           double weight_decay, bool nesterov) {
  if (g.count == 0) return;
  check_group(g, true, momentum != 0, false, false);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    const auto per_tensor = [&](int64_t i) { return TensorScalars<T>{T(0), T(0), g.steps[i] == 1}; };
    with_flags(
        [&](auto decay, auto mom, auto nest) {
          using Op = SgdOp<T, decltype(decay)::value, decltype(mom)::value, decltype(nest)::value>;
          launch_updates<T>(*this, g, Op{T(lr), T(momentum), T(1 - dampening), T(weight_decay)}, per_tensor);
        },
        weight_decay != 0, momentum != 0, momentum != 0 && nesterov);
  });
}

void CudaBackend::adam_step(DType dtype, const ParamGroup& g, double lr, double beta1, double beta2, double eps,
                            double weight_decay, bool decoupled) {
  if (g.count == 0) return;
  check_group(g, true, true, true, false);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "adam_step", [&](auto tag) {
    using T = decltype(tag);
    const auto per_tensor = [&](int64_t i) {
      const double bias1 = 1 - std::pow(beta1, double(g.steps[i]));
      const double bias2 = 1 - std::pow(beta2, double(g.steps[i]));
      return TensorScalars<T>{T(lr / bias1), T(std::sqrt(bias2)), false};
    };
    with_flags(
        [&](auto decoupled_wd, auto l2) {
          using Op = AdamOp<T, decltype(decoupled_wd)::value, decltype(l2)::value>;
          const Op op{T(1 - beta1), T(beta2), T(1 - beta2), T(eps), T(weight_decay), T(1 - lr * weight_decay)};
          launch_updates<T>(*this, g, op, per_tensor);
        },
        decoupled && weight_decay != 0, !decoupled && weight_decay != 0);
  });
}

void CudaBackend::adagrad_step(DType dtype, const ParamGroup& g, double lr, double lr_decay, double weight_decay,
                               double eps) {
  if (g.count == 0) return;
  check_group(g, true, true, false, false);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "adagrad_step", [&](auto tag) {
    using T = decltype(tag);
    const auto per_tensor = [&](int64_t i) {
      return TensorScalars<T>{T(lr / (1 + double(g.steps[i] - 1) * lr_decay)), T(0), false};
    };
    with_flags(
        [&](auto decay) {
          using Op = AdagradOp<T, decltype(decay)::value>;
          launch_updates<T>(*this, g, Op{T(weight_decay), T(eps)}, per_tensor);
        },
        weight_decay != 0);
  });
}

void CudaBackend::rmsprop_step(DType dtype, const ParamGroup& g, double lr, double alpha, double eps,
                               double weight_decay, double momentum, bool centered) {
  if (g.count == 0) return;
  check_group(g, false, true, momentum > 0, centered);
  DeviceGuard guard(device());
  dispatch_floating(dtype, "rmsprop_step", [&](auto tag) {
    using T = decltype(tag);
    const auto per_tensor = [](int64_t) { return TensorScalars<T>{T(0), T(0), false}; };
    with_flags(
        [&](auto decay, auto cent, auto mom) {
          using Op = RmspropOp<T, decltype(decay)::value, decltype(cent)::value, decltype(mom)::value>;
          const Op op{T(lr), T(alpha), T(1 - alpha), T(eps), T(weight_decay), T(momentum)};
          launch_updates<T>(*this, g, op, per_tensor);
        },
        weight_decay != 0, centered, momentum > 0);
  });
}

}  // namespace nabla::cuda
