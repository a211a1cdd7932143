// Two threads training their own models at the same time give bitwise the same results as the
// same two trainings one after the other: the tape and grad mode are per thread, and nothing
// else in a training step is shared.
//
// The random generator is one per process (core/tensor.h: manual_seed, rng_take under a mutex),
// so it is safe to use from two threads but the numbers each thread draws would depend on the
// interleaving. That is the intended semantics (as torch.manual_seed), so this test draws every
// random number (initial weights, data) before the threads start, and the training itself uses
// no randomness (no Dropout; the DataLoader shuffles from its own seed).
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include "test_util.h"

#include <cstring>
#include <string>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

namespace nb = nabla;
using nb::test::error_of;

namespace {

struct Training {
  std::unique_ptr<nb::Sequential> model;
  std::unique_ptr<nb::Optimizer> opt;
  nb::data::Dataset data;
  bool eval_under_nograd = false;  // evaluates under NoGrad between steps (grad mode is per thread)
};

struct Result {
  std::vector<double> losses;
  std::vector<std::vector<uint8_t>> params;  // raw bytes of every parameter after training
  size_t tape_left = 0;
};

// An MLP with SGD + momentum on 64 random 16-feature rows.
Training make_mlp() {
  nb::manual_seed(11);
  Training r;
  r.model = std::make_unique<nb::Sequential>(nb::Sequential{nb::Dense(16, 32), nb::Tanh(), nb::Dense(32, 4)});
  r.opt = std::make_unique<nb::SGD>(r.model->parameters(), nb::SGDOptions{.lr = 0.05, .momentum = 0.9});
  std::vector<int64_t> y(64);
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int64_t>((i * 7) % 4);
  r.data = nb::data::Dataset{nb::randn({64, 16}), nb::from_vector(y)};
  return r;
}

// A small CNN with Adam on 32 random 1x8x8 images; evaluates under NoGrad as it goes.
Training make_cnn() {
  nb::manual_seed(22);
  Training r;
  r.model = std::make_unique<nb::Sequential>(nb::Sequential{nb::Conv2d(1, 4, 3, {.padding = 1}), nb::ReLU(),
                                                            nb::MaxPool2d(2), nb::Flatten(), nb::Dense(4 * 4 * 4, 3)});
  r.opt = std::make_unique<nb::Adam>(r.model->parameters(), nb::AdamOptions{.lr = 3e-3});
  std::vector<int64_t> y(32);
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int64_t>((i * 5) % 3);
  r.data = nb::data::Dataset{nb::randn({32, 1, 8, 8}), nb::from_vector(y)};
  r.eval_under_nograd = true;
  return r;
}

Result train(Training& r, int epochs) {
  Result out;
  nb::data::DataLoader loader(r.data, {.batch_size = 16, .shuffle = true, .seed = 5});
  for (int e = 0; e < epochs; ++e) {
    for (auto& batch : loader) {
      nb::Tensor loss = nb::cross_entropy((*r.model)(batch.x), batch.y);
      r.opt->zero_grad();
      loss.backward();
      r.opt->step();
      out.losses.push_back(loss.item());
      if (r.eval_under_nograd) {
        nb::NoGrad no_grad;
        out.losses.push_back(nb::cross_entropy((*r.model)(r.data.x), r.data.y).item());
      }
    }
  }
  for (const nb::Tensor& p : r.model->parameters()) {
    nb::Tensor c = p.detach().contiguous();
    const auto* b = static_cast<const uint8_t*>(c.data_ptr());
    out.params.emplace_back(b, b + c.numel() * static_cast<int64_t>(nb::dtype_size(c.dtype())));
  }
  out.tape_left = nb::tape_size();
  return out;
}

constexpr int kEpochs = 20;  // 80 MLP steps and 40 CNN steps (+ 40 evaluations)


TEST(Threads, TwoModelsTrainingAtOnceMatchOneAfterTheOther_mlp_cnn) {
  Training a = make_mlp(), b = make_cnn();
  const Result ref_a = train(a, kEpochs), ref_b = train(b, kEpochs);
  ASSERT_EQ(ref_a.losses.size(), 80u);
  ASSERT_EQ(ref_b.losses.size(), 80u);
  EXPECT_LT(ref_a.losses.back(), ref_a.losses.front()) << "the MLP should learn something";

  // A few rounds, so that a race has several chances to show.
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    Training a2 = make_mlp(), b2 = make_cnn();  // every random number is drawn here, before the threads
    Result got_a, got_b;
    std::latch start(2);
    std::thread ta([&] {
      start.arrive_and_wait();
      got_a = train(a2, kEpochs);
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      got_b = train(b2, kEpochs);
    });
    ta.join();
    tb.join();
    EXPECT_EQ(got_a.losses, ref_a.losses);
    EXPECT_EQ(got_b.losses, ref_b.losses);
    EXPECT_TRUE(got_a.params == ref_a.params) << "MLP weights differ bitwise";
    EXPECT_TRUE(got_b.params == ref_b.params) << "CNN weights differ bitwise";
    EXPECT_EQ(got_a.tape_left, 0u);
    EXPECT_EQ(got_b.tape_left, 0u);
  }
}

TEST(Threads, GradModeAndTapeArePerThread) {
  // NoGrad held by one thread must not stop another from recording, and a thread's tape holds
  // only its own entries.
  nb::Tensor w = nb::ones({3}, {.requires_grad = true});
  std::latch in_nograd(1), recorded(1);
  size_t other_tape = 99;
  std::thread t([&] {
    nb::NoGrad no_grad;
    in_nograd.count_down();
    recorded.wait();
    nb::Tensor y = w * 2.0;
    other_tape = nb::tape_size();
    EXPECT_FALSE(y.requires_grad());
  });
  in_nograd.wait();
  EXPECT_TRUE(nb::grad_enabled());
  nb::Tensor y = nb::sum(w * 3.0);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(nb::tape_size(), 2u);
  recorded.count_down();
  t.join();
  EXPECT_EQ(other_tape, 0u);
  y.backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{3, 3, 3}));
}

// ---- one Model from two threads ----------------------------------------------------------------

// Holds fit inside its first batch until the other thread has made its attempt.
struct Hold : nb::Callback {
  std::latch* inside;
  std::latch* attempted;
  Hold(std::latch* i, std::latch* a) : inside(i), attempted(a) {}
  void on_batch_begin(nb::Model&, const nb::BatchInfo& b) override {
    if (b.step != 0) return;
    inside->count_down();
    attempted->wait();
  }
};

nb::data::Dataset small_data() {
  nb::manual_seed(5);
  return {nb::rand({16, 3}), nb::rand({16, 1})};
}

// A second thread's fit, evaluate, predict, save or load while the first is in fit: exactly one
// of the two gets the "in use" error, nothing crashes, and the first finishes its training.
TEST(ModelThreads, SecondThreadGetsInUseErrorWhileFitRuns) {
  const nb::data::Dataset data = small_data();
  for (std::string what : {"fit", "evaluate", "predict", "save", "load", "compile"}) {
    SCOPED_TRACE(what);
    nb::Model model{nb::Dense(3, 4), nb::ReLU(), nb::Dense(4, 1)};
    model.compile(nb::SGD({.lr = 0.1}), nb::MSELoss());
    std::latch inside(1), attempted(1);
    std::string first_error = "(not run)", second_error = "(not run)";
    std::thread first([&] {
      first_error = error_of([&] {
        model.fit(data, {.epochs = 2, .batch_size = 4, .callbacks = {Hold(&inside, &attempted)}, .verbose = 0});
      });
    });
    inside.wait();
    second_error = error_of([&] {
      if (what == "fit") model.fit(data, {.epochs = 1, .verbose = 0});
      if (what == "evaluate") model.evaluate(data);
      if (what == "predict") model.predict(data.x);
      if (what == "save") model.save("/nonexistent-dir/never-written.safetensors");
      if (what == "load") model.load("/nonexistent-dir/never-read.safetensors");
      if (what == "compile") model.compile(nb::Adam(), nb::MSELoss());
    });
    attempted.count_down();
    first.join();
    EXPECT_EQ(first_error, "(no error)");
    EXPECT_NE(second_error.find(what + ": Model is already in use by another thread (fit); a Model is not "
                                       "thread-safe: use one per thread"),
              std::string::npos)
        << second_error;
    EXPECT_EQ(model.epoch(), 2);
    // Free again: the same calls now work from this thread.
    EXPECT_NO_THROW(model.evaluate(data));
  }
}

// Two threads racing on one Model with no coordination: each call either runs or gets the
// "in use" error; at least one of them trains, and the heap survives (run under ASan in CI).
TEST(ModelThreads, RacingFitsOneRunsOneErrsOrBothInTurn) {
  const nb::data::Dataset data = small_data();
  nb::Model model{nb::Dense(3, 4), nb::ReLU(), nb::Dense(4, 1)};
  model.compile(nb::SGD({.lr = 0.1}), nb::MSELoss());
  std::latch go(2);
  std::string errors[2];
  auto run = [&](int i) {
    go.arrive_and_wait();
    errors[i] = error_of([&] { model.fit(data, {.epochs = 3, .batch_size = 4, .verbose = 0}); });
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  int ok = 0;
  for (const std::string& e : errors) {
    if (e == "(no error)") ++ok;
    else EXPECT_NE(e.find("Model is already in use by another thread (fit)"), std::string::npos) << e;
  }
  EXPECT_GE(ok, 1);
}

}  // namespace
