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

#include <cstring>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

namespace nb = nabla;

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

}  // namespace

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
