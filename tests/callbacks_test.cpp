// Callbacks: EarlyStopping (the stop epoch by Keras' rule, restored best weights), ModelCheckpoint,
// LearningRateScheduler (each schedule's rate per epoch and per step inside fit),
// ReduceLROnPlateau, CSVLogger, TerminateOnNaN, and the order of the hooks.
#include <nabla/nabla.h>

#include "test_util.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

namespace nb = nabla;
using nb::test::error_of;
using nb::test::f32;
using ::testing::HasSubstr;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_callbacks_test", name); }

nb::data::Dataset regression(int64_t n, uint64_t seed) {
  nb::manual_seed(seed);
  nb::Tensor x = nb::rand({n, 3}, {}, -1, 1);
  nb::Tensor y = nb::sum(x * f32({0.5, -1, 2}), {1}, true) + 0.1 * nb::randn({n, 1});
  return {x, y};
}

float weight0(const nb::Model& m) { return m.parameters()[0].to_vector<float>()[0]; }

// Sets every parameter to `v` (to tell epochs apart by their weights).
void fill_params(nb::Model& m, double v) {
  for (nb::Tensor& p : m.parameters()) p.detach().fill_(v);
}

struct Recorder : nb::Callback {
  std::vector<std::string> calls;
  std::vector<double> lr_at_batch;
  std::vector<std::vector<float>> weights;  // at each epoch end
  void on_train_begin(nb::Model&) override { calls.push_back("train_begin"); }
  void on_train_end(nb::Model&) override { calls.push_back("train_end"); }
  void on_epoch_begin(nb::Model&, int64_t e) override { calls.push_back("epoch_begin " + std::to_string(e)); }
  void on_epoch_end(nb::Model& m, int64_t e, nb::Logs& logs) override {
    calls.push_back("epoch_end " + std::to_string(e));
    weights.push_back(m.parameters()[0].to_vector<float>());
    logs["custom"] = static_cast<double>(e) * 10;  // a callback may add to the logs
  }
  void on_batch_begin(nb::Model&, const nb::BatchInfo& b) override {
    calls.push_back("batch_begin " + std::to_string(b.batch));
  }
  void on_batch_end(nb::Model& m, const nb::BatchInfo& b) override {
    calls.push_back("batch_end " + std::to_string(b.batch));
    lr_at_batch.push_back(m.optimizer().lr());
  }
};

}  // namespace

TEST(Callbacks, HooksRunInKerasOrderAndLogsReachHistory) {
  auto data = regression(25, 1);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.1}), nb::MSELoss());
  auto rec = std::make_shared<Recorder>();
  auto h = model.fit(data, {.epochs = 2, .batch_size = 10, .callbacks = {rec}, .verbose = 0});
  const std::vector<std::string> want = {
      "train_begin", "epoch_begin 0", "batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1", "batch_begin 2",
      "batch_end 2", "epoch_end 0",   "epoch_begin 1", "batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1",
      "batch_begin 2", "batch_end 2", "epoch_end 1",   "train_end"};
  EXPECT_EQ(rec->calls, want);
  EXPECT_EQ(h.at("custom"), (std::vector<double>{0, 10}));
  EXPECT_EQ(model.global_step(), 6);
  EXPECT_EQ(model.epoch(), 2);
}

// ---- EarlyStopping ----------------------------------------------------------------------------

// Drives the hooks by hand with a known val_loss sequence; before each epoch end the weights are
// set to the epoch number, so the restored weights say which epoch was kept.
struct Driven {
  int64_t stopped_after = -1;  // epochs run
  float restored = NAN;
  int64_t best_epoch = -1;
};

Driven drive(nb::EarlyStoppingOptions opts, const std::vector<double>& val_loss) {
  nb::Model model{nb::Dense(1, 1)};
  model.compile(nb::SGD(), nb::MSELoss());
  nb::EarlyStopping es(opts);
  es.on_train_begin(model);
  Driven d;
  for (size_t e = 0; e < val_loss.size(); ++e) {
    fill_params(model, static_cast<double>(e));
    nb::Logs logs{{"val_loss", val_loss[e]}, {"val_accuracy", -val_loss[e]}};
    es.on_epoch_end(model, static_cast<int64_t>(e), logs);
    if (model.stop_requested()) {
      d.stopped_after = static_cast<int64_t>(e) + 1;
      break;
    }
  }
  es.on_train_end(model);
  d.restored = weight0(model);
  d.best_epoch = es.best_epoch();
  EXPECT_EQ(es.stopped_epoch(), d.stopped_after < 0 ? -1 : d.stopped_after - 1);
  return d;
}

TEST(EarlyStopping, StopsAtTheEpochKerasRuleGives) {
  const std::vector<double> seq = {1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.6};
  // patience 2, no min_delta: best 0.79 at epoch 3, then 0.9 and 0.95 do not improve: stop after epoch 5.
  Driven a = drive({.patience = 2, .restore_best_weights = true}, seq);
  EXPECT_EQ(a.stopped_after, 6);
  EXPECT_EQ(a.best_epoch, 3);
  EXPECT_EQ(a.restored, 3.0f);
  // min_delta 0.02: 0.79 is not better than 0.8 by more than 0.02, so the wait reaches 2 at epoch 3.
  Driven b = drive({.patience = 2, .min_delta = 0.02, .restore_best_weights = true}, seq);
  EXPECT_EQ(b.stopped_after, 4);
  EXPECT_EQ(b.best_epoch, 1);
  EXPECT_EQ(b.restored, 1.0f);
  // patience 0: the first epoch without improvement stops.
  EXPECT_EQ(drive({.patience = 0}, seq).stopped_after, 3);
  // Without restore_best_weights the last weights stay.
  Driven c = drive({.patience = 2}, seq);
  EXPECT_EQ(c.restored, 5.0f);
  // Patience longer than the run: never stops, and the best (epoch 7) is restored at the end.
  Driven d = drive({.patience = 10, .restore_best_weights = true}, seq);
  EXPECT_EQ(d.stopped_after, -1);
  EXPECT_EQ(d.restored, 7.0f);
  // mode auto maximizes accuracy (here -val_loss: the same epochs).
  Driven e = drive({.monitor = "val_accuracy", .patience = 2, .restore_best_weights = true}, seq);
  EXPECT_EQ(e.stopped_after, 6);
  EXPECT_EQ(e.restored, 3.0f);
  // A baseline of 0.75: improvements above it never reset the wait.
  Driven f = drive({.patience = 3, .baseline = 0.75}, seq);
  EXPECT_EQ(f.stopped_after, 3);
}

TEST(EarlyStopping, InsideFitStopsAndRestoresTheBestEpochsWeights) {
  auto train = regression(40, 2), val = regression(20, 3);
  nb::manual_seed(0);
  nb::Model model{nb::Dense(3, 8), nb::Tanh(), nb::Dense(8, 1)};
  model.compile(nb::SGD({.lr = 0.05}), nb::MSELoss());
  auto rec = std::make_shared<Recorder>();
  auto es = std::make_shared<nb::EarlyStopping>(
      nb::EarlyStoppingOptions{.patience = 2, .min_delta = 0.01, .restore_best_weights = true});
  auto h = model.fit(train, {.epochs = 60, .batch_size = 8, .validation = val, .callbacks = {rec, es}, .verbose = 0});
  // Replay the rule on the recorded val_loss.
  const auto& vl = h.at("val_loss");
  double best = std::numeric_limits<double>::infinity();
  int64_t wait = 0, best_epoch = -1, stop = -1;
  for (size_t e = 0; e < vl.size(); ++e) {
    ++wait;
    if (vl[e] + 0.01 < best) {
      best = vl[e];
      best_epoch = static_cast<int64_t>(e);
      wait = 0;
    } else if (wait >= 2 && e > 0) {
      stop = static_cast<int64_t>(e);
      break;
    }
  }
  ASSERT_GE(stop, 0) << "the loss kept improving by 0.01 for 60 epochs";
  EXPECT_EQ(es->stopped_epoch(), stop);
  EXPECT_EQ(static_cast<int64_t>(h.size()), stop + 1);
  EXPECT_EQ(es->best_epoch(), best_epoch);
  EXPECT_EQ(model.parameters()[0].to_vector<float>(), rec->weights[static_cast<size_t>(best_epoch)]);
  EXPECT_NE(rec->weights.back(), rec->weights[static_cast<size_t>(best_epoch)]);
}

TEST(EarlyStopping, MissingMonitorIsAnErrorNamingTheKeys) {
  auto data = regression(10, 1);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD(), nb::MSELoss());
  EXPECT_THAT(error_of([&] { model.fit(data, {.callbacks = {nb::EarlyStopping()}, .verbose = 0}); }),
              HasSubstr("monitors 'val_loss', which the logs do not have (they have: loss, lr)"));
}

// ---- ModelCheckpoint --------------------------------------------------------------------------

TEST(ModelCheckpointCallback, EveryEpochAndBestOnly) {
  auto train = regression(30, 4), val = regression(15, 5);
  nb::manual_seed(0);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.05}), nb::MSELoss());
  auto rec = std::make_shared<Recorder>();
  auto best = std::make_shared<nb::ModelCheckpoint>(temp_path("best.safetensors"),
                                                    nb::ModelCheckpointOptions{.save_best_only = true});
  auto h = model.fit(train, {.epochs = 3, .batch_size = 10, .validation = val,
                             .callbacks = {rec, nb::ModelCheckpoint(temp_path("ep{epoch}.safetensors"),
                                                                    {.weights_only = false}),
                                           best},
                             .verbose = 0});
  for (int e = 1; e <= 3; ++e)
    EXPECT_TRUE(std::filesystem::exists(temp_path("ep" + std::to_string(e) + ".safetensors"))) << e;
  // Each every-epoch file holds that epoch's weights and training state.
  nb::Model ep2{nb::Dense(3, 1)};
  ep2.compile(nb::SGD({.lr = 0.05}), nb::MSELoss());
  ep2.load_checkpoint(temp_path("ep2.safetensors"));
  EXPECT_EQ(ep2.parameters()[0].to_vector<float>(), rec->weights[1]);
  EXPECT_EQ(ep2.epoch(), 2);
  // The best-only file holds the weights of the epoch with the lowest val_loss.
  const auto& vl = h.at("val_loss");
  const size_t arg = static_cast<size_t>(std::min_element(vl.begin(), vl.end()) - vl.begin());
  nb::Model b{nb::Dense(3, 1)};
  b.load(best->last_saved());
  EXPECT_EQ(b.parameters()[0].to_vector<float>(), rec->weights[arg]);
}

// ---- learning rate ----------------------------------------------------------------------------

TEST(LearningRateScheduler, EachScheduleGivesItsFormulaPerEpochInsideFit) {
  auto data = regression(20, 6);
  struct Case {
    const char* name;
    std::function<double(int64_t)> schedule;
    std::function<double(double)> formula;  // of the epoch
  };
  const std::vector<Case> cases = {
      {"step", nb::StepDecay{.initial_lr = 0.1, .step_size = 3, .gamma = 0.5},
       [](double e) { return 0.1 * std::pow(0.5, std::floor(e / 3)); }},
      {"exponential", nb::ExponentialDecay{.initial_lr = 0.1, .rate = 0.8, .decay_steps = 2},
       [](double e) { return 0.1 * std::pow(0.8, e / 2); }},
      {"inverse_time", nb::InverseTimeDecay{.initial_lr = 0.1, .rate = 1.0, .decay_steps = 1},
       [](double e) { return 0.1 / (1 + e); }},
      {"cosine_warmup", nb::CosineDecay{.initial_lr = 0.1, .total = 8, .warmup = 2},
       [](double e) {
         return e < 2 ? 0.1 * (e + 1) / 2 : 0.05 * (1 + std::cos(std::acos(-1.0) * std::min(1.0, (e - 2) / 6)));
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nb::Model model{nb::Dense(3, 1)};
    model.compile(nb::SGD({.lr = 1.0}), nb::MSELoss());
    auto h = model.fit(data, {.epochs = 10, .batch_size = 10,
                              .callbacks = {nb::LearningRateScheduler(c.schedule)}, .verbose = 0});
    ASSERT_EQ(h.at("lr").size(), 10u);
    for (int e = 0; e < 10; ++e) EXPECT_NEAR(h.at("lr")[e], c.formula(e), 1e-15) << "epoch " << e;
  }
}

TEST(LearningRateScheduler, PerStepUsesTheGlobalStep) {
  auto data = regression(30, 7);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 1.0}), nb::MSELoss());
  auto rec = std::make_shared<Recorder>();
  nb::InverseTimeDecay sched{.initial_lr = 0.2, .rate = 0.5, .decay_steps = 2, .staircase = true};
  model.fit(data, {.epochs = 3, .batch_size = 10,
                   .callbacks = {nb::LearningRateScheduler(sched, nb::ScheduleUnit::step), rec}, .verbose = 0});
  ASSERT_EQ(rec->lr_at_batch.size(), 9u);
  for (int s = 0; s < 9; ++s) EXPECT_DOUBLE_EQ(rec->lr_at_batch[s], 0.2 / (1 + 0.5 * (s / 2))) << "step " << s;
}

TEST(ReduceLROnPlateau, ReducesAfterPatienceWithCooldownDownToMinLr) {
  nb::Model model{nb::Dense(1, 1)};
  model.compile(nb::SGD({.lr = 0.1}), nb::MSELoss());
  nb::ReduceLROnPlateau cb({.factor = 0.5, .patience = 2, .cooldown = 1, .min_lr = 0.01});
  cb.on_train_begin(model);
  // 1.0 and 0.9 improve; then a plateau. Reductions after epochs 3, 5, 7, 9 (the wait counts 2,
  // with one cooldown epoch after each), the last one clamped to min_lr, then none.
  const std::vector<double> want = {0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.01, 0.01, 0.01, 0.01};
  for (size_t e = 0; e < want.size(); ++e) {
    nb::Logs logs{{"val_loss", e == 0 ? 1.0 : 0.9}};
    cb.on_epoch_end(model, static_cast<int64_t>(e), logs);
    EXPECT_DOUBLE_EQ(model.optimizer().lr(), want[e]) << "after epoch " << e;
  }
  // An improvement resets the wait.
  nb::Logs better{{"val_loss", 0.5}};
  cb.on_epoch_end(model, 13, better);
  EXPECT_DOUBLE_EQ(model.optimizer().lr(), 0.01);
}

// ---- CSVLogger, TerminateOnNaN ----------------------------------------------------------------

TEST(CSVLogger, OneLinePerEpochMatchingHistory) {
  auto train = regression(20, 8), val = regression(10, 9);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.05}), nb::MSELoss(), {"mae"});
  const std::string path = temp_path("log.csv");
  auto h = model.fit(train, {.epochs = 3, .batch_size = 10, .validation = val, .callbacks = {nb::CSVLogger(path)},
                             .verbose = 0});
  auto logged = nb::History::load_csv(path);
  EXPECT_EQ(logged.keys(), (std::vector<std::string>{"loss", "lr", "mae", "val_loss", "val_mae"}));
  EXPECT_EQ(logged.epochs(), h.epochs());
  for (const auto& k : logged.keys()) EXPECT_EQ(logged.at(k), h.at(k)) << k;
  // append: a second run adds lines under the same header.
  model.fit(train, {.epochs = 1, .batch_size = 10, .validation = val,
                    .callbacks = {nb::CSVLogger(path, {.append = true})}, .verbose = 0});
  EXPECT_EQ(nb::History::load_csv(path).size(), 4u);
  // History::save_csv round trip.
  h.save_csv(temp_path("h.csv"));
  auto back = nb::History::load_csv(temp_path("h.csv"));
  EXPECT_EQ(back.keys(), h.keys());
  for (const auto& k : h.keys()) EXPECT_EQ(back.at(k), h.at(k)) << k;
}

TEST(TerminateOnNaN, StopsWithinLogEverySteps) {
  auto data = regression(40, 10);
  auto y = data.y.to_vector<float>();
  y[25] = std::numeric_limits<float>::quiet_NaN();  // in the third batch of 10 (no shuffle)
  data.y = nb::from_vector(y, {40, 1});
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());
  auto t = std::make_shared<nb::TerminateOnNaN>();
  auto rec = std::make_shared<Recorder>();
  // A warning (stderr with the default sink), so verbose 0 keeps it.
  testing::internal::CaptureStderr();
  auto h = model.fit(data, {.epochs = 5, .batch_size = 10, .shuffle = false, .callbacks = {t, rec}, .verbose = 0,
                            .log_every = 1, .allow_nonfinite_loss = true});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(t->terminated());
  EXPECT_THAT(err, HasSubstr("TerminateOnNaN: epoch 1 batch 3"));
  EXPECT_EQ(model.global_step(), 3) << "stopped right after the batch with the NaN";
  EXPECT_EQ(h.size(), 1u);
}
