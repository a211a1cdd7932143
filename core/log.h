// The one place where the library's messages go: Model::fit's progress bar and epoch lines,
// evaluate's summary line, the callbacks' reports (EarlyStopping, ModelCheckpoint, ...), and
// warnings (a checkpoint not saved, a cuDNN older than the build's, a convolution algorithm that
// failed). Each message is one line of text, without its newline, with a level; the library
// hands it to the log sink, unless the level is below the threshold.
//
// The default sink writes debug, progress and info messages to stdout and warnings and errors to
// stderr, a line each, as nabla always has. A program replaces it to send the messages elsewhere
// (its own logger, a file, a GUI, nowhere), and sets the threshold to hear less or more:
//
//   nabla::set_log_sink([](nabla::LogLevel level, std::string_view text) {
//     if (level == nabla::LogLevel::progress) return;  // no live progress bar
//     my_logger.write(level >= nabla::LogLevel::warning ? "WARN" : "INFO", text);
//   });
//   nabla::set_log_level(nabla::LogLevel::warning);    // only warnings and errors
//
// set_log_sink({}) puts the default sink back; set_log_sink returns the sink it replaces, so a
// scope can restore it (ScopedLogSink does). FitOptions::verbose = 0 silences fit for its duration (ScopedLogLevel,
// below): no progress, no epoch lines and no callback reports; warnings still come.
//
// Progress: while an epoch runs, the progress bar sends its current line as a `progress`
// message, at most ~20 times a second: each replaces the one before (the default sink redraws
// it in place with "\r" when stdout is a terminal, and drops it otherwise). The next message of
// another level ends that line: the bar's final state comes as an info message, so a sink that
// ignores progress messages still gets one line per epoch. An empty progress message ends the
// line where it is (the bar stopped early, e.g. by an exception).
//
// Not messages: Model::summary prints where it is told (its FILE* argument, stdout by default;
// nullptr for nowhere) and returns the text; CSVLogger and History::save_csv write their files.
#pragma once

#include <nabla/export.h>

#include <fmt/format.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace nabla {

// In increasing order; a threshold lets through its own level and those above it.
enum class LogLevel {
  debug,     // details for debugging nabla; off by default
  progress,  // a line redrawn in place (the progress bar; see above)
  info,      // what a verbose fit prints: epoch lines, callbacks' reports
  warning,   // something went wrong and nabla went on (a checkpoint not saved)
  error,     // something failed where nabla cannot throw (a destructor)
  off,       // as a threshold: nothing
};

const char* log_level_name(LogLevel level);  // "debug", "progress", "info", ...

// Receives each message that passes the threshold. Called with a lock held: one message at a
// time, from whichever thread logged it; it must not call set_log_sink or log_at itself. An
// exception it throws is dropped (messages come from destructors too).
using LogSink = std::function<void(LogLevel level, std::string_view text)>;

// Installs `sink` ({} for the default) and returns the one it replaces ({} for the default).
// Thread-safe; once it returns, the old sink is not called again.
NABLA_API LogSink set_log_sink(LogSink sink);

// The threshold for all threads (LogLevel::progress unless set: everything but debug); returns
// the previous one.
NABLA_API LogLevel set_log_level(LogLevel level);
NABLA_API LogLevel log_level();

// Installs a sink for its lifetime, then puts back the one it replaced.
class ScopedLogSink {
 public:
  explicit ScopedLogSink(LogSink sink) : previous_(set_log_sink(std::move(sink))) {}
  ~ScopedLogSink() { set_log_sink(std::move(previous_)); }
  ScopedLogSink(const ScopedLogSink&) = delete;
  ScopedLogSink& operator=(const ScopedLogSink&) = delete;

 private:
  LogSink previous_;
};

// A sink writing to C streams, as the default one (stream_log_sink(stdout, stderr)) does:
// messages below warning to `out`, warnings and errors to `err` (to `out` when err is null),
// each followed by a newline and flushed. Progress messages are redrawn in place on `out` when
// `redraw` is true, or when it is not given and `out` is a terminal; otherwise dropped. E.g.
// set_log_sink(stream_log_sink(file, file)) sends fit's output to a file. The streams must
// outlive the sink.
NABLA_API LogSink stream_log_sink(std::FILE* out, std::FILE* err = nullptr, std::optional<bool> redraw = std::nullopt);

// Raises the threshold for messages logged from this thread while it lives (the higher of this
// and set_log_level's wins), then restores it. Model::fit with verbose 0 holds
// ScopedLogLevel(LogLevel::warning).
class NABLA_API ScopedLogLevel {
 public:
  explicit ScopedLogLevel(LogLevel at_least);
  ~ScopedLogLevel();
  ScopedLogLevel(const ScopedLogLevel&) = delete;
  ScopedLogLevel& operator=(const ScopedLogLevel&) = delete;

 private:
  LogLevel previous_;
};

// Whether a message of `level` from this thread would reach the sink.
NABLA_API bool log_enabled(LogLevel level);

// Sends `text` to the sink when its level passes the threshold.
NABLA_API void log_message(LogLevel level, std::string_view text) noexcept;

// log_message with a fmt-formatted text, formatted only when the level passes:
//   nabla::log_at(nabla::LogLevel::info, "EarlyStopping: restoring the weights of epoch {}", e);
// (Not nabla::log, which is the elementwise logarithm.)
template <typename... Args>
void log_at(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (log_enabled(level)) log_message(level, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace nabla
