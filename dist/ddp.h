// DistributedDataParallel: one model trained on many processes, gradients averaged.
//
//   nabla::dist::init();                                  // under mpirun -np N
//   nabla::dist::DistributedDataParallel ddp(model.parameters(), model.buffers());
//   for (...) {                                           // each rank: its own shard of the data
//     Tensor loss = loss_fn(model(x), y);
//     opt.zero_grad();
//     loss.backward();                                    // buckets' allreduce start in here
//     ddp.synchronize();                                  // .grad() = the average over ranks
//     opt.step();
//   }
//
// Model::distribute() does all of this inside fit (train/model.h).
//
// At construction the parameters' shapes and dtypes are compared across ranks (a difference is
// a CollectiveError listing them), then rank 0's parameters and buffers are broadcast to every
// rank, so all start from the same weights.
//
// Gradients are averaged in buckets of about bucket_cap_mb MiB: the parameters in reverse order
// (a backward produces the last layer's gradients first), each bucket one dtype on one device.
// A hook on every parameter (Tensor::register_post_accumulate_grad_hook) marks it ready when the
// backward has finished its gradient; when every parameter of a bucket is ready, the gradients
// are copied into the bucket's flat buffer, scaled by this rank's weight, and the bucket's
// allreduce (sum) is launched at once, while the backward goes on with earlier layers. Buckets
// are launched in index order only (bucket 2 waits for bucket 1), since every rank must issue
// the same collectives in the same order. synchronize() launches what the backward left (a
// parameter that got no gradient counts as a zero gradient), waits, and copies the averages back
// into .grad(): every rank then holds the same gradients, so every optimizer, clipping and
// regularizer sees the averaged gradients and keeps the ranks' parameters equal.
//
// The weight of a rank is 1 / world_size() by default (equal batches: the mean of the ranks'
// mean gradients is the mean over the whole global batch). With unequal batches (the last batch
// of an epoch), set_gradient_weight(n_rank / n_global) keeps the result the gradient of the
// global batch's mean loss.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace nabla::dist {

struct DdpOptions {
  double bucket_cap_mb = 25;        // MiB of gradients per bucket (> 0); PyTorch's default
  bool broadcast_at_start = true;   // rank 0's parameters and buffers to every rank at construction
  bool record_timeline = false;     // keep a timeline of the buckets (timeline())
};

// One event of the timeline: "ready" (the bucket's last gradient is final), "launch" (its
// allreduce is queued), "done" (synchronize saw it complete; started/finished are the engine's
// own times for moving the data).
struct DdpEvent {
  std::string what;
  int bucket = 0;
  std::chrono::steady_clock::time_point at{};
  // "done" events: when the engine started and finished moving the bucket's data.
  std::chrono::steady_clock::time_point started{}, finished{};
};

class NABLA_API DistributedDataParallel {
 public:
  // The parameters to average (those that do not require grad are only broadcast at the start,
  // with the buffers: running statistics).
  explicit DistributedDataParallel(std::vector<Tensor> parameters, std::vector<Tensor> buffers = {},
                                   DdpOptions opts = {});
  ~DistributedDataParallel();
  DistributedDataParallel(DistributedDataParallel&&) noexcept;
  DistributedDataParallel& operator=(DistributedDataParallel&&) noexcept;
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // After backward, before clipping and the optimizer's step: every parameter's .grad() becomes
  // the weighted sum over ranks. Throws CollectiveError when a collective fails.
  void synchronize();
  // This rank's weight in the sum (default 1 / world_size()), for the next synchronize and on.
  void set_gradient_weight(double w);
  double gradient_weight() const;
  // Copies rank 0's buffers (running statistics) to every rank: before evaluating or saving.
  void broadcast_buffers();
  // Copies rank 0's parameters and buffers to every rank.
  void broadcast_parameters();

  int num_buckets() const;
  // Parameter indices (into the constructor's list of those that require grad) of bucket b.
  std::vector<int> bucket_parameters(int b) const;
  const std::vector<DdpEvent>& timeline() const;
  void clear_timeline();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nabla::dist
