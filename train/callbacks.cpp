#include <nabla/train/callbacks.h>

#include <nabla/core/anomaly.h>
#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/log.h>
#include <nabla/train/model.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

namespace nabla {

bool maximizes(Mode mode, const std::string& monitor) {
  if (mode != Mode::auto_) return mode == Mode::max;
  for (const char* word : {"acc", "precision", "recall", "f1"})
    if (monitor.find(word) != std::string::npos) return true;
  return false;
}

bool is_improvement(double current, double best, bool maximize, double min_delta) {
  return maximize ? current - min_delta > best : current + min_delta < best;
}

namespace {

double monitored(const Logs& logs, const std::string& key, const char* who) {
  auto it = logs.find(key);
  if (it == logs.end()) {
    std::string known;
    for (const auto& [k, v] : logs) known += (known.empty() ? "" : ", ") + k;
    fail("{}: monitors '{}', which the logs do not have (they have: {}); give validation data for val_* keys", who,
         key, known);
  }
  return it->second;
}

double worst(bool maximize) {
  return maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

// Copies of every parameter and buffer, in state_dict order.
std::vector<Tensor> snapshot(const Model& m) {
  NoGrad no_grad;
  std::vector<Tensor> out;
  for (auto& [name, t] : m.state_dict()) out.push_back(t.detach().clone());
  return out;
}

void restore(Model& m, const std::vector<Tensor>& saved) {
  NoGrad no_grad;
  auto sd = m.state_dict();
  NABLA_CHECK(sd.size() == saved.size(), "EarlyStopping: the model has {} tensors now, {} when the best was saved",
              sd.size(), saved.size());
  for (size_t i = 0; i < sd.size(); ++i) sd[i].second.copy_(saved[i]);
  m.module().state_loaded();
}

}  // namespace

// ---- EarlyStopping ----------------------------------------------------------------------------

EarlyStopping::EarlyStopping(EarlyStoppingOptions opts) : opts_(std::move(opts)) {
  NABLA_CHECK(opts_.patience >= 0, "EarlyStopping: patience must be >= 0, got {}", opts_.patience);
  check_number(opts_.min_delta, "EarlyStopping", "min_delta");
  NABLA_CHECK(opts_.min_delta >= 0, "EarlyStopping: min_delta must be >= 0, got {}", opts_.min_delta);
  maximize_ = maximizes(opts_.mode, opts_.monitor);
}

void EarlyStopping::on_train_begin(Model&) {
  best_ = worst(maximize_);
  wait_ = 0;
  stopped_epoch_ = best_epoch_ = -1;
  best_weights_.clear();
}

void EarlyStopping::on_epoch_end(Model& model, int64_t epoch, Logs& logs) {
  if (epoch < opts_.start_from_epoch) return;
  const double current = monitored(logs, opts_.monitor, "EarlyStopping");
  if (opts_.restore_best_weights && best_weights_.empty()) best_weights_ = snapshot(model);
  ++wait_;
  if (is_improvement(current, best_, maximize_, opts_.min_delta)) {
    best_ = current;
    best_epoch_ = epoch;
    if (opts_.restore_best_weights) best_weights_ = snapshot(model);
    // The wait restarts only when the value beats the baseline too.
    if (!opts_.baseline || is_improvement(current, *opts_.baseline, maximize_, opts_.min_delta)) wait_ = 0;
    return;
  }
  if (wait_ >= opts_.patience && epoch > 0) {
    stopped_epoch_ = epoch;
    model.stop_training();
  }
}

void EarlyStopping::on_train_end(Model& model) {
  if (stopped_epoch_ >= 0 && opts_.verbose)
    log_at(LogLevel::info, "EarlyStopping: stopped after epoch {} ({} {} at epoch {})", stopped_epoch_ + 1,
           opts_.monitor, best_, best_epoch_ + 1);
  if (opts_.restore_best_weights && !best_weights_.empty()) {
    if (opts_.verbose) log_at(LogLevel::info, "EarlyStopping: restoring the weights of epoch {}", best_epoch_ + 1);
    restore(model, best_weights_);
  }
}

// ---- ModelCheckpoint --------------------------------------------------------------------------

ModelCheckpoint::ModelCheckpoint(std::string path, ModelCheckpointOptions opts)
    : path_(std::move(path)), opts_(std::move(opts)) {
  NABLA_CHECK(!path_.empty(), "ModelCheckpoint: the path is empty");
  maximize_ = maximizes(opts_.mode, opts_.monitor);
}

void ModelCheckpoint::on_train_begin(Model&) {
  best_.reset();
  last_saved_.clear();
  refused_ = 0;
}

// Why the model of this epoch must not be saved ("" when it may): a non-finite loss or monitored
// value, or a parameter or buffer with a NaN or an infinity (reading each is a synchronization,
// once per epoch).
std::string nonfinite_reason(const Model& model, const Logs& logs, const std::string& monitor) {
  for (const std::string& key : {std::string("loss"), monitor})
    if (auto it = logs.find(key); it != logs.end() && !std::isfinite(it->second))
      return fmt::format("{} is {}", key, it->second);
  for (const auto& [name, t] : model.state_dict())
    if (has_nonfinite(t)) return fmt::format("the tensor '{}' has NaN or infinite values", name);
  return "";
}

void ModelCheckpoint::on_epoch_end(Model& model, int64_t epoch, Logs& logs) {
  if (opts_.save_best_only) {
    const double current = monitored(logs, opts_.monitor, "ModelCheckpoint");
    if (std::isnan(current) || (best_ && !is_improvement(current, *best_, maximize_, 0))) return;
  }
  std::string path = path_;
  for (size_t at; (at = path.find("{epoch}")) != std::string::npos;)
    path.replace(at, 7, std::to_string(epoch + 1));
  if (const std::string why = nonfinite_reason(model, logs, opts_.monitor); !why.empty()) {
    log_at(LogLevel::warning, "ModelCheckpoint: epoch {}: not saving {}: {}{}", epoch + 1, path, why,
           last_saved_.empty() ? "" : fmt::format(" ({} keeps the last finite weights)", last_saved_));
    ++refused_;
    return;
  }
  if (opts_.save_best_only) best_ = monitored(logs, opts_.monitor, "ModelCheckpoint");
  if (opts_.weights_only)
    model.save(path);
  else
    model.save_checkpoint(path);
  last_saved_ = path;
  if (opts_.verbose) log_at(LogLevel::info, "ModelCheckpoint: saved {}", path);
}

// ---- learning rate ----------------------------------------------------------------------------

LearningRateScheduler::LearningRateScheduler(std::function<double(int64_t)> schedule, ScheduleUnit unit)
    : schedule_(std::move(schedule)), unit_(unit) {
  NABLA_CHECK(schedule_ != nullptr, "LearningRateScheduler: the schedule is empty");
}

void LearningRateScheduler::on_epoch_begin(Model& model, int64_t epoch) {
  if (unit_ == ScheduleUnit::epoch) model.optimizer().set_lr(schedule_(epoch));
}

void LearningRateScheduler::on_batch_begin(Model& model, const BatchInfo& info) {
  if (unit_ == ScheduleUnit::step) model.optimizer().set_lr(schedule_(info.step));
}

ReduceLROnPlateau::ReduceLROnPlateau(ReduceLROnPlateauOptions opts) : opts_(std::move(opts)) {
  check_number(opts_.factor, "ReduceLROnPlateau", "factor");
  check_number(opts_.min_lr, "ReduceLROnPlateau", "min_lr");
  check_number(opts_.min_delta, "ReduceLROnPlateau", "min_delta");
  NABLA_CHECK(opts_.factor > 0 && opts_.factor < 1, "ReduceLROnPlateau: factor must be in (0, 1), got {}",
              opts_.factor);
  NABLA_CHECK(opts_.patience >= 0 && opts_.cooldown >= 0 && opts_.min_lr >= 0 && opts_.min_delta >= 0,
              "ReduceLROnPlateau: patience, cooldown, min_lr and min_delta must be >= 0");
  maximize_ = maximizes(opts_.mode, opts_.monitor);
}

void ReduceLROnPlateau::on_train_begin(Model&) {
  best_ = worst(maximize_);
  wait_ = cooldown_left_ = 0;
}

void ReduceLROnPlateau::on_epoch_end(Model& model, int64_t epoch, Logs& logs) {
  const double current = monitored(logs, opts_.monitor, "ReduceLROnPlateau");
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    wait_ = 0;
  }
  if (is_improvement(current, best_, maximize_, opts_.min_delta)) {
    best_ = current;
    wait_ = 0;
  } else if (cooldown_left_ == 0 && ++wait_ >= opts_.patience) {
    Optimizer& opt = model.optimizer();
    const double old_lr = opt.lr();
    if (old_lr > opts_.min_lr) {
      const double new_lr = std::max(old_lr * opts_.factor, opts_.min_lr);
      opt.set_lr(new_lr);
      if (opts_.verbose)
        log_at(LogLevel::info, "ReduceLROnPlateau: epoch {}: learning rate {} -> {}", epoch + 1, old_lr, new_lr);
      cooldown_left_ = opts_.cooldown;
      wait_ = 0;
    }
  }
}

// ---- CSVLogger, TerminateOnNaN ----------------------------------------------------------------

void CSVLogger::Closer::operator()(std::FILE* f) const {
  if (f) std::fclose(f);
}

CSVLogger::CSVLogger(std::string path, CSVLoggerOptions opts) : path_(std::move(path)), opts_(opts) {
  NABLA_CHECK(!path_.empty(), "CSVLogger: the path is empty");
}

void CSVLogger::on_train_begin(Model&) {
  bool has_header = false;
  if (opts_.append) {
    if (std::FILE* f = std::fopen(path_.c_str(), "r")) {
      has_header = std::fgetc(f) != EOF;
      std::fclose(f);
    }
  }
  file_.reset(std::fopen(path_.c_str(), opts_.append ? "a" : "w"));
  NABLA_CHECK_IO(file_ != nullptr, "CSVLogger: cannot open {}: {}", path_, std::strerror(errno));
  keys_.clear();
  if (has_header) keys_.push_back("");  // header already there: written below only when empty
}

void CSVLogger::on_epoch_end(Model&, int64_t epoch, Logs& logs) {
  if (!file_) return;
  const bool write_header = keys_.empty();
  if (keys_.empty() || (keys_.size() == 1 && keys_[0].empty())) {
    keys_.clear();
    for (const auto& [k, v] : logs) keys_.push_back(k);
  }
  if (write_header) {
    fmt::print(file_.get(), "epoch");
    for (const auto& k : keys_) fmt::print(file_.get(), "{}{}", opts_.separator, k);
    fmt::print(file_.get(), "\n");
  }
  fmt::print(file_.get(), "{}", epoch);
  for (const auto& k : keys_) {
    auto it = logs.find(k);
    if (it == logs.end())
      fmt::print(file_.get(), "{}", opts_.separator);
    else
      fmt::print(file_.get(), "{}{:.17g}", opts_.separator, it->second);
  }
  fmt::print(file_.get(), "\n");
  std::fflush(file_.get());
}

void CSVLogger::on_train_end(Model&) { file_.reset(); }

void TerminateOnNaN::on_batch_end(Model& model, const BatchInfo& info) {
  if (!info.logs) return;
  auto it = info.logs->find("loss");
  if (it != info.logs->end() && !std::isfinite(it->second)) {
    log_at(LogLevel::warning, "TerminateOnNaN: epoch {} batch {}: the loss is {}, stopping", info.epoch + 1,
           info.batch + 1, it->second);
    terminated_ = true;
    model.stop_training();
  }
}

void TerminateOnNaN::on_epoch_end(Model& model, int64_t epoch, Logs& logs) {
  auto it = logs.find("loss");
  if (it != logs.end() && !std::isfinite(it->second) && !terminated_) {
    log_at(LogLevel::warning, "TerminateOnNaN: epoch {}: the loss is {}, stopping", epoch + 1, it->second);
    terminated_ = true;
    model.stop_training();
  }
}

}  // namespace nabla
