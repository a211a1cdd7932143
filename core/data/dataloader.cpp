#include <nabla/core/data/dataloader.h>

#include <nabla/core/error.h>

#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

namespace nabla::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) without modulo bias. std::uniform_int_distribution would do, but its
// algorithm is implementation-defined and the order must not depend on the standard library.
uint64_t uniform_below(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    uint64_t r = gen();
    if (r >= threshold) return r % bound;
  }
}

size_t row_bytes(const Tensor& t) {
  return static_cast<size_t>(t.numel() / t.size(0)) * dtype_size(t.dtype());
}

// out rows = t rows at order[begin..end), as a new contiguous CPU tensor.
Tensor gather(const Tensor& t, size_t rbytes, const int64_t* idx, int64_t count, bool in_order) {
  Shape shape = t.shape();
  shape[0] = count;
  Tensor out = Tensor::empty(shape, {.dtype = t.dtype()});
  if (count == 0 || rbytes == 0) return out;
  const char* src = static_cast<const char*>(t.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  if (in_order) {  // idx is a contiguous run: one copy
    std::memcpy(dst, src + static_cast<size_t>(idx[0]) * rbytes, static_cast<size_t>(count) * rbytes);
  } else {
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(dst + static_cast<size_t>(i) * rbytes, src + static_cast<size_t>(idx[i]) * rbytes,
                  rbytes);
  }
  return out;
}

}  // namespace

DataLoader::DataLoader(const Dataset& data, DataLoaderOptions opts) : opts_(opts) {
  NABLA_CHECK(opts.batch_size > 0, "DataLoader: batch_size must be > 0, got {}", opts.batch_size);
  NABLA_CHECK(opts.num_shards > 0 && opts.shard >= 0 && opts.shard < opts.num_shards,
              "DataLoader: needs num_shards > 0 and 0 <= shard < num_shards, got shard {} of {}", opts.shard,
              opts.num_shards);
  NABLA_CHECK(opts.batch_size <= std::numeric_limits<int64_t>::max() / opts.num_shards,
              "DataLoader: batch_size {} times num_shards {} does not fit in 64 bits", opts.batch_size,
              opts.num_shards);
  n_ = data.size();  // checks that x and y agree
  NABLA_CHECK(n_ > 0, "DataLoader: the dataset is empty (x {})", shape_str(data.x.shape()));
  NABLA_CHECK(data.x.device().is_cpu() && data.y.device().is_cpu(),
              "DataLoader: the dataset must be on the CPU, x is on {} and y on {}",
              data.x.device(), data.y.device());
  x_ = data.x.is_contiguous() ? data.x : data.x.contiguous();
  y_ = data.y.is_contiguous() ? data.y : data.y.contiguous();
  x_row_bytes_ = row_bytes(x_);
  y_row_bytes_ = row_bytes(y_);
}

int64_t DataLoader::size() const {
  const int64_t bs = opts_.batch_size * opts_.num_shards;
  return opts_.drop_last ? n_ / bs : n_ / bs + (n_ % bs != 0);  // not (n + bs - 1) / bs: it overflows
}

void DataLoader::set_epoch(int64_t e) {
  NABLA_CHECK(e >= 0, "DataLoader::set_epoch: epoch must be >= 0, got {}", e);
  epoch_ = e;
}

std::vector<int64_t> DataLoader::permutation(int64_t n, uint64_t seed, int64_t epoch) {
  NABLA_CHECK(n >= 0, "DataLoader::permutation: n must be >= 0, got {}", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  // mt19937_64's output sequence is fixed by the standard; seed it from (seed, epoch) mixed so
  // that nearby pairs such as (1, 0) and (0, 1) give unrelated streams.
  std::mt19937_64 gen(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    auto j = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

DataLoader::Iterator DataLoader::begin() {
  if (opts_.shuffle) {
    order_ = permutation(n_, opts_.seed, epoch_);
  } else if (static_cast<int64_t>(order_.size()) != n_) {
    order_.resize(static_cast<size_t>(n_));
    std::iota(order_.begin(), order_.end(), int64_t{0});
  }
  ++epoch_;
  return Iterator(this, 0);
}

Batch DataLoader::batch(int64_t i) const {
  NABLA_CHECK(!order_.empty(), "DataLoader::batch: no epoch started yet; call begin() first");
  NABLA_CHECK_INDEX(0 <= i && i < size(), "DataLoader::batch: index {} out of range [0, {})", i, size());
  const int64_t global = opts_.batch_size * opts_.num_shards;
  int64_t first = i * global;
  int64_t count = std::min(global, n_ - first);
  if (opts_.num_shards > 1) {
    // This shard's part of the global batch: rows [s m / S, (s + 1) m / S), in 128 bits since
    // s m may exceed int64 where m is near batch_size * num_shards.
    const __int128 m = count, S = opts_.num_shards, s = opts_.shard;
    const auto lo = static_cast<int64_t>(s * m / S), hi = static_cast<int64_t>((s + 1) * m / S);
    first += lo;
    count = hi - lo;
  }
  const int64_t* idx = order_.data() + first;
  Batch b{gather(x_, x_row_bytes_, idx, count, !opts_.shuffle),
          gather(y_, y_row_bytes_, idx, count, !opts_.shuffle)};
  if (!opts_.device.is_cpu()) {
    b.x = b.x.to(opts_.device);
    b.y = b.y.to(opts_.device);
  }
  return b;
}

int64_t DataLoader::global_batch_size(int64_t i) const {
  NABLA_CHECK_INDEX(0 <= i && i < size(), "DataLoader::global_batch_size: index {} out of range [0, {})", i, size());
  const int64_t global = opts_.batch_size * opts_.num_shards;
  return std::min(global, n_ - i * global);
}

Batch& DataLoader::Iterator::operator*() const {
  NABLA_CHECK(loader_ != nullptr, "DataLoader::Iterator: dereferencing a default iterator");
  if (!loaded_) {
    batch_ = loader_->batch(index_);
    loaded_ = true;
  }
  return batch_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  ++index_;
  batch_ = Batch{};
  loaded_ = false;
  return *this;
}

}  // namespace nabla::data
