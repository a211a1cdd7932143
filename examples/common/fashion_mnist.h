// Shared by the Fashion-MNIST examples (mlp, cnn, lstm_rows): the data standardized with the
// training set's statistics, the per-epoch augmentation, the learning-rate schedule, and the
// end of a run (weights, history, the RESULT line). Each example calls compile, fit and
// evaluate itself.
#pragma once

#include "flags.h"
#include "history_plot.h"
#include "output.h"

#include <nabla/nabla.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace examples {

// The command-line settings every Fashion-MNIST example has.
struct RunArgs {
  int epochs = 20;
  int64_t batch = 128;
  double lr = 1e-3;
  bool augment = true;
  std::string device = "best";
  std::string data;  // folder of the IDX files; empty: $NABLA_FASHION_MNIST or Debian's
  uint64_t seed = 0;
  int64_t train_limit = 0;  // 0: the whole training set
  std::string out = ".";    // the folder for <stem>.safetensors and the history
  bool distributed = false;  // data parallel over the processes of an mpirun job
};

// Whether this process prints and writes files: rank 0 of a distributed run, or the only one.
inline bool main_process(const RunArgs& a) { return !a.distributed || nabla::dist::rank() == 0; }

// The device of --device; distributed, every process on this machine takes its own GPU
// (local rank modulo the GPUs), and MPI starts here (nabla::dist::init).
inline nabla::Device run_device(const RunArgs& a) {
  nabla::Device d = nabla::Device::parse(a.device);
  if (a.distributed) {
    nabla::dist::init();
    if (d.is_cuda()) d = nabla::Device::cuda(nabla::dist::local_rank() % nabla::device_count(nabla::Device::Kind::CUDA));
  }
  return d;
}

// The bounds keep every later product (steps per epoch times epochs, batch times image size)
// far from overflowing.
inline void add_run_flags(Flags& flags, RunArgs* a) {
  flags.add("--epochs", &a->epochs, "N", {.min = 1, .max = 100000}, "passes over the training set")
      .add("--batch", &a->batch, "N", {.min = 1, .max = 65536}, "images per training step")
      .add("--lr", &a->lr, "X", {.min = 0, .min_open = true}, "peak learning rate of Adam (warm-up, cosine decay)")
      .add("--augment", &a->augment, "shift (2 px) and mirror the training images, fresh each epoch")
      .add("--device", &a->device, "best|cpu|cuda", "where to train; best: CUDA when there is a GPU")
      .add("--data", &a->data, "DIR", "folder of the IDX files")
      .add("--seed", &a->seed, "N", "seed of the weights, the shuffling and the augmentation")
      .add("--train-limit", &a->train_limit, "N", {.min = 0, .max = 1000000000},
           "train on the first N images only (0: all)")
      .add("--out", &a->out, "DIR", "folder for the weights, the history and its plot")
      .add("--distributed", &a->distributed,
           "data parallel on every process of the job: mpirun -np N <program> --distributed (--batch is per "
           "process; rank 0 prints and writes the files)")
      .default_text("--data", "$NABLA_FASHION_MNIST, else /usr/share/datasets/fashion-mnist");
}

// A copy of the images (float32 [N, 1, 28, 28] on the CPU), each shifted by a random (dy, dx) in
// [-2, 2]^2 (zeros shifted in) and mirrored left-right with probability 1/2 (clothing is
// left-right symmetric).
inline nabla::Tensor shift_and_mirror(const nabla::Tensor& x, std::mt19937_64& gen) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const std::vector<float> src = x.to_vector<float>();
  std::vector<float> dst(src.size(), 0.0f);
  std::uniform_int_distribution<int> shift(-2, 2), coin(0, 1);
  for (int64_t i = 0; i < n; ++i) {
    const int dy = shift(gen), dx = shift(gen);
    const bool flip = coin(gen) == 1;
    const float* s = src.data() + i * h * w;
    float* d = dst.data() + i * h * w;
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y - dy;
      if (sy < 0 || sy >= h) continue;
      for (int64_t xx = 0; xx < w; ++xx) {
        const int64_t sx = (flip ? w - 1 - xx : xx) - dx;
        if (sx >= 0 && sx < w) d[y * w + xx] = s[sy * w + sx];
      }
    }
  }
  return nabla::from_vector(dst, x.shape());
}

struct FashionMnist {
  nabla::data::Dataset raw_train;  // pixels in [0, 1]
  nabla::data::Dataset test;       // standardized
  double mean = 0, stddev = 1;     // of the training pixels

  // fit's per-epoch data: the training images, freshly augmented (when on) and standardized.
  std::function<nabla::data::Dataset(const nabla::data::Dataset&, int64_t)> epoch_data(bool augment,
                                                                                       uint64_t seed) const {
    return [augment, seed, m = mean, s = stddev](const nabla::data::Dataset& train, int64_t epoch) {
      nabla::data::Dataset d = train;
      if (augment) {
        std::mt19937_64 gen(seed * 1000 + static_cast<uint64_t>(epoch));
        d.x = shift_and_mirror(train.x, gen);
      }
      return d.normalize(m, s);
    };
  }
};

inline FashionMnist load_fashion_mnist(const RunArgs& a) {
  auto split = nabla::data::fashion_mnist(a.data);
  if (a.train_limit > 0) split.train = split.train.take(a.train_limit);
  FashionMnist d;
  d.mean = split.train.x.mean().item();
  d.stddev = std::sqrt(nabla::mean(nabla::pow(nabla::affine(split.train.x, 1, -d.mean), 2)).item());
  d.raw_train = split.train;
  d.test = split.test.normalize(d.mean, d.stddev);
  fmt::print("Fashion-MNIST: {} training and {} test images; pixel mean {:.4f}, std {:.4f}; augmentation {}\n",
             d.raw_train.size(), d.test.size(), d.mean, d.stddev, a.augment ? "shift 2 px + mirror" : "off");
  return d;
}

// A linear warm-up over half an epoch (at most a tenth of the run), then a cosine decay, step by
// step over the whole run.
inline nabla::CosineDecay warmup_cosine(const RunArgs& a, int64_t train_size) {
  const int64_t global_batch = a.batch * (a.distributed ? nabla::dist::world_size() : 1);
  const int64_t steps_per_epoch = (train_size + global_batch - 1) / global_batch;
  const int64_t total = steps_per_epoch * a.epochs;
  return {.initial_lr = a.lr, .total = total, .warmup = std::min<int64_t>(steps_per_epoch / 2, total / 10)};
}

// The end of a run, after the example's own fit and evaluate: saves <out>/<stem>.safetensors and
// the history, and prints the RESULT line. Returns the exit status: 0, or 1 when a file could
// not be written where asked (it then went to the temporary folder, as stderr says).
inline int save_and_report(nabla::Model& model, const nabla::History& history, double test_accuracy,
                           const RunArgs& a, const std::string& stem, std::chrono::steady_clock::time_point t0) {
  if (!main_process(a)) return 0;  // the same weights as rank 0's: it writes them
  const std::string base = a.out == "." ? stem : (std::filesystem::path(a.out) / stem).string();
  const Saved weights =
      save_with_fallback(base + ".safetensors", "weights", [&](const std::string& p) { model.save(p); });
  std::string history_files;
  const Saved hist = save_with_fallback(base + "_history.csv", "training history", [&](const std::string& p) {
    history_files = save_history(history, p.substr(0, p.size() - std::string("_history.csv").size()));
  });
  fmt::print("wrote {}, {}\n", weights.path, history_files);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("RESULT test_accuracy={:.4f} epochs={} seconds={:.1f} device={}{}\n", test_accuracy, a.epochs, seconds,
             model.device().is_cpu() ? "cpu" : "cuda",
             a.distributed ? fmt::format(" processes={}", nabla::dist::world_size()) : std::string());
  return weights.fell_back || hist.fell_back ? 1 : 0;
}

}  // namespace examples
