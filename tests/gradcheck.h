// Float64 central-difference gradient checker shared by the op tests.
#pragma once

#include <nabla/core/ops.h>

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace nabla::testing {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Random float64 input of `shape` with values in [lo, hi), magnitude pushed at least `gap` away
// from each of `kinks` so that finite differences do not straddle a kink.
inline Tensor input(const Shape& shape, double lo = -2, double hi = 2, std::vector<double> kinks = {0.0},
                    double gap = 0.05) {
  Tensor t = rand(shape, {.dtype = DType::float64}, lo, hi);
  auto v = t.to_vector<double>();
  for (double& x : v)
    for (double k : kinks)
      if (std::abs(x - k) < gap) x = x < k ? k - gap : k + gap;
  return from_vector(v, shape, {.dtype = DType::float64});
}

// Checks d(sum(f(xs) * w))/dxs by central differences (eps 1e-6) against backward, with
// atol 1e-5, rtol 1e-3, w a fixed random weighting. Each input starts with a non-zero gradient
// G0, so the check also proves that backward adds: expected = G0 + numeric.
inline ::testing::AssertionResult gradcheck(const Fn& f, std::vector<Tensor> xs, double eps = 1e-6,
                                            double atol = 1e-5, double rtol = 1e-3) {
  for (auto& x : xs) x = x.detach().clone().requires_grad_(true);
  Tensor out = f(xs);
  Tensor w = rand(out.shape(), {.dtype = DType::float64}, 0.5, 1.5);
  std::vector<Tensor> g0;
  for (auto& x : xs) {
    g0.push_back(rand(x.shape(), {.dtype = DType::float64}, -1, 1));
    x.set_grad(g0.back().clone());
  }
  sum(mul(out, w)).backward();
  NoGrad ng;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor g = xs[i].grad();
    if (!g.defined()) return ::testing::AssertionFailure() << "input " << i << " got no gradient";
    auto analytic = g.to_vector<double>();
    auto base = g0[i].to_vector<double>();
    auto v = xs[i].to_vector<double>();
    for (size_t j = 0; j < v.size(); ++j) {
      auto eval = [&](double val) {
        auto vv = v;
        vv[j] = val;
        std::vector<Tensor> ys = xs;
        ys[i] = from_vector(vv, xs[i].shape(), {.dtype = DType::float64});
        return sum(mul(f(ys), w)).item();
      };
      const double numeric = (eval(v[j] + eps) - eval(v[j] - eps)) / (2 * eps);
      const double expected = base[j] + numeric;
      if (std::abs(analytic[j] - expected) > atol + rtol * std::abs(expected))
        return ::testing::AssertionFailure() << "input " << i << " element " << j << ": backward gives "
                                             << analytic[j] - base[j] << ", finite differences " << numeric;
    }
  }
  return ::testing::AssertionSuccess();
}

// The message of the nabla::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace nabla::testing
