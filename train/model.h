// Model: the Keras-style training API on any Module.
//
//   nabla::Model model{nabla::Flatten(), nabla::Dense(784, 128), nabla::ReLU(), nabla::Dense(128, 10)};
//   model.to(nabla::Device::best());
//   model.compile(nabla::Adam({.lr = 1e-3}), nabla::CrossEntropyLoss(), {"accuracy"});
//   model.summary({1, 28, 28});                      // layers, output shapes, parameter counts
//   auto history = model.fit(data.train, {.epochs = 5, .batch_size = 128, .validation = data.test});
//   double acc = model.evaluate(data.test).at("accuracy");
//   model.save("mlp.safetensors");                   // PyTorch's state_dict names
//
// A Model holds its module through a shared_ptr: Model(seq) shares seq's parameters, and
// Model{layer, layer, ...} makes a Sequential of the layers.
//
// fit runs, for each epoch: the callbacks' on_epoch_begin; every batch (on_batch_begin, forward,
// loss + regularization, backward, clipping, optimizer step, on_batch_end); the validation
// pass; on_epoch_end. The running loss and metrics stay on the device and are read only every
// log_every steps (for the progress bar) and at the end of the epoch: no other synchronization
// happens inside a step. A non-finite loss at one of those reads is an error (see
// FitOptions::allow_nonfinite_loss). batch_size may exceed the data: the epoch is one batch. Before the first batch, a shape pass (one forward of a zero batch of
// two samples, in evaluation mode under NoGrad) checks the model against the data's sample
// shape, and a shape error names the layer: "fit: layer 4 (Dense(3136->128)): ...".
//
// Files (safetensors, see core/io/safetensors.h): save() writes the parameters and buffers
// under their state_dict names ("0.weight", "1.running_mean"), which
// torch.nn.Module.load_state_dict(safetensors.torch.load_file(path)) reads, and the metadata
// key "nabla.architecture" (JSON: the model's to_string(), its type, and each tensor's kind,
// dtype and shape). save_checkpoint() adds the optimizer's state as
// "optimizer.state.<param index>.<name>" (as torch.optim's state_dict numbers parameters) and
// "nabla.training" (JSON: epoch, global_step, loss, optimizer name, lr and hyperparameters, and
// the random generator's state), which is enough for a resumed run to reproduce the next losses
// of an uninterrupted one exactly (on the same device, with fit's seed, and callbacks that keep
// no state across the break). load() and load_checkpoint() open the file once (a
// SafetensorsReader: header and data of one version of the file), check the names, dtypes and
// shapes in the header against the model before reading any data, and report every missing,
// unexpected and mismatched tensor in one nabla::Error; load_checkpoint also checks every value
// of "nabla.training" (epoch and global_step integers in [0, 2^63), lr finite and >= 0, the
// optimizer's hyperparameters finite, rng_state's seed and offset integers in [0, 2^64)). The
// data is checked against its CRC and the new state built aside before anything is changed:
// a file that fails any check leaves parameters, buffers, optimizer state, counters, learning
// rate and random generator as they were. Every error names the file.
//
// Threads: a Model is not thread-safe; use one per thread. fit, evaluate, predict, compile, to,
// build, summary, the state_dict functions, save and load (and their checkpoint forms) take the
// model for their duration: calling one while another thread is inside one throws "Model is
// already in use by another thread (fit); ..." instead of corrupting it. The same thread may
// re-enter (a callback that saves or evaluates the model during fit).
#pragma once

#include <nabla/export.h>

#include <nabla/core/data/dataloader.h>
#include <nabla/core/data/dataset.h>
#include <nabla/core/tensor.h>
#include <nabla/dist/ddp.h>
#include <nabla/layers/loss.h>
#include <nabla/layers/module.h>
#include <nabla/layers/sequential.h>
#include <nabla/optim/optimizer.h>
#include <nabla/train/callbacks.h>
#include <nabla/train/history.h>
#include <nabla/train/metrics.h>
#include <nabla/train/progress.h>
#include <nabla/train/regularizer.h>

#include <atomic>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nabla {

struct CompileOptions {
  double clip_norm = 0;   // > 0: clip_grad_norm of all gradients to this global norm each step
  double clip_value = 0;  // > 0: clip_grad_value of every gradient element to [-v, v]
};

struct FitOptions {
  int64_t epochs = 1;  // trains epochs initial_epoch .. epochs - 1
  int64_t batch_size = 32;
  std::optional<data::Dataset> validation{};  // evaluated after each epoch ("val_*" logs)
  double validation_split = 0;              // else: this fraction of `train`, taken from its end
  bool shuffle = true;                      // each epoch in the order DataLoader gives (seed, epoch)
  uint64_t seed = 0;
  std::vector<CallbackRef> callbacks{};
  // What fit logs (core/log.h, stdout with the default sink): 0: nothing below a warning, the
  // callbacks' reports included (ScopedLogLevel(LogLevel::warning) for fit's duration); 1: a
  // progress bar per epoch; 2: one line per epoch.
  int verbose = 1;
  int64_t initial_epoch = 0;  // to resume: model.epoch() after load_checkpoint
  int64_t log_every = 50;     // steps between reads of the running loss and metrics (> 0)
  // The training data of each epoch, made from `train` (after the validation split): e.g.
  // augmentation on the host. Called at the start of every epoch, after on_epoch_begin.
  std::function<data::Dataset(const data::Dataset& train, int64_t epoch)> epoch_data{};
  bool drop_last = false;
  // false: a training loss that is NaN or infinite when fit reads it (every log_every steps and
  // at the epoch's end), or such a validation loss, stops training with a nabla::Error naming
  // the epoch and step, before any callback sees it (so ModelCheckpoint saves nothing after
  // it). true: train on (Keras' behavior; TerminateOnNaN can then stop training quietly).
  bool allow_nonfinite_loss = false;
};

struct EvaluateOptions {
  int64_t batch_size = 256;
  int verbose = 0;  // 1: one line with the results, logged at info level (core/log.h)
};

class NABLA_API Model {
 public:
  // Any Module, as a value (copied: a layer's parameters are shared handles, so the copy
  // trains the same tensors) or a shared_ptr.
  template <typename M>
    requires(!std::same_as<std::decay_t<M>, Model> && !std::is_convertible_v<std::decay_t<M>, std::string>)
  explicit(false) Model(M&& module) : module_(share_module(std::forward<M>(module))) { init(); }
  // A Sequential of two or more layers.
  template <typename... Ms>
    requires(sizeof...(Ms) > 1)
  explicit Model(Ms&&... layers) : module_(std::make_shared<Sequential>(std::forward<Ms>(layers)...)) {
    init();
  }
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();

  // ---- the module ------------------------------------------------------------------------------
  Module& module() const { return *module_; }
  const std::shared_ptr<Module>& module_ptr() const { return module_; }
  // Child i of a Sequential (throws for other modules).
  Module& layer(size_t i) const;
  Tensor forward(const Tensor& x) { return module_->forward(x); }
  Tensor operator()(const Tensor& x) { return module_->forward(x); }
  std::vector<Tensor> parameters() const { return module_->parameters(); }
  int64_t num_parameters() const { return module_->num_parameters(); }
  std::string to_string() const { return module_->to_string(); }
  // Moves parameters and buffers (see Module::to); batches are sent to this device.
  Model& to(Device device);
  Device device() const { return device_; }

  // ---- training --------------------------------------------------------------------------------
  // Binds `optimizer` (made without parameters, e.g. nabla::Adam({.lr = 1e-3})) to the
  // trainable parameters (those that require grad), and sets the loss and metrics. Compiling
  // again replaces all three (and the optimizer's state).
  template <typename O>
    requires std::derived_from<std::decay_t<O>, Optimizer> && (!std::is_lvalue_reference_v<O>)
  Model& compile(O&& optimizer, Loss loss, std::vector<MetricSpec> metrics = {}, CompileOptions opts = {}) {
    return compile(std::shared_ptr<Optimizer>(std::make_shared<std::decay_t<O>>(std::move(optimizer))),
                   std::move(loss), std::move(metrics), opts);
  }
  // An optimizer already made (bound to this model's parameters, or unbound).
  Model& compile(std::shared_ptr<Optimizer> optimizer, Loss loss, std::vector<MetricSpec> metrics = {},
                 CompileOptions opts = {});
  bool compiled() const { return optimizer_ != nullptr; }
  Optimizer& optimizer() const;
  const Loss& loss() const;
  const std::vector<std::shared_ptr<Metric>>& metrics() const { return metrics_; }

  // x: [N, ...] samples, y: [N, ...] targets, on the CPU (DataLoader batches them).
  History fit(const data::Dataset& train, FitOptions opts = {});
  // {"loss": ..., <metric>: ...} over `data`, in evaluation mode under NoGrad.
  Logs evaluate(const data::Dataset& data, EvaluateOptions opts = {});
  // The outputs for x ([N, ...], any device), batched, in evaluation mode under NoGrad,
  // concatenated on the model's device.
  Tensor predict(const Tensor& x, int64_t batch_size = 256);

  // ---- data-parallel training (dist/) -------------------------------------------------------
  // Trains this model on every process of the job (mpirun -np N): from then on, fit starts by
  // checking that every rank built the same model and copying rank 0's parameters and buffers to
  // all; each rank trains on its own shard of each epoch's shuffled order (the same seed
  // everywhere: batch_size is per rank, the global batch is batch_size * world_size()); the
  // gradients are averaged during the backward (dist::DistributedDataParallel, bucketed), so
  // the ranks' parameters stay equal; losses and metrics are summed over ranks before they are
  // shown or given to callbacks; only rank 0 logs and runs the callbacks that write files
  // (main_process_only()); buffers (running statistics) are copied from rank 0 before each
  // validation pass. evaluate() shards its data the same way. An exception on any rank during
  // fit ends the whole job (dist::abort) with that rank's message, since the other ranks would
  // wait for it forever. Calls dist::init(). With one process, fit runs as without it.
  Model& distribute(dist::DdpOptions opts = {});
  bool distributed() const { return dist_opts_.has_value(); }
  // The gradient averager of the fit in progress (null outside fit): its timeline, buckets.
  dist::DistributedDataParallel* data_parallel() const { return ddp_.get(); }

  // Asks fit to stop after the current epoch (callbacks call it; Keras' stop_training).
  void stop_training(bool on = true) { stop_ = on; }
  bool stop_requested() const { return stop_; }
  // Epochs completed (as of the last fit, or the checkpoint loaded) and optimizer steps taken.
  int64_t epoch() const { return epoch_; }
  int64_t global_step() const { return global_step_; }
  // The history of the last fit (also during it, up to the previous epoch).
  const History& history() const { return history_; }

  // ---- regularization ----------------------------------------------------------------------
  // Adds r's penalty of `layer`'s parameters named `parameter` (its own parameters and its
  // children's whose last name component matches; "" for all of them) to the training loss.
  // Throws when nothing matches.
  Model& regularize(const Module& layer, Regularizer r, const std::string& parameter = "weight");
  Model& regularize(const Tensor& parameter, Regularizer r);
  // The sum of the penalties, a differentiable scalar on the model's device; undefined when no
  // regularizer is attached.
  Tensor regularization_loss() const;

  // ---- shapes and summary --------------------------------------------------------------------
  // The shape pass on a zero batch [2, sample_shape...] of `dtype`: records each layer's output
  // shape for summary(). Throws "<who>: layer i (type): ..." at the failing layer.
  Model& build(const Shape& sample_shape, DType dtype = DType::float32);
  bool built() const { return !input_shape_.empty(); }
  // A table of layers (a Sequential's children; otherwise the module as one row): name, type,
  // output shape (batch as N; "?" before build), parameter count; then the totals of trainable
  // parameters (those that require grad) and non-trainable ones (frozen parameters and
  // floating-point buffers such as running statistics). Printed to `out` (null: not printed)
  // and returned.
  std::string summary(std::FILE* out = stdout) const;
  // build(sample_shape, dtype), then summary(out).
  std::string summary(const Shape& sample_shape, DType dtype = DType::float32, std::FILE* out = stdout);

  // ---- files -----------------------------------------------------------------------------------
  // Parameters then buffers, with PyTorch's state_dict names; the live tensors.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Copies `state` into the tensors of state_dict() (converting device, not dtype); checks every
  // name, dtype and shape first and reports all problems in one error. Unknown names are errors
  // when strict.
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state, bool strict = true);
  void save(const std::string& path) const;
  void load(const std::string& path);
  // Needs compile(); load_checkpoint also restores the optimizer's learning rate, the epoch and
  // step counters and the random generator (nabla::rng_state()).
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);

 private:
  struct LayerShape {
    std::string name;
    Shape shape;
  };
  void init();
  void shape_pass(const Shape& sample_shape, DType dtype, const char* who);
  Logs run_evaluation(const data::Dataset& data, int64_t batch_size);
  // fit's steps (model.cpp): the run's training and validation data after the checks and the
  // shape pass; one epoch of training steps with its callbacks, progress and non-finite checks,
  // returning the epoch's training logs; one step (forward, loss with regularization, backward,
  // clipping, optimizer step), returning the batch's loss and putting the outputs, both
  // detached, in *outputs; the validation pass, adding "val_*" to logs and returning what the
  // progress bar shows.
  struct FitData {
    data::Dataset train;
    std::optional<data::Dataset> validation;
  };
  FitData fit_data(const data::Dataset& train, const FitOptions& o);
  History fit_here(const data::Dataset& train, FitOptions o);  // fit, inside its guard
  Logs train_epoch(data::DataLoader& loader, int64_t epoch, const FitOptions& o,
                   const std::vector<std::shared_ptr<Callback>>& callbacks, ProgressBar& bar);
  Tensor train_step(const data::Batch& batch, const std::vector<Tensor>& params, Tensor* outputs);
  std::vector<std::pair<std::string, double>> validate(const data::Dataset& validation, int64_t epoch,
                                                       const FitOptions& o, Logs& logs);
  std::vector<std::pair<std::string, double>> running_logs(const Tensor& loss_sum, int64_t seen) const;
  void notify_loaded();
  std::string metadata_architecture() const;
  std::string metadata_training() const;
  void load_file(const std::string& path, bool with_optimizer);
  void load_file_checked(const std::string& path, bool with_optimizer, const std::string& where);

  // The thread inside a public entry point, and which one; a moved-to model starts free.
  struct InUse {
    std::atomic<std::thread::id> owner{};
    std::atomic<const char*> entry{""};
    InUse() = default;
    InUse(InUse&&) noexcept {}
    InUse& operator=(InUse&&) noexcept { return *this; }
  };
  mutable InUse in_use_;
  // Holds in_use_ for one public call (first line of each); throws when another thread holds it.
  class UseGuard {
   public:
    UseGuard(const Model& m, const char* entry);
    ~UseGuard();
    UseGuard(const UseGuard&) = delete;
    UseGuard& operator=(const UseGuard&) = delete;

   private:
    InUse& in_use_;
    bool owns_ = false;
  };
  std::shared_ptr<Module> module_;
  Device device_ = Device::cpu();
  std::shared_ptr<Optimizer> optimizer_;
  std::optional<Loss> loss_;
  std::vector<std::shared_ptr<Metric>> metrics_;
  CompileOptions compile_opts_;
  std::vector<std::pair<Tensor, Regularizer>> regularizers_;
  Shape input_shape_;
  DType input_dtype_ = DType::float32;
  std::vector<LayerShape> layer_shapes_;
  Shape output_shape_;
  History history_;
  int64_t epoch_ = 0, global_step_ = 0;
  bool stop_ = false;
  std::optional<dist::DdpOptions> dist_opts_;
  std::shared_ptr<dist::DistributedDataParallel> ddp_;
  // Whether losses and metrics are summed over ranks and data sharded (distributed, world > 1).
  bool across_ranks() const;
};

}  // namespace nabla
