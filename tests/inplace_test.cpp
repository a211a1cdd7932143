// In-place changes and autograd: every in-place write bumps the version of the storage it writes
// (shared by views), the tape saves the versions of what an op's backward reads, and backward
// through an op whose saved tensor changed since throws instead of giving a wrong gradient.
#include "test_util.h"

#include <nabla/core/ops/foreach.h>
#include <nabla/layers/dense.h>
#include <nabla/optim/optimizer.h>

namespace nb = nabla;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

// ---- version counters --------------------------------------------------------------------------

TEST(InplaceVersion, FillCopyAndBumpCountOneEach) {
  Tensor x = nb::zeros({2, 3});
  EXPECT_EQ(x.version(), 0);
  x.fill_(1);
  EXPECT_EQ(x.version(), 1);
  x.copy_(nb::ones({2, 3}));
  EXPECT_EQ(x.version(), 2);
  x.bump_version();
  EXPECT_EQ(x.version(), 3);
}

TEST(InplaceVersion, SharedByViewsNotByClones_2x3) {
  Tensor x = nb::zeros({2, 3});
  Tensor v = x.slice(1, 0, 2), r = x.reshape({6}), d = x.detach(), c = x.clone();
  v.fill_(5);  // a non-contiguous view: one bump still
  EXPECT_EQ(x.version(), 1);
  EXPECT_EQ(r.version(), 1);
  EXPECT_EQ(d.version(), 1);
  EXPECT_EQ(c.version(), 0);
}

TEST(InplaceVersion, OptimizerUpdateBumpsParamAndState) {
  Tensor w = f32({1, 2}).requires_grad_();
  w.set_grad(f32({1, 1}));
  nb::SGD opt({w}, {.lr = 0.1, .momentum = 0.9});
  const int64_t before = w.version();
  opt.step();
  EXPECT_EQ(w.version(), before + 1);
  auto st = opt.state();
  ASSERT_EQ(st.size(), 2u);  // 0.step, 0.momentum_buffer
  EXPECT_EQ(st[1].second.version(), 1);
}

TEST(InplaceVersion, ZeroGradKeepingTheTensorBumpsIt) {
  Tensor w = f32({1, 2}).requires_grad_();
  nb::sum(w * w).backward();
  Tensor g = w.grad();
  const int64_t before = g.version();
  w.zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(g.version(), before + 1);
}

// ---- backward through a changed saved tensor -------------------------------------------------

TEST(InplaceBackward, MulThenAddToInputThrowsNamingOp_3) {
  Tensor x = f64({1, 2, 3}).requires_grad_();
  Tensor y = f64({4, 5, 6});
  Tensor z = nb::sum(x * y);
  y.fill_(0);  // the mul saved y for x's gradient
  EXPECT_THAT(error_of([&] { z.backward(); }), (AllOf(HasSubstr("backward of mul"), HasSubstr("input 1 (shape [3])"),
                                             HasSubstr("modified in place"), HasSubstr("version 0, now 1"),
                                             HasSubstr("clone it"))));
}

TEST(InplaceBackward, ChangingTheLeafItselfThrows_3x4) {
  Tensor w = nb::rand({3, 4}, kF64).requires_grad_();
  Tensor x = nb::rand({4, 2}, kF64);
  Tensor z = nb::sum(nb::matmul(w, x));
  x.copy_(x + 1.0);
  EXPECT_THAT(error_of([&] { z.backward(); }), (AllOf(HasSubstr("backward of matmul"), HasSubstr("input 1 (shape [4, 2])"))));
}

TEST(InplaceBackward, ChangingAViewOfTheSavedTensorThrows_2x3) {
  Tensor x = nb::rand({2, 3}, kF64).requires_grad_();
  Tensor y = nb::rand({2, 3}, kF64);
  Tensor z = nb::sum(x * y);
  y.slice(0, 0, 1).fill_(7);  // a view shares y's storage, and so its version
  EXPECT_THAT(error_of([&] { z.backward(); }), (HasSubstr("backward of mul: input 1")));
}

TEST(InplaceBackward, ChangingASavedOutputThrows_exp) {
  Tensor x = f64({0.5, 1}).requires_grad_();
  Tensor y = nb::exp(x);  // exp's backward reads y (any op consuming y would save it as an input)
  y.detach().fill_(0);
  EXPECT_THAT(error_of([&] { y.backward(nb::ones_like(y)); }), (AllOf(HasSubstr("backward of exp: output 0 (shape [2])"),
                                             HasSubstr("modified in place"))));
}

// More saved tensors than the Node keeps inline: the sixth input of a six-input op.
TEST(InplaceBackward, ChangingTheSixthInputOfASixInputOpThrows) {
  std::vector<Tensor> ins;
  for (int i = 0; i < 6; ++i) ins.push_back(nb::rand({2}, kF64).requires_grad_());
  Tensor out = nb::zeros({2}, kF64);
  nb::record("six", ins, {&out}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>(6, g[0]); });
  ins[5].detach().fill_(1);
  EXPECT_THAT(error_of([&] { out.backward(nb::ones_like(out)); }),
              AllOf(HasSubstr("backward of six: input 5 (shape [2])"), HasSubstr("version 0, now 1")));
}

// Ops whose backward reads no input values (add, views, concat, sum) do not check their inputs,
// as PyTorch saves nothing for them: the gradient is right whatever the inputs hold now.
TEST(InplaceBackward, ChangingInputsOfAddConcatAndViewsIsFine_2x3) {
  Tensor x = nb::rand({2, 3}, kF64).requires_grad_(), y = nb::rand({2, 3}, kF64);
  Tensor z = nb::sum(nb::concat({x + y, x.t().reshape({2, 3}), x.slice(1, 0, 2)}, 1));
  y.fill_(5);
  ASSERT_NO_THROW(z.backward());
  EXPECT_TRUE(near(x.grad(), {3, 3, 2, 3, 3, 2}, {2, 3}));
}

TEST(InplaceBackward, ChangesBeforeTheOpOrToACloneAreFine) {
  Tensor x = f64({1, 2, 3}).requires_grad_();
  Tensor y = f64({4, 5, 6});
  y.fill_(2);  // before the op: the op saves version 1
  Tensor yc = y.clone();
  Tensor z = nb::sum(x * yc);
  y.fill_(9);
  z.backward();
  EXPECT_TRUE(near(x.grad(), {2, 2, 2}, {3}));
}

TEST(InplaceBackward, RetainedGraphAfterAStepThrows) {
  Tensor w = f64({1, 2}).requires_grad_();
  Tensor z = nb::sum(w * w);
  z.backward({}, /*retain_graph=*/true);
  nb::SGD opt({w}, {.lr = 0.1});
  opt.step();
  EXPECT_THAT(error_of([&] { z.backward(); }), (HasSubstr("backward of mul: input 0")));
}

TEST(InplaceBackward, NoGradUpdatesBetweenStepsAreFine) {
  Tensor w = f64({1, 2}).requires_grad_();
  for (int i = 0; i < 3; ++i) {
    nb::sum(w * w).backward();
    {
      nb::NoGrad ng;
      w.copy_(w - w.grad() * 0.1);  // a hand-written SGD step
    }
    w.zero_grad();
  }
  EXPECT_EQ(w.version(), 3);
}

// Every optimizer: forward, backward, step, and again; the step changes the parameters only
// after the backward that saved them, so nothing throws and the loss goes down.
TEST(InplaceBackward, TrainingLoopWithEveryOptimizerDoesNotThrow) {
  auto make = [](const std::string& name, std::vector<Tensor> ps) -> std::unique_ptr<nb::Optimizer> {
    if (name == "SGD") return std::make_unique<nb::SGD>(ps, nb::SGDOptions{.lr = 0.05, .momentum = 0.9});
    if (name == "Adam") return std::make_unique<nb::Adam>(ps, nb::AdamOptions{.lr = 0.05});
    if (name == "AdamW") return std::make_unique<nb::AdamW>(ps, nb::AdamWOptions{.lr = 0.05});
    if (name == "Adagrad") return std::make_unique<nb::Adagrad>(ps, nb::AdagradOptions{.lr = 0.05});
    return std::make_unique<nb::RMSprop>(ps, nb::RMSpropOptions{.lr = 0.01, .momentum = 0.5});
  };
  for (std::string name : {"SGD", "Adam", "AdamW", "Adagrad", "RMSprop"}) {
    SCOPED_TRACE(name);
    nb::manual_seed(3);
    nb::Dense layer(4, 1);
    Tensor x = nb::rand({8, 4}), y = nb::rand({8, 1});
    auto opt = make(name, layer.parameters());
    double first = 0, last = 0;
    for (int step = 0; step < 20; ++step) {
      opt->zero_grad();
      Tensor loss = nb::mean(nb::pow(layer.forward(x) - y, 2));
      ASSERT_NO_THROW(loss.backward());
      opt->step();
      (step == 0 ? first : last) = loss.item();
    }
    EXPECT_LT(last, first);
  }
}

}  // namespace
