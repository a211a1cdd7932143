// The log (core/log.h): the default sink (info to stdout, warnings to stderr, progress redrawn
// in place), thresholds, a replaced sink, and Model::fit: with verbose 0 nothing reaches stdout,
// callbacks included; with a custom sink the messages arrive there with their levels and nothing
// reaches stdout.
#include <nabla/nabla.h>

#include "test_util.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nb = nabla;
using nb::LogLevel;
using nb::test::LogCapture;
using ::testing::HasSubstr;
using Texts = std::vector<std::string>;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_log_test", name); }

std::string file_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// What a stream sink writes for `messages`, into a file.
std::string written(const std::vector<std::pair<LogLevel, std::string>>& messages, bool redraw) {
  const std::string path = temp_path(redraw ? "redraw.txt" : "plain.txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  EXPECT_NE(f, nullptr);
  {
    const nb::LogSink sink = nb::stream_log_sink(f, f, redraw);
    for (const auto& [level, text] : messages) sink(level, text);
  }
  std::fclose(f);
  return file_text(path);
}

nb::data::Dataset regression(int64_t n) {
  nb::manual_seed(3);
  nb::Tensor x = nb::rand({n, 3}, {}, -1, 1);
  return {x, nb::sum(x, {1}, true)};
}

// A short fit with callbacks that report when verbose: EarlyStopping restores its best weights,
// ModelCheckpoint saves each epoch, ReduceLROnPlateau (patience 0, an improvement must be 1e9)
// lowers the rate after the second epoch. The same every time: the seed is set first.
nb::History short_fit(int verbose) {
  const nb::data::Dataset data = regression(40);
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());
  return model.fit(data,
                   {.epochs = 2,
                    .batch_size = 10,
                    .callbacks = {nb::EarlyStopping({.monitor = "loss", .restore_best_weights = true, .verbose = true}),
                                  nb::ModelCheckpoint(temp_path("ckpt.safetensors"), {.monitor = "loss", .verbose = true}),
                                  nb::ReduceLROnPlateau({.monitor = "loss", .patience = 0, .min_delta = 1e9, .verbose = true})},
                    .verbose = verbose});
}

}  // namespace

TEST(Log, DefaultSinkWritesInfoToStdoutAndWarningsToStderr) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  nb::log_at(LogLevel::info, "info {}", 1);
  nb::log_at(LogLevel::warning, "warning {}", 2);
  nb::log_at(LogLevel::error, "error {}", 3);
  nb::log_at(LogLevel::debug, "debug {}", 4);  // below the default threshold
  const std::string err = testing::internal::GetCapturedStderr();
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out, "info 1\n");
  EXPECT_EQ(err, "warning 2\nerror 3\n");
}

TEST(Log, StreamSinkRedrawsProgressInPlaceAndEndsTheLine) {
  using M = std::vector<std::pair<LogLevel, std::string>>;
  // The bar's states, then its final line in place of them.
  EXPECT_EQ(written(M{{LogLevel::progress, "1/2"}, {LogLevel::progress, "2/2"}, {LogLevel::info, "done"}}, true),
            "\r1/2\033[K\r2/2\033[K\rdone\033[K\n");
  // An empty progress message ends the line where it is; a warning starts a line of its own.
  EXPECT_EQ(written(M{{LogLevel::progress, "1/2"}, {LogLevel::progress, ""}, {LogLevel::info, "next"}}, true),
            "\r1/2\033[K\nnext\n");
  EXPECT_EQ(written(M{{LogLevel::progress, "1/2"}, {LogLevel::warning, "careful"}}, true), "\r1/2\033[K\ncareful\n");
  // Not a terminal: progress is dropped, lines stay plain.
  EXPECT_EQ(written(M{{LogLevel::progress, "1/2"}, {LogLevel::progress, ""}, {LogLevel::info, "done"}}, false),
            "done\n");
}

TEST(Log, ThresholdsAndScopedLevels) {
  LogCapture log;
  const LogLevel before = nb::set_log_level(LogLevel::warning);
  EXPECT_FALSE(nb::log_enabled(LogLevel::info));
  nb::log_at(LogLevel::info, "dropped");
  nb::log_at(LogLevel::warning, "kept");
  EXPECT_EQ(nb::set_log_level(LogLevel::debug), LogLevel::warning);
  nb::log_at(LogLevel::debug, "debug kept");
  {
    const nb::ScopedLogLevel quiet(LogLevel::error);
    nb::log_at(LogLevel::warning, "dropped in scope");
    std::thread other([] { nb::log_at(LogLevel::warning, "another thread is not in the scope"); });
    other.join();
  }
  nb::log_at(LogLevel::info, "after the scope");
  nb::set_log_level(LogLevel::off);
  nb::log_at(LogLevel::error, "off");
  nb::set_log_level(before);
  EXPECT_EQ(nb::log_level(), LogLevel::progress) << "the default";
  std::vector<std::string> texts;
  for (const auto& m : *log.messages) texts.push_back(m.second);
  EXPECT_EQ(texts, (Texts{"kept", "debug kept", "another thread is not in the scope", "after the scope"}));
}

TEST(Log, SetLogSinkReturnsThePreviousSinkAndSurvivesAThrowingSink) {
  LogCapture outer;
  {
    const nb::ScopedLogSink thrower([](LogLevel, std::string_view) { throw std::runtime_error("sink failed"); });
    EXPECT_NO_THROW(nb::log_at(LogLevel::warning, "lost"));
  }
  nb::log_at(LogLevel::info, "back");
  EXPECT_EQ(outer.at(LogLevel::info), Texts{"back"});
  // set_log_sink hands back what it replaced; {} restores the default.
  nb::LogSink mine = nb::set_log_sink({});
  ASSERT_TRUE(mine != nullptr);
  testing::internal::CaptureStdout();
  nb::log_at(LogLevel::info, "to stdout");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "to stdout\n");
  EXPECT_FALSE(nb::set_log_sink(std::move(mine)));  // the default was in place
  nb::log_at(LogLevel::info, "captured again");
  EXPECT_EQ(outer.at(LogLevel::info), (Texts{"back", "captured again"}));
}

TEST(Log, MessagesFromManyThreadsReachTheSinkOneAtATime) {
  int count = 0;  // not atomic: the sink is called under the log's lock
  const nb::ScopedLogSink sink([&count](LogLevel, std::string_view) { ++count; });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 500; ++i) nb::log_at(LogLevel::info, "{}", i);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(count, 2000);
}

TEST(Log, FitWithVerboseZeroPrintsNothingCallbacksIncluded) {
  testing::internal::CaptureStdout();
  short_fit(0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
  // Nor do the messages go anywhere else: verbose 0 silences them below a warning.
  LogCapture log;
  short_fit(0);
  EXPECT_TRUE(log.messages->empty());
}

TEST(Log, FitWithACustomSinkSendsEverythingThereWithLevels) {
  LogCapture log;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  short_fit(1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");

  const std::vector<std::string> info = log.at(LogLevel::info);
  auto count = [&info](const std::string& part) {
    return std::count_if(info.begin(), info.end(), [&](const std::string& s) { return s.find(part) != s.npos; });
  };
  EXPECT_EQ(count("Epoch 1/2"), 1);
  EXPECT_EQ(count("Epoch 2/2"), 1);
  EXPECT_EQ(count("4/4 ["), 2) << "the final line of each epoch";
  EXPECT_EQ(count("ModelCheckpoint: saved"), 2);
  EXPECT_EQ(count("ReduceLROnPlateau: epoch 2"), 1);
  EXPECT_EQ(count("EarlyStopping: restoring the weights"), 1);
  // The bar's running state: at least its first and last redraw of each epoch, none empty.
  const std::vector<std::string> progress = log.at(LogLevel::progress);
  EXPECT_GE(progress.size(), 2u);
  for (const std::string& p : progress) EXPECT_THAT(p, HasSubstr("/4 ["));

  // verbose 2: one line per epoch, no progress messages.
  LogCapture log2;
  short_fit(2);
  EXPECT_TRUE(log2.at(LogLevel::progress).empty());
  EXPECT_EQ(log2.at(LogLevel::info).size(), info.size());
}

TEST(Log, CallbackWarningsArriveAsWarningsEvenWithVerboseZero) {
  LogCapture log;
  auto data = regression(40);
  auto y = data.y.to_vector<float>();
  y[5] = std::numeric_limits<float>::quiet_NaN();
  data.y = nb::from_vector(y, {40, 1});
  nb::Model model{nb::Dense(3, 1)};
  model.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());
  model.fit(data, {.epochs = 1,
                   .batch_size = 10,
                   .shuffle = false,
                   .callbacks = {nb::TerminateOnNaN(),
                                 nb::ModelCheckpoint(temp_path("nan.safetensors"), {.monitor = "loss"})},
                   .verbose = 0,
                   .allow_nonfinite_loss = true});
  const std::vector<std::string> warnings = log.at(LogLevel::warning);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("TerminateOnNaN: epoch 1"));
  EXPECT_THAT(warnings[1], HasSubstr("ModelCheckpoint: epoch 1: not saving"));
  EXPECT_TRUE(log.at(LogLevel::info).empty());
}
