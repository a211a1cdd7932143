// Optimizers (optim/): the first three steps of each variant against torch.optim's documented
// algorithm, written out below per element in plain double arithmetic; then per-parameter state
// and step counts, skipped parameters, zero_grad, set_lr, the constructors' checks, float32, a
// device or dtype change before the first step, and a quadratic that each optimizer minimizes.
#include <nabla/nabla.h>

#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace nb = nabla;

namespace {

using Vec = std::vector<double>;

// A parameter of five elements and the gradients of its first three steps, set by hand: signs
// vary, one gradient is exactly zero, and every step differs.
const Vec kInit = {0.5, -1.25, 2.0, 0.0, -0.3};
const Vec kGrads[3] = {{0.1, -0.4, 1.5, -2.0, 0.05}, {-0.3, 0.2, 0.7, -1.0, 0.0}, {0.25, -0.6, -0.9, 0.4, 0.8}};

// ---- references: torch.optim's algorithm boxes, one element at a time ------------------------
// Each keeps its state by name (as Optimizer::state() names it) and its own step count t.

struct Reference {
  std::map<std::string, Vec> state;
  int64_t t = 0;
  Vec& buffer(const std::string& name, size_t n, double init = 0) {
    auto it = state.find(name);
    if (it == state.end()) it = state.emplace(name, Vec(n, init)).first;
    return it->second;
  }
};

// SGD: g += wd*p; b = t > 1 ? mu*b + (1 - dampening)*g : g; g = nesterov ? g + mu*b : b; p -= lr*g.
struct SgdRef : Reference {
  nb::SGDOptions o;
  explicit SgdRef(nb::SGDOptions opts) : o(opts) {}
  void step(Vec& p, const Vec& grad) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (o.weight_decay != 0) g += o.weight_decay * p[i];
      if (o.momentum != 0) {
        Vec& b = buffer("momentum_buffer", p.size());
        b[i] = t > 1 ? o.momentum * b[i] + (1 - o.dampening) * g : g;
        g = o.nesterov ? g + o.momentum * b[i] : b[i];
      }
      p[i] -= o.lr * g;
    }
  }
};

// Adam: g += wd*p (AdamW instead: p *= 1 - lr*wd); m = b1*m + (1 - b1)*g; v = b2*v + (1 - b2)*g^2;
// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
struct AdamRef : Reference {
  nb::AdamOptions o;
  bool decoupled;
  AdamRef(nb::AdamOptions opts, bool adamw) : o(opts), decoupled(adamw) {}
  void step(Vec& p, const Vec& grad) {
    ++t;
    Vec& m = buffer("exp_avg", p.size());
    Vec& v = buffer("exp_avg_sq", p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (decoupled)
        p[i] *= 1 - o.lr * o.weight_decay;
      else
        g += o.weight_decay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(o.beta1, double(t)));
      const double v_hat = v[i] / (1 - std::pow(o.beta2, double(t)));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
};
nb::AdamOptions adam_options(const nb::AdamWOptions& o) { return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}; }

// Adagrad: lr_t = lr / (1 + (t - 1)*lr_decay); g += wd*p; sum += g^2 (sum starts at
// initial_accumulator_value); p -= lr_t * g / (sqrt(sum) + eps).
struct AdagradRef : Reference {
  nb::AdagradOptions o;
  explicit AdagradRef(nb::AdagradOptions opts) : o(opts) {}
  void step(Vec& p, const Vec& grad) {
    ++t;
    Vec& sum = buffer("sum", p.size(), o.initial_accumulator_value);
    const double clr = o.lr / (1 + double(t - 1) * o.lr_decay);
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = grad[i] + o.weight_decay * p[i];
      sum[i] += g * g;
      p[i] -= clr * g / (std::sqrt(sum[i]) + o.eps);
    }
  }
};

// RMSprop: g += wd*p; v = alpha*v + (1 - alpha)*g^2; centered: ga = alpha*ga + (1 - alpha)*g and
// v~ = v - ga^2; momentum: b = mu*b + g / (sqrt(v~) + eps), p -= lr*b; else p -= lr*g / (sqrt(v~) + eps).
struct RmspropRef : Reference {
  nb::RMSpropOptions o;
  explicit RmspropRef(nb::RMSpropOptions opts) : o(opts) {}
  void step(Vec& p, const Vec& grad) {
    ++t;
    Vec& v = buffer("square_avg", p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = grad[i] + o.weight_decay * p[i];
      v[i] = o.alpha * v[i] + (1 - o.alpha) * g * g;
      double v_tilde = v[i];
      if (o.centered) {
        Vec& ga = buffer("grad_avg", p.size());
        ga[i] = o.alpha * ga[i] + (1 - o.alpha) * g;
        v_tilde -= ga[i] * ga[i];
      }
      if (o.momentum > 0) {
        Vec& b = buffer("momentum_buffer", p.size());
        b[i] = o.momentum * b[i] + g / (std::sqrt(v_tilde) + o.eps);
        p[i] -= o.lr * b[i];
      } else {
        p[i] -= o.lr * g / (std::sqrt(v_tilde) + o.eps);
      }
    }
  }
};

// ---- helpers -------------------------------------------------------------------------------------

using MakeOptimizer = std::function<std::unique_ptr<nb::Optimizer>(std::vector<nb::Tensor>)>;

nb::Tensor tensor(const Vec& v, nb::DType dtype = nb::DType::float64, nb::Shape shape = {}) {
  return nb::from_vector(v, shape, {.dtype = dtype});
}

nb::Tensor parameter(const Vec& v, nb::DType dtype = nb::DType::float64, nb::Shape shape = {}) {
  nb::Tensor p = tensor(v, dtype, shape);
  p.requires_grad_();
  return p;
}

// |got - want| <= tol * (1 + |want|) elementwise.
void expect_close(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << what << ", element " << i;
}

std::map<std::string, nb::Tensor> state_map(const nb::Optimizer& opt) {
  std::map<std::string, nb::Tensor> out;
  for (auto& [name, t] : opt.state()) out.emplace(name, t);
  return out;
}

// Three steps of the optimizer on one parameter made from kInit, against the reference after
// every step: the parameter, then (after the last step) every named state tensor and the count.
// float64 is held to 1e-10, well inside the 1e-6 the optimizers must meet; float32 to 1e-5.
template <typename Ref>
void expect_three_steps_match(const MakeOptimizer& make, Ref ref, nb::DType dtype = nb::DType::float64) {
  const double tol = dtype == nb::DType::float64 ? 1e-10 : 1e-5;
  nb::Tensor p = parameter(kInit, dtype);
  auto opt = make({p});
  EXPECT_TRUE(opt->state().empty()) << "state before the first step";
  Vec want = kInit;
  for (int s = 0; s < 3; ++s) {
    p.set_grad(tensor(kGrads[s], dtype));
    opt->step();
    ref.step(want, kGrads[s]);
    expect_close(p.to_vector<double>(), want, tol, fmt::format("{}: parameter after step {}", opt->name(), s + 1));
  }
  auto state = state_map(*opt);
  ASSERT_TRUE(state.count("0.step")) << opt->name();
  EXPECT_EQ(state.at("0.step").dtype(), nb::DType::int64);
  EXPECT_EQ(state.at("0.step").item<int64_t>(), 3);
  EXPECT_EQ(state.size(), ref.state.size() + 1) << opt->name() << ": named state entries";
  for (auto& [name, values] : ref.state) {
    ASSERT_TRUE(state.count("0." + name)) << opt->name() << " lacks state 0." << name;
    const nb::Tensor& t = state.at("0." + name);
    EXPECT_EQ(t.dtype(), dtype);
    expect_close(t.to_vector<double>(), values, tol, fmt::format("{}: state {}", opt->name(), name));
  }
}

template <typename Opt, typename Options>
MakeOptimizer maker(Options o) {
  return [o](std::vector<nb::Tensor> params) { return std::make_unique<Opt>(std::move(params), o); };
}

// Runs f, which must throw nabla::Error with every one of `parts` in its message.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no nabla::Error thrown; expected one mentioning " << *parts.begin();
  } catch (const nb::Error& e) {
    const std::string msg = e.what();
    for (const std::string& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << msg << "' lacks '" << s << "'";
  }
}

}  // namespace

// ---- three steps against the documented algorithm, float64 ----------------------------------------

TEST(OptimSGD, ThreeSteps_lr0p1) {
  nb::SGDOptions o{.lr = 0.1};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_defaults_lr0p01) {
  nb::SGDOptions o{};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_lr0p1_momentum0p9) {
  nb::SGDOptions o{.lr = 0.1, .momentum = 0.9};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_lr0p1_momentum0p9_dampening0p5) {
  nb::SGDOptions o{.lr = 0.1, .momentum = 0.9, .dampening = 0.5};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_lr0p1_momentum0p9_nesterov) {
  nb::SGDOptions o{.lr = 0.1, .momentum = 0.9, .nesterov = true};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_lr0p1_weightdecay0p2) {
  nb::SGDOptions o{.lr = 0.1, .weight_decay = 0.2};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}
TEST(OptimSGD, ThreeSteps_lr0p05_momentum0p8_weightdecay0p1_nesterov) {
  nb::SGDOptions o{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true};
  expect_three_steps_match(maker<nb::SGD>(o), SgdRef(o));
}

TEST(OptimAdam, ThreeSteps_defaults_lr1em3) {
  nb::AdamOptions o{};
  expect_three_steps_match(maker<nb::Adam>(o), AdamRef(o, false));
}
TEST(OptimAdam, ThreeSteps_lr0p1) {
  nb::AdamOptions o{.lr = 0.1};
  expect_three_steps_match(maker<nb::Adam>(o), AdamRef(o, false));
}
TEST(OptimAdam, ThreeSteps_lr0p1_weightdecay0p1) {
  nb::AdamOptions o{.lr = 0.1, .weight_decay = 0.1};
  expect_three_steps_match(maker<nb::Adam>(o), AdamRef(o, false));
}
// A large eps tells eps outside the square root (torch) from eps inside it.
TEST(OptimAdam, ThreeSteps_lr0p05_beta1_0p5_beta2_0p8_eps0p1_weightdecay0p3) {
  nb::AdamOptions o{.lr = 0.05, .beta1 = 0.5, .beta2 = 0.8, .eps = 0.1, .weight_decay = 0.3};
  expect_three_steps_match(maker<nb::Adam>(o), AdamRef(o, false));
}

TEST(OptimAdamW, ThreeSteps_lr0p1_defaults_weightdecay0p01) {
  nb::AdamWOptions o{.lr = 0.1};
  expect_three_steps_match(maker<nb::AdamW>(o), AdamRef(adam_options(o), true));
}
TEST(OptimAdamW, ThreeSteps_lr0p05_beta1_0p5_beta2_0p8_eps0p1_weightdecay0p5) {
  nb::AdamWOptions o{.lr = 0.05, .beta1 = 0.5, .beta2 = 0.8, .eps = 0.1, .weight_decay = 0.5};
  expect_three_steps_match(maker<nb::AdamW>(o), AdamRef(adam_options(o), true));
}
TEST(OptimAdamW, ZeroWeightDecayEqualsAdam_lr0p1) {
  nb::AdamWOptions o{.lr = 0.1, .weight_decay = 0};
  expect_three_steps_match(maker<nb::AdamW>(o), AdamRef(adam_options(o), false));
}

TEST(OptimAdagrad, ThreeSteps_lr0p1) {
  nb::AdagradOptions o{.lr = 0.1};
  expect_three_steps_match(maker<nb::Adagrad>(o), AdagradRef(o));
}
TEST(OptimAdagrad, ThreeSteps_lr0p1_lrdecay0p5_initialaccumulator0p3) {
  nb::AdagradOptions o{.lr = 0.1, .lr_decay = 0.5, .initial_accumulator_value = 0.3};
  expect_three_steps_match(maker<nb::Adagrad>(o), AdagradRef(o));
}
TEST(OptimAdagrad, ThreeSteps_lr0p2_weightdecay0p2_eps0p1) {
  nb::AdagradOptions o{.lr = 0.2, .weight_decay = 0.2, .eps = 0.1};
  expect_three_steps_match(maker<nb::Adagrad>(o), AdagradRef(o));
}

TEST(OptimRMSprop, ThreeSteps_defaults_lr0p01) {
  nb::RMSpropOptions o{};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}
TEST(OptimRMSprop, ThreeSteps_lr0p01_momentum0p9) {
  nb::RMSpropOptions o{.momentum = 0.9};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}
TEST(OptimRMSprop, ThreeSteps_lr0p01_centered) {
  nb::RMSpropOptions o{.centered = true};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}
TEST(OptimRMSprop, ThreeSteps_lr0p01_centered_momentum0p5) {
  nb::RMSpropOptions o{.momentum = 0.5, .centered = true};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}
TEST(OptimRMSprop, ThreeSteps_lr0p01_weightdecay0p1) {
  nb::RMSpropOptions o{.weight_decay = 0.1};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}
TEST(OptimRMSprop, ThreeSteps_lr0p05_alpha0p5_eps0p1) {
  nb::RMSpropOptions o{.lr = 0.05, .alpha = 0.5, .eps = 0.1};
  expect_three_steps_match(maker<nb::RMSprop>(o), RmspropRef(o));
}

// ---- float32 ---------------------------------------------------------------------------------------

TEST(OptimFloat32, ThreeStepsOfEachMatchTheDoubleReference) {
  nb::SGDOptions sgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true};
  expect_three_steps_match(maker<nb::SGD>(sgd), SgdRef(sgd), nb::DType::float32);
  nb::AdamOptions adam{.lr = 0.1, .weight_decay = 0.1};
  expect_three_steps_match(maker<nb::Adam>(adam), AdamRef(adam, false), nb::DType::float32);
  nb::AdamWOptions adamw{.lr = 0.1, .weight_decay = 0.1};
  expect_three_steps_match(maker<nb::AdamW>(adamw), AdamRef(adam_options(adamw), true), nb::DType::float32);
  nb::AdagradOptions adagrad{.lr = 0.1, .lr_decay = 0.5, .initial_accumulator_value = 0.3};
  expect_three_steps_match(maker<nb::Adagrad>(adagrad), AdagradRef(adagrad), nb::DType::float32);
  nb::RMSpropOptions rmsprop{.momentum = 0.5, .centered = true};
  expect_three_steps_match(maker<nb::RMSprop>(rmsprop), RmspropRef(rmsprop), nb::DType::float32);
}

// ---- several parameters, skipped parameters ---------------------------------------------------------

// a [5] and b [2, 3] in one Adam; b has no gradient at the second step. b must stay bitwise
// unchanged then, and its third-step update is its second (bias corrections with t = 2).
TEST(OptimState, SkippedParameterIsUnchangedAndItsStepDoesNotAdvance_adam_a5_b2x3) {
  const Vec b_init = {1.0, -2.0, 0.5, 0.25, -0.75, 3.0};
  const Vec b_grads[2] = {{0.3, 0.1, -0.2, 0.5, -1.0, 0.7}, {-0.4, 0.9, 0.2, -0.1, 0.6, 0.05}};
  nb::Tensor a = parameter(kInit), b = parameter(b_init, nb::DType::float64, {2, 3});
  nb::AdamOptions o{.lr = 0.1, .weight_decay = 0.05};
  nb::Adam opt({a, b}, o);
  AdamRef ref_a(o, false), ref_b(o, false);
  Vec want_a = kInit, want_b = b_init;

  a.set_grad(tensor(kGrads[0]));
  b.set_grad(tensor(b_grads[0], nb::DType::float64, {2, 3}));
  opt.step();
  ref_a.step(want_a, kGrads[0]);
  ref_b.step(want_b, b_grads[0]);

  b.zero_grad();  // set to none: b sits this step out
  a.set_grad(tensor(kGrads[1]));
  const Vec b_before = b.to_vector<double>();
  opt.step();
  ref_a.step(want_a, kGrads[1]);
  EXPECT_EQ(b.to_vector<double>(), b_before);
  EXPECT_EQ(state_map(opt).at("1.step").item<int64_t>(), 1);

  a.set_grad(tensor(kGrads[2]));
  b.set_grad(tensor(b_grads[1], nb::DType::float64, {2, 3}));
  opt.step();
  ref_a.step(want_a, kGrads[2]);
  ref_b.step(want_b, b_grads[1]);

  expect_close(a.to_vector<double>(), want_a, 1e-10, "a");
  expect_close(b.to_vector<double>(), want_b, 1e-10, "b");
  auto state = state_map(opt);
  EXPECT_EQ(state.at("0.step").item<int64_t>(), 3);
  EXPECT_EQ(state.at("1.step").item<int64_t>(), 2);
  EXPECT_EQ(state.at("1.exp_avg").shape(), (nb::Shape{2, 3}));
  expect_close(state.at("1.exp_avg_sq").to_vector<double>(), ref_b.state.at("exp_avg_sq"), 1e-10, "b exp_avg_sq");
}

// SGD with momentum: a parameter's first update takes its buffer from the gradient; one that joins
// late must do that at its own first update, not at the optimizer's.
TEST(OptimState, ParameterJoiningLateStartsItsOwnMomentumBuffer_sgd_momentum0p9) {
  nb::Tensor a = parameter(kInit), b = parameter({1, 2, 3, 4, 5});
  nb::SGDOptions o{.lr = 0.1, .momentum = 0.9};
  nb::SGD opt({a, b}, o);
  SgdRef ref_b(o);
  Vec want_b = {1, 2, 3, 4, 5};
  for (int s = 0; s < 3; ++s) {
    a.set_grad(tensor(kGrads[s]));
    if (s >= 1) b.set_grad(tensor(kGrads[s]));
    opt.step();
    if (s >= 1) ref_b.step(want_b, kGrads[s]);
  }
  expect_close(b.to_vector<double>(), want_b, 1e-10, "b");
  EXPECT_EQ(state_map(opt).at("1.step").item<int64_t>(), 2);
}

TEST(OptimState, NeverUpdatedParameterHasNoStateAndStepWithoutGradientsIsANoOp) {
  nb::Tensor a = parameter(kInit), b = parameter({1, 2});
  nb::RMSprop opt({a, b}, {.momentum = 0.9, .centered = true});
  opt.step();  // nothing has a gradient yet
  EXPECT_EQ(a.to_vector<double>(), kInit);
  EXPECT_TRUE(opt.state().empty());
  a.set_grad(tensor(kGrads[0]));
  opt.step();
  auto state = state_map(opt);
  EXPECT_EQ(state.count("1.step"), 0u);
  EXPECT_EQ(state.count("1.square_avg"), 0u);
  EXPECT_EQ(state.count("0.momentum_buffer"), 1u);
  EXPECT_EQ(state.count("0.grad_avg"), 1u);
  EXPECT_EQ(b.to_vector<double>(), (Vec{1, 2}));
}

TEST(OptimState, UnusedBuffersAreNotNamed_sgd_without_momentum_rmsprop_plain) {
  nb::Tensor a = parameter(kInit), b = parameter(kInit);
  nb::SGD sgd({a});
  nb::RMSprop rmsprop({b});
  a.set_grad(tensor(kGrads[0]));
  b.set_grad(tensor(kGrads[0]));
  sgd.step();
  rmsprop.step();
  auto s = state_map(sgd);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.count("0.step"), 1u);
  auto r = state_map(rmsprop);
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r.count("0.square_avg"), 1u);
}

// State is made at a parameter's first update, like the parameter: a model converted (here to
// float32; on a GPU machine, moved) after its optimizer was made still trains.
TEST(OptimState, StateFollowsAParameterConvertedBeforeTheFirstStep_float64_to_float32) {
  nb::Tensor p = parameter(kInit);
  nb::AdamOptions o{.lr = 0.1};
  nb::Adam opt({p}, o);
  p.set_data(p.detach().to(nb::DType::float32));
  AdamRef ref(o, false);
  Vec want = kInit;
  for (int s = 0; s < 3; ++s) {
    p.set_grad(tensor(kGrads[s], nb::DType::float32));
    opt.step();
    ref.step(want, kGrads[s]);
  }
  expect_close(p.to_vector<double>(), want, 1e-5, "p");
  EXPECT_EQ(state_map(opt).at("0.exp_avg").dtype(), nb::DType::float32);
}

TEST(OptimState, StateFollowsAParameterMovedToCudaBeforeTheFirstStep) {
  if (nb::device_count(nb::Device::Kind::CUDA) == 0) GTEST_SKIP() << "no CUDA device";
  nb::Tensor p = parameter(kInit, nb::DType::float32);
  nb::RMSpropOptions o{.momentum = 0.9, .centered = true};
  nb::RMSprop opt({p}, o);
  p.set_data(p.detach().to(nb::Device::cuda()));
  RmspropRef ref(o);
  Vec want = kInit;
  for (int s = 0; s < 3; ++s) {
    p.set_grad(tensor(kGrads[s], nb::DType::float32).to(nb::Device::cuda()));
    opt.step();
    ref.step(want, kGrads[s]);
  }
  expect_close(p.to_vector<double>(), want, 1e-5, "p");
  for (auto& [name, t] : opt.state()) EXPECT_TRUE(name == "0.step" || t.device().is_cuda()) << name;
}

// ---- zero_grad, set_lr, accessors ------------------------------------------------------------------

TEST(OptimZeroGrad, SetToNoneLeavesGradientsUndefined) {
  nb::Tensor a = parameter(kInit), b = parameter({1, 2});
  nb::SGD opt({a, b});
  a.set_grad(tensor(kGrads[0]));
  b.set_grad(tensor({3, 4}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  opt.step();  // nothing to do
  EXPECT_EQ(a.to_vector<double>(), kInit);
}

TEST(OptimZeroGrad, ZeroFillKeepsGradientsAsZeros) {
  nb::Tensor a = parameter(kInit), b = parameter({1, 2});
  nb::Adam opt({a, b});
  a.set_grad(tensor(kGrads[0]));
  opt.zero_grad(false);
  ASSERT_TRUE(a.grad().defined());
  EXPECT_EQ(a.grad().to_vector<double>(), Vec(5, 0.0));
  EXPECT_FALSE(b.grad().defined()) << "a parameter without a gradient keeps none";
  // A zero gradient is still a gradient: Adam steps (and a stays put, since m = 0).
  opt.step();
  EXPECT_EQ(state_map(opt).at("0.step").item<int64_t>(), 1);
  EXPECT_EQ(a.to_vector<double>(), kInit);
}

TEST(OptimZeroGrad, BackwardAfterZeroGradStartsFromZero) {
  nb::Tensor w = parameter({1, 2, 3});
  nb::SGD opt({w}, {.lr = 0.1});
  for (int i = 0; i < 2; ++i) {
    opt.zero_grad(i == 0);
    nb::sum(nb::mul(w, w)).backward();
    EXPECT_EQ(w.grad().to_vector<double>(), (Vec{2, 4, 6})) << "round " << i;
  }
}

TEST(OptimLr, SetLrTakesEffectAtTheNextStep_sgd_lr0p1_then_0p01_adam_lr0p1_then_0) {
  nb::SGDOptions so{.lr = 0.1, .momentum = 0.9};
  nb::Tensor p = parameter(kInit);
  nb::SGD sgd({p}, so);
  SgdRef ref(so);
  Vec want = kInit;
  EXPECT_EQ(sgd.lr(), 0.1);
  for (int s = 0; s < 3; ++s) {
    if (s == 1) {
      sgd.set_lr(0.01);
      ref.o.lr = 0.01;
    }
    p.set_grad(tensor(kGrads[s]));
    sgd.step();
    ref.step(want, kGrads[s]);
    expect_close(p.to_vector<double>(), want, 1e-10, fmt::format("SGD step {}", s + 1));
  }
  EXPECT_EQ(sgd.lr(), 0.01);

  nb::Tensor q = parameter(kInit);
  nb::Adam adam({q}, {.lr = 0.1});
  q.set_grad(tensor(kGrads[0]));
  adam.step();
  const Vec after_one = q.to_vector<double>();
  adam.set_lr(0);
  q.set_grad(tensor(kGrads[1]));
  adam.step();
  EXPECT_EQ(q.to_vector<double>(), after_one) << "lr 0 leaves the parameter";
  EXPECT_EQ(state_map(adam).at("0.step").item<int64_t>(), 2) << "but the moments and count advance";
}

TEST(OptimAccessors, NameParamsLr) {
  nb::Tensor a = parameter(kInit), b = parameter({1});
  nb::AdamW adamw({a, b});
  EXPECT_STREQ(adamw.name(), "AdamW");
  EXPECT_EQ(adamw.lr(), 1e-3);
  ASSERT_EQ(adamw.params().size(), 2u);
  EXPECT_EQ(adamw.params()[1].impl(), b.impl()) << "the optimizer holds the parameters themselves";
  EXPECT_STREQ(nb::SGD({a}).name(), "SGD");
  EXPECT_STREQ(nb::Adam({a}).name(), "Adam");
  EXPECT_STREQ(nb::Adagrad({a}).name(), "Adagrad");
  EXPECT_STREQ(nb::RMSprop({a}).name(), "RMSprop");
  EXPECT_EQ(nb::SGD({a}).lr(), 0.01);
  EXPECT_EQ(nb::Adagrad({a}).lr(), 0.01);
  EXPECT_EQ(nb::RMSprop({a}).lr(), 0.01);
}

// ---- errors -----------------------------------------------------------------------------------------

TEST(OptimErrors, ParameterListChecksNameTheOptimizer) {
  nb::Tensor p = parameter(kInit);
  expect_error([] { nb::SGD(std::vector<nb::Tensor>{}); }, {"SGD", "empty"});
  expect_error([] { nb::Adam({nb::Tensor()}); }, {"Adam", "parameter 0", "undefined"});
  expect_error([&] { nb::Adagrad({p, nb::zeros({3, 2})}); }, {"Adagrad", "parameter 1", "[3, 2]", "require"});
  expect_error([&] { nb::RMSprop({nb::mul(p, p)}); }, {"RMSprop", "leaf"});
  expect_error([&] { nb::AdamW({p, nb::Tensor()}); }, {"AdamW", "parameter 1", "undefined"});
}

// The same parameter twice would be updated twice per step (issue 11).
TEST(OptimErrors, DuplicateParameterNamesTheOptimizerAndBothIndices) {
  nb::Tensor p = parameter(kInit), q = parameter(kInit);
  expect_error([&] { nb::SGD({p, q, p}); }, {"SGD", "more than once", "parameter 2", "[5]", "parameter 0"});
  expect_error([&] { nb::Adam({q, q}); }, {"Adam", "parameter 1", "parameter 0"});
  // Another handle on the same elements is the same parameter.
  nb::Tensor alias = q.detach().requires_grad_();
  expect_error([&] { nb::RMSprop({p, q, alias}); }, {"RMSprop", "parameter 2", "parameter 1"});
  // Views of different parts of one storage are different parameters.
  nb::Tensor flat = nb::zeros({10}, {.dtype = nb::DType::float64});
  nb::Tensor a = flat.slice(0, 0, 5).detach().requires_grad_(), b = flat.slice(0, 5, 10).detach().requires_grad_();
  EXPECT_NO_THROW(nb::Adagrad({a, b}));
}

// A layer used twice (shared weights) lists its parameters once, so a Model or optimizer built
// from its parameters() updates them once per step.
TEST(OptimErrors, SharedLayerParametersComeOnceFromParameters) {
  auto shared = std::make_shared<nb::Dense>(3, 3);
  nb::Sequential seq;
  seq.add(shared);
  seq.add(nb::ReLU());
  seq.add(shared);
  EXPECT_EQ(seq.named_parameters().size(), 4u);
  EXPECT_EQ(seq.parameters().size(), 2u);
  EXPECT_NO_THROW(nb::SGD(seq.parameters()));
}

TEST(OptimErrors, NaNOptionsAreNotANumberNotNegative) {
  nb::Tensor p = parameter(kInit);
  std::vector<nb::Tensor> ps{p};
  const double nan = std::nan("");
  for (auto f : std::vector<std::function<void()>>{
           [&] { nb::SGD(ps, {.lr = nan}); }, [&] { nb::SGD(ps, {.momentum = nan}); },
           [&] { nb::SGD(ps, {.dampening = nan}); }, [&] { nb::Adam(ps, {.eps = nan}); },
           [&] { nb::Adam(ps, {.beta1 = nan}); }, [&] { nb::AdamW(ps, {.weight_decay = nan}); },
           [&] { nb::Adagrad(ps, {.lr_decay = nan}); }, [&] { nb::Adagrad(ps, {.initial_accumulator_value = nan}); },
           [&] { nb::RMSprop(ps, {.alpha = nan}); }, [&] { nb::RMSprop(ps, {.momentum = nan}); },
           [&] { nb::SGD(ps).set_lr(nan); }})
    expect_error(f, {"is not a number"});
}

TEST(OptimErrors, OptionChecksNameTheOptimizerAndTheValue) {
  nb::Tensor p = parameter(kInit);
  std::vector<nb::Tensor> ps{p};
  // learning rate, in every optimizer and in set_lr
  expect_error([&] { nb::SGD(ps, {.lr = -0.5}); }, {"SGD", "-0.5"});
  expect_error([&] { nb::Adam(ps, {.lr = -0.5}); }, {"Adam", "-0.5"});
  expect_error([&] { nb::AdamW(ps, {.lr = -0.5}); }, {"AdamW", "-0.5"});
  expect_error([&] { nb::Adagrad(ps, {.lr = -0.5}); }, {"Adagrad", "-0.5"});
  expect_error([&] { nb::RMSprop(ps, {.lr = -0.5}); }, {"RMSprop", "-0.5"});
  expect_error([&] { nb::SGD(ps).set_lr(-2); }, {"SGD", "-2"});
  expect_error([&] { nb::Adam(ps).set_lr(std::nan("")); }, {"Adam", "nan"});
  // SGD
  expect_error([&] { nb::SGD(ps, {.momentum = -0.1}); }, {"SGD", "momentum", "-0.1"});
  expect_error([&] { nb::SGD(ps, {.weight_decay = -0.25}); }, {"SGD", "weight_decay", "-0.25"});
  expect_error([&] { nb::SGD(ps, {.nesterov = true}); }, {"SGD", "nesterov", "momentum 0"});
  expect_error([&] { nb::SGD(ps, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); },
               {"SGD", "nesterov", "dampening 0.1"});
  // Adam, AdamW
  expect_error([&] { nb::Adam(ps, {.beta1 = 1}); }, {"Adam", "beta1", "1"});
  expect_error([&] { nb::Adam(ps, {.beta1 = -0.1}); }, {"Adam", "beta1", "-0.1"});
  expect_error([&] { nb::Adam(ps, {.beta2 = 1.5}); }, {"Adam", "beta2", "1.5"});
  expect_error([&] { nb::AdamW(ps, {.beta2 = 1}); }, {"AdamW", "beta2", "1"});
  expect_error([&] { nb::Adam(ps, {.eps = -1e-8}); }, {"Adam", "eps", "-1e-08"});
  expect_error([&] { nb::AdamW(ps, {.eps = -1}); }, {"AdamW", "eps", "-1"});
  expect_error([&] { nb::Adam(ps, {.weight_decay = -0.01}); }, {"Adam", "weight_decay", "-0.01"});
  expect_error([&] { nb::AdamW(ps, {.weight_decay = -0.01}); }, {"AdamW", "weight_decay", "-0.01"});
  // Adagrad
  expect_error([&] { nb::Adagrad(ps, {.lr_decay = -0.5}); }, {"Adagrad", "lr_decay", "-0.5"});
  expect_error([&] { nb::Adagrad(ps, {.weight_decay = -0.5}); }, {"Adagrad", "weight_decay", "-0.5"});
  expect_error([&] { nb::Adagrad(ps, {.eps = -0.5}); }, {"Adagrad", "eps", "-0.5"});
  expect_error([&] { nb::Adagrad(ps, {.initial_accumulator_value = -0.5}); },
               {"Adagrad", "initial_accumulator_value", "-0.5"});
  // RMSprop
  expect_error([&] { nb::RMSprop(ps, {.alpha = -0.5}); }, {"RMSprop", "alpha", "-0.5"});
  expect_error([&] { nb::RMSprop(ps, {.eps = -0.5}); }, {"RMSprop", "eps", "-0.5"});
  expect_error([&] { nb::RMSprop(ps, {.weight_decay = -0.5}); }, {"RMSprop", "weight_decay", "-0.5"});
  expect_error([&] { nb::RMSprop(ps, {.momentum = -0.5}); }, {"RMSprop", "momentum", "-0.5"});
}

// set_grad refuses a mismatched gradient, so these tests put one in place behind its back, as a
// buggy layer could. The step must fail naming the optimizer and change nothing: not the
// parameter with a good gradient before it, not any step count.
TEST(OptimErrors, MismatchedGradientFailsTheStepNamingTheOptimizerAndChangesNothing) {
  struct Case {
    MakeOptimizer make;
    std::string name;
  };
  const Case cases[] = {{maker<nb::SGD>(nb::SGDOptions{.momentum = 0.9}), "SGD"},
                        {maker<nb::Adam>(nb::AdamOptions{}), "Adam"},
                        {maker<nb::AdamW>(nb::AdamWOptions{}), "AdamW"},
                        {maker<nb::Adagrad>(nb::AdagradOptions{.initial_accumulator_value = 0.1}), "Adagrad"},
                        {maker<nb::RMSprop>(nb::RMSpropOptions{.centered = true}), "RMSprop"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nb::Tensor good = parameter(kInit), bad = parameter(kInit);
    auto opt = c.make({good, bad});
    good.set_grad(tensor(kGrads[0]));
    bad.impl()->grad = nb::zeros({4}, {.dtype = nb::DType::float64}).impl_ptr();
    expect_error([&] { opt->step(); }, {c.name + ":", "parameter 1", "[4]", "[5]"});
    bad.impl()->grad = nb::zeros({5}, {.dtype = nb::DType::float32}).impl_ptr();
    expect_error([&] { opt->step(); }, {c.name + ":", "float32", "float64"});
    EXPECT_EQ(good.to_vector<double>(), kInit);
    EXPECT_TRUE(opt->state().empty());
    // Once the gradient is right, the first step is a first step.
    bad.set_grad(tensor(kGrads[0]));
    opt->step();
    EXPECT_EQ(state_map(*opt).at("1.step").item<int64_t>(), 1);
  }
}

// ---- end to end: loss = sum((w - target)^2) through autograd -----------------------------------------

TEST(OptimQuadratic, EachOptimizerDecreasesTheLossOver50Steps_float32_n5) {
  struct Case {
    MakeOptimizer make;
    std::string name;
    double max_ratio;  // final loss / initial loss must stay below this
  };
  const Case cases[] = {
      {maker<nb::SGD>(nb::SGDOptions{.lr = 0.1}), "SGD lr 0.1", 1e-6},
      {maker<nb::SGD>(nb::SGDOptions{.lr = 0.05, .momentum = 0.5, .nesterov = true}), "SGD nesterov", 1e-6},
      {maker<nb::Adam>(nb::AdamOptions{.lr = 0.1}), "Adam lr 0.1", 0.01},
      {maker<nb::AdamW>(nb::AdamWOptions{.lr = 0.1}), "AdamW lr 0.1", 0.01},
      {maker<nb::Adagrad>(nb::AdagradOptions{.lr = 0.5}), "Adagrad lr 0.5", 1e-3},
      {maker<nb::RMSprop>(nb::RMSpropOptions{.lr = 0.05}), "RMSprop lr 0.05", 1e-3},
  };
  const Vec target = {0.5, 1.0, -0.5, 2.0, 0.0};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nb::Tensor w = parameter({1.0, -2.0, 0.5, 3.0, -1.0}, nb::DType::float32);
    const nb::Tensor t = tensor(target, nb::DType::float32);
    auto opt = c.make({w});
    auto loss_value = [&] {
      nb::NoGrad no_grad;
      nb::Tensor d = nb::sub(w, t);
      return nb::sum(nb::mul(d, d)).item();
    };
    const double initial = loss_value();
    EXPECT_NEAR(initial, 12.25, 1e-6);
    double previous = initial;
    int increases = 0;
    for (int step = 0; step < 50; ++step) {
      opt->zero_grad();
      nb::Tensor d = nb::sub(w, t);
      nb::Tensor loss = nb::sum(nb::mul(d, d));
      const double now = loss.item();
      increases += now > previous;
      previous = now;
      loss.backward();
      opt->step();
    }
    const double final_loss = loss_value();
    EXPECT_LT(final_loss, c.max_ratio * initial) << "from " << initial << " to " << final_loss;
    EXPECT_LE(increases, 10) << "the loss should mostly go down";
    EXPECT_EQ(nb::tape_size(), 0u);
  }
}

namespace {

// ---- each optimizer's update, one parameter at a time, float64 and float32 ------------------------
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

using nabla::test::cpu;
using nb::DType;
// Each runs 3 steps in float64 against torch.optim's documented update written out per element,
// and in float32 against the float64 result. (These called the CPU backend's fused update
// kernels; the updates are now written once, in optim/, from the foreach ops.)

const std::vector<double> kParam0{0.5, -1.0, 2.0, 0.0, -0.25};
const std::vector<std::vector<double>> kGrads{
    {0.1, -0.2, 0.3, 0.0, 1.0}, {-0.4, 0.5, 0.1, 0.2, -1.0}, {0.3, 0.3, -0.6, -0.1, 0.5}};

// Three steps of the optimizer that `make` builds on one parameter of `dtype` made from kParam0,
// with the gradients kGrads; the parameter after them.
template <typename T>
std::vector<T> run_three(const MakeOptimizer& make, DType dtype) {
  nb::Tensor p = parameter(kParam0, dtype);
  auto opt = make({p});
  for (const auto& g : kGrads) {
    p.set_grad(tensor(g, dtype));
    opt->step();
  }
  return p.to_vector<T>();
}

struct SgdCase {
  std::string name;
  double lr, momentum, dampening, wd;
  bool nesterov;
};

class CpuSgd : public ::testing::TestWithParam<SgdCase> {};

template <typename T>
std::vector<T> run_sgd(const SgdCase& c, DType dtype) {
  return run_three<T>(maker<nb::SGD>(nb::SGDOptions{c.lr, c.momentum, c.dampening, c.wd, c.nesterov}), dtype);
}

TEST_P(CpuSgd, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, buf(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i] + c.wd * p[i];
      if (c.momentum != 0) {
        buf[i] = t == 0 ? g : c.momentum * buf[i] + (1 - c.dampening) * g;
        g = c.nesterov ? g + c.momentum * buf[i] : buf[i];
      }
      p[i] -= c.lr * g;
    }
  auto got = run_sgd<double>(c, DType::float64);
  auto got32 = run_sgd<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-14) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuSgd,
                         ::testing::Values(SgdCase{"plain_lr0p1", 0.1, 0, 0, 0, false},
                                           SgdCase{"momentum0p9", 0.1, 0.9, 0, 0, false},
                                           SgdCase{"momentum0p9_dampening0p3", 0.1, 0.9, 0.3, 0,
                                                   false},
                                           SgdCase{"nesterov0p9", 0.05, 0.9, 0, 0, true},
                                           SgdCase{"weight_decay0p01", 0.1, 0, 0, 0.01, false},
                                           // (nb::SGD refuses nesterov with dampening, as torch
                                           // does; the fused kernel took both, in one case "all")
                                           SgdCase{"all_nesterov", 0.2, 0.8, 0, 0.05, true},
                                           SgdCase{"all_dampening0p1", 0.2, 0.8, 0.1, 0.05, false}),
                         [](const auto& info) { return info.param.name; });

TEST(CpuSgdExtra, NoMomentumBufferNeededWithoutMomentum_n5) {
  std::vector<double> g = kGrads[0];
  nb::Tensor param = parameter(kParam0);
  nb::SGD sgd({param}, {.lr = 0.5});
  param.set_grad(tensor(g));
  sgd.step();
  const std::vector<double> p = param.to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i) EXPECT_DOUBLE_EQ(p[i], kParam0[i] - 0.5 * g[i]);
  EXPECT_EQ(sgd.state().size(), 1u) << "only the step count";
}

struct AdamCase {
  std::string name;
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
};

class CpuAdam : public ::testing::TestWithParam<AdamCase> {};

template <typename T>
std::vector<T> run_adam(const AdamCase& c, DType dtype) {
  const nb::AdamOptions o{c.lr, c.beta1, c.beta2, c.eps, c.wd};
  if (c.decoupled) return run_three<T>(maker<nb::AdamW>(nb::AdamWOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}), dtype);
  return run_three<T>(maker<nb::Adam>(o), dtype);
}

TEST_P(CpuAdam, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, m(p.size()), v(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t) {
    const double step = double(t + 1);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i];
      if (c.decoupled)
        p[i] *= 1 - c.lr * c.wd;
      else
        g += c.wd * p[i];
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(c.beta1, step));
      const double v_hat = v[i] / (1 - std::pow(c.beta2, step));
      p[i] -= c.lr * m_hat / (std::sqrt(v_hat) + c.eps);
    }
  }
  auto got = run_adam<double>(c, DType::float64);
  auto got32 = run_adam<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-13) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, CpuAdam,
    ::testing::Values(AdamCase{"adam_default", 1e-3, 0.9, 0.999, 1e-8, 0, false},
                      AdamCase{"adam_lr0p1_wd0p1", 0.1, 0.9, 0.999, 1e-8, 0.1, false},
                      AdamCase{"adamw_lr0p1_wd0p1", 0.1, 0.9, 0.999, 1e-8, 0.1, true},
                      AdamCase{"adam_beta1_0p3_beta2_0p5_eps0p1", 0.05, 0.3, 0.5, 0.1, 0, false}),
    [](const auto& info) { return info.param.name; });

struct AdagradCase {
  std::string name;
  double lr, lr_decay, wd, eps;
};

class CpuAdagrad : public ::testing::TestWithParam<AdagradCase> {};

template <typename T>
std::vector<T> run_adagrad(const AdagradCase& c, DType dtype) {
  return run_three<T>(maker<nb::Adagrad>(nb::AdagradOptions{.lr = c.lr, .lr_decay = c.lr_decay, .weight_decay = c.wd,
                                                            .eps = c.eps}),
                      dtype);
}

TEST_P(CpuAdagrad, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, sum(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t) {
    const double clr = c.lr / (1 + double(t) * c.lr_decay);  // step - 1 == t
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t][i] + c.wd * p[i];
      sum[i] += g * g;
      p[i] -= clr * g / (std::sqrt(sum[i]) + c.eps);
    }
  }
  auto got = run_adagrad<double>(c, DType::float64);
  auto got32 = run_adagrad<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-14) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-6) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuAdagrad,
                         ::testing::Values(AdagradCase{"default_lr0p01", 0.01, 0, 0, 1e-10},
                                           AdagradCase{"lr_decay0p5", 0.1, 0.5, 0, 1e-10},
                                           AdagradCase{"wd0p1_eps0p01", 0.1, 0.1, 0.1, 1e-2}),
                         [](const auto& info) { return info.param.name; });

struct RmspropCase {
  std::string name;
  double lr, alpha, eps, wd, momentum;
  bool centered;
};

class CpuRmsprop : public ::testing::TestWithParam<RmspropCase> {};

template <typename T>
std::vector<T> run_rmsprop(const RmspropCase& c, DType dtype) {
  return run_three<T>(maker<nb::RMSprop>(nb::RMSpropOptions{c.lr, c.alpha, c.eps, c.wd, c.momentum, c.centered}),
                      dtype);
}

TEST_P(CpuRmsprop, ThreeStepsMatchTorchFormula) {
  const auto c = GetParam();
  std::vector<double> p = kParam0, sq(p.size()), buf(p.size()), gavg(p.size());
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = kGrads[t][i] + c.wd * p[i];
      sq[i] = c.alpha * sq[i] + (1 - c.alpha) * g * g;
      double avg;
      if (c.centered) {
        gavg[i] = c.alpha * gavg[i] + (1 - c.alpha) * g;
        avg = std::sqrt(sq[i] - gavg[i] * gavg[i]) + c.eps;
      } else {
        avg = std::sqrt(sq[i]) + c.eps;
      }
      if (c.momentum > 0) {
        buf[i] = c.momentum * buf[i] + g / avg;
        p[i] -= c.lr * buf[i];
      } else {
        p[i] -= c.lr * g / avg;
      }
    }
  auto got = run_rmsprop<double>(c, DType::float64);
  auto got32 = run_rmsprop<float>(c, DType::float32);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(got[i], p[i], 1e-12) << c.name << " " << i;
    EXPECT_NEAR(got32[i], p[i], 1e-5) << c.name << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, CpuRmsprop,
    ::testing::Values(RmspropCase{"default_lr0p01", 0.01, 0.99, 1e-8, 0, 0, false},
                      RmspropCase{"centered", 0.01, 0.9, 1e-8, 0, 0, true},
                      RmspropCase{"momentum0p9", 0.01, 0.99, 1e-8, 0, 0.9, false},
                      RmspropCase{"centered_momentum0p5_wd0p1", 0.02, 0.8, 1e-3, 0.1, 0.5, true}),
    [](const auto& info) { return info.param.name; });


// Two tensors of different sizes and step counts (a checkpoint's) in one optimizer update as in
// two optimizers of one tensor each, bit for bit.
TEST(CpuAdamGroup, TwoTensorsInOneCallEqualTwoCalls_n5_n3) {
  const std::vector<double> ga = kGrads[0], gb{0.3, 0.1, -0.2};
  const nb::AdamWOptions o{.lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
  // a has had 3 updates (this is its 4th), with m = 0.1 and v = 0.2; b has had none.
  const std::vector<std::pair<std::string, nb::Tensor>> a_state = {
      {"0.step", nb::scalar(3, {.dtype = DType::int64})},
      {"0.exp_avg", nb::full({5}, 0.1, {.dtype = DType::float64})},
      {"0.exp_avg_sq", nb::full({5}, 0.2, {.dtype = DType::float64})}};
  nb::Tensor a = parameter(kParam0), b = parameter({1.0, -2.0, 0.5});
  nb::AdamW both({a, b}, o);
  both.load_state(a_state);
  nb::Tensor a2 = parameter(kParam0), b2 = parameter({1.0, -2.0, 0.5});
  nb::AdamW one_a({a2}, o), one_b({b2}, o);
  one_a.load_state(a_state);
  a.set_grad(tensor(ga));
  b.set_grad(tensor(gb));
  a2.set_grad(tensor(ga));
  b2.set_grad(tensor(gb));
  both.step();
  one_a.step();
  one_b.step();
  auto s = state_map(both), sa = state_map(one_a), sb = state_map(one_b);
  const std::vector<double> pa = a.to_vector<double>(), pb = b.to_vector<double>();
  EXPECT_EQ(pa, a2.to_vector<double>());
  EXPECT_EQ(pb, b2.to_vector<double>());
  EXPECT_EQ(s.at("0.exp_avg").to_vector<double>(), sa.at("0.exp_avg").to_vector<double>());
  EXPECT_EQ(s.at("1.exp_avg_sq").to_vector<double>(), sb.at("0.exp_avg_sq").to_vector<double>());
  EXPECT_NE(pa, kParam0);
}

// The backend's one call, on host buffers: three tensors (one empty) of different sizes with a
// scalar each, x = x + (a * y) * z; arrays of the inputs an op does not read may be null.
TEST(CpuForeach, OneBackendCallOverThreeBuffers_n5_n0_n3) {
  std::vector<double> x0 = kParam0, x2{1.0, -2.0, 0.5}, y0 = kGrads[0], y2{0.3, 0.1, -0.2}, z0 = kGrads[1],
                      z2{2.0, -1.0, 4.0};
  const std::vector<double> x0_before = x0, x2_before = x2;
  void* x[3] = {x0.data(), nullptr, x2.data()};
  const void* y[3] = {y0.data(), nullptr, y2.data()};
  const void* z[3] = {z0.data(), nullptr, z2.data()};
  const double a[3] = {0.5, 7.0, -3.0};
  const int64_t sizes[3] = {5, 0, 3};
  cpu().foreach(nabla::ForeachOp::addcmul, DType::float64, {3, x, y, z, a, sizes});
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(x0[i], x0_before[i] + (0.5 * y0[i]) * z0[i]) << i;
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(x2[i], x2_before[i] + (-3.0 * y2[i]) * z2[i]) << i;
  // sqrt reads y only (here x0's first 3 elements = sqrt(z2)), mul neither y nor z
  cpu().foreach(nabla::ForeachOp::sqrt, DType::float64, {1, x, z + 2, nullptr, nullptr, sizes + 2});
  EXPECT_EQ(x0[0], std::sqrt(2.0));
  EXPECT_TRUE(std::isnan(x0[1])) << "sqrt(-1)";
  EXPECT_EQ(x0[2], 2.0);
  cpu().foreach(nabla::ForeachOp::mul, DType::float64, {1, x + 2, nullptr, nullptr, a + 2, sizes + 2});
  EXPECT_EQ(x2[0], (x2_before[0] + (-3.0 * y2[0]) * z2[0]) * -3.0);
}

}  // namespace cpu_kernels

// ---- the foreach ops (core/ops/foreach.h): values and errors -------------------------------------
namespace foreach_ops {

namespace fe = nb::foreach;
using fe::TensorList;
using nb::DType;

// Several tensors of odd sizes, one empty, one large enough to be split between threads.
const std::vector<int64_t> kSizes = {5, 1, 0, 17, 40961, 3};
// One scalar per tensor, all different.
const std::vector<double> kScalars = {0.5, -2.0, 7.0, 0.3, 1.75, -0.6};

// Values in [lo, hi) from `seed`, one vector per size of kSizes.
std::vector<Vec> values(uint64_t seed, double lo, double hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<Vec> out(kSizes.size());
  for (size_t i = 0; i < kSizes.size(); ++i)
    for (int64_t j = 0; j < kSizes[i]; ++j) out[i].push_back(d(gen));
  return out;
}

TensorList tensors(const std::vector<Vec>& v, DType dtype = DType::float64) {
  TensorList out;
  for (const Vec& x : v) out.push_back(nb::from_vector(x, {static_cast<int64_t>(x.size())}, {.dtype = dtype}));
  return out;
}

// want[i][j] = f(i, j) over kSizes.
std::vector<Vec> each(const std::function<double(size_t, size_t)>& f) {
  std::vector<Vec> out(kSizes.size());
  for (size_t i = 0; i < kSizes.size(); ++i)
    for (size_t j = 0; j < static_cast<size_t>(kSizes[i]); ++j) out[i].push_back(f(i, j));
  return out;
}

// Every element of got within 2 ulps of want (same operations in the same order, in double).
void expect_lists(const TensorList& got, const std::vector<Vec>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].numel(), static_cast<int64_t>(want[i].size())) << what << ", tensor " << i;
    const Vec g = got[i].to_vector<double>();
    int bad = 0;
    for (size_t j = 0; j < g.size(); ++j)
      if (std::abs(g[j] - want[i][j]) > 4e-16 * std::abs(want[i][j]) && bad++ < 3)
        ADD_FAILURE() << what << ", tensor " << i << " element " << j << ": " << g[j] << " vs " << want[i][j];
    EXPECT_EQ(bad, 0) << what << ", tensor " << i << ": elements off";
  }
}

// torch.lerp's evaluation.
double lerp(double x, double y, double w) { return std::abs(w) < 0.5 ? x + w * (y - x) : y - (y - x) * (1 - w); }

TEST(ForeachOps, Copy_SixTensorsOddSizes_F64) {
  const auto x0 = values(1, -2, 2), y0 = values(2, -2, 2);
  TensorList x = tensors(x0), y = tensors(y0);
  fe::copy_(x, y);
  expect_lists(x, y0, "copy_");
  expect_lists(y, y0, "copy_: y unchanged");
}

TEST(ForeachOps, Sqrt_InPlace_F64) {
  const auto x0 = values(3, 0, 4);
  TensorList x = tensors(x0);
  fe::sqrt_(x);
  expect_lists(x, each([&](size_t i, size_t j) { return std::sqrt(x0[i][j]); }), "sqrt_");
}

TEST(ForeachOps, Mul_PerTensorScalarsAndOneForAll_F64) {
  const auto x0 = values(4, -2, 2);
  TensorList x = tensors(x0);
  fe::mul_(x, kScalars);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] * kScalars[i]; }), "mul_ per tensor");
  fe::mul_(x, 0.25);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] * kScalars[i] * 0.25; }), "mul_ one for all");
}

TEST(ForeachOps, Div_PerTensorScalars_F64) {
  const auto x0 = values(5, -2, 2);
  TensorList x = tensors(x0);
  fe::div_(x, kScalars);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] / kScalars[i]; }), "div_");
}

TEST(ForeachOps, AddScalar_PerTensorScalars_F64) {
  const auto x0 = values(6, -2, 2);
  TensorList x = tensors(x0);
  fe::add_(x, kScalars);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] + kScalars[i]; }), "add_ scalar");
}

TEST(ForeachOps, AddScaled_PerTensorScalarsAndDefaultOne_F64) {
  const auto x0 = values(7, -2, 2), y0 = values(8, -2, 2);
  TensorList x = tensors(x0), y = tensors(y0);
  fe::add_(x, y, kScalars);
  const auto want = each([&](size_t i, size_t j) { return x0[i][j] + kScalars[i] * y0[i][j]; });
  expect_lists(x, want, "add_ a * y");
  fe::add_(x, y);
  expect_lists(x, each([&](size_t i, size_t j) { return want[i][j] + y0[i][j]; }), "add_ y");
  expect_lists(y, y0, "add_: y unchanged");
}

TEST(ForeachOps, Addcmul_PerTensorScalars_F64) {
  const auto x0 = values(9, -2, 2), y0 = values(10, -2, 2), z0 = values(11, -2, 2);
  TensorList x = tensors(x0), y = tensors(y0), z = tensors(z0);
  fe::addcmul_(x, y, z, kScalars);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] + (kScalars[i] * y0[i][j]) * z0[i][j]; }),
               "addcmul_");
  expect_lists(z, z0, "addcmul_: z unchanged");
}

TEST(ForeachOps, Addcdiv_PerTensorScalars_F64) {
  const auto x0 = values(12, -2, 2), y0 = values(13, -2, 2), z0 = values(14, 0.5, 2);
  TensorList x = tensors(x0), y = tensors(y0), z = tensors(z0);
  fe::addcdiv_(x, y, z, kScalars);
  expect_lists(x, each([&](size_t i, size_t j) { return x0[i][j] + kScalars[i] * (y0[i][j] / z0[i][j]); }),
               "addcdiv_");
}

// Weights below and above 1/2 take lerp's two forms; both are x + w (y - x) to rounding.
TEST(ForeachOps, Lerp_PerTensorWeightsBothForms_F64) {
  const std::vector<double> w = {0.1, 0.5, 0.9, -0.3, 0.75, 0.25};
  const auto x0 = values(15, -2, 2), y0 = values(16, -2, 2);
  TensorList x = tensors(x0), y = tensors(y0);
  fe::lerp_(x, y, w);
  expect_lists(x, each([&](size_t i, size_t j) { return lerp(x0[i][j], y0[i][j], w[i]); }), "lerp_");
  const Vec got = x[4].to_vector<double>();
  for (size_t j = 0; j < got.size(); j += 997)
    EXPECT_NEAR(got[j], x0[4][j] + w[4] * (y0[4][j] - x0[4][j]), 1e-15) << j;
}

TEST(ForeachOps, CloneSqrtAddMakeNewTensorsAndLeaveTheirInputs_F64) {
  const auto x0 = values(17, 0, 4), y0 = values(18, -2, 2);
  TensorList x = tensors(x0), y = tensors(y0);
  TensorList c = fe::clone(x), r = fe::sqrt(x), s = fe::add(x, y, kScalars);
  expect_lists(c, x0, "clone");
  expect_lists(r, each([&](size_t i, size_t j) { return std::sqrt(x0[i][j]); }), "sqrt");
  expect_lists(s, each([&](size_t i, size_t j) { return x0[i][j] + kScalars[i] * y0[i][j]; }), "add");
  expect_lists(x, x0, "x unchanged");
  expect_lists(y, y0, "y unchanged");
  fe::mul_(c, 0);
  expect_lists(x, x0, "a clone has storage of its own");
  EXPECT_EQ(c[4].dtype(), DType::float64);
}

// x may be y or z: v = v + (a v) v, and x = x + 1 x.
TEST(ForeachOps, OutputMayBeAnInput_F64) {
  const auto x0 = values(19, -2, 2);
  TensorList x = tensors(x0);
  fe::addcmul_(x, x, x, kScalars);
  const auto want = each([&](size_t i, size_t j) { return x0[i][j] + (kScalars[i] * x0[i][j]) * x0[i][j]; });
  expect_lists(x, want, "addcmul_(x, x, x)");
  fe::add_(x, x);
  expect_lists(x, each([&](size_t i, size_t j) { return want[i][j] + want[i][j]; }), "add_(x, x)");
}

// float32 and float64 tensors in one list: one backend call each, each in its own dtype.
TEST(ForeachOps, MixedDtypesInOneListEachInItsDtype_F32_F64) {
  const Vec a = {0.1, -0.7, 1.3}, b = {0.9, 2.1, -0.4};
  TensorList x = {tensor(a, DType::float32), tensor(a)}, y = {tensor(b, DType::float32), tensor(b)};
  fe::addcdiv_(x, y, y, std::vector<double>{0.3, 0.3});
  const std::vector<float> got32 = x[0].to_vector<float>();
  const Vec got64 = x[1].to_vector<double>();
  for (size_t j = 0; j < a.size(); ++j) {
    const float af = float(a[j]), bf = float(b[j]);
    EXPECT_EQ(got32[j], af + 0.3f * (bf / bf)) << j;
    EXPECT_EQ(got64[j], a[j] + 0.3 * (b[j] / b[j])) << j;
  }
  EXPECT_EQ(x[0].dtype(), DType::float32);
}

// In place, never recorded: a parameter's version advances, nothing goes on the tape, and the
// parameter stays a leaf that requires grad.
TEST(ForeachOps, InPlaceBumpsVersionRecordsNothing) {
  nb::Tensor p = parameter(kInit), q = parameter({1, 2});
  const int64_t vp = p.version(), vq = q.version();
  fe::mul_({p, q}, 0.5);
  EXPECT_EQ(p.version(), vp + 1);
  EXPECT_EQ(q.version(), vq + 1);
  EXPECT_EQ(nb::tape_size(), 0u);
  EXPECT_TRUE(p.requires_grad());
  EXPECT_TRUE(p.is_leaf());
  EXPECT_EQ(q.to_vector<double>(), (Vec{0.5, 1}));
  fe::mul_({}, 2.0);  // an empty list is nothing to do
}

TEST(ForeachErrors, ListLengthsAndScalarCountsNameTheOp) {
  TensorList x = {tensor({1, 2}), tensor({3})}, one = {tensor({1, 2})};
  expect_error([&] { fe::add_(x, one); }, {"foreach::add_", "'y'", "1 tensors", "expected 2"});
  expect_error([&] { fe::addcmul_(x, x, one); }, {"foreach::addcmul_", "'z'", "1 tensors", "expected 2"});
  expect_error([&] { fe::copy_(one, x); }, {"foreach::copy_", "'y'", "2 tensors", "expected 1"});
  expect_error([&] { fe::mul_(x, std::vector<double>{1, 2, 3}); }, {"foreach::mul_", "3 scalars", "2 tensors"});
  expect_error([&] { fe::lerp_(x, x, std::vector<double>{0.5}); }, {"foreach::lerp_", "1 scalars", "2 tensors"});
  expect_error([&] { fe::add(x, one); }, {"foreach::add", "'y'", "1 tensors", "expected 2"});
}

TEST(ForeachErrors, ShapesDtypesLayoutNameTheOpTheTensorAndWhatWasExpected) {
  TensorList x = {tensor({1, 2, 3}), tensor({4, 5, 6})};
  expect_error([&] { fe::addcdiv_(x, x, {tensor({1, 2, 3}), tensor({1, 2, 3, 4})}); },
               {"foreach::addcdiv_", "tensor 1", "'z'", "[4]", "[3]"});
  expect_error([&] { fe::add_(x, {tensor({1, 2, 3}, DType::float32), tensor({1, 2, 3})}); },
               {"foreach::add_", "tensor 0", "'y'", "float32", "float64"});
  expect_error([&] { fe::sqrt_({tensor({1, 2}), nb::zeros({2}, {.dtype = DType::int64})}); },
               {"foreach::sqrt_", "tensor 1", "int64", "float32 or float64"});
  expect_error([&] { fe::div_({tensor({1, 2}), nb::Tensor()}, 2.0); }, {"foreach::div_", "tensor 1", "undefined"});
  nb::Tensor wide = nb::zeros({3, 2}, {.dtype = DType::float64});
  expect_error([&] { fe::copy_({nb::zeros({2, 3}, {.dtype = DType::float64})}, {wide.t()}); },
               {"foreach::copy_", "tensor 0", "'y'", "[2, 3]", "not contiguous"});
  expect_error([&] { fe::mul_({wide.t()}, 2.0); }, {"foreach::mul_", "tensor 0", "'x'", "not contiguous"});
  expect_error([&] { fe::clone({nb::zeros({2}, {.dtype = DType::int32})}); }, {"foreach::clone", "int32"});
  expect_error([&] { fe::sqrt({tensor({1}), tensor({2, 3, 4}).slice(0, 0, 3, 2)}); },
               {"foreach::sqrt", "tensor 1", "not contiguous"});
}

// Every check runs before anything changes: an error in the last tensor leaves the first as it was.
TEST(ForeachErrors, NothingChangesOnAnError) {
  TensorList x = {tensor({1, 2, 3}), tensor({4, 5})};
  expect_error([&] { fe::add_(x, {tensor({1, 1, 1}), tensor({1, 1, 1})}, 2.0); }, {"foreach::add_", "tensor 1"});
  EXPECT_EQ(x[0].to_vector<double>(), (Vec{1, 2, 3}));
  EXPECT_EQ(x[0].version(), 0);
}

TEST(ForeachErrors, MismatchedDevicesNameBoth) {
  if (nb::device_count(nb::Device::Kind::CUDA) == 0) GTEST_SKIP() << "no CUDA device";
  TensorList x = {tensor({1, 2}), tensor({3})};
  TensorList y = {tensor({1, 2}), tensor({3}).to(nb::Device::cuda())};
  expect_error([&] { fe::add_(x, y); }, {"foreach::add_", "tensor 1", "'y'", "cuda", "cpu"});
  EXPECT_EQ(x[0].to_vector<double>(), (Vec{1, 2}));
}

}  // namespace foreach_ops

}  // namespace
