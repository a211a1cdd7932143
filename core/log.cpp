#include <nabla/core/log.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

#include <unistd.h>

namespace nabla {

namespace {

std::atomic<LogLevel> g_level{LogLevel::progress};
thread_local LogLevel t_level = LogLevel::debug;

// The sink and the lock that serializes its calls. Never destroyed: messages may come from
// destructors of static objects at exit.
struct SinkSlot {
  std::mutex mutex;
  LogSink sink;  // empty: the default
};
SinkSlot& slot() {
  static SinkSlot* s = new SinkSlot;
  return *s;
}

const LogSink& default_sink() {
  static const LogSink* sink = new LogSink(stream_log_sink(stdout, stderr));
  return *sink;
}

// The state behind stream_log_sink: whether a progress line is drawn on `out` and not yet ended.
struct StreamSink {
  std::FILE* out;
  std::FILE* err;
  std::optional<bool> redraw;  // unset: whether `out` is a terminal, asked at each progress message
  bool line_open = false;

  void operator()(LogLevel level, std::string_view text) {
    if (level == LogLevel::progress) {
      if (text.empty()) {
        end_line();
      } else if (redraw ? *redraw : isatty(fileno(out)) != 0) {
        fmt::print(out, "\r{}\033[K", text);
        std::fflush(out);
        line_open = true;
      }
      return;
    }
    if (level >= LogLevel::warning) {
      end_line();  // the warning starts a line of its own, after what stdout has so far
      std::fflush(out);
      fmt::print(err, "{}\n", text);
      std::fflush(err);
      return;
    }
    // The line drawn in place, if any, is replaced by this one (the bar's final state).
    fmt::print(out, "{}{}{}\n", line_open ? "\r" : "", text, line_open ? "\033[K" : "");
    std::fflush(out);
    line_open = false;
  }

  void end_line() {
    if (!line_open) return;
    std::fputc('\n', out);
    std::fflush(out);
    line_open = false;
  }
};

}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::progress: return "progress";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "?";
}

LogSink stream_log_sink(std::FILE* out, std::FILE* err, std::optional<bool> redraw) {
  // std::function copies its target: the state is shared by the copies.
  auto state = std::make_shared<StreamSink>(StreamSink{out, err ? err : out, redraw});
  return [state](LogLevel level, std::string_view text) { (*state)(level, text); };
}

LogSink set_log_sink(LogSink sink) {
  SinkSlot& s = slot();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::swap(s.sink, sink);
  return sink;
}

LogLevel set_log_level(LogLevel level) { return g_level.exchange(level); }
LogLevel log_level() { return g_level.load(); }

ScopedLogLevel::ScopedLogLevel(LogLevel at_least) : previous_(t_level) { t_level = std::max(t_level, at_least); }
ScopedLogLevel::~ScopedLogLevel() { t_level = previous_; }

bool log_enabled(LogLevel level) {
  return level != LogLevel::off && level >= g_level.load(std::memory_order_relaxed) && level >= t_level;
}

void log_message(LogLevel level, std::string_view text) noexcept {
  if (!log_enabled(level)) return;
  try {
    SinkSlot& s = slot();
    std::lock_guard<std::mutex> lock(s.mutex);
    (s.sink ? s.sink : default_sink())(level, text);
  } catch (...) {
    // A sink that throws loses its message; the caller (maybe a destructor) goes on.
  }
}

}  // namespace nabla
