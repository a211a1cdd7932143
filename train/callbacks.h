// Callbacks: code that Model::fit runs at the start and end of training, of each epoch and of
// each batch (Keras' callbacks). Write one by overriding the hooks you need:
//
//   struct PrintLr : nabla::Callback {
//     void on_epoch_end(nabla::Model& m, int64_t epoch, nabla::Logs& logs) override {
//       nabla::log_at(nabla::LogLevel::info, "epoch {}: lr {}", epoch, logs.at("lr"));
//     }
//   };
//   model.fit(train, {.epochs = 10, .callbacks = {PrintLr(), nabla::EarlyStopping({.patience = 3})}});
//
// Epochs are numbered from 0, as in Keras. Callbacks run in the order given; each hook gets the
// model (for its optimizer, weights, and stop_training()). The epoch-end logs hold "loss", the
// metrics, "val_*" with validation data, and "lr"; a callback may add to them (they reach
// History after every callback has run). A batch's loss is a device tensor: reading it is a
// synchronization, so the built-in callbacks only look at values when fit has read them.
//
// The built-in callbacks report through the log (core/log.h): what their `verbose` option asks
// for at info level, which FitOptions::verbose = 0 silences; a checkpoint not saved and
// TerminateOnNaN's stop at warning level (stderr with the default sink), which it does not.
#pragma once

#include <nabla/core/log.h>
#include <nabla/export.h>
#include <nabla/core/tensor.h>
#include <nabla/train/history.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nabla {

class Model;

struct BatchInfo {
  int64_t epoch = 0;  // 0-based
  int64_t batch = 0;  // index within the epoch
  int64_t step = 0;   // training steps before this one (Model::global_step() at its start)
  int64_t size = 0;   // samples in the batch
  Tensor loss{};      // on_batch_end: this batch's loss (with regularization), a device scalar;
                      // undefined for a rank's empty share of a last batch (Model::distribute)
  // on_batch_end: the epoch's running means ("loss", metrics) when fit read them at this step
  // (every FitOptions::log_every steps and at the last batch), else null.
  const Logs* logs = nullptr;
};

class NABLA_API Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Model&) {}
  virtual void on_train_end(Model&) {}
  virtual void on_epoch_begin(Model&, int64_t /*epoch*/) {}
  virtual void on_epoch_end(Model&, int64_t /*epoch*/, Logs& /*logs*/) {}
  virtual void on_batch_begin(Model&, const BatchInfo&) {}
  virtual void on_batch_end(Model&, const BatchInfo&) {}
  // Data-parallel training (Model::distribute): true for callbacks that write files (checkpoints,
  // logs), which fit then runs on rank 0 only; the others run on every rank and see the same
  // logs (reduced across ranks), so decisions such as early stopping agree.
  virtual bool main_process_only() const { return false; }
};

// A callback for FitOptions::callbacks: a value (copied in) or a shared_ptr (to read it later).
struct CallbackRef {
  template <typename C>
    requires std::is_base_of_v<Callback, C>
  CallbackRef(std::shared_ptr<C> c) : ptr(std::move(c)) {}
  template <typename C>
    requires std::is_base_of_v<Callback, std::decay_t<C>>
  CallbackRef(C&& c) : ptr(std::make_shared<std::decay_t<C>>(std::forward<C>(c))) {}
  std::shared_ptr<Callback> ptr;
};

// Whether a smaller or a larger monitored value is better; auto_: larger for names with "acc",
// "precision", "recall" or "f1" in them, smaller for everything else.
enum class Mode { auto_, min, max };

// ---- EarlyStopping ----------------------------------------------------------------------------

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  Mode mode = Mode::auto_;
  int64_t patience = 0;       // epochs without improvement before stopping
  double min_delta = 0;       // an improvement must beat the best by more than this
  bool restore_best_weights = false;
  std::optional<double> baseline{};  // the value to beat before the patience counter resets
  int64_t start_from_epoch = 0;    // epochs before any check (warm-up)
  bool verbose = false;
};

// Keras' rule: each epoch with the monitored value better than the best by more than
// min_delta makes it the best and resets the wait (when it also beats the baseline, if one is
// given); otherwise the wait grows, and when it reaches `patience` (and epoch > 0) training
// stops after that epoch. With
// restore_best_weights, training ends (stopped or not) with the parameters and buffers of the
// best epoch. A log without the monitored key is an error naming the keys there are.
class NABLA_API EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions opts = {});
  void on_train_begin(Model&) override;
  void on_epoch_end(Model&, int64_t epoch, Logs& logs) override;
  void on_train_end(Model&) override;

  int64_t stopped_epoch() const { return stopped_epoch_; }  // -1 when it did not stop training
  int64_t best_epoch() const { return best_epoch_; }        // -1 before an epoch was seen
  double best() const { return best_; }

 private:
  EarlyStoppingOptions opts_;
  bool maximize_ = false;
  double best_ = 0;
  int64_t wait_ = 0, stopped_epoch_ = -1, best_epoch_ = -1;
  std::vector<Tensor> best_weights_;
};

// ---- ModelCheckpoint --------------------------------------------------------------------------

struct ModelCheckpointOptions {
  std::string monitor = "val_loss";
  Mode mode = Mode::auto_;
  bool save_best_only = false;  // only when the monitored value improves on the best so far
  bool weights_only = true;     // Model::save; false: Model::save_checkpoint (optimizer, epoch, RNG)
  bool verbose = false;
};

// Saves at the end of each epoch to `path`, where "{epoch}" is replaced by the epoch number
// counted from 1 (Keras' convention in file names). Never saves non-finite weights: when the
// epoch's loss or monitored value is NaN or infinite, or a parameter or buffer holds one, it
// skips the save with a warning (logged, core/log.h: stderr with the default sink), so the file of
// the last good epoch stays as it was.
class NABLA_API ModelCheckpoint : public Callback {
 public:
  bool main_process_only() const override { return true; }
  explicit ModelCheckpoint(std::string path, ModelCheckpointOptions opts = {});
  void on_train_begin(Model&) override;
  void on_epoch_end(Model&, int64_t epoch, Logs& logs) override;
  // The file of the last save ("" before any).
  const std::string& last_saved() const { return last_saved_; }
  // Saves skipped in this fit because of non-finite values.
  int64_t refused() const { return refused_; }

 private:
  std::string path_;
  ModelCheckpointOptions opts_;
  bool maximize_ = false;
  std::optional<double> best_;
  std::string last_saved_;
  int64_t refused_ = 0;
};

// ---- learning rate ----------------------------------------------------------------------------

enum class ScheduleUnit { epoch, step };

// Sets the optimizer's learning rate to schedule(t) before each epoch (t = the epoch) or each
// step (t = Model::global_step()). Any of optim/schedule.h's schedules, or a lambda.
class NABLA_API LearningRateScheduler : public Callback {
 public:
  explicit LearningRateScheduler(std::function<double(int64_t)> schedule, ScheduleUnit unit = ScheduleUnit::epoch);
  void on_epoch_begin(Model&, int64_t epoch) override;
  void on_batch_begin(Model&, const BatchInfo&) override;

 private:
  std::function<double(int64_t)> schedule_;
  ScheduleUnit unit_;
};

struct ReduceLROnPlateauOptions {
  std::string monitor = "val_loss";
  Mode mode = Mode::auto_;
  double factor = 0.1;     // new lr = max(lr * factor, min_lr); 0 < factor < 1
  int64_t patience = 10;   // epochs without improvement before reducing
  double min_delta = 1e-4;
  int64_t cooldown = 0;    // epochs after a reduction before counting again
  double min_lr = 0;
  bool verbose = false;
};

// Keras' ReduceLROnPlateau: multiplies the learning rate by `factor` when the monitored value
// has not improved by more than min_delta for `patience` epochs.
class NABLA_API ReduceLROnPlateau : public Callback {
 public:
  explicit ReduceLROnPlateau(ReduceLROnPlateauOptions opts = {});
  void on_train_begin(Model&) override;
  void on_epoch_end(Model&, int64_t epoch, Logs& logs) override;

 private:
  ReduceLROnPlateauOptions opts_;
  bool maximize_ = false;
  double best_ = 0;
  int64_t wait_ = 0, cooldown_left_ = 0;
};

// ---- logging and safety -----------------------------------------------------------------------

struct CSVLoggerOptions {
  char separator = ',';
  bool append = false;  // add to an existing file (no second header)
};

// Writes "epoch,<keys>" and one line per epoch as training goes (flushed every epoch), so a
// crashed run keeps its curves. Keys are those of the first epoch, sorted.
class NABLA_API CSVLogger : public Callback {
 public:
  bool main_process_only() const override { return true; }
  explicit CSVLogger(std::string path, CSVLoggerOptions opts = {});
  void on_train_begin(Model&) override;
  void on_epoch_end(Model&, int64_t epoch, Logs& logs) override;
  void on_train_end(Model&) override;

 private:
  struct Closer {
    void operator()(std::FILE* f) const;
  };
  std::string path_;
  CSVLoggerOptions opts_;
  std::unique_ptr<std::FILE, Closer> file_;
  std::vector<std::string> keys_;
};

// Stops training when the loss becomes NaN or infinite, for a fit with
// FitOptions::allow_nonfinite_loss (without it, fit itself throws at that point). It looks at
// the running loss whenever fit reads it (every FitOptions::log_every steps, the last batch, and the epoch's logs): a NaN
// stays in the running sum, so it is caught within log_every steps with no extra read.
class NABLA_API TerminateOnNaN : public Callback {
 public:
  void on_batch_end(Model&, const BatchInfo&) override;
  void on_epoch_end(Model&, int64_t epoch, Logs& logs) override;
  bool terminated() const { return terminated_; }

 private:
  bool terminated_ = false;
};

// True when `current` beats `best` by more than min_delta in the direction of `maximize`.
NABLA_API bool is_improvement(double current, double best, bool maximize, double min_delta);
// Resolves Mode::auto_ for a monitored name.
NABLA_API bool maximizes(Mode mode, const std::string& monitor);

}  // namespace nabla
