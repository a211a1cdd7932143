// DataLoader: mini-batches of a Dataset, shuffled per epoch, on the device of your choice.
//
//   nabla::data::DataLoader loader(data.train, {.batch_size = 128, .seed = 1});
//   for (int epoch = 0; epoch < 5; ++epoch)
//     for (auto& batch : loader) { ... batch.x: [B, 1, 28, 28], batch.y: [B] ... }
//
// Each call to begin() starts a new epoch. With shuffle on, epoch e visits the samples in a
// permutation drawn from (seed, e) only: the same seed gives the same sequence of epochs on every
// platform (the generator and Fisher-Yates shuffle are nabla's own, not the standard library's
// implementation-defined std::shuffle), and consecutive epochs differ. With shuffle off every
// epoch is 0, 1, ..., N-1.
//
// A batch is gathered row by row (memcpy) into new contiguous CPU tensors, then copied to
// options.device when that is not the CPU. The dataset must live on the CPU; the loader keeps
// its own handles to x and y, so it may outlive the Dataset object it was built from.
#pragma once

#include <nabla/export.h>

#include <nabla/core/data/dataset.h>
#include <nabla/core/tensor.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

namespace nabla::data {

struct DataLoaderOptions {
  int64_t batch_size = 32;  // > 0
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;   // drop the last batch when it has fewer than batch_size samples
  Device device = Device::cpu();
  // Data-parallel training: this loader is shard `shard` of `num_shards` (a rank of the process
  // group; every rank uses the same seed). The epoch's order is cut into global batches of
  // batch_size * num_shards samples, and batch i of shard s is its own contiguous part of global
  // batch i: rows [floor(s m / S), floor((s + 1) m / S)) of its m rows. The shards are disjoint
  // and together cover the epoch; every shard has the same size() (so every rank runs the same
  // number of steps); a shard's part of the last global batch may be smaller than the others',
  // or empty when that batch has fewer rows than there are shards. drop_last drops a last global
  // batch smaller than batch_size * num_shards.
  int64_t num_shards = 1;  // > 0
  int64_t shard = 0;       // in [0, num_shards)
};

struct Batch {
  Tensor x;  // [B, ...] rows of the dataset's x
  Tensor y;  // [B, ...] rows of the dataset's y
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

class NABLA_API DataLoader {
 public:
  // Throws nabla::Error on batch_size <= 0, an empty dataset, x/y sample counts that differ, or
  // a dataset not on the CPU.
  explicit DataLoader(const Dataset& data, DataLoaderOptions opts = {});

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;
    Batch& operator*() const;  // gathered on first access, then cached
    Batch* operator->() const { return &**this; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const Iterator& o) const { return index_ == o.index_; }

   private:
    friend class DataLoader;
    Iterator(const DataLoader* loader, int64_t index) : loader_(loader), index_(index) {}
    const DataLoader* loader_ = nullptr;
    int64_t index_ = 0;
    mutable Batch batch_;
    mutable bool loaded_ = false;
  };

  // Starts a new epoch (reshuffling when shuffle is on) and returns its first batch.
  Iterator begin();
  Iterator end() const { return Iterator(this, size()); }

  int64_t size() const;                      // batches per epoch
  int64_t num_samples() const { return n_; }  // samples in the dataset
  const DataLoaderOptions& options() const { return opts_; }

  // Epochs started so far; the next begin() uses this number for its permutation.
  int64_t epoch() const { return epoch_; }
  // Makes the next begin() start epoch e (e.g. to resume training).
  void set_epoch(int64_t e);
  // The sample order of the current epoch (the one the last begin() started).
  const std::vector<int64_t>& order() const { return order_; }
  // Batch i (0 <= i < size()) of the current epoch.
  Batch batch(int64_t i) const;
  // The number of samples in global batch i over all shards (batch(i).size() when num_shards is 1).
  int64_t global_batch_size(int64_t i) const;

  // The permutation of 0..n-1 that shuffling gives for (seed, epoch); platform independent.
  static std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch);

 private:
  Tensor x_, y_;
  DataLoaderOptions opts_;
  int64_t n_ = 0;
  size_t x_row_bytes_ = 0, y_row_bytes_ = 0;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace nabla::data
