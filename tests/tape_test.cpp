// The autograd tape: accumulation, retain_graph, NoGrad, errors, graph lifetime, threads.
#include "gradcheck.h"

#include <nabla/core/ops.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace nb = nabla;
using nb::Tensor;
using nb::testing::error_of;
using ::testing::HasSubstr;

namespace {

Tensor leaf(std::vector<double> v) {
  return nb::from_vector(v, {static_cast<int64_t>(v.size())}, {.dtype = nb::DType::float64}).requires_grad_(true);
}

}  // namespace

TEST(Tape, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2, 3});
  nb::sum(nb::mul(x, x)).backward();  // 2x
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  nb::sum(nb::mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{4, 8, 12}));
  x.zero_grad(false);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 0}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Tape, SecondBackwardNeedsRetainGraph) {
  Tensor x = leaf({1, 2});
  Tensor y = nb::sum(nb::exp(x));
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  auto g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], 2 * std::exp(1.0), 1e-12);
  EXPECT_NEAR(g[1], 2 * std::exp(2.0), 1e-12);
  EXPECT_THAT(error_of([&] { y.backward(); }), HasSubstr("retain_graph"));
}

TEST(Tape, NoGradRecordsNothing) {
  Tensor x = leaf({1, 2});
  const size_t before = nb::tape_size();
  {
    nb::NoGrad ng;
    Tensor y = nb::mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(nb::tape_size(), before);
    EXPECT_THAT(error_of([&] { nb::sum(y).backward(); }), HasSubstr("does not require grad"));
  }
  EXPECT_TRUE(nb::grad_enabled());
  Tensor z = nb::mul(x, x);
  EXPECT_TRUE(z.requires_grad());
  EXPECT_EQ(nb::tape_size(), before + 1);
}

TEST(Tape, BackwardErrors) {
  Tensor c = nb::from_vector({1.0, 2.0});
  EXPECT_THAT(error_of([&] { c.backward(); }), HasSubstr("does not require grad"));
  Tensor x = leaf({1, 2, 3});
  Tensor y = nb::mul(x, x);
  EXPECT_THAT(error_of([&] { y.backward(); }), HasSubstr("[3]"));  // non-scalar needs a gradient
  EXPECT_THAT(error_of([&] { y.backward(nb::ones({2}, {.dtype = nb::DType::float64})); }),
              HasSubstr("gradient has shape [2], tensor has shape [3]"));
  y.backward(nb::from_vector({1.0, 0.5, 0.0}, {3}, {.dtype = nb::DType::float64}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 0}));
  EXPECT_THAT(error_of([&] { nb::from_vector({1, 2}, {2}, {.dtype = nb::DType::int64}).requires_grad_(); }),
              HasSubstr("int64"));
  EXPECT_THAT(error_of([&] { y.requires_grad_(false); }), HasSubstr("leaf"));
}

TEST(Tape, DiamondSumsBothPaths) {
  Tensor x = leaf({0.5, -1.5});
  Tensor a = nb::mul(x, nb::scalar(3.0, {.dtype = nb::DType::float64}));
  Tensor b = nb::exp(x);
  nb::sum(nb::add(a, b)).backward();  // 3 + e^x
  auto g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], 3 + std::exp(0.5), 1e-12);
  EXPECT_NEAR(g[1], 3 + std::exp(-1.5), 1e-12);
}

TEST(Tape, GradientsOfTwoLeavesDoNotAlias) {
  // add passes the same incoming gradient to both operands; their .grad()s must be separate.
  Tensor a = leaf({1, 2}), b = leaf({3, 4});
  nb::sum(nb::add(a, b)).backward();
  nb::sum(nb::mul(a, nb::scalar(5.0, {.dtype = nb::DType::float64}))).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{6, 6}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 1}));
}

TEST(Tape, LeafUsedAsBothOperands) {
  Tensor x = leaf({3});
  nb::sum(nb::mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6}));
}

TEST(Tape, GraphFreesItselfWhenOutputsAreDropped) {
  Tensor x = leaf({1, 2, 3});
  const size_t before = nb::tape_size();
  {
    Tensor y = nb::exp(nb::mul(x, x));
    EXPECT_EQ(nb::tape_size(), before + 2);
  }
  EXPECT_EQ(nb::tape_size(), before);  // nothing holds the graph any more
  Tensor z = nb::sum(nb::exp(x));
  z.backward();
  EXPECT_EQ(nb::tape_size(), before);  // released by backward
}

TEST(Tape, DetachCutsTheGraph) {
  Tensor x = leaf({2});
  Tensor y = nb::mul(x.detach(), x);  // d/dx = x (the detached factor is a constant)
  nb::sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2}));
}

TEST(Tape, TwoThreadsTrainIndependently) {
  // Each thread has its own tape; running at once gives what running one after another gives.
  auto run = [](uint64_t seed, std::vector<double>* out) {
    std::vector<double> w0(16);
    for (size_t i = 0; i < w0.size(); ++i) w0[i] = std::sin(static_cast<double>(seed * 31 + i));
    Tensor w = nb::from_vector(w0, {4, 4}, {.dtype = nb::DType::float64}).requires_grad_(true);
    Tensor x = nb::from_vector(std::vector<double>(8, 0.5), {2, 4}, {.dtype = nb::DType::float64});
    for (int step = 0; step < 200; ++step) {
      Tensor loss = nb::mean(nb::pow(nb::sub(nb::tanh(nb::matmul(x, w)), nb::scalar(0.25, {.dtype = nb::DType::float64})), 2));
      w.zero_grad();
      loss.backward();
      nb::NoGrad ng;
      w.copy_(nb::sub(w, nb::mul(w.grad(), nb::scalar(0.1, {.dtype = nb::DType::float64}))));
    }
    *out = w.to_vector<double>();
  };
  std::vector<double> s1, s2, p1, p2;
  run(1, &s1);
  run(2, &s2);
  std::thread t1(run, 1, &p1), t2(run, 2, &p2);
  t1.join();
  t2.join();
  EXPECT_EQ(p1, s1);
  EXPECT_EQ(p2, s2);
  EXPECT_NE(s1, s2);
}
