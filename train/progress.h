// A Keras-like progress bar for one epoch of training:
//   Epoch 3/20
//   312/469 [==================>...........] - ETA: 2s - loss: 0.3412 - accuracy: 0.8751
// It draws through the log (core/log.h): its running state as `progress` messages, which the
// default sink redraws in place on a terminal and drops elsewhere (a log file, CI), and its final
// line as an info message, so logs stay readable.
#pragma once

#include <nabla/export.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

class NABLA_API ProgressBar {
 public:
  // total: steps in the epoch.
  explicit ProgressBar(int64_t total, int width = 30);
  // Ends a line drawn in place that finish() did not end (training stopped by an exception), so
  // the error printed next starts on a line of its own.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Marks `done` steps complete with the running values of named metrics.
  void update(int64_t done, const std::vector<std::pair<std::string, double>>& values = {});
  // Logs the last state with the elapsed time and extra values (e.g. validation metrics) as an
  // info message.
  void finish(const std::vector<std::pair<std::string, double>>& extra = {});

  // Send the running state as progress messages (true, the default) or only the final line.
  void set_interactive(bool on) { interactive_ = on; }

  // Stops the clock: the time and ms/step that finish() shows end here (e.g. before a
  // validation pass that is not part of the steps).
  void stop_clock();

  double elapsed_seconds() const;

 private:
  std::string render(bool final_line) const;

  int64_t total_, done_ = 0;
  int width_;
  bool interactive_ = true;
  std::vector<std::pair<std::string, double>> values_;
  std::chrono::steady_clock::time_point start_, last_draw_, stop_;
  bool stopped_ = false;
  bool line_open_ = false;  // a progress message sent and not yet ended
};

}  // namespace nabla
