#include <nabla/train/progress.h>

#include <nabla/core/log.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace nabla {

ProgressBar::ProgressBar(int64_t total, int width)
    : total_(total), width_(width), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (line_open_) log_message(LogLevel::progress, "");
}

void ProgressBar::stop_clock() {
  stop_ = std::chrono::steady_clock::now();
  stopped_ = true;
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>((stopped_ ? stop_ : std::chrono::steady_clock::now()) - start_).count();
}

static std::string format_seconds(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  if (s < 3600) return fmt::format("{:.0f}m{:02.0f}s", std::floor(s / 60), std::fmod(s, 60));
  return fmt::format("{:.0f}h{:02.0f}m", std::floor(s / 3600), std::fmod(s / 60, 60));
}

std::string ProgressBar::render(bool final_line) const {
  std::string bar;
  const int64_t total = std::max<int64_t>(total_, 1);
  const int filled = static_cast<int>(width_ * std::min(done_, total) / total);
  for (int i = 0; i < width_; ++i) bar += i < filled ? '=' : (i == filled && done_ < total ? '>' : '.');
  const int digits = static_cast<int>(fmt::format("{}", total_).size());
  std::string s = fmt::format("{:>{}}/{} [{}]", done_, digits, total_, bar);
  const double el = elapsed_seconds();
  if (final_line || done_ >= total_) {
    s += fmt::format(" - {} {:.0f}ms/step", format_seconds(el), done_ > 0 ? 1e3 * el / done_ : 0.0);
  } else {
    const double eta = done_ > 0 ? el / done_ * (total_ - done_) : 0.0;
    s += " - ETA: " + format_seconds(eta);
  }
  for (const auto& [k, v] : values_) s += fmt::format(" - {}: {:.4f}", k, v);
  return s;
}

void ProgressBar::update(int64_t done, const std::vector<std::pair<std::string, double>>& values) {
  done_ = done;
  values_ = values;
  if (!interactive_ || !log_enabled(LogLevel::progress)) return;
  auto now = std::chrono::steady_clock::now();
  // Redraw at most ~20 times a second: drawing must not cost training time.
  if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(50)) return;
  last_draw_ = now;
  log_message(LogLevel::progress, render(false));
  line_open_ = true;
}

void ProgressBar::finish(const std::vector<std::pair<std::string, double>>& extra) {
  for (const auto& kv : extra) values_.push_back(kv);
  line_open_ = false;
  log_message(LogLevel::info, render(true));
}

}  // namespace nabla
