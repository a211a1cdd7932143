// CPU-vs-CUDA parity of the foreach ops (core/ops/foreach.h), of the optimizers' steps made of
// them, and of a whole training run.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- optimizers --------------------------------------------------------------------------------

struct OptCase {
  std::string name;
  std::function<std::unique_ptr<nb::Optimizer>(std::vector<Tensor>)> make;
};
void PrintTo(const OptCase& c, std::ostream* os) { *os << c.name; }

const std::vector<OptCase>& optimizer_cases() {
  static const std::vector<OptCase> c = {
      {"SGD", [](auto p) { return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.1}); }},
      {"SGD_momentum_nesterov_wd",
       [](auto p) {
         return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3,
                                                                        .nesterov = true});
       }},
      {"SGD_momentum_dampening",
       [](auto p) {
         return std::make_unique<nb::SGD>(std::move(p), nb::SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.25});
       }},
      {"Adam", [](auto p) { return std::make_unique<nb::Adam>(std::move(p), nb::AdamOptions{.lr = 1e-2}); }},
      {"Adam_wd",
       [](auto p) { return std::make_unique<nb::Adam>(std::move(p), nb::AdamOptions{.lr = 1e-2, .weight_decay = 1e-2}); }},
      {"AdamW",
       [](auto p) { return std::make_unique<nb::AdamW>(std::move(p), nb::AdamWOptions{.lr = 1e-2, .weight_decay = 0.1}); }},
      {"Adagrad",
       [](auto p) {
         return std::make_unique<nb::Adagrad>(
             std::move(p), nb::AdagradOptions{.lr = 0.05, .lr_decay = 0.01, .weight_decay = 1e-3,
                                              .initial_accumulator_value = 0.1});
       }},
      {"RMSprop", [](auto p) { return std::make_unique<nb::RMSprop>(std::move(p), nb::RMSpropOptions{.lr = 1e-2}); }},
      {"RMSprop_centered_momentum_wd",
       [](auto p) {
         return std::make_unique<nb::RMSprop>(
             std::move(p), nb::RMSpropOptions{.lr = 1e-2, .weight_decay = 1e-3, .momentum = 0.9, .centered = true});
       }},
  };
  return c;
}
std::string optimizer_name(const ::testing::TestParamInfo<OptCase>& i) { return i.param.name; }

// The optimizers' state (moments, step counts) after the same steps.
::testing::AssertionResult state_close(const nb::Optimizer& gpu, const nb::Optimizer& cpu, Tol tol) {
  auto g = gpu.state(), c = cpu.state();
  if (g.size() != c.size()) return ::testing::AssertionFailure() << "state sizes differ: " << g.size() << " vs " << c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    if (g[i].first != c[i].first) return ::testing::AssertionFailure() << "state " << g[i].first << " vs " << c[i].first;
    if (!nb::is_floating(c[i].second.dtype())) {
      if (g[i].second.item() != c[i].second.item())
        return ::testing::AssertionFailure() << c[i].first << ": " << g[i].second.item() << " vs " << c[i].second.item();
      continue;
    }
    auto r = allclose(g[i].second, c[i].second, tol, "state " + c[i].first);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

class Optim : public CudaParamTest<OptCase> {
 protected:
  // Two copies of one model (same seed), one moved to CUDA; `steps` steps on the same batches.
  void run_model(const std::function<std::shared_ptr<nb::Module>()>& make, int64_t in, int64_t classes, int steps) {
    const OptCase& oc = GetParam();
    nb::manual_seed(7);
    auto cpu = make();
    nb::manual_seed(7);
    auto gpu = make();
    gpu->to(kCuda);
    ASSERT_TRUE(params_close(gpu->parameters(), cpu->parameters(), {0, 0}, "initial"));
    auto opt_c = oc.make(cpu->parameters());
    auto opt_g = oc.make(gpu->parameters());
    for (int step = 1; step <= steps; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      Tensor x = nb::randn({16, in});
      Tensor y = labels(16, classes, DType::int64, static_cast<uint64_t>(step));
      auto one = [](nb::Module& m, nb::Optimizer& opt, const Tensor& xs, const Tensor& ys) {
        opt.zero_grad();
        Tensor loss = nb::cross_entropy(m(xs), ys);
        loss.backward();
        opt.step();
        return loss;
      };
      Tensor lc = one(*cpu, *opt_c, x, y);
      Tensor lg = one(*gpu, *opt_g, x.to(kCuda), y.to(kCuda));
      EXPECT_TRUE(allclose(lg, lc, {1e-4, 1e-6}, "loss"));
      ASSERT_TRUE(params_close(gpu->parameters(), cpu->parameters(), {1e-5, 1e-6}, "after the step"));
    }
    EXPECT_TRUE(state_close(*opt_g, *opt_c, {1e-3, 1e-8}));
  }
};

TEST_P(Optim, SmallMlp37x23x5_3Steps) {
  run_model([] { return std::make_shared<nb::Sequential>(nb::Dense(37, 23), nb::ReLU(), nb::Dense(23, 5)); }, 37, 5, 3);
}

// 25 Dense layers, 50 parameter tensors: lists of more than kMaxTensors (48, cuda/foreach.cu)
// tensors, so each foreach op of an update is two launches, the second of 2 tensors.
TEST_P(Optim, Deep25Dense_50Tensors_TwoLaunches_3Steps) {
  run_model(
      [] {
        auto m = std::make_shared<nb::Sequential>();
        for (int i = 0; i < 24; ++i) {
          m->add(nb::Dense(16, 16));
          m->add(nb::ReLU());
        }
        m->add(nb::Dense(16, 4));
        return m;
      },
      16, 4, 3);
}

// 100 tensor sizes (three launches of at most kMaxTensors = 48: 48, 48, 4) that reach every
// branch: 1 to 2^20 + 3 elements (past one grid of blocks), and three empty tensors (no chunks:
// a launch must skip them).
std::vector<int64_t> hundred_sizes() {
  std::vector<int64_t> sizes = {1, 7, 1023, 4097, 65537, kBig, 2, 3, 4, 5, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64};
  for (int64_t s = 65; sizes.size() < 40; s = s * 3 / 2 + 1) sizes.push_back(s);
  for (int64_t i = 0; sizes.size() < 100; ++i) sizes.push_back(i % 24 == 5 ? 0 : 1 + (i * 997) % 5003);
  return sizes;
}

// The updates alone, on 100 tensors of hundred_sizes(), given random gradients; at step 2 every
// third tensor has no gradient, so at step 3 the tensors of one launch have different step counts.
void run_direct(const OptCase& oc, DType t, Tol tol) {
  const std::vector<int64_t> sizes = hundred_sizes();
  std::vector<Tensor> pc, pg;
  for (int64_t n : sizes) {
    Tensor p = nb::rand({n}, {.dtype = t}, -1, 1);
    pc.push_back(p.clone().requires_grad_(true));
    pg.push_back(p.to(kCuda).requires_grad_(true));
  }
  auto opt_c = oc.make(pc);
  auto opt_g = oc.make(pg);
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (step == 2 && i % 3 == 1) {
        pc[i].zero_grad();
        pg[i].zero_grad();
        continue;
      }
      Tensor g = nb::rand({sizes[i]}, {.dtype = t}, -1, 1);
      pc[i].set_grad(g);
      pg[i].set_grad(g.to(kCuda));
    }
    opt_c->step();
    opt_g->step();
    ASSERT_TRUE(params_close(pg, pc, tol, "after the step"));
  }
  EXPECT_TRUE(state_close(*opt_g, *opt_c, {tol.rtol * 10, tol.atol * 1e-4}));
}

TEST_P(Optim, Direct100TensorsThreeLaunchesUnevenSteps_F32) { run_direct(GetParam(), DType::float32, {1e-5, 1e-6}); }
TEST_P(Optim, Direct100TensorsThreeLaunchesUnevenSteps_F64) { run_direct(GetParam(), DType::float64, {1e-11, 1e-13}); }

INSTANTIATE_TEST_SUITE_P(Cuda, Optim, ::testing::ValuesIn(optimizer_cases()), optimizer_name);

// The CPU side of the empty parameters in run_direct (runs without a GPU): every optimizer steps
// over a group holding an empty tensor.
TEST(EmptyOnTheCpu, EveryOptimizerStepsOverAnEmptyParameter) {
  for (const OptCase& oc : optimizer_cases()) {
    SCOPED_TRACE(oc.name);
    std::vector<Tensor> p = {nb::rand({0}).requires_grad_(true), nb::rand({3}).requires_grad_(true)};
    auto opt = oc.make(p);
    for (int step = 0; step < 2; ++step) {
      for (Tensor& t : p) t.set_grad(nb::rand(t.shape()));
      EXPECT_NO_THROW(opt->step());
    }
    EXPECT_EQ(p[0].numel(), 0);
  }
}

// ---- foreach ops ---------------------------------------------------------------------------------

// One op on the lists x (written), y, z with one scalar per tensor; returns what to compare: x, or
// the new tensors of an out-of-place op. Inputs are uniform in the given ranges, scalars'
// magnitudes in [a_lo, a_hi) (see scalars()).
struct ForeachCase {
  std::string name;
  std::function<std::vector<Tensor>(const std::vector<Tensor>& x, const std::vector<Tensor>& y,
                                     const std::vector<Tensor>& z, const std::vector<double>& a)>
      run;
  double x_lo = -1, x_hi = 1, y_lo = -1, y_hi = 1, z_lo = -1, z_hi = 1;
  double a_lo = 0.25, a_hi = 1.5;
  bool signed_scalars = true;  // every other scalar negative
};
void PrintTo(const ForeachCase& c, std::ostream* os) { *os << c.name; }

const std::vector<ForeachCase>& foreach_cases() {
  namespace fe = nb::foreach;
  using L = std::vector<Tensor>;
  using A = std::vector<double>;
  static const std::vector<ForeachCase> c = {
      {.name = "copy_", .run = [](const L& x, const L& y, const L&, const A&) { fe::copy_(x, y); return x; }},
      {.name = "sqrt_", .run = [](const L& x, const L&, const L&, const A&) { fe::sqrt_(x); return x; }, .x_lo = 0,
       .x_hi = 2},
      {.name = "mul_", .run = [](const L& x, const L&, const L&, const A& a) { fe::mul_(x, a); return x; }},
      {.name = "div_", .run = [](const L& x, const L&, const L&, const A& a) { fe::div_(x, a); return x; }},
      {.name = "add_scalar", .run = [](const L& x, const L&, const L&, const A& a) { fe::add_(x, a); return x; }},
      {.name = "add_", .run = [](const L& x, const L& y, const L&, const A& a) { fe::add_(x, y, a); return x; }},
      {.name = "addcmul_",
       .run = [](const L& x, const L& y, const L& z, const A& a) { fe::addcmul_(x, y, z, a); return x; }},
      {.name = "addcdiv_",
       .run = [](const L& x, const L& y, const L& z, const A& a) { fe::addcdiv_(x, y, z, a); return x; },
       .z_lo = 0.5, .z_hi = 1.5},
      // weights in [0, 1): both of lerp's forms
      {.name = "lerp_", .run = [](const L& x, const L& y, const L&, const A& a) { fe::lerp_(x, y, a); return x; },
       .a_lo = 0, .a_hi = 1, .signed_scalars = false},
      {.name = "clone", .run = [](const L&, const L& y, const L&, const A&) { return fe::clone(y); }},
      {.name = "sqrt", .run = [](const L&, const L& y, const L&, const A&) { return fe::sqrt(y); }, .y_lo = 0,
       .y_hi = 2},
      {.name = "add", .run = [](const L& x, const L& y, const L&, const A& a) { return fe::add(x, y, a); }},
  };
  return c;
}
std::string foreach_name(const ::testing::TestParamInfo<ForeachCase>& i) { return i.param.name; }

// One scalar per tensor, from a fixed seed.
std::vector<double> scalars(const ForeachCase& fc, size_t n) {
  std::mt19937_64 gen(17);
  std::uniform_real_distribution<double> d(fc.a_lo, fc.a_hi);
  std::vector<double> a(n);
  for (size_t i = 0; i < n; ++i) a[i] = (fc.signed_scalars && i % 2 ? -1 : 1) * d(gen);
  return a;
}

// Random lists x, y, z of the given sizes on the CPU.
struct Lists {
  std::vector<Tensor> x, y, z;
};
Lists foreach_inputs(const ForeachCase& fc, DType t, const std::vector<int64_t>& sizes) {
  Lists l;
  for (int64_t n : sizes) {
    l.x.push_back(nb::rand({n}, {.dtype = t}, fc.x_lo, fc.x_hi));
    l.y.push_back(nb::rand({n}, {.dtype = t}, fc.y_lo, fc.y_hi));
    l.z.push_back(nb::rand({n}, {.dtype = t}, fc.z_lo, fc.z_hi));
  }
  return l;
}

std::vector<Tensor> on_cuda(const std::vector<Tensor>& l) {
  std::vector<Tensor> out;
  for (const Tensor& t : l) out.push_back(t.to(kCuda));
  return out;
}

class Foreach : public CudaParamTest<ForeachCase> {};

// The op on 100 tensors (three launches) with one scalar each, on the CPU and on cuda:0 from the
// same inputs: its results, and its inputs left as they were.
void run_foreach(const ForeachCase& fc, DType t, Tol tol) {
  const Lists c = foreach_inputs(fc, t, hundred_sizes());
  const Lists g{on_cuda(c.x), on_cuda(c.y), on_cuda(c.z)};
  const std::vector<Tensor> y0 = nb::foreach::clone(c.y), z0 = nb::foreach::clone(c.z);
  const std::vector<double> a = scalars(fc, c.x.size());
  const std::vector<Tensor> rc = fc.run(c.x, c.y, c.z, a);
  const std::vector<Tensor> rg = fc.run(g.x, g.y, g.z, a);
  ASSERT_EQ(rg.size(), rc.size());
  EXPECT_TRUE(params_close(rg, rc, tol, fc.name));
  EXPECT_TRUE(params_close(g.y, y0, {0, 0}, fc.name + ": y"));
  EXPECT_TRUE(params_close(g.z, z0, {0, 0}, fc.name + ": z"));
}

TEST_P(Foreach, Direct100TensorsThreeLaunchesPerTensorScalars_F32) { run_foreach(GetParam(), DType::float32, {1e-5, 1e-6}); }
TEST_P(Foreach, Direct100TensorsThreeLaunchesPerTensorScalars_F64) { run_foreach(GetParam(), DType::float64, {1e-11, 1e-13}); }

INSTANTIATE_TEST_SUITE_P(Cuda, Foreach, ::testing::ValuesIn(foreach_cases()), foreach_name);

// The CPU side of run_foreach (runs without a GPU): every case runs over the 100 tensors (the
// largest cut to 4097 elements, to keep it quick) and returns as many of their sizes, finite.
TEST(ForeachOnTheCpu, EveryCaseRunsOverTheHundredTensors) {
  std::vector<int64_t> sizes = hundred_sizes();
  for (int64_t& n : sizes) n = std::min<int64_t>(n, 4097);
  for (const ForeachCase& fc : foreach_cases()) {
    SCOPED_TRACE(fc.name);
    const Lists c = foreach_inputs(fc, DType::float64, sizes);
    const std::vector<Tensor> r = fc.run(c.x, c.y, c.z, scalars(fc, c.x.size()));
    ASSERT_EQ(r.size(), c.x.size());
    for (size_t i = 0; i < r.size(); ++i) {
      ASSERT_EQ(r[i].shape(), c.x[i].shape()) << i;
      const std::vector<double> v = r[i].to_vector<double>();
      ASSERT_TRUE(std::all_of(v.begin(), v.end(), [](double e) { return std::isfinite(e); })) << "tensor " << i;
    }
  }
}

// ---- end to end --------------------------------------------------------------------------------

// The MLP 784-256-128-10 trained 50 steps with Adam on random data from identical weights:
// the loss of every step agrees to 1e-3.
TEST_F(CudaTest, Mlp784x256x128x10_50AdamSteps_LossesMatch) {
  auto make = [] {
    return nb::Sequential{nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 128), nb::ReLU(), nb::Dense(128, 10)};
  };
  nb::manual_seed(0);
  nb::Sequential cpu = make();
  nb::manual_seed(0);
  nb::Sequential gpu = make();
  gpu.to(kCuda);
  nb::Adam oc(cpu.parameters(), {.lr = 1e-3}), og(gpu.parameters(), {.lr = 1e-3});
  std::vector<Tensor> xc, yc, xg, yg;
  for (int i = 0; i < 4; ++i) {
    xc.push_back(nb::randn({128, 784}));
    yc.push_back(labels(128, 10, DType::int64, 100 + i));
    xg.push_back(xc.back().to(kCuda));
    yg.push_back(yc.back().to(kCuda));
  }
  std::vector<Tensor> losses_g;
  std::vector<double> losses_c;
  for (int step = 0; step < 50; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = nb::cross_entropy(cpu(xc[step % 4]), yc[step % 4]);
    Tensor lg = nb::cross_entropy(gpu(xg[step % 4]), yg[step % 4]);
    lc.backward();
    lg.backward();
    oc.step();
    og.step();
    losses_c.push_back(lc.item());
    losses_g.push_back(lg.detach());  // read at the end: no synchronization inside the loop
  }
  for (int step = 0; step < 50; ++step) {
    const double g = losses_g[step].item(), c = losses_c[step];
    EXPECT_NEAR(g, c, 1e-3 * std::abs(c)) << "step " << step;
  }
  EXPECT_LT(losses_c.back(), losses_c.front()) << "the run did not train; the comparison means little";
}

}  // namespace
