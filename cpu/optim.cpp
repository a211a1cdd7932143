// CPU optimizer updates: SGD, Adam/AdamW, Adagrad, RMSprop, in place on one parameter tensor.
//
// Each follows the update written in torch.optim's documentation, in the same order of
// operations as PyTorch's single-tensor implementation (its lerp for running means, its
// addcdiv's value * (a / b)). Per-call scalars such as 1 - beta2 or the bias corrections are
// computed in double, as Python computes them, and only then rounded to the parameter's
// dtype: in float32, T(1) - T(0.999) differs from T(1 - 0.999) by 1e-5 relative.
#include <nabla/core/flags.h>
#include <nabla/cpu/cpu_backend.h>

#include <cmath>
#include <type_traits>

namespace nabla::cpu {

namespace {

// a + w * (b - a), as torch.lerp evaluates it.
template <typename T>
T lerp(T a, T b, T w) {
  return std::abs(w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}


// Element loops take their scalars by value, as locals: captured by reference they would
// have to be reloaded after every store through a T*.

template <typename T>
struct SgdScalars {
  T lr, momentum, keep, wd;  // keep = 1 - dampening
};

// param, grad, buf: (n); buf only read when kMomentum.
template <bool kDecay, bool kMomentum, bool kFirst, bool kNesterov, typename T>
void sgd_loop(T* param, const T* grad, T* buf, int64_t begin, int64_t end, SgdScalars<T> s) {
  for (int64_t i = begin; i < end; ++i) {
    T g = grad[i];
    if constexpr (kDecay) g += s.wd * param[i];
    if constexpr (kMomentum) {
      T b;
      if constexpr (kFirst)
        b = g;
      else
        b = s.momentum * buf[i] + s.keep * g;
      buf[i] = b;
      if constexpr (kNesterov)
        g = g + s.momentum * b;
      else
        g = b;
    }
    param[i] -= s.lr * g;
  }
}

template <typename T>
struct AdamScalars {
  T step_size, bias2_sqrt, w1, b2, w2, eps, wd, decay;
};

// param, grad, m, v: (n).
template <bool kDecoupled, bool kDecay, typename T>
void adam_loop(T* param, const T* grad, T* m, T* v, int64_t begin, int64_t end, AdamScalars<T> s) {
  for (int64_t i = begin; i < end; ++i) {
    T g = grad[i];
    if constexpr (kDecoupled) param[i] *= s.decay;
    if constexpr (kDecay) g += s.wd * param[i];
    const T mi = lerp(m[i], g, s.w1);
    const T vi = s.b2 * v[i] + s.w2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / s.bias2_sqrt + s.eps;
    param[i] -= s.step_size * (mi / denom);
  }
}

template <typename T>
struct AdagradScalars {
  T clr, wd, eps;
};

// param, grad, sum: (n).
template <bool kDecay, typename T>
void adagrad_loop(T* param, const T* grad, T* sum, int64_t begin, int64_t end,
                  AdagradScalars<T> s) {
  for (int64_t i = begin; i < end; ++i) {
    T g = grad[i];
    if constexpr (kDecay) g += s.wd * param[i];
    const T si = sum[i] + g * g;
    sum[i] = si;
    param[i] -= s.clr * (g / (std::sqrt(si) + s.eps));
  }
}

template <typename T>
struct RmspropScalars {
  T lr, alpha, w, eps, wd, momentum;  // w = 1 - alpha
};

// param, grad, square_avg: (n); grad_avg: (n) when kCentered; buf: (n) when kMomentum.
template <bool kDecay, bool kCentered, bool kMomentum, typename T>
void rmsprop_loop(T* param, const T* grad, T* square_avg, T* buf, T* grad_avg, int64_t begin,
                  int64_t end, RmspropScalars<T> s) {
  for (int64_t i = begin; i < end; ++i) {
    T g = grad[i];
    if constexpr (kDecay) g += s.wd * param[i];
    const T sq = s.alpha * square_avg[i] + s.w * g * g;
    square_avg[i] = sq;
    T avg;
    if constexpr (kCentered) {
      const T ga = lerp(grad_avg[i], g, s.w);
      grad_avg[i] = ga;
      avg = std::sqrt(sq - ga * ga) + s.eps;
    } else {
      avg = std::sqrt(sq) + s.eps;
    }
    if constexpr (kMomentum) {
      const T b = s.momentum * buf[i] + g / avg;
      buf[i] = b;
      param[i] -= s.lr * b;
    } else {
      param[i] -= s.lr * (g / avg);
    }
  }
}

template <typename T>
void sgd_impl(T* param, const T* grad, T* buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step) {
  const SgdScalars<T> s{T(lr), T(momentum), T(1 - dampening), T(weight_decay)};
  with_flags(
      [&](auto decay, auto mom, auto first, auto nest) {
        parallel_for(n, 1, [&](int64_t begin, int64_t end) {
          sgd_loop<decay(), mom(), first(), nest()>(param, grad, buf, begin, end, s);
        });
      },
      weight_decay != 0, momentum != 0, first_step, nesterov);
}

template <typename T>
void adam_impl(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, int64_t step) {
  const double bias1 = 1 - std::pow(beta1, double(step));
  const double bias2 = 1 - std::pow(beta2, double(step));
  const AdamScalars<T> s{
      T(lr / bias1),   T(std::sqrt(bias2)),     T(1 - beta1), T(beta2), T(1 - beta2), T(eps),
      T(weight_decay), T(1 - lr * weight_decay)};
  with_flags(
      [&](auto decoupled_wd, auto l2) {
        parallel_for(n, 1, [&](int64_t begin, int64_t end) {
          adam_loop<decoupled_wd(), l2()>(param, grad, m, v, begin, end, s);
        });
      },
      decoupled && weight_decay != 0, !decoupled && weight_decay != 0);
}

template <typename T>
void adagrad_impl(T* param, const T* grad, T* sum, int64_t n, double lr, double lr_decay,
                  double weight_decay, double eps, int64_t step) {
  const AdagradScalars<T> s{T(lr / (1 + double(step - 1) * lr_decay)), T(weight_decay), T(eps)};
  with_flags(
      [&](auto decay) {
        parallel_for(n, 1, [&](int64_t begin, int64_t end) {
          adagrad_loop<decay()>(param, grad, sum, begin, end, s);
        });
      },
      weight_decay != 0);
}

template <typename T>
void rmsprop_impl(T* param, const T* grad, T* square_avg, T* buf, T* grad_avg, int64_t n, double lr,
                  double alpha, double eps, double weight_decay, double momentum, bool centered) {
  const RmspropScalars<T> s{T(lr), T(alpha), T(1 - alpha), T(eps), T(weight_decay), T(momentum)};
  with_flags(
      [&](auto decay, auto cent, auto mom) {
        parallel_for(n, 1, [&](int64_t begin, int64_t end) {
          rmsprop_loop<decay(), cent(), mom()>(param, grad, square_avg, buf, grad_avg, begin, end,
                                               s);
        });
      },
      weight_decay != 0, centered, momentum > 0);
}

}  // namespace

// One tensor after another: each update is already parallel over its elements.
void CpuBackend::sgd_step(DType dtype, const ParamGroup& g, double lr, double momentum,
                          double dampening, double weight_decay, bool nesterov) {
  dispatch_floating(dtype, "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < g.count; ++i) {
      NABLA_ASSERT(g.steps[i] >= 1);
      void* buf = momentum != 0 ? g.state0[i] : nullptr;
      NABLA_ASSERT(momentum == 0 || buf != nullptr);
      sgd_impl(static_cast<T*>(g.params[i]), static_cast<const T*>(g.grads[i]), static_cast<T*>(buf),
               g.sizes[i], lr, momentum, dampening, weight_decay, nesterov, g.steps[i] == 1);
    }
  });
}

void CpuBackend::adam_step(DType dtype, const ParamGroup& g, double lr, double beta1, double beta2,
                           double eps, double weight_decay, bool decoupled) {
  dispatch_floating(dtype, "adam_step", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < g.count; ++i) {
      NABLA_ASSERT(g.steps[i] >= 1);
      adam_impl(static_cast<T*>(g.params[i]), static_cast<const T*>(g.grads[i]),
                static_cast<T*>(g.state0[i]), static_cast<T*>(g.state1[i]), g.sizes[i], lr, beta1,
                beta2, eps, weight_decay, decoupled, g.steps[i]);
    }
  });
}

void CpuBackend::adagrad_step(DType dtype, const ParamGroup& g, double lr, double lr_decay,
                              double weight_decay, double eps) {
  dispatch_floating(dtype, "adagrad_step", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < g.count; ++i) {
      NABLA_ASSERT(g.steps[i] >= 1);
      adagrad_impl(static_cast<T*>(g.params[i]), static_cast<const T*>(g.grads[i]),
                   static_cast<T*>(g.state0[i]), g.sizes[i], lr, lr_decay, weight_decay, eps,
                   g.steps[i]);
    }
  });
}

void CpuBackend::rmsprop_step(DType dtype, const ParamGroup& g, double lr, double alpha,
                              double eps, double weight_decay, double momentum, bool centered) {
  dispatch_floating(dtype, "rmsprop_step", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < g.count; ++i) {
      void* buf = momentum > 0 ? g.state1[i] : nullptr;
      void* avg = centered ? g.state2[i] : nullptr;
      NABLA_ASSERT(!centered || avg != nullptr);
      NABLA_ASSERT(momentum <= 0 || buf != nullptr);
      rmsprop_impl(static_cast<T*>(g.params[i]), static_cast<const T*>(g.grads[i]),
                   static_cast<T*>(g.state0[i]), static_cast<T*>(buf), static_cast<T*>(avg),
                   g.sizes[i], lr, alpha, eps, weight_decay, momentum, centered);
    }
  });
}

}  // namespace nabla::cpu
