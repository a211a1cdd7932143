// A Keras-like progress bar for one epoch of training:
//   Epoch 3/20
//   312/469 [==================>...........] - ETA: 2s - loss: 0.3412 - accuracy: 0.8751
// Redrawn in place on a terminal; on anything else (a log file, CI) it prints only the final
// line of each epoch, so logs stay readable.
#pragma once

#include <nabla/export.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace nabla {

class NABLA_API ProgressBar {
 public:
  // total: steps in the epoch. out: where to draw (stdout by default).
  explicit ProgressBar(int64_t total, std::FILE* out = stdout, int width = 30);
  // Ends a line drawn in place that finish() did not end (training stopped by an exception), so
  // the error printed next starts on a line of its own.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Marks `done` steps complete with the running values of named metrics.
  void update(int64_t done, const std::vector<std::pair<std::string, double>>& values = {});
  // Draws the last state with the elapsed time and extra values (e.g. validation metrics) and
  // ends the line.
  void finish(const std::vector<std::pair<std::string, double>>& extra = {});

  // Redraw in place (true) or print only the final line (false); the default is whether `out`
  // is a terminal.
  void set_interactive(bool on) { tty_ = on; }

  // Stops the clock: the time and ms/step that finish() shows end here (e.g. before a
  // validation pass that is not part of the steps).
  void stop_clock();

  double elapsed_seconds() const;
  static bool is_terminal(std::FILE* f);

 private:
  std::string render(bool final_line) const;

  int64_t total_, done_ = 0;
  std::FILE* out_;
  int width_;
  bool tty_;
  std::vector<std::pair<std::string, double>> values_;
  std::chrono::steady_clock::time_point start_, last_draw_, stop_;
  bool stopped_ = false;
  bool line_open_ = false;  // a line drawn in place and not yet ended
};

}  // namespace nabla
