// Model::fit against hostile settings: a loss that turns NaN or infinite stops training with an
// error naming the epoch and step (training and validation), ModelCheckpoint never writes
// non-finite weights over a good file, and every size a user gives fit, evaluate or predict
// (batch_size up to INT64_MAX, validation_split NaN, negative epochs) is either used sensibly
// (a batch larger than the data is one batch) or refused with an error naming the option.
#include <nabla/nabla.h>

#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

namespace nb = nabla;
using nb::test::error_of;
using nb::test::f32;
using ::testing::HasSubstr;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_fit_guard_test", name); }

nb::data::Dataset regression(int64_t n, uint64_t seed) {
  nb::manual_seed(seed);
  nb::Tensor x = nb::rand({n, 3}, {}, -1, 1);
  nb::Tensor y = nb::sum(x * f32({0.5, -1, 2}), {1}, true);
  return {x, y};
}

// `d` with its target `i` set to NaN.
nb::data::Dataset with_nan_target(nb::data::Dataset d, int64_t i) {
  auto y = d.y.to_vector<float>();
  y[static_cast<size_t>(i)] = std::numeric_limits<float>::quiet_NaN();
  d.y = nb::from_vector(y, d.y.shape());
  return d;
}

// epoch_data that gives the clean data, except in epoch `bad` (0-based): a NaN target in
// sample 25, the third batch of 10 when not shuffled.
std::function<nb::data::Dataset(const nb::data::Dataset&, int64_t)> nan_in_epoch(int64_t bad) {
  return [bad](const nb::data::Dataset& d, int64_t epoch) { return epoch == bad ? with_nan_target(d, 25) : d; };
}

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Records the bytes of `path` at each epoch's end (after the callbacks before it have run).
struct FileRecorder : nb::Callback {
  explicit FileRecorder(std::string p) : path(std::move(p)) {}
  std::string path;
  std::vector<std::string> bytes;
  void on_epoch_end(nb::Model&, int64_t, nb::Logs&) override { bytes.push_back(file_bytes(path)); }
};

nb::Model linear_model() {
  nb::manual_seed(7);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.05}), nb::MSELoss());
  return model;
}

}  // namespace

// ---- a non-finite loss stops fit --------------------------------------------------------------

TEST(FitGuard, NanTrainingLossThrowsNamingEpochAndStep) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  const std::string e = error_of([&] {
    model.fit(data, {.epochs = 4, .batch_size = 10, .shuffle = false, .verbose = 0, .log_every = 1,
                     .epoch_data = nan_in_epoch(1)});
  });
  EXPECT_THAT(e, HasSubstr("fit: the training loss is not a number (nan) at epoch 2, step 3 of 4"));
  EXPECT_THAT(e, HasSubstr("finite at step 2"));
  EXPECT_EQ(model.global_step(), 7) << "4 steps of epoch 1, 3 of epoch 2, then the error";
  EXPECT_EQ(model.history().size(), 1u);
}

TEST(FitGuard, NanCaughtAtTheNextReadWithLogEvery) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  // Read at steps 2 and 4: the NaN of step 3 shows at step 4.
  const std::string e = error_of([&] {
    model.fit(data, {.epochs = 2, .batch_size = 10, .shuffle = false, .verbose = 0, .log_every = 2,
                     .epoch_data = nan_in_epoch(0)});
  });
  EXPECT_THAT(e, HasSubstr("at epoch 1, step 4 of 4 (read every 2 steps; finite at step 2)"));
}

TEST(FitGuard, HugeLearningRateThrows) {
  auto data = regression(64, 2);
  nb::manual_seed(7);
  nb::Model model{nb::Dense(3, 16), nb::ReLU(), nb::Dense(16, 1)};
  model.compile(nb::Adam({.lr = 1e30}), nb::MSELoss());
  const std::string e = error_of([&] { model.fit(data, {.epochs = 5, .batch_size = 8, .verbose = 0}); });
  EXPECT_THAT(e, HasSubstr("fit: the training loss is "));
  EXPECT_THAT(e, HasSubstr("at epoch 1, step 8 of 8"));
  EXPECT_THAT(e, HasSubstr("lower learning rate (now 1e+30)"));
}

TEST(FitGuard, AllowNonfiniteLossTrainsOn) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  auto h = model.fit(data, {.epochs = 2, .batch_size = 10, .shuffle = false, .verbose = 0,
                            .epoch_data = nan_in_epoch(0), .allow_nonfinite_loss = true});
  EXPECT_EQ(h.size(), 2u);
  EXPECT_TRUE(std::isnan(h.at("loss")[0]));
}

TEST(FitGuard, NanValidationLossThrowsBeforeTheCallbacks) {
  auto train = regression(40, 1);
  auto val = with_nan_target(regression(20, 3), 5);
  nb::Model model = linear_model();
  const std::string path = temp_path("val_nan.safetensors");
  std::filesystem::remove(path);
  const std::string e = error_of([&] {
    model.fit(train, {.epochs = 3, .batch_size = 10, .validation = val,
                      .callbacks = {nb::ModelCheckpoint(path, {.monitor = "val_loss"})}, .verbose = 0});
  });
  EXPECT_THAT(e, HasSubstr("fit: the validation loss is not a number (nan) after epoch 1"));
  EXPECT_FALSE(std::filesystem::exists(path)) << "the checkpoint callback never ran";
}

// ---- ModelCheckpoint never saves non-finite weights --------------------------------------------

TEST(FitGuard, CheckpointOfAGoodEpochIsUnchangedAfterTheNan) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  const std::string path = temp_path("good.safetensors");
  auto rec = std::make_shared<FileRecorder>(path);
  EXPECT_THAT(error_of([&] {
                model.fit(data, {.epochs = 4, .batch_size = 10, .shuffle = false,
                                 .callbacks = {nb::ModelCheckpoint(path, {.monitor = "loss"}), rec}, .verbose = 0,
                                 .epoch_data = nan_in_epoch(2)});
              }),
              HasSubstr("at epoch 3"));
  ASSERT_EQ(rec->bytes.size(), 2u);
  EXPECT_FALSE(rec->bytes[1].empty());
  EXPECT_EQ(file_bytes(path), rec->bytes[1]) << "the file of epoch 2 was overwritten";
}

TEST(FitGuard, CheckpointRefusesNonfiniteLossAndWeightsWhenTrainingGoesOn) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  const std::string path = temp_path("allowed.safetensors");
  auto ckpt = std::make_shared<nb::ModelCheckpoint>(path, nb::ModelCheckpointOptions{.monitor = "loss"});
  auto rec = std::make_shared<FileRecorder>(path);
  testing::internal::CaptureStderr();
  model.fit(data, {.epochs = 3, .batch_size = 10, .shuffle = false, .callbacks = {ckpt, rec}, .verbose = 0,
                   .epoch_data = nan_in_epoch(1), .allow_nonfinite_loss = true});
  const std::string err = testing::internal::GetCapturedStderr();
  // Epoch 2's NaN target makes the loss and then every weight NaN: epochs 2 and 3 are refused.
  EXPECT_EQ(ckpt->refused(), 2);
  EXPECT_THAT(err, HasSubstr("ModelCheckpoint: epoch 2: not saving " + path + ": loss is nan"));
  EXPECT_THAT(err, HasSubstr("ModelCheckpoint: epoch 3: not saving " + path + ": loss is nan"));
  ASSERT_EQ(rec->bytes.size(), 3u);
  EXPECT_EQ(file_bytes(path), rec->bytes[0]);

  // Finite logs but a non-finite weight: refused too, naming the tensor.
  nb::Model m2 = linear_model();
  m2.parameters()[0].detach().fill_(std::numeric_limits<double>::infinity());
  nb::ModelCheckpoint direct(temp_path("inf_weight.safetensors"));
  nb::Logs logs{{"loss", 1.0}, {"val_loss", 1.0}};
  testing::internal::CaptureStderr();
  direct.on_epoch_end(m2, 0, logs);
  EXPECT_THAT(testing::internal::GetCapturedStderr(), HasSubstr("the tensor 'weight' has NaN or infinite values"));
  EXPECT_EQ(direct.refused(), 1);
  EXPECT_FALSE(std::filesystem::exists(temp_path("inf_weight.safetensors")));
}

// ---- sizes --------------------------------------------------------------------------------------

TEST(FitGuard, BatchLargerThanTheDataIsOneBatch) {
  auto data = regression(40, 1);
  for (int64_t batch : {int64_t{41}, int64_t{1} << 40, std::numeric_limits<int64_t>::max()}) {
    for (bool drop_last : {false, true}) {
      nb::Model model = linear_model();
      auto h = model.fit(data, {.epochs = 3, .batch_size = batch, .validation = data, .verbose = 0,
                                .drop_last = drop_last});
      EXPECT_EQ(model.global_step(), 3) << "batch " << batch << " drop_last " << drop_last;
      ASSERT_EQ(h.size(), 3u);
      nb::Model ref = linear_model();
      auto hr = ref.fit(data, {.epochs = 3, .batch_size = 40, .validation = data, .verbose = 0});
      EXPECT_EQ(h.at("loss"), hr.at("loss"));
      EXPECT_EQ(model.evaluate(data, {.batch_size = batch}).at("loss"), hr.at("val_loss").back());
      EXPECT_EQ(model.predict(data.x, batch).size(0), 40);
    }
  }
}

TEST(FitGuard, DataLoaderSizeDoesNotOverflow) {
  auto data = regression(40, 1);
  for (int64_t batch : {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max() - 1}) {
    EXPECT_EQ(nb::data::DataLoader(data, {.batch_size = batch}).size(), 1);
    EXPECT_EQ(nb::data::DataLoader(data, {.batch_size = batch, .drop_last = true}).size(), 0);
  }
}

TEST(FitGuard, BadOptionsAreErrorsNamingTheOption) {
  auto data = regression(40, 1);
  nb::Model model = linear_model();
  auto fit_error = [&](nb::FitOptions o) {
    return error_of([&] { model.fit(data, o); });
  };
  EXPECT_THAT(fit_error({.batch_size = 0}), HasSubstr("fit: batch_size must be > 0, got 0"));
  EXPECT_THAT(fit_error({.batch_size = std::numeric_limits<int64_t>::min()}), HasSubstr("batch_size must be > 0"));
  EXPECT_THAT(fit_error({.epochs = -1}), HasSubstr("fit: epochs must be >= 0, got -1"));
  EXPECT_THAT(fit_error({.epochs = 2, .initial_epoch = 3}), HasSubstr("initial_epoch 3, epochs 2"));
  EXPECT_THAT(fit_error({.validation_split = std::nan("")}), HasSubstr("fit: validation_split is not a number"));
  EXPECT_THAT(fit_error({.validation_split = -0.1}), HasSubstr("validation_split -0.1 is outside [0, 1)"));
  EXPECT_THAT(fit_error({.validation_split = 1}), HasSubstr("validation_split 1 is outside [0, 1)"));
  EXPECT_THAT(fit_error({.validation_split = 0.001}), HasSubstr("leaves 0 for validation"));
  EXPECT_THAT(fit_error({.verbose = 7}), HasSubstr("fit: verbose must be 0, 1 or 2, got 7"));
  EXPECT_THAT(fit_error({.log_every = 0}), HasSubstr("fit: log_every must be > 0, got 0"));
  EXPECT_THAT(error_of([&] { model.evaluate(data, {.batch_size = -5}); }), HasSubstr("batch_size must be > 0, got -5"));
  EXPECT_THAT(error_of([&] { model.predict(data.x, 0); }), HasSubstr("predict: batch_size must be > 0, got 0"));
  EXPECT_EQ(model.global_step(), 0) << "nothing trained";
}

// ---- the progress bar of an epoch that an error stops -------------------------------------------

TEST(FitGuard, ProgressBarEndsItsOpenLineWhenAnErrorUnwindsIt) {
  const std::string path = temp_path("bar.txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  {
    // The default sink's drawing, redrawing in place into the file as on a terminal.
    const nb::ScopedLogSink sink(nb::stream_log_sink(f, f, /*redraw=*/true));
    {
      nb::ProgressBar bar(10);
      bar.update(3, {{"loss", 1.0}});
    }  // as when fit throws: no finish()
    {
      nb::ProgressBar bar(10);
      bar.update(10);
      bar.finish();
    }
  }
  std::fclose(f);
  const std::string text = file_bytes(path);
  EXPECT_THAT(text, HasSubstr("3/10 ["));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_EQ(text.back(), '\n');
}
