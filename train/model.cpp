#include <nabla/train/model.h>

#include <nabla/core/autograd.h>
#include <nabla/core/data/dataloader.h>
#include <nabla/core/error.h>
#include <nabla/core/io/safetensors.h>
#include <nabla/core/log.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/shape.h>
#include <nabla/dist/dist.h>
#include <nabla/optim/clip.h>
#include <nabla/train/progress.h>

#include <nlohmann/json.hpp>

#include <climits>
#include <cstring>
#include <cmath>
#include <map>
#include <set>

namespace nabla {

using json = nlohmann::json;

namespace {

constexpr const char* kOptimizerPrefix = "optimizer.state.";
constexpr const char* kArchitectureKey = "nabla.architecture";
constexpr const char* kTrainingKey = "nabla.training";

// Puts a module back in the mode it had (evaluation and prediction switch it to eval).
class ModeGuard {
 public:
  ModeGuard(Module& m, bool training) : m_(m), was_(m.is_training()) { m_.train(training); }
  ~ModeGuard() { m_.train(was_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  Module& m_;
  bool was_;
};

std::string join(const std::vector<std::string>& v, size_t most = 8) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < most; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > most) s += fmt::format(", ... ({} more)", v.size() - most);
  return s;
}

// "not a number (nan)" / "infinite (inf)": the words a user reads for a non-finite value.
std::string nonfinite_words(double v) {
  return std::isnan(v) ? "not a number (nan)" : fmt::format("infinite ({})", v);
}

// The batch size a DataLoader over `n` samples gets: at most the dataset (one batch, as Keras
// does), so no size computation downstream sees a batch_size near INT64_MAX.
int64_t clamp_batch(int64_t batch_size, int64_t n) { return n > 0 ? std::min(batch_size, n) : batch_size; }

}  // namespace

Model::~Model() = default;

Model::UseGuard::UseGuard(const Model& m, const char* entry) : in_use_(m.in_use_) {
  const std::thread::id me = std::this_thread::get_id();
  std::thread::id holder{};
  if (in_use_.owner.compare_exchange_strong(holder, me, std::memory_order_acquire)) {
    in_use_.entry.store(entry, std::memory_order_relaxed);
    owns_ = true;
    return;
  }
  if (holder == me) return;  // re-entered: a callback saving or evaluating the model during fit
  fail("{}: Model is already in use by another thread ({}); a Model is not thread-safe: use one per thread",
       entry, in_use_.entry.load(std::memory_order_relaxed));
}

Model::UseGuard::~UseGuard() {
  if (owns_) in_use_.owner.store(std::thread::id{}, std::memory_order_release);
}

void Model::init() {
  NABLA_CHECK(module_ != nullptr, "Model: the module is null");
  for (const Tensor& p : module_->parameters()) {
    device_ = p.device();
    return;
  }
  for (const Tensor& b : module_->buffers()) {
    device_ = b.device();
    return;
  }
}

Module& Model::layer(size_t i) const {
  auto* seq = dynamic_cast<Sequential*>(module_.get());
  NABLA_CHECK(seq != nullptr, "Model::layer: the model is a {}, not a Sequential", module_->type_name());
  return (*seq)[i];
}

Model& Model::to(Device device) {
  UseGuard use(*this, "to");
  module_->to(device);
  device_ = device;
  return *this;
}

// ---- compile -----------------------------------------------------------------------------------

Model& Model::compile(std::shared_ptr<Optimizer> optimizer, Loss loss, std::vector<MetricSpec> metrics,
                      CompileOptions opts) {
  UseGuard use(*this, "compile");
  NABLA_CHECK(optimizer != nullptr, "compile: the optimizer is null");
  NABLA_CHECK(opts.clip_norm >= 0 && opts.clip_value >= 0, "compile: clip_norm {} and clip_value {} must be >= 0",
              opts.clip_norm, opts.clip_value);
  if (!optimizer->bound()) {
    std::vector<Tensor> trainable;
    for (const Tensor& p : module_->parameters())
      if (p.requires_grad()) trainable.push_back(p);
    NABLA_CHECK(!trainable.empty(), "compile: {} has no trainable parameters", module_->to_string());
    optimizer->bind(std::move(trainable));
  }
  std::vector<std::shared_ptr<Metric>> ms;
  std::set<std::string> names{"loss", "lr"};
  for (MetricSpec& spec : metrics) {
    std::shared_ptr<Metric> m = spec.metric ? spec.metric : make_metric(spec.name, loss.is_binary(), loss.from_logits());
    NABLA_CHECK(names.insert(m->name()).second, "compile: two metrics (or a metric and 'loss'/'lr') are named '{}'",
                m->name());
    ms.push_back(std::move(m));
  }
  optimizer_ = std::move(optimizer);
  loss_ = std::move(loss);
  metrics_ = std::move(ms);
  compile_opts_ = opts;
  return *this;
}

Optimizer& Model::optimizer() const {
  NABLA_CHECK(optimizer_ != nullptr, "Model: not compiled; call compile(optimizer, loss, metrics) first");
  return *optimizer_;
}

const Loss& Model::loss() const {
  NABLA_CHECK(loss_.has_value(), "Model: not compiled; call compile(optimizer, loss, metrics) first");
  return *loss_;
}

// ---- regularization ---------------------------------------------------------------------------

Model& Model::regularize(const Module& layer, Regularizer r, const std::string& parameter) {
  int matched = 0;
  for (auto& [name, p] : layer.named_parameters()) {
    const size_t dot = name.rfind('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    if (parameter.empty() || last == parameter) {
      regularize(p, r);
      ++matched;
    }
  }
  NABLA_CHECK(matched > 0, "regularize: {} has no parameter named '{}'", layer.to_string(), parameter);
  return *this;
}

Model& Model::regularize(const Tensor& parameter, Regularizer r) {
  NABLA_CHECK(parameter.defined(), "regularize: the parameter is undefined");
  check_number(r.l1, "regularize", fmt::format("{} l1", r.to_string()));
  check_number(r.l2, "regularize", fmt::format("{} l2", r.to_string()));
  NABLA_CHECK(r.l1 >= 0 && r.l2 >= 0, "regularize: {} has a negative factor", r.to_string());
  bool owned = false;
  for (const Tensor& p : module_->parameters()) owned = owned || p.impl() == parameter.impl();
  NABLA_CHECK(owned, "regularize: the tensor {} is not a parameter of {}", shape_str(parameter.shape()),
              module_->to_string());
  regularizers_.emplace_back(parameter, r);
  return *this;
}

Tensor Model::regularization_loss() const {
  Tensor total;
  for (const auto& [p, r] : regularizers_) {
    Tensor pen = r.penalty(p).to(DType::float32);
    total = total.defined() ? total + pen : pen;
  }
  return total;
}

// ---- fit, evaluate, predict -------------------------------------------------------------------

bool Model::across_ranks() const { return dist_opts_.has_value() && dist::world_size() > 1; }

namespace {

// A rank's running numbers for the sum over ranks: loss sum, samples, then each metric's state
// (its length first), as raw doubles in a string for dist::allgather_strings.
std::string pack(const std::vector<double>& v) {
  std::string s(v.size() * sizeof(double), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}
std::vector<double> unpack(const std::string& s) {
  std::vector<double> v(s.size() / sizeof(double));
  if (!v.empty()) std::memcpy(v.data(), s.data(), v.size() * sizeof(double));
  return v;
}

}  // namespace

std::vector<std::pair<std::string, double>> Model::running_logs(const Tensor& loss_sum, int64_t seen) const {
  std::vector<std::pair<std::string, double>> out;
  if (across_ranks()) {
    // Every rank calls this at the same steps: the sums of all ranks' loss sums, sample counts
    // and metric states give the numbers of the whole global batch stream.
    std::vector<double> mine{loss_sum.defined() ? loss_sum.item() : 0.0, static_cast<double>(seen)};
    for (const auto& m : metrics_) {
      const std::vector<double> st = m->summable() ? m->state() : std::vector<double>{};
      mine.push_back(static_cast<double>(st.size()));
      mine.insert(mine.end(), st.begin(), st.end());
    }
    double loss_total = 0, seen_total = 0;
    std::vector<std::vector<double>> states(metrics_.size());
    for (const std::string& packed : dist::allgather_strings(pack(mine))) {
      const std::vector<double> v = unpack(packed);
      NABLA_ASSERT(v.size() >= 2);
      loss_total += v[0];
      seen_total += v[1];
      size_t at = 2;
      for (size_t k = 0; k < metrics_.size(); ++k) {
        NABLA_ASSERT(at < v.size());
        const auto n = static_cast<size_t>(v[at++]);
        NABLA_ASSERT(at + n <= v.size());
        if (n > 0) {
          auto& acc = states[k];
          if (acc.empty()) {
            acc.assign(v.begin() + static_cast<std::ptrdiff_t>(at), v.begin() + static_cast<std::ptrdiff_t>(at + n));
          } else {
            NABLA_CHECK(acc.size() == n,
                        "fit: metric '{}' has a state of {} numbers on one rank and {} on another (e.g. a "
                        "different number of classes); it cannot be summed across ranks",
                        metrics_[k]->name(), acc.size(), n);
            for (size_t j = 0; j < n; ++j) acc[j] += v[at + j];
          }
        }
        at += n;
      }
    }
    if (seen_total == 0) return out;
    out.emplace_back("loss", loss_total / seen_total);
    for (size_t k = 0; k < metrics_.size(); ++k) {
      if (!metrics_[k]->summable()) {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true))
          log_at(LogLevel::warning,
                 "fit: metric '{}' cannot be summed across ranks (it has no state()); it shows each rank's own "
                 "samples",
                 metrics_[k]->name());
        for (auto& kv : metrics_[k]->result()) out.push_back(std::move(kv));
      } else {
        for (auto& kv : metrics_[k]->result_of(states[k])) out.push_back(std::move(kv));
      }
    }
    return out;
  }
  if (seen == 0 || !loss_sum.defined()) return out;
  out.emplace_back("loss", loss_sum.item() / static_cast<double>(seen));
  for (const auto& m : metrics_)
    for (auto& kv : m->result()) out.push_back(std::move(kv));
  return out;
}

Logs Model::run_evaluation(const data::Dataset& data, int64_t batch_size) {
  NABLA_CHECK(batch_size > 0, "evaluate: batch_size must be > 0, got {}", batch_size);
  NoGrad no_grad;
  ModeGuard mode(*module_, false);
  const bool shard = across_ranks();
  data::DataLoader loader(data, {.batch_size = clamp_batch(batch_size, data.size()), .shuffle = false, .device = device_,
                                 .num_shards = shard ? dist::world_size() : 1, .shard = shard ? dist::rank() : 0});
  for (auto& m : metrics_) m->reset();
  Tensor loss_sum;
  int64_t seen = 0;
  for (auto& batch : loader) {
    if (batch.size() == 0) continue;  // this rank's part of a last batch smaller than the world
    Tensor out = module_->forward(batch.x);
    Tensor l = loss()(out, batch.y).to(DType::float32) * static_cast<double>(batch.size());
    loss_sum = loss_sum.defined() ? loss_sum + l : l;
    for (auto& m : metrics_) m->update(out, batch.y);
    seen += batch.size();
  }
  Logs logs;
  for (auto& [k, v] : running_logs(loss_sum, seen)) logs[k] = v;
  if (Tensor reg = regularization_loss(); reg.defined()) logs["loss"] += reg.item();
  return logs;
}

Logs Model::evaluate(const data::Dataset& data, EvaluateOptions opts) {
  UseGuard use(*this, "evaluate");
  loss();  // compiled?
  Logs logs = run_evaluation(data, opts.batch_size);
  if (opts.verbose > 0) {
    std::string line = fmt::format("evaluate: {} samples", data.size());
    for (const auto& [k, v] : logs) line += fmt::format(" - {}: {:.4f}", k, v);
    log_message(LogLevel::info, line);
  }
  return logs;
}

Tensor Model::predict(const Tensor& x, int64_t batch_size) {
  UseGuard use(*this, "predict");
  NABLA_CHECK(x.defined() && x.dim() >= 1, "predict: x must be a tensor of [N, ...] samples");
  NABLA_CHECK(batch_size > 0, "predict: batch_size must be > 0, got {}", batch_size);
  NoGrad no_grad;
  ModeGuard mode(*module_, false);
  std::vector<Tensor> outs;
  const int64_t n = x.size(0);
  batch_size = clamp_batch(batch_size, n);  // b + batch_size below cannot overflow
  for (int64_t b = 0; b < n; b += batch_size) {
    Tensor xb = x.slice(0, b, std::min(n, b + batch_size));
    if (xb.device() != device_) xb = xb.to(device_);
    outs.push_back(module_->forward(xb));
  }
  NABLA_CHECK(!outs.empty(), "predict: x has no samples ({})", shape_str(x.shape()));
  return outs.size() == 1 ? outs[0] : concat(outs, 0);
}

// fit is four steps: the run's data (fit_data), then per epoch the training pass (train_epoch,
// one train_step per batch), the validation pass (validate, evaluate's own), and the epoch's
// logs to the callbacks and the history.

Model::FitData Model::fit_data(const data::Dataset& train_in, const FitOptions& o) {
  NABLA_CHECK(o.batch_size > 0, "fit: batch_size must be > 0, got {}", o.batch_size);
  NABLA_CHECK(o.log_every > 0, "fit: log_every must be > 0, got {}", o.log_every);
  NABLA_CHECK(o.epochs >= 0, "fit: epochs must be >= 0, got {}", o.epochs);
  NABLA_CHECK(o.initial_epoch >= 0 && o.epochs >= o.initial_epoch,
              "fit: needs 0 <= initial_epoch <= epochs, got initial_epoch {}, epochs {}", o.initial_epoch, o.epochs);
  NABLA_CHECK(o.verbose >= 0 && o.verbose <= 2, "fit: verbose must be 0, 1 or 2, got {}", o.verbose);
  NABLA_CHECK(!std::isnan(o.validation_split), "fit: validation_split is not a number (nan); give a fraction in [0, 1)");
  NABLA_CHECK(o.validation_split >= 0 && o.validation_split < 1, "fit: validation_split {} is outside [0, 1)",
              o.validation_split);
  NABLA_CHECK(!(o.validation && o.validation_split > 0), "fit: give validation data or validation_split, not both");
  FitData d{.train = train_in, .validation = o.validation};
  if (o.validation_split > 0) {
    const int64_t n = train_in.size();
    const auto n_val = static_cast<int64_t>(static_cast<double>(n) * o.validation_split);
    NABLA_CHECK(n_val > 0 && n_val < n, "fit: validation_split {} of {} samples leaves {} for validation", o.validation_split,
                n, n_val);
    d.train = train_in.subset(0, n - n_val);
    d.validation = train_in.subset(n - n_val, n);
  }
  NABLA_CHECK(d.train.x.defined() && d.train.x.dim() >= 1, "fit: the training inputs must be [N, ...]");
  shape_pass(Shape(d.train.x.shape().begin() + 1, d.train.x.shape().end()), d.train.x.dtype(), "fit");
  return d;
}

Tensor Model::train_step(const data::Batch& batch, const std::vector<Tensor>& params, Tensor* outputs) {
  Optimizer& opt = optimizer();
  if (batch.size() == 0) {
    // Data-parallel: this rank has no samples in the last global batch (fewer than the ranks).
    // It still takes part in the gradient average (with weight 0) and the step, so that every
    // rank's parameters stay equal.
    NABLA_ASSERT(ddp_ != nullptr);
    opt.zero_grad();
    ddp_->synchronize();
    if (compile_opts_.clip_value > 0) clip_grad_value(params, compile_opts_.clip_value);
    if (compile_opts_.clip_norm > 0) clip_grad_norm(params, compile_opts_.clip_norm);
    opt.step();
    ++global_step_;
    *outputs = Tensor();
    return Tensor();
  }
  Tensor out = module_->forward(batch.x);
  Tensor l = loss()(out, batch.y);
  if (Tensor reg = regularization_loss(); reg.defined()) l = l + reg.to(l.dtype());
  opt.zero_grad();
  l.backward();
  // The average over ranks: the buckets' allreduce started during the backward; clipping and
  // the step see the averaged gradients.
  if (ddp_) ddp_->synchronize();
  if (compile_opts_.clip_value > 0) clip_grad_value(params, compile_opts_.clip_value);
  if (compile_opts_.clip_norm > 0) clip_grad_norm(params, compile_opts_.clip_norm);
  opt.step();
  ++global_step_;
  *outputs = out.detach();
  return l.detach();
}

Logs Model::train_epoch(data::DataLoader& loader, int64_t epoch, const FitOptions& o,
                        const std::vector<std::shared_ptr<Callback>>& callbacks, ProgressBar& bar) {
  const std::vector<Tensor> params = optimizer().params();
  const int64_t steps = loader.size();
  module_->train();
  for (auto& m : metrics_) m->reset();
  // The epoch's running loss (a sum weighted by batch size) and metrics stay on the device; they
  // are read every log_every steps and at the last one, for the progress bar, and a non-finite
  // loss is caught there: the running sum keeps a NaN or an infinity, so no step synchronizes
  // for it.
  Tensor loss_sum;
  int64_t seen = 0, done = 0, last_read = 0;
  std::vector<std::pair<std::string, double>> shown;
  Logs read;
  auto check_loss = [&](double loss) {
    if (!o.allow_nonfinite_loss && !std::isfinite(loss))
      fail("fit: the training loss is {} at epoch {}, step {} of {} ({}); training stopped. The weights are no "
           "longer finite; fit saved nothing, and files saved at earlier epochs are untouched. Try a lower learning "
           "rate (now {}) or gradient clipping (compile's clip_norm)",
           nonfinite_words(loss), epoch + 1, done, steps,
           last_read == 0 ? std::string("the epoch's first read of it")
                          : fmt::format("read every {} steps; finite at step {}", o.log_every, last_read),
           optimizer().lr());
  };
  for (auto& batch : loader) {
    BatchInfo info{.epoch = epoch, .batch = done, .step = global_step_, .size = batch.size(), .loss = {}, .logs = nullptr};
    for (auto& c : callbacks) c->on_batch_begin(*this, info);
    Tensor out;
    // This rank's share of the global batch's mean gradient (the last batch may be uneven).
    if (ddp_) ddp_->set_gradient_weight(static_cast<double>(batch.size()) / static_cast<double>(loader.global_batch_size(done)));
    info.loss = train_step(batch, params, &out);
    ++done;
    seen += batch.size();
    if (batch.size() > 0) {
      NoGrad no_grad;
      Tensor weighted = info.loss.to(DType::float32) * static_cast<double>(batch.size());
      loss_sum = loss_sum.defined() ? loss_sum + weighted : weighted;
      for (auto& m : metrics_) m->update(out, batch.y);
    }
    if (done % o.log_every == 0 || done == steps) {
      shown = running_logs(loss_sum, seen);
      check_loss(shown.front().second);
      last_read = done;
      read = Logs(shown.begin(), shown.end());
      info.logs = &read;
    }
    if (o.verbose > 0) bar.update(done, shown);
    for (auto& c : callbacks) c->on_batch_end(*this, info);
    if (stop_) break;
  }
  Logs logs;
  for (auto& [k, v] : running_logs(loss_sum, seen)) logs[k] = v;
  if (last_read != done) check_loss(logs.at("loss"));  // a callback stopped the epoch between reads
  return logs;
}

std::vector<std::pair<std::string, double>> Model::validate(const data::Dataset& validation, int64_t epoch,
                                                             const FitOptions& o, Logs& logs) {
  if (ddp_) ddp_->broadcast_buffers();  // every rank evaluates with rank 0's running statistics
  const Logs val = run_evaluation(validation, o.batch_size);
  if (!o.allow_nonfinite_loss && !std::isfinite(val.at("loss")))
    fail("fit: the validation loss is {} after epoch {} (the training loss was {}); training stopped before the "
         "epoch's callbacks, so nothing was saved for this epoch. Check the validation data for NaN or infinite "
         "values",
         nonfinite_words(val.at("loss")), epoch + 1, logs.count("loss") ? logs.at("loss") : NAN);
  std::vector<std::pair<std::string, double>> shown;
  for (auto& [k, v] : val) {
    logs["val_" + k] = v;
    // Shown as the training values are: the loss first, then the metrics.
    shown.emplace(k == "loss" ? shown.begin() : shown.end(), "val_" + k, v);
  }
  return shown;
}

Model& Model::distribute(dist::DdpOptions opts) {
  UseGuard use(*this, "distribute");
  NABLA_CHECK(opts.bucket_cap_mb > 0, "Model::distribute: bucket_cap_mb must be > 0, got {}", opts.bucket_cap_mb);
  dist::init();
  dist_opts_ = opts;
  return *this;
}

History Model::fit(const data::Dataset& train_in, FitOptions o) {
  UseGuard use(*this, "fit");
  if (!across_ranks()) return fit_here(train_in, o);
  // Any exception on one rank would leave the others waiting in the next collective: end the
  // whole job with this rank's message instead (mpirun returns non-zero within seconds).
  try {
    return fit_here(train_in, o);
  } catch (const std::exception& e) {
    dist::abort(fmt::format("Model::fit: {}", e.what()));
  }
}

History Model::fit_here(const data::Dataset& train_in, FitOptions o) {
  loss();  // compiled?
  const FitData d = fit_data(train_in, o);
  const bool shard = across_ranks();
  const bool main_rank = dist::rank() == 0;
  // verbose 0: nothing below a warning from this thread while fit runs, the callbacks' reports
  // included (debug raises nothing). Distributed: only rank 0 logs below a warning.
  const ScopedLogLevel quiet(o.verbose == 0 || (shard && !main_rank) ? LogLevel::warning : LogLevel::debug);
  std::vector<std::shared_ptr<Callback>> callbacks;
  for (auto& c : o.callbacks) {
    NABLA_CHECK(c.ptr != nullptr, "fit: a callback is null");
    if (shard && !main_rank && c.ptr->main_process_only()) continue;
    callbacks.push_back(c.ptr);
  }
  // The gradient averager of this fit: made here (after to() and compile(), whose tensors it
  // hooks) and dropped at the end, so the parameters carry no hooks outside fit.
  struct DdpScope {
    std::shared_ptr<dist::DistributedDataParallel>& p;
    ~DdpScope() { p.reset(); }
  } ddp_scope{ddp_};
  if (dist_opts_) {
    std::vector<Tensor> buffers;
    for (auto& [name, b] : module_->named_buffers()) buffers.push_back(b);
    ddp_ = std::make_shared<dist::DistributedDataParallel>(module_->parameters(), buffers, *dist_opts_);
  }
  auto make_loader = [&](const data::Dataset& data) {
    return data::DataLoader(data, {.batch_size = clamp_batch(o.batch_size, data.size()), .shuffle = o.shuffle,
                                   .seed = o.seed, .drop_last = o.drop_last, .device = device_,
                                   .num_shards = shard ? dist::world_size() : 1, .shard = shard ? dist::rank() : 0});
  };
  std::optional<data::DataLoader> loader;
  if (!o.epoch_data) loader.emplace(make_loader(d.train));

  stop_ = false;
  history_ = History{};
  for (auto& c : callbacks) c->on_train_begin(*this);
  for (int64_t epoch = o.initial_epoch; epoch < o.epochs && !stop_; ++epoch) {
    for (auto& c : callbacks) c->on_epoch_begin(*this, epoch);
    if (o.epoch_data) loader.emplace(make_loader(o.epoch_data(d.train, epoch)));
    loader->set_epoch(epoch);
    NABLA_ASSERT(loader->size() > 0);
    if (o.verbose == 1) log_at(LogLevel::info, "Epoch {}/{}", epoch + 1, o.epochs);
    ProgressBar bar(loader->size());
    if (o.verbose == 2) bar.set_interactive(false);

    Logs logs = train_epoch(*loader, epoch, o, callbacks, bar);
    bar.stop_clock();  // ms/step counts the training steps only
    std::vector<std::pair<std::string, double>> shown_after;
    if (d.validation) shown_after = validate(*d.validation, epoch, o, logs);
    logs["lr"] = optimizer().lr();
    epoch_ = epoch + 1;
    if (o.verbose == 2) log_at(LogLevel::info, "Epoch {}/{}", epoch + 1, o.epochs);
    if (o.verbose > 0) bar.finish(shown_after);
    for (auto& c : callbacks) c->on_epoch_end(*this, epoch, logs);
    history_.append(epoch, logs);
  }
  for (auto& c : callbacks) c->on_train_end(*this);
  return history_;
}

// ---- files -------------------------------------------------------------------------------------

std::vector<std::pair<std::string, Tensor>> Model::state_dict() const {
  UseGuard use(*this, "state_dict");
  auto out = module_->named_parameters();
  for (auto& nb : module_->named_buffers()) out.push_back(std::move(nb));
  return out;
}

void Model::notify_loaded() { module_->state_loaded(); }

void Model::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state, bool strict) {
  UseGuard use(*this, "load_state_dict");
  std::map<std::string, Tensor> given(state.begin(), state.end());
  std::vector<std::string> missing, unexpected, mismatched;
  const auto mine = state_dict();
  std::set<std::string> names;
  for (const auto& [name, t] : mine) {
    names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (!it->second.defined() || it->second.dtype() != t.dtype() || it->second.shape() != t.shape()) {
      mismatched.push_back(fmt::format("{} (given {} {}, model {} {})", name,
                                       it->second.defined() ? dtype_name(it->second.dtype()) : "undefined",
                                       it->second.defined() ? shape_str(it->second.shape()) : "", t.dtype(),
                                       shape_str(t.shape())));
    }
  }
  for (const auto& [name, t] : state)
    if (!names.count(name) && strict) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty())
    fail("load_state_dict: the state does not match {}: {} missing [{}], {} unexpected [{}], {} mismatched [{}]",
         module_->type_name(), missing.size(), join(missing), unexpected.size(), join(unexpected), mismatched.size(),
         join(mismatched));
  NoGrad no_grad;
  for (auto& [name, t] : mine) Tensor(t).copy_(given.at(name));
  notify_loaded();
}

std::string Model::metadata_architecture() const {
  json tensors = json::array();
  const size_t n_params = module_->named_parameters().size();
  size_t i = 0;
  for (const auto& [name, t] : state_dict())
    tensors.push_back({{"name", name},
                       {"kind", i++ < n_params ? "parameter" : "buffer"},
                       {"dtype", dtype_name(t.dtype())},
                       {"shape", t.shape()}});
  json j = {{"format", "nabla.model"}, {"version", 1}, {"type", module_->type_name()},
            {"model", module_->to_string()}, {"tensors", tensors}};
  if (built()) {
    j["input_shape"] = input_shape_;
    j["input_dtype"] = dtype_name(input_dtype_);
  }
  return j.dump();
}

std::string Model::metadata_training() const {
  const Optimizer& opt = optimizer();
  json hyper = json::object();
  for (const auto& [k, v] : opt.hyperparameters()) hyper[k] = v;
  const RngState rng = rng_state();
  json metrics = json::array();
  for (const auto& m : metrics_) metrics.push_back(m->name());
  json j = {{"epoch", epoch_},
            {"global_step", global_step_},
            {"loss", loss().name()},
            {"metrics", metrics},
            {"optimizer", {{"name", opt.name()}, {"lr", opt.lr()}, {"hyperparameters", hyper}}},
            {"rng_state", {{"seed", rng.seed}, {"offset", rng.offset}}}};
  return j.dump();
}

void Model::save(const std::string& path) const {
  UseGuard use(*this, "save");
  save_safetensors(path, state_dict(), {{kArchitectureKey, metadata_architecture()}});
}

void Model::save_checkpoint(const std::string& path) const {
  UseGuard use(*this, "save_checkpoint");
  auto tensors = state_dict();
  for (const auto& [name, t] : tensors)
    NABLA_CHECK(name.rfind(kOptimizerPrefix, 0) != 0,
                "save_checkpoint {}: the model's tensor '{}' has the name prefix kept for the optimizer's state", path,
                name);
  for (auto& [name, t] : optimizer().state()) tensors.emplace_back(kOptimizerPrefix + name, t);
  save_safetensors(path, tensors, {{kArchitectureKey, metadata_architecture()}, {kTrainingKey, metadata_training()}});
}

void Model::load(const std::string& path) {
  UseGuard use(*this, "load");
  load_file(path, false);
}
void Model::load_checkpoint(const std::string& path) {
  UseGuard use(*this, "load_checkpoint");
  load_file(path, true);
}

namespace {

// The training state of a checkpoint ("nabla.training"), every value checked.
struct TrainingState {
  double lr = 0;
  int64_t epoch = 0, global_step = 0;
  RngState rng;
};

// "'nabla.training' <key> is <value>, expected <what>" for `where` ("load_checkpoint <path>").
[[noreturn]] void bad_training_value(const std::string& where, const std::string& key, const json& v,
                                     const char* expected) {
  std::string text = v.dump();
  if (text.size() > 80) text = text.substr(0, 72) + fmt::format("... ({} bytes)", text.size());
  fail<IOError>("{}: '{}' {} is {}, expected {}", where, kTrainingKey, key, text, expected);
}

const json& training_field(const std::string& where, const json& obj, const std::string& prefix, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) fail<IOError>("{}: '{}' has no {}{}", where, kTrainingKey, prefix, key);
  return *it;
}

// A count: an integer in [0, 2^63).
int64_t training_count(const std::string& where, const json& obj, const char* key) {
  const json& v = training_field(where, obj, "", key);
  const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t{INT64_MAX}
                                         : v.is_number_integer() && v.get<int64_t>() >= 0;
  if (!ok) bad_training_value(where, key, v, "an integer in [0, 2^63)");
  return v.get<int64_t>();
}

// A non-negative integer that fits 64 bits (JSON parses those as unsigned).
uint64_t training_u64(const std::string& where, const json& obj, const std::string& prefix, const char* key) {
  const json& v = training_field(where, obj, prefix, key);
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    bad_training_value(where, prefix + key, v, "an integer in [0, 2^64)");
  return v.get<uint64_t>();
}

// Parses and checks "nabla.training" as save_checkpoint writes it.
TrainingState parse_training(const std::string& where, const std::string& text, const char* optimizer_name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail<IOError>("{}: '{}' is not JSON: {}", where, kTrainingKey, e.what());
  }
  if (!j.is_object()) fail<IOError>("{}: '{}' is {}, expected a JSON object", where, kTrainingKey, j.type_name());
  TrainingState s;
  s.epoch = training_count(where, j, "epoch");
  s.global_step = training_count(where, j, "global_step");
  const json& opt = training_field(where, j, "", "optimizer");
  if (!opt.is_object()) bad_training_value(where, "optimizer", opt, "an object");
  const json& name = training_field(where, opt, "optimizer.", "name");
  if (!name.is_string()) bad_training_value(where, "optimizer.name", name, "a string");
  NABLA_CHECK(name.get<std::string>() == optimizer_name, "{}: written by the {} optimizer, the model is compiled with {}",
              where, name.get<std::string>(), optimizer_name);
  const json& lr = training_field(where, opt, "optimizer.", "lr");
  if (!lr.is_number() || !std::isfinite(lr.get<double>()) || lr.get<double>() < 0)
    bad_training_value(where, "optimizer.lr", lr, "a finite number >= 0");
  s.lr = lr.get<double>();
  if (auto h = opt.find("hyperparameters"); h != opt.end()) {
    if (!h->is_object()) bad_training_value(where, "optimizer.hyperparameters", *h, "an object");
    for (const auto& [k, v] : h->items())
      if (!v.is_number() || !std::isfinite(v.get<double>()))
        bad_training_value(where, "optimizer.hyperparameters." + k, v, "a finite number");
  }
  const json& rng = training_field(where, j, "", "rng_state");
  if (!rng.is_object()) bad_training_value(where, "rng_state", rng, "an object {\"seed\", \"offset\"}");
  s.rng.seed = training_u64(where, rng, "rng_state.", "seed");
  s.rng.offset = training_u64(where, rng, "rng_state.", "offset");
  return s;
}

}  // namespace

void Model::load_file(const std::string& path, bool with_optimizer) {
  const char* who = with_optimizer ? "load_checkpoint" : "load";
  const std::string where = fmt::format("{} {}", who, path);
  try {
    load_file_checked(path, with_optimizer, where);
  } catch (const Error& e) {
    // Every error names the file: those of the optimizer's checks do not by themselves.
    const std::string msg = e.what();
    if (msg.rfind(where + ":", 0) == 0 || msg.rfind("safetensors " + path + ":", 0) == 0) throw;
    e.rethrow_with(fmt::format("{}: {}", where, msg));
  }
}

// Reads the file once (one open descriptor: the header, then the data, checked by its CRC, of
// one version of the file, however often another process renames a new one over `path`),
// checks names, dtypes, shapes and every training value, builds the new state aside, and only
// then changes the model: a file that fails any check leaves parameters, buffers, optimizer
// state, counters and the random generator as they were.
void Model::load_file_checked(const std::string& path, bool with_optimizer, const std::string& where) {
  const SafetensorsReader reader(path);
  const SafetensorsHeader& header = reader.header();
  std::vector<std::string> missing, unexpected, mismatched;
  const auto mine = state_dict();
  std::set<std::string> names;
  for (const auto& [name, t] : mine) {
    names.insert(name);
    const SafetensorsEntry* e = header.find(name);
    if (!e)
      missing.push_back(name);
    else if (e->dtype != t.dtype() || e->shape != t.shape())
      mismatched.push_back(fmt::format("{} (file {} {}, model {} {})", name, e->dtype, shape_str(e->shape), t.dtype(),
                                       shape_str(t.shape())));
  }
  // The training state, parsed and checked before anything changes.
  TrainingState training;
  if (with_optimizer) {
    const Optimizer& opt = optimizer();
    auto it = header.metadata.find(kTrainingKey);
    NABLA_CHECK(it != header.metadata.end(), "{}: no '{}' metadata; the file holds weights only (use load)", where,
                kTrainingKey);
    training = parse_training(where, it->second, opt.name());
  }
  const std::string prefix = kOptimizerPrefix;
  const size_t n_params = with_optimizer ? optimizer().params().size() : 0;
  for (const SafetensorsEntry& e : header.tensors) {
    if (names.count(e.name)) continue;
    if (e.name.rfind(prefix, 0) != 0) {
      unexpected.push_back(e.name);
      continue;
    }
    if (!with_optimizer) continue;  // load(): weights only
    const std::string rest = e.name.substr(prefix.size());
    const size_t dot = rest.find('.');
    const std::string index = rest.substr(0, dot);
    const bool numeric = !index.empty() && index.size() < 10 && index.find_first_not_of("0123456789") == std::string::npos;
    if (!numeric || dot == std::string::npos || std::stoul(index) >= n_params) {
      unexpected.push_back(e.name);
      continue;
    }
    const Tensor& p = optimizer().params()[std::stoul(index)];
    const bool is_step = rest.substr(dot + 1) == "step";
    if (is_step ? (e.dtype != DType::int64 || !e.shape.empty()) : (e.dtype != p.dtype() || e.shape != p.shape()))
      mismatched.push_back(fmt::format("{} (file {} {}, expected {} {})", e.name, e.dtype, shape_str(e.shape),
                                       is_step ? DType::int64 : p.dtype(), is_step ? "[]" : shape_str(p.shape())));
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty())
    fail("{}: the file does not match the model {}: {} missing [{}], {} unexpected [{}], {} mismatched [{}]", where,
         module_->type_name(), missing.size(), join(missing), unexpected.size(), join(unexpected), mismatched.size(),
         join(mismatched));

  // The data, from the same descriptor, checked against its CRC; then the new values, on the
  // model's devices, aside.
  SafetensorsFile file = reader.read();
  std::map<std::string, Tensor> loaded(file.tensors.begin(), file.tensors.end());
  std::vector<Tensor> values;
  values.reserve(mine.size());
  for (const auto& [name, t] : mine) values.push_back(loaded.at(name).to(t.device()));
  std::vector<std::pair<std::string, Tensor>> state;
  if (with_optimizer)
    for (auto& [name, t] : file.tensors)
      if (name.rfind(prefix, 0) == 0) state.emplace_back(name.substr(prefix.size()), t);

  // Commit. load_state checks every entry before it changes the optimizer, so it is the one
  // step that may still refuse the file; nothing after it can fail on the file's contents.
  if (with_optimizer) optimizer().load_state(state);
  {
    NoGrad no_grad;
    for (size_t i = 0; i < mine.size(); ++i) Tensor(mine[i].second).copy_(values[i]);
  }
  notify_loaded();
  if (with_optimizer) {
    optimizer().set_lr(training.lr);
    epoch_ = training.epoch;
    global_step_ = training.global_step;
    set_rng_state(training.rng);
  }
}

}  // namespace nabla
