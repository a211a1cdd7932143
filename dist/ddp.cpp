#include <nabla/dist/ddp.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/foreach.h>
#include <nabla/dist/dist.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

namespace nabla::dist {

namespace {

using Clock = std::chrono::steady_clock;

std::string describe(const Tensor& t) {
  return fmt::format("{} {} on {}", t.dtype(), shape_str(t.shape()), t.device().is_cpu() ? "CPU" : "CUDA");
}

}  // namespace

struct DistributedDataParallel::Impl {
  struct Bucket {
    std::vector<int> params;
    Tensor buffer;              // the gradients, flat, in params' order
    std::vector<Tensor> views;  // views[k]: params[k]'s part of buffer, in its shape
    int pending = 0;            // parameters not yet ready in this step
    bool launched = false;
    Work work;
  };

  std::vector<Tensor> params, frozen, buffers;
  std::vector<int> bucket_of;
  std::vector<char> ready;
  std::vector<Bucket> buckets;
  std::vector<uint64_t> hooks;
  int next_launch = 0;
  int world = 1;
  double weight = 1;
  bool record = false;
  std::vector<DdpEvent> timeline;

  void note(const char* what, int b) {
    if (record) timeline.push_back({what, b, Clock::now()});
  }

  // The parameters' descriptions, compared across ranks before anything else moves: a model
  // built differently on one rank would otherwise average unrelated numbers, or deadlock.
  void check_same_everywhere() const {
    std::string mine = fmt::format("{} parameters", params.size());
    for (size_t i = 0; i < params.size(); ++i) mine += fmt::format("\n  {}: {}", i, describe(params[i]));
    const std::vector<std::string> all = allgather_strings(mine);
    for (int r = 1; r < static_cast<int>(all.size()); ++r) {
      if (all[r] == all[0]) continue;
      // The first line that differs, for the message; the whole lists can be long.
      auto lines = [](const std::string& s) {
        std::vector<std::string> v;
        size_t a = 0;
        while (a <= s.size()) {
          size_t b = s.find('\n', a);
          if (b == std::string::npos) b = s.size();
          v.push_back(s.substr(a, b - a));
          a = b + 1;
        }
        return v;
      };
      const auto l0 = lines(all[0]), lr = lines(all[r]);
      size_t k = 0;
      while (k < l0.size() && k < lr.size() && l0[k] == lr[k]) ++k;
      fail<CollectiveError>(
          "DistributedDataParallel: the parameters differ between ranks (every rank must build the same "
          "model): rank 0 has {}, rank {} has {}; first difference: rank 0: '{}', rank {}: '{}'",
          l0[0], r, lr[0], k < l0.size() ? l0[k] : "(no more)", r, k < lr.size() ? lr[k] : "(no more)");
    }
  }

  void make_buckets(double cap_mb) {
    const double cap_bytes = cap_mb * 1024 * 1024;
    std::map<std::pair<int, std::string>, int> open;  // (dtype, device) -> bucket being filled
    std::vector<double> bytes;
    bucket_of.assign(params.size(), -1);
    for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
      const Tensor& p = params[i];
      const auto key = std::make_pair(static_cast<int>(p.dtype()), fmt::format("{}", p.device()));
      const double nb = static_cast<double>(p.numel()) * static_cast<double>(dtype_size(p.dtype()));
      auto it = open.find(key);
      if (it == open.end() || (bytes[it->second] > 0 && bytes[it->second] + nb > cap_bytes)) {
        buckets.emplace_back();
        bytes.push_back(0);
        it = open.insert_or_assign(key, static_cast<int>(buckets.size()) - 1).first;
      }
      buckets[it->second].params.push_back(i);
      bytes[it->second] += nb;
      bucket_of[i] = it->second;
    }
    for (Bucket& b : buckets) {
      int64_t n = 0;
      for (int i : b.params) n += params[i].numel();
      const Tensor& p0 = params[b.params[0]];
      b.buffer = zeros({n}, TensorOptions{.dtype = p0.dtype(), .device = p0.device()});
      int64_t off = 0;
      for (int i : b.params) {
        b.views.push_back(b.buffer.slice(0, off, off + params[i].numel()).view(params[i].shape()));
        off += params[i].numel();
      }
      b.pending = static_cast<int>(b.params.size());
    }
  }

  void launch(int bi) {
    Bucket& b = buckets[bi];
    NoGrad no_grad;
    std::vector<Tensor> dst, src;
    for (size_t k = 0; k < b.params.size(); ++k) {
      Tensor g = params[b.params[k]].grad();
      if (g.defined()) {
        dst.push_back(b.views[k]);
        src.push_back(g);
      } else {
        b.views[k].fill_(0);  // a parameter this rank's batch did not use: a zero gradient
      }
    }
    if (!dst.empty()) foreach::copy_(dst, src);
    if (weight != 1) foreach::mul_({b.buffer}, weight);
    b.work = allreduce_async(b.buffer, ReduceOp::sum);
    b.launched = true;
    note("launch", bi);
  }

  void launch_ready_in_order() {
    while (next_launch < static_cast<int>(buckets.size()) && buckets[next_launch].pending == 0)
      launch(next_launch++);
  }

  void on_ready(int i) {
    if (world == 1) return;
    NABLA_CHECK(!ready[i],
                "DistributedDataParallel: parameter {} ({}) got a second gradient before synchronize(); call "
                "synchronize() after every backward (gradient accumulation over several backwards is not "
                "supported)",
                i, describe(params[i]));
    ready[i] = 1;
    Bucket& b = buckets[bucket_of[i]];
    if (--b.pending == 0) {
      note("ready", bucket_of[i]);
      launch_ready_in_order();
    }
  }

  void synchronize() {
    if (world == 1) return;
    for (size_t i = 0; i < params.size(); ++i) {
      if (ready[i]) continue;
      ready[i] = 1;
      Bucket& b = buckets[bucket_of[i]];
      if (--b.pending == 0) note("ready", bucket_of[i]);
    }
    launch_ready_in_order();
    NoGrad no_grad;
    for (int bi = 0; bi < static_cast<int>(buckets.size()); ++bi) {
      Bucket& b = buckets[bi];
      b.work.wait();
      if (record) timeline.push_back({"done", bi, Clock::now(), b.work.started(), b.work.finished()});
      std::vector<Tensor> dst, src;
      for (size_t k = 0; k < b.params.size(); ++k) {
        Tensor& p = params[b.params[k]];
        Tensor g = p.grad();
        if (!g.defined()) {
          p.set_grad(b.views[k].clone());
        } else {
          dst.push_back(g);
          src.push_back(b.views[k]);
        }
      }
      if (!dst.empty()) {
        foreach::copy_(dst, src);
        for (Tensor& g : dst) g.bump_version();
      }
      b.work = Work();
      b.launched = false;
      b.pending = static_cast<int>(b.params.size());
    }
    std::fill(ready.begin(), ready.end(), 0);
    next_launch = 0;
  }

  void broadcast_all(const std::vector<Tensor>& ts) {
    if (world == 1) return;
    NoGrad no_grad;
    std::vector<Work> works;
    for (const Tensor& t : ts) works.push_back(broadcast_async(t, 0));
    for (Work& w : works) w.wait();
    for (const Tensor& t : ts) Tensor(t).bump_version();
  }
};

DistributedDataParallel::DistributedDataParallel(std::vector<Tensor> parameters, std::vector<Tensor> buffers,
                                                 DdpOptions opts)
    : impl_(std::make_unique<Impl>()) {
  NABLA_CHECK(opts.bucket_cap_mb > 0, "DistributedDataParallel: bucket_cap_mb must be > 0, got {}",
              opts.bucket_cap_mb);
  init();
  Impl& m = *impl_;
  for (size_t i = 0; i < parameters.size(); ++i) {
    NABLA_CHECK(parameters[i].defined(), "DistributedDataParallel: parameter {} is undefined", i);
    NABLA_CHECK(parameters[i].is_leaf(),
                "DistributedDataParallel: parameter {} ({}) is the output of an op, not a leaf", i,
                describe(parameters[i]));
    if (parameters[i].requires_grad()) m.params.push_back(parameters[i]);
    else m.frozen.push_back(parameters[i]);  // not averaged, but the same on every rank too
  }
  for (Tensor& b : buffers)
    if (b.defined()) m.buffers.push_back(b);
  m.world = world_size();
  m.weight = 1.0 / m.world;
  m.record = opts.record_timeline;
  m.ready.assign(m.params.size(), 0);
  if (m.world > 1) m.check_same_everywhere();
  m.make_buckets(opts.bucket_cap_mb);
  if (opts.broadcast_at_start) {
    m.broadcast_all(m.params);
    m.broadcast_all(m.frozen);
    m.broadcast_all(m.buffers);
  }
  Impl* self = impl_.get();
  // One process averages nothing: no hooks, so its backward is the plain one.
  for (size_t i = 0; m.world > 1 && i < m.params.size(); ++i) {
    const int idx = static_cast<int>(i);
    m.hooks.push_back(m.params[i].register_post_accumulate_grad_hook([self, idx](const Tensor&) { self->on_ready(idx); }));
  }
}

DistributedDataParallel::~DistributedDataParallel() {
  if (!impl_) return;
  for (size_t i = 0; i < impl_->hooks.size(); ++i) impl_->params[i].remove_post_accumulate_grad_hook(impl_->hooks[i]);
  // Collectives still in flight read the buffers: wait for them (their errors are dropped: a
  // destructor cannot report them, and the next collective reports a broken group anyway).
  for (auto& b : impl_->buckets) {
    try {
      b.work.wait();
    } catch (...) {
    }
  }
}

DistributedDataParallel::DistributedDataParallel(DistributedDataParallel&&) noexcept = default;
DistributedDataParallel& DistributedDataParallel::operator=(DistributedDataParallel&&) noexcept = default;

void DistributedDataParallel::synchronize() { impl_->synchronize(); }

void DistributedDataParallel::set_gradient_weight(double w) {
  NABLA_CHECK(std::isfinite(w) && w >= 0, "DistributedDataParallel::set_gradient_weight: weight must be finite and >= 0, got {}", w);
  impl_->weight = w;
}
double DistributedDataParallel::gradient_weight() const { return impl_->weight; }
void DistributedDataParallel::broadcast_buffers() { impl_->broadcast_all(impl_->buffers); }
void DistributedDataParallel::broadcast_parameters() {
  impl_->broadcast_all(impl_->params);
  impl_->broadcast_all(impl_->frozen);
  impl_->broadcast_all(impl_->buffers);
}
int DistributedDataParallel::num_buckets() const { return static_cast<int>(impl_->buckets.size()); }
std::vector<int> DistributedDataParallel::bucket_parameters(int b) const {
  NABLA_CHECK_INDEX(b >= 0 && b < num_buckets(), "DistributedDataParallel::bucket_parameters: bucket {} of {}", b,
                    num_buckets());
  return impl_->buckets[b].params;
}
const std::vector<DdpEvent>& DistributedDataParallel::timeline() const { return impl_->timeline; }
void DistributedDataParallel::clear_timeline() { impl_->timeline.clear(); }

}  // namespace nabla::dist
