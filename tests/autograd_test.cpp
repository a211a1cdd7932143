// The autograd tape: accumulation, retain_graph, NoGrad, errors, graph shapes (diamond, shared
// leaves), gradient aliasing, graph lifetime, per-thread tapes, and the gradient checker itself.
#include "test_util.h"

#include <atomic>
#include <thread>

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

Tensor leaf(std::vector<double> v, Shape s = {}) { return f64(std::move(v), std::move(s)).requires_grad_(); }

// ---- accumulation and retain_graph -------------------------------------------------------------

TEST(AutogradAccumulate, TwoBackwardCallsAddUp_3) {
  Tensor x = leaf({1, 2, 3});
  nb::sum(x * x).backward();  // 2x
  EXPECT_TRUE(near(x.grad(), {2, 4, 6}, {3}));
  nb::sum(x * 3.0).backward();  // + 3
  EXPECT_TRUE(near(x.grad(), {5, 7, 9}, {3}));
}

TEST(AutogradAccumulate, AddsToAGradientSetByTheUser_2) {
  Tensor x = leaf({1, 2});
  Tensor g0 = f64({10, 20});
  x.set_grad(g0);
  nb::sum(x * 2.0).backward();
  EXPECT_TRUE(near(x.grad(), {12, 22}, {2}));
}

TEST(AutogradAccumulate, ZeroGradSetToNoneOrZeros_2) {
  Tensor x = leaf({1, 2});
  nb::sum(x).backward();
  x.zero_grad(false);
  EXPECT_TRUE(near(x.grad(), {0, 0}, {2}));
  nb::sum(x * 2.0).backward();
  EXPECT_TRUE(near(x.grad(), {2, 2}, {2}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(AutogradRetain, RetainGraphAllowsASecondBackward_3) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = nb::sum(nb::exp(x) * x);
  y.backward({}, true);
  const std::vector<double> once = x.grad().to_vector<double>();
  y.backward();
  auto twice = x.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2 * once[i], 1e-12);
}

TEST(AutogradRetain, WithoutRetainASecondBackwardThrows_3) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = nb::sum(nb::exp(x));
  y.backward();
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("backward"), HasSubstr("second time"), HasSubstr("retain_graph"),
                         HasSubstr("'sum'")));
  // the first backward's result is intact
  EXPECT_TRUE(near(x.grad(), nb::exp(x.detach()).to_vector<double>(), {3}));
}

TEST(AutogradRetain, FreedSubgraphSharedByASecondRootThrows_2) {
  Tensor x = leaf({1, 2});
  Tensor h = nb::exp(x);
  Tensor a = nb::sum(h), b = nb::mean(h);
  a.backward();
  std::string msg = error_of([&] { b.backward(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("'exp'"), HasSubstr("retain_graph")));
}

// ---- NoGrad and grad mode ------------------------------------------------------------------------

TEST(AutogradNoGrad, RecordsNothingAndOutputsNeedNoGrad) {
  Tensor x = leaf({1, 2, 3});
  const size_t before = nb::tape_size();
  {
    nb::NoGrad ng;
    EXPECT_FALSE(nb::grad_enabled());
    Tensor y = nb::sum(nb::exp(x) * x + 1.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.is_leaf());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_EQ(nb::tape_size(), before);
    Tensor v = x.reshape({3, 1}).t().slice(1, 0, 2);
    EXPECT_FALSE(v.requires_grad());
    EXPECT_EQ(nb::tape_size(), before);
  }
  EXPECT_TRUE(nb::grad_enabled());
}

TEST(AutogradNoGrad, NestsAndRestores) {
  {
    nb::NoGrad a;
    {
      nb::NoGrad b;
      EXPECT_FALSE(nb::grad_enabled());
    }
    EXPECT_FALSE(nb::grad_enabled());  // the outer one still holds
  }
  EXPECT_TRUE(nb::grad_enabled());
  nb::set_grad_enabled(false);
  EXPECT_FALSE(nb::sum(leaf({1}) * 2.0).requires_grad());
  nb::set_grad_enabled(true);
  EXPECT_TRUE(nb::sum(leaf({1}) * 2.0).requires_grad());
}

TEST(AutogradNoGrad, InputsThatNeedNoGradRecordNothing) {
  const size_t before = nb::tape_size();
  Tensor y = nb::exp(f64({1, 2})) + f64({3, 4});
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(nb::tape_size(), before);
}

// ---- errors --------------------------------------------------------------------------------------

TEST(AutogradErrors, BackwardOnATensorThatNeedsNoGrad_3) {
  std::string msg = error_of([] { nb::sum(f64({1, 2, 3})).backward(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("backward"), HasSubstr("does not require grad")));
  msg = error_of([] {
    nb::NoGrad ng;
    nb::sum(leaf({1, 2, 3})).backward();
  });
  EXPECT_THAT(msg, HasSubstr("does not require grad"));
  EXPECT_THAT(error_of([] { Tensor().backward(); }), AllOf(HasSubstr("backward"), HasSubstr("undefined")));
}

TEST(AutogradErrors, NonScalarNeedsAGradient_2x3) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x * 2.0;
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("backward"), HasSubstr("scalar"), HasSubstr("[2, 3]")));
  // with an explicit gradient it works: dx = 2 g
  y.backward(f64({1, 0, -1, 2, 0.5, 0}, {2, 3}));
  EXPECT_TRUE(near(x.grad(), {2, 0, -2, 4, 1, 0}, {2, 3}));
}

TEST(AutogradErrors, OneElementNonScalarIsImplied_1x1) {
  Tensor x = leaf({3}, {1, 1});
  (x * x).backward();
  EXPECT_TRUE(near(x.grad(), {6}, {1, 1}));
}

TEST(AutogradErrors, GradientOfTheWrongShapeOrDtype_2x3) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x * 2.0;
  std::string msg = error_of([&] { y.backward(nb::ones({3, 2}, kF64), true); });
  EXPECT_THAT(msg, AllOf(HasSubstr("backward"), HasSubstr("[3, 2]"), HasSubstr("[2, 3]")));
  msg = error_of([&] { y.backward(nb::ones({2, 3}), true); });
  EXPECT_THAT(msg, AllOf(HasSubstr("backward"), HasSubstr("float32"), HasSubstr("float64")));
}

TEST(AutogradErrors, RequiresGradOnlyOnFloatLeaves) {
  Tensor y = leaf({1, 2}) * 2.0;
  EXPECT_THAT(error_of([&] { y.requires_grad_(false); }),
              AllOf(HasSubstr("requires_grad_"), HasSubstr("leaf"), HasSubstr("'affine'")));
  EXPECT_THAT(error_of([] { i64({1, 2}).requires_grad_(); }), AllOf(HasSubstr("requires_grad_"), HasSubstr("int64")));
  EXPECT_THAT(error_of([] { f64({1, 2}).set_grad(f64({1, 2, 3})); }),
              AllOf(HasSubstr("set_grad"), HasSubstr("[3]"), HasSubstr("[2]")));
  EXPECT_THAT(error_of([] { f64({1, 2}).set_grad(f32({1, 2})); }),
              AllOf(HasSubstr("set_grad"), HasSubstr("float32"), HasSubstr("float64")));
}

// ---- graph shapes --------------------------------------------------------------------------------

TEST(AutogradGraph, DiamondSumsBothPaths_3) {
  // x -> a = 2x, b = x^2 -> y = sum(a * b) = sum(2 x^3): dy/dx = 6 x^2
  Tensor x = leaf({1, 2, 3});
  Tensor a = x * 2.0, b = x * x;
  nb::sum(a * b).backward();
  EXPECT_TRUE(near(x.grad(), {6, 24, 54}, {3}));
}

TEST(AutogradGraph, SameTensorUsedManyTimes_2) {
  // y = x + x + x * x: dy/dx = 2 + 2x
  Tensor x = leaf({1, -3});
  nb::sum(nb::add(nb::add(x, x), nb::mul(x, x))).backward();
  EXPECT_TRUE(near(x.grad(), {4, -4}, {2}));
}

TEST(AutogradGraph, OnlyLeavesKeepGradients_2) {
  Tensor x = leaf({1, 2});
  Tensor h = x * 3.0;
  EXPECT_FALSE(h.is_leaf());
  EXPECT_TRUE(h.requires_grad());
  ASSERT_NE(h.grad_fn(), nullptr);
  EXPECT_EQ(h.grad_fn()->op, "affine");
  nb::sum(h).backward();
  EXPECT_FALSE(h.grad().defined());
  EXPECT_TRUE(near(x.grad(), {3, 3}, {2}));
}

// ---- post-accumulate-grad hooks (what data-parallel training starts its allreduce from) ------

TEST(AutogradHooks, RunOnceWhenTheGradientIsFinal_3) {
  // x is used by three ops; the hook must see the sum of all three contributions, once.
  Tensor x = leaf({1, 2, 3});
  std::vector<std::vector<double>> seen;
  x.register_post_accumulate_grad_hook([&](const Tensor& t) { seen.push_back(t.grad().to_vector<double>()); });
  Tensor a = x * 2.0, b = x * x;
  nb::sum(nb::add(a * b, x)).backward();  // d/dx sum(2x^3 + x) = 6x^2 + 1
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<double>{7, 25, 55}));
  nb::sum(x).backward();  // a second backward: the hook again, with the accumulated gradient
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], (std::vector<double>{8, 26, 56}));
}

TEST(AutogradHooks, LastLayerFirstAndBeforeTheBackwardEnds_2x2) {
  // w2 is used only at the end of the forward: its gradient is final before w1's is computed.
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor w1 = leaf({1, 0.5, -1, 2}, {2, 2}), w2 = leaf({0.5, -2, 1, 1}, {2, 2});
  std::vector<std::string> order;
  w1.register_post_accumulate_grad_hook([&](const Tensor& t) {
    EXPECT_TRUE(t.grad().defined());
    order.push_back("w1");
  });
  w2.register_post_accumulate_grad_hook([&](const Tensor& t) {
    EXPECT_TRUE(t.grad().defined());
    EXPECT_FALSE(w1.grad().defined()) << "w2's hook ran after w1's gradient was computed";
    order.push_back("w2");
  });
  nb::sum(nb::matmul(nb::relu(nb::matmul(x, w1)), w2)).backward();
  EXPECT_EQ(order, (std::vector<std::string>{"w2", "w1"}));
}

TEST(AutogradHooks, ALeafTheGradientNeverReachesStillGetsItsCall_2) {
  // relu's gradient is zero but defined; a slice of the graph whose gradient is undefined: the
  // second output of an op with two outputs that is unused gets none; the hook still runs once.
  Tensor x = leaf({1, 2}), y = leaf({3, 4});
  int calls_y = 0;
  y.register_post_accumulate_grad_hook([&](const Tensor&) { ++calls_y; });
  Tensor unused = y * 2.0;  // not part of the loss
  (void)unused;
  nb::sum(x * y).backward();
  EXPECT_EQ(calls_y, 1);
}

TEST(AutogradHooks, RemovedHooksDoNotRunAndNonLeavesAreRefused_2) {
  Tensor x = leaf({1, 2});
  int calls = 0;
  const uint64_t h = x.register_post_accumulate_grad_hook([&](const Tensor&) { ++calls; });
  nb::sum(x * x).backward();
  x.remove_post_accumulate_grad_hook(h);
  nb::sum(x * x).backward();
  EXPECT_EQ(calls, 1);
  Tensor h2 = x * 2.0;
  try {
    h2.register_post_accumulate_grad_hook([](const Tensor&) {});
    ADD_FAILURE() << "a hook on a non-leaf was accepted";
  } catch (const nb::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("leaves that require grad"));
  }
  Tensor c = f64({1, 2});
  EXPECT_THROW(c.register_post_accumulate_grad_hook([](const Tensor&) {}), nb::Error);
}

TEST(AutogradGraph, PartOfTheGraphNeedsNoGrad_2) {
  Tensor x = leaf({1, 2});
  Tensor c = f64({5, 7});
  nb::sum(x * c + nb::exp(c)).backward();
  EXPECT_TRUE(near(x.grad(), {5, 7}, {2}));
  EXPECT_FALSE(c.grad().defined());
}

TEST(AutogradGraph, DetachCutsTheGraphButSharesData_2) {
  Tensor x = leaf({1, 2});
  Tensor d = (x * 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.grad_fn(), nullptr);
  nb::sum(x * d).backward();  // d is a constant
  EXPECT_TRUE(near(x.grad(), {2, 4}, {2}));
  Tensor xd = x.detach();
  EXPECT_EQ(xd.data_ptr(), x.data_ptr());
}

TEST(AutogradGraph, BackwardOnALeafItself_2) {
  Tensor x = leaf({1, 2});
  x.backward(f64({3, 4}));
  EXPECT_TRUE(near(x.grad(), {3, 4}, {2}));
}

TEST(AutogradGraph, UnusedOutputOfATwoOutputNodeGetsZeros) {
  // a custom op with two outputs, y0 = 2x and y1 = 3x; only y0 is used.
  Tensor x = leaf({1, 2});
  Tensor y0 = nb::Tensor::empty({2}, kF64), y1 = nb::Tensor::empty({2}, kF64);
  y0.copy_(x.detach() * 2.0);
  y1.copy_(x.detach() * 3.0);
  nb::record("two_outputs", {x}, {&y0, &y1}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    EXPECT_TRUE(g[0].defined() && g[1].defined());
    EXPECT_EQ(g[1].shape(), (Shape{2}));
    return {nb::add(nb::mul(g[0], nb::scalar(2, kF64)), nb::mul(g[1], nb::scalar(3, kF64)))};
  });
  EXPECT_EQ(y1.grad_fn(), y0.grad_fn());
  nb::sum(y0 * f64({1, 10})).backward();
  EXPECT_TRUE(near(x.grad(), {2, 20}, {2}));
}

// ---- aliasing --------------------------------------------------------------------------------------

TEST(AutogradAliasing, TwoLeavesOfOneAddGetSeparateGradients_3) {
  Tensor a = leaf({1, 2, 3}), b = leaf({4, 5, 6});
  nb::sum(a + b).backward();  // add passes the same incoming gradient to both
  EXPECT_TRUE(near(a.grad(), {1, 1, 1}, {3}));
  EXPECT_TRUE(near(b.grad(), {1, 1, 1}, {3}));
  EXPECT_NE(a.grad().data_ptr(), b.grad().data_ptr());
  // a second backward that reaches only a accumulates in place into a's gradient
  nb::sum(a * 5.0).backward();
  EXPECT_TRUE(near(a.grad(), {6, 6, 6}, {3}));
  EXPECT_TRUE(near(b.grad(), {1, 1, 1}, {3}));
}

TEST(AutogradAliasing, NonScalarAddPassThroughDoesNotShareTheUsersGradient_2) {
  Tensor a = leaf({1, 2}), b = leaf({3, 4});
  Tensor g = f64({10, 20});
  (a + b).backward(g);
  g.fill_(0);  // the caller reuses its buffer
  EXPECT_TRUE(near(a.grad(), {10, 20}, {2}));
  EXPECT_TRUE(near(b.grad(), {10, 20}, {2}));
  nb::sum(b).backward();  // in-place accumulation into b's gradient leaves a's and g alone
  EXPECT_TRUE(near(b.grad(), {11, 21}, {2}));
  EXPECT_TRUE(near(a.grad(), {10, 20}, {2}));
  EXPECT_TRUE(near(g, {0, 0}, {2}));
}

TEST(AutogradAliasing, ViewPassThroughsDoNotShareGradients_2x2) {
  // clone, reshape and to(float64) pass their incoming gradient through unchanged
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = leaf({1, 2, 3, 4}, {2, 2});
  Tensor g = f64({1, 2, 3, 4}, {2, 2});
  (x.clone() + y.reshape({4}).reshape({2, 2})).backward(g);
  nb::sum(x).backward();
  EXPECT_TRUE(near(x.grad(), {2, 3, 4, 5}, {2, 2}));
  EXPECT_TRUE(near(y.grad(), {1, 2, 3, 4}, {2, 2}));
  EXPECT_TRUE(near(g, {1, 2, 3, 4}, {2, 2}));
}

TEST(AutogradAliasing, LeafGradientIsNotTheSavedForwardData_2) {
  // y = x * x saves x; x's gradient must not alias x or anything saved
  Tensor x = leaf({1, 2});
  nb::sum(x * x).backward();
  EXPECT_NE(x.grad().data_ptr(), x.data_ptr());
  x.grad().fill_(0);
  EXPECT_TRUE(near(x.detach(), {1, 2}, {2}));
}

// ---- graph lifetime ----------------------------------------------------------------------------------

TEST(AutogradLifetime, ForwardOnlyGraphFreesItselfWhenDropped) {
  Tensor x = leaf({1, 2, 3});
  const size_t before = nb::tape_size();
  {
    Tensor y = nb::sum(nb::exp(x * 2.0));
    EXPECT_EQ(nb::tape_size(), before + 3);
  }
  EXPECT_EQ(nb::tape_size(), before);
}

TEST(AutogradLifetime, BackwardReleasesTheGraphUnlessRetained) {
  Tensor x = leaf({1, 2, 3});
  const size_t before = nb::tape_size();
  Tensor y = nb::sum(nb::exp(x * 2.0));
  y.backward({}, true);
  EXPECT_EQ(nb::tape_size(), before + 3);  // retained: still there
  y.backward();
  EXPECT_EQ(nb::tape_size(), before);  // released by the second backward
  EXPECT_TRUE(y.requires_grad());
}

TEST(AutogradLifetime, KeptIntermediateKeepsOnlyItsOwnHistory) {
  Tensor x = leaf({1, 2, 3});
  const size_t before = nb::tape_size();
  Tensor h;
  {
    h = nb::exp(x);                  // 1 node, kept through h
    Tensor y = nb::sum(h * 2.0);     // 2 more nodes, dropped with y
    EXPECT_EQ(nb::tape_size(), before + 3);
  }
  EXPECT_EQ(nb::tape_size(), before + 1);
  h = Tensor();
  EXPECT_EQ(nb::tape_size(), before);
}

TEST(AutogradLifetime, ManyDroppedGraphsDoNotGrowTheTape_5000) {
  Tensor x = leaf({1, 2});
  const size_t before = nb::tape_size();
  for (int i = 0; i < 5000; ++i) {
    Tensor y = nb::sum(x * 2.0);
    if (i % 1000 == 0) {
      EXPECT_EQ(nb::tape_size(), before + 2);
    }
  }
  EXPECT_EQ(nb::tape_size(), before);
  nb::sum(x * 3.0).backward();  // the tape still works after compaction
  EXPECT_TRUE(near(x.grad(), {3, 3}, {2}));
}

TEST(AutogradLifetime, DeepGraphDroppedWithoutBackwardDoesNotOverflow_150000) {
  // a running total over many steps, never backpropagated (as `total = total + loss` without
  // item()): freeing it must not recurse once per op (it overflowed the stack at ~10^5)
  Tensor x = leaf({0.5});
  const size_t before = nb::tape_size();
  {
    Tensor total = nb::scalar(0, kF64);
    for (int i = 0; i < 150000; ++i) total = i % 2 ? total + x : total * x;
    EXPECT_EQ(nb::tape_size(), before + 150000);
  }
  EXPECT_EQ(nb::tape_size(), before);
}

TEST(AutogradLifetime, DeepGraphBackward_2x50000) {
  Tensor x = leaf({2});
  const size_t before = nb::tape_size();
  Tensor y = x;
  for (int i = 0; i < 50000; ++i) y = y * 1.0 + 0.0;
  nb::sum(y).backward();
  EXPECT_TRUE(near(x.grad(), {1}, {1}));
  EXPECT_EQ(nb::tape_size(), before);
}

// ---- threads ---------------------------------------------------------------------------------------

// A small network's loss and input gradients, from fixed data.
std::vector<double> network_grads(const std::vector<double>& xv, const std::vector<double>& wv, int steps) {
  Tensor w = f64(wv, {4, 3}).requires_grad_();
  Tensor x = f64(xv, {5, 3});
  std::vector<double> out;
  for (int s = 0; s < steps; ++s) {
    Tensor logits = nb::matmul(nb::tanh(x * (1.0 + 0.01 * s)), w.t());
    Tensor loss = nb::cross_entropy(logits, i64({0, 1, 2, 3, 0}));
    loss.backward();
    out.push_back(loss.item());
  }
  for (double g : w.grad().to_vector<double>()) out.push_back(g);
  return out;
}

TEST(AutogradThreads, TwoThreadsWithTheirOwnTapesMatchSequential) {
  nb::manual_seed(2024);
  const auto x1 = nb::rand({5, 3}, kF64, -1, 1).to_vector<double>();
  const auto x2 = nb::rand({5, 3}, kF64, -1, 1).to_vector<double>();
  const auto w = nb::rand({4, 3}, kF64, -1, 1).to_vector<double>();
  const int steps = 300;
  const auto seq1 = network_grads(x1, w, steps), seq2 = network_grads(x2, w, steps);
  ASSERT_NE(seq1, seq2);

  std::vector<double> par1, par2;
  std::atomic<int> ready{0};
  std::string err1, err2;
  auto run = [&](const std::vector<double>& x, std::vector<double>* out, std::string* err) {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();  // start together
    try {
      *out = network_grads(x, w, steps);
    } catch (const std::exception& e) {
      *err = e.what();
    }
  };
  std::thread t1(run, std::cref(x1), &par1, &err1), t2(run, std::cref(x2), &par2, &err2);
  t1.join();
  t2.join();
  EXPECT_EQ(err1, "");
  EXPECT_EQ(err2, "");
  EXPECT_EQ(par1, seq1);
  EXPECT_EQ(par2, seq2);
}

TEST(AutogradThreads, TapeAndGradModeArePerThread) {
  Tensor x = leaf({1, 2});
  Tensor y = x * 2.0;  // one node on this thread's tape
  const size_t here = nb::tape_size();
  size_t there = 99;
  bool mode_there = false;
  {
    nb::NoGrad ng;  // only this thread
    std::thread t([&] {
      there = nb::tape_size();
      mode_there = nb::grad_enabled();
    });
    t.join();
  }
  EXPECT_GE(here, 1u);
  EXPECT_EQ(there, 0u);
  EXPECT_TRUE(mode_there);
}

// ---- the gradient checker catches wrong gradients ------------------------------------------------------

// y = 2x recorded with a backward that returns 3g: the checker must fail and say where.
Tensor wrong_double(const Tensor& x) {
  Tensor y;
  {
    nb::NoGrad ng;
    y = (x * 2.0).detach();
  }
  if (nb::needs_grad({&x}))
    nb::record("wrong_double", {x}, {&y}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0] * 3.0};
    });
  return y;
}

TEST(AutogradGradCheck, DetectsAWrongBackwardAndReportsTheIndex_2x2) {
  ::testing::AssertionResult r = gradcheck([](const Tensors& v) { return wrong_double(v[0]); }, {input({2, 2})});
  EXPECT_FALSE(r);
  EXPECT_THAT(r.message(), AllOf(HasSubstr("input 0"), HasSubstr("[0, 0]"), HasSubstr("analytic"), HasSubstr("numeric")));
}

TEST(AutogradGradCheck, DetectsAMissingGradient) {
  ::testing::AssertionResult r =
      gradcheck([](const Tensors& v) { return v[0] * v[1].detach(); }, {input({3}), input({3})});
  EXPECT_FALSE(r);
  EXPECT_THAT(r.message(), HasSubstr("input 1"));
}

TEST(AutogradGradCheck, RejectsFloat32Inputs) {
  ::testing::AssertionResult r = gradcheck([](const Tensors& v) { return v[0] * 2.0; }, {f32({1, 2})});
  EXPECT_FALSE(r);
  EXPECT_THAT(r.message(), HasSubstr("float32"));
}

TEST(AutogradGradCheck, PassesOnACorrectCompositeAndLeavesTheRngAlone) {
  nb::manual_seed(5);
  const nb::RngState before = nb::rng_state();
  EXPECT_TRUE(gradcheck([](const Tensors& v) { return nb::tanh(nb::matmul(v[0], v[1])) * v[0].sum(); },
                        {f64({0.1, -0.2, 0.3, 0.4, 0.5, -0.6}, {2, 3}), f64({1, 2, -1, 0.5, 0.25, -2}, {3, 2})}));
  EXPECT_EQ(nb::rng_state().offset, before.offset);
}

// ---- the tape: accumulation, retain_graph, NoGrad, errors, graph lifetime, threads ----------------

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

}  // namespace
