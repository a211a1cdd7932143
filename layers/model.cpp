#include <nabla/layers/model.h>

#include <nabla/core/autograd.h>
#include <nabla/core/data/dataloader.h>
#include <nabla/core/error.h>
#include <nabla/core/io/safetensors.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/shape.h>
#include <nabla/layers/progress.h>
#include <nabla/optim/clip.h>

#include <nlohmann/json.hpp>

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

std::vector<std::pair<std::string, double>> Model::running_logs(const Tensor& loss_sum, int64_t seen) const {
  std::vector<std::pair<std::string, double>> out;
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
  data::DataLoader loader(data, {.batch_size = batch_size, .shuffle = false, .device = device_});
  for (auto& m : metrics_) m->reset();
  Tensor loss_sum;
  int64_t seen = 0;
  for (auto& batch : loader) {
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
    fmt::print(opts.out, "{}\n", line);
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
  for (int64_t b = 0; b < n; b += batch_size) {
    Tensor xb = x.slice(0, b, std::min(n, b + batch_size));
    if (xb.device() != device_) xb = xb.to(device_);
    outs.push_back(module_->forward(xb));
  }
  NABLA_CHECK(!outs.empty(), "predict: x has no samples ({})", shape_str(x.shape()));
  return outs.size() == 1 ? outs[0] : concat(outs, 0);
}

History Model::fit(const data::Dataset& train_in, FitOptions o) {
  UseGuard use(*this, "fit");
  loss();  // compiled?
  NABLA_CHECK(o.batch_size > 0, "fit: batch_size must be > 0, got {}", o.batch_size);
  NABLA_CHECK(o.log_every > 0, "fit: log_every must be > 0, got {}", o.log_every);
  NABLA_CHECK(o.initial_epoch >= 0 && o.epochs >= o.initial_epoch,
              "fit: needs 0 <= initial_epoch <= epochs, got initial_epoch {}, epochs {}", o.initial_epoch, o.epochs);
  NABLA_CHECK(o.validation_split >= 0 && o.validation_split < 1, "fit: validation_split {} is outside [0, 1)",
              o.validation_split);
  NABLA_CHECK(!(o.validation && o.validation_split > 0), "fit: give validation data or validation_split, not both");
  data::Dataset train = train_in;
  std::optional<data::Dataset> validation = o.validation;
  if (o.validation_split > 0) {
    const int64_t n = train_in.size();
    const auto n_val = static_cast<int64_t>(static_cast<double>(n) * o.validation_split);
    NABLA_CHECK(n_val > 0 && n_val < n, "fit: validation_split {} of {} samples leaves {} for validation", o.validation_split,
                n, n_val);
    train = train_in.subset(0, n - n_val);
    validation = train_in.subset(n - n_val, n);
  }
  NABLA_CHECK(train.x.defined() && train.x.dim() >= 1, "fit: the training inputs must be [N, ...]");
  shape_pass(Shape(train.x.shape().begin() + 1, train.x.shape().end()), train.x.dtype(), "fit");

  std::vector<std::shared_ptr<Callback>> callbacks;
  for (auto& c : o.callbacks) {
    NABLA_CHECK(c.ptr != nullptr, "fit: a callback is null");
    callbacks.push_back(c.ptr);
  }
  const data::DataLoaderOptions loader_opts{
      .batch_size = o.batch_size, .shuffle = o.shuffle, .seed = o.seed, .drop_last = o.drop_last, .device = device_};
  std::optional<data::DataLoader> loader;
  if (!o.epoch_data) loader.emplace(train, loader_opts);

  stop_ = false;
  history_ = History{};
  Optimizer& opt = optimizer();
  const std::vector<Tensor> params = opt.params();
  for (auto& c : callbacks) c->on_train_begin(*this);
  for (int64_t epoch = o.initial_epoch; epoch < o.epochs && !stop_; ++epoch) {
    for (auto& c : callbacks) c->on_epoch_begin(*this, epoch);
    if (o.epoch_data) loader.emplace(o.epoch_data(train, epoch), loader_opts);
    loader->set_epoch(epoch);
    const int64_t steps = loader->size();
    if (o.verbose == 1) fmt::print(o.out, "Epoch {}/{}\n", epoch + 1, o.epochs);
    ProgressBar bar(steps, o.out);
    if (o.verbose == 2) bar.set_interactive(false);
    module_->train();
    for (auto& m : metrics_) m->reset();
    Tensor loss_sum;
    int64_t seen = 0, done = 0;
    std::vector<std::pair<std::string, double>> shown;
    Logs read;
    for (auto& batch : *loader) {
      BatchInfo info{.epoch = epoch, .batch = done, .step = global_step_, .size = batch.size(), .loss = {}, .logs = nullptr};
      for (auto& c : callbacks) c->on_batch_begin(*this, info);
      Tensor out = module_->forward(batch.x);
      Tensor l = loss()(out, batch.y);
      if (Tensor reg = regularization_loss(); reg.defined()) l = l + reg.to(l.dtype());
      opt.zero_grad();
      l.backward();
      if (compile_opts_.clip_value > 0) clip_grad_value(params, compile_opts_.clip_value);
      if (compile_opts_.clip_norm > 0) clip_grad_norm(params, compile_opts_.clip_norm);
      opt.step();
      ++global_step_;
      ++done;
      seen += batch.size();
      {
        NoGrad no_grad;
        Tensor weighted = l.detach().to(DType::float32) * static_cast<double>(batch.size());
        loss_sum = loss_sum.defined() ? loss_sum + weighted : weighted;
        Tensor out_d = out.detach();
        for (auto& m : metrics_) m->update(out_d, batch.y);
      }
      info.loss = l.detach();
      info.logs = nullptr;
      if (done % o.log_every == 0 || done == steps) {
        shown = running_logs(loss_sum, seen);
        read = Logs(shown.begin(), shown.end());
        info.logs = &read;
      }
      if (o.verbose > 0) bar.update(done, shown);
      for (auto& c : callbacks) c->on_batch_end(*this, info);
      if (stop_) break;
    }
    Logs logs;
    for (auto& [k, v] : running_logs(loss_sum, seen)) logs[k] = v;
    bar.stop_clock();  // ms/step counts the training steps only
    std::vector<std::pair<std::string, double>> extra;
    if (validation) {
      for (auto& [k, v] : run_evaluation(*validation, o.batch_size)) {
        logs["val_" + k] = v;
        // Shown as the training values are: the loss first, then the metrics.
        extra.emplace(k == "loss" ? extra.begin() : extra.end(), "val_" + k, v);
      }
    }
    logs["lr"] = opt.lr();
    epoch_ = epoch + 1;
    if (o.verbose == 2) fmt::print(o.out, "Epoch {}/{}\n", epoch + 1, o.epochs);
    if (o.verbose > 0) bar.finish(extra);
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

void Model::load_file(const std::string& path, bool with_optimizer) {
  const char* who = with_optimizer ? "load_checkpoint" : "load";
  const SafetensorsHeader header = read_safetensors_header(path);
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
  json training;
  if (with_optimizer) {
    const Optimizer& opt = optimizer();
    auto it = header.metadata.find(kTrainingKey);
    NABLA_CHECK(it != header.metadata.end(), "{} {}: no '{}' metadata; the file holds weights only (use load)", who,
                path, kTrainingKey);
    try {
      training = json::parse(it->second);
      const std::string saved = training.at("optimizer").at("name").get<std::string>();
      NABLA_CHECK(saved == opt.name(), "{} {}: written by the {} optimizer, the model is compiled with {}", who, path,
                  saved, opt.name());
      training.at("optimizer").at("lr").get<double>();
      training.at("epoch").get<int64_t>();
      training.at("global_step").get<int64_t>();
      training.at("rng_state").at("seed").get<uint64_t>();
      training.at("rng_state").at("offset").get<uint64_t>();
    } catch (const json::exception& e) {
      fail("{} {}: bad '{}' metadata: {}", who, path, kTrainingKey, e.what());
    }
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
    fail("{} {}: the file does not match the model {}: {} missing [{}], {} unexpected [{}], {} mismatched [{}]", who,
         path, module_->type_name(), missing.size(), join(missing), unexpected.size(), join(unexpected),
         mismatched.size(), join(mismatched));

  SafetensorsFile file = load_safetensors(path);
  std::map<std::string, Tensor> loaded(file.tensors.begin(), file.tensors.end());
  if (with_optimizer) {
    std::vector<std::pair<std::string, Tensor>> state;
    for (auto& [name, t] : file.tensors)
      if (name.rfind(prefix, 0) == 0) state.emplace_back(name.substr(prefix.size()), t);
    optimizer().load_state(state);  // checks everything before it changes anything
  }
  {
    NoGrad no_grad;
    for (auto& [name, t] : mine) Tensor(t).copy_(loaded.at(name));
  }
  notify_loaded();
  if (with_optimizer) {
    optimizer().set_lr(training["optimizer"]["lr"].get<double>());
    epoch_ = training["epoch"].get<int64_t>();
    global_step_ = training["global_step"].get<int64_t>();
    set_rng_state({training["rng_state"]["seed"].get<uint64_t>(), training["rng_state"]["offset"].get<uint64_t>()});
  }
}

}  // namespace nabla
