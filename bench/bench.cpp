// Training-step throughput of the workloads in shared/bench/WORKLOADS.md, measured the way
// shared/bench/torch_reference.py measures PyTorch, so the two can be compared side by side:
// one step = forward, loss, backward, Adam update (lr 1e-3) on random inputs; time = median over
// 5 repetitions of --steps steps after --warmup steps, device synchronized before each clock read.
//
//   nabla-bench [--workload mlp,mlp_wide,cnn,cnn_fmnist,lstm,lstm_lm|all] [--device cpu|cuda|best] [--mode fp32|fast]
//               [--threads N (0: OpenMP's default; at most the processors)] [--steps 50] [--warmup 10]
//
// Prints one JSON line per run (keys as torch_reference.py's) and a table at the end.
#include <nabla/nabla.h>

#include "../examples/common/program.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace nb = nabla;

namespace {

enum class Input { features, tokens };
enum class Loss { cross_entropy, bce_logits, cross_entropy_per_step };

struct Workload {
  int64_t batch;
  std::function<std::shared_ptr<nb::Module>()> model;
  nb::Shape input;  // per sample (features: float32 values; tokens: int64 ids, one per step)
  int64_t classes;  // labels (or token ids) in [0, classes)
  Input kind = Input::features;
  Loss loss = Loss::cross_entropy;
};

constexpr int64_t kVocab = 10000;

std::map<std::string, Workload> workloads() {
  std::map<std::string, Workload> w;
  w["mlp"] = {128,
              [] {
                return std::make_shared<nb::Sequential>(nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 128),
                                                        nb::ReLU(), nb::Dense(128, 10));
              },
              {784},
              10};
  w["mlp_wide"] = {1024,
                   [] {
                     return std::make_shared<nb::Sequential>(nb::Dense(4096, 4096), nb::ReLU(), nb::Dense(4096, 4096),
                                                             nb::ReLU(), nb::Dense(4096, 4096), nb::ReLU(),
                                                             nb::Dense(4096, 1000));
                   },
                   {4096},
                   1000};
  w["cnn"] = {128,
              [] {
                return std::make_shared<nb::Sequential>(
                    nb::Conv2d(3, 32, 3), nb::ReLU(), nb::MaxPool2d(2), nb::Conv2d(32, 64, 3), nb::ReLU(),
                    nb::MaxPool2d(2), nb::Flatten(), nb::Dense(6 * 6 * 64, 128), nb::ReLU(), nb::Dense(128, 6));
              },
              {3, 32, 32},
              6};
  w["cnn_fmnist"] = {256,
                     [] {
                       return std::make_shared<nb::Sequential>(
                           nb::Conv2d(1, 32, 3, {.padding = 1}), nb::ReLU(), nb::MaxPool2d(2),
                           nb::Conv2d(32, 64, 3, {.padding = 1}), nb::ReLU(), nb::MaxPool2d(2), nb::Flatten(),
                           nb::Dense(7 * 7 * 64, 128), nb::ReLU(), nb::Dense(128, 10));
                     },
                     {1, 28, 28},
                     10};
  w["lstm"] = {128,
               [] {
                 return std::make_shared<nb::Sequential>(nb::Embedding(kVocab, 300),
                                                         nb::LSTM(300, 128, {.batch_first = true}),
                                                         nb::LastStep(true), nb::Dense(128, 1), nb::Flatten(0));
               },
               {100},
               kVocab,
               Input::tokens,
               Loss::bce_logits};
  w["lstm_lm"] = {64,
                  [] {
                    return std::make_shared<nb::Sequential>(
                        nb::Embedding(kVocab, 512), nb::LSTM(512, 1024, {.num_layers = 2, .batch_first = true}),
                        nb::Dense(1024, kVocab));
                  },
                  {64},
                  kVocab,
                  Input::tokens,
                  Loss::cross_entropy_per_step};
  return w;
}

struct Args {
  std::vector<std::string> workloads{"mlp", "mlp_wide"};
  std::string device = "best";
  std::string mode = "fp32";
  int threads = 0;
  int steps = 50;
  int warmup = 10;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  std::string list = "mlp,mlp_wide";
  examples::Flags flags("nabla-bench", "Measures training-step time.");
  flags.add("--workload,--workloads", &list, "mlp,...|all",
            "comma-separated workloads: mlp, mlp_wide, cnn, cnn_fmnist, lstm, lstm_lm, or all")
      .add("--device", &a.device, "cpu|cuda|best", "where to run; best: CUDA when there is a GPU")
      .add("--mode,--modes", &a.mode, "fp32|fast", "fast: TF32 tensor cores for float32 products on GPUs")
      .add("--threads", &a.threads, "N", {.min = 0}, "OpenMP threads (0: OpenMP's default)")
      .add("--steps", &a.steps, "N", {.min = 1, .max = 1000000}, "timed steps per repetition (5 repetitions)")
      .add("--warmup", &a.warmup, "N", {.min = 0, .max = 1000000}, "untimed steps first");
  flags.parse(argc, argv);
  // More OpenMP threads than processors only slows a run down, and far more crash the runtime.
  if (const int procs = omp_get_num_procs(); a.threads > procs)
    examples::Flags::fail("--threads", std::to_string(a.threads),
                          fmt::format("an integer from 0 (OpenMP's default) to {}, the processors of this machine",
                                      procs));
  if (a.mode != "fp32" && a.mode != "fast") examples::Flags::fail("--mode", a.mode, "fp32 or fast");
  const auto all = workloads();
  a.workloads.clear();
  for (const std::string& w : list == "all" ? split("mlp,mlp_wide,cnn,cnn_fmnist,lstm,lstm_lm") : split(list)) {
    if (!all.count(w)) examples::Flags::fail("--workload", w, "mlp, mlp_wide, cnn, cnn_fmnist, lstm, lstm_lm or all");
    a.workloads.push_back(w);
  }
  if (a.workloads.empty()) examples::Flags::fail("--workload", list, "a comma-separated list of workloads");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  examples::restart_with_short_omp_spin(argv);
  return examples::run_program("nabla-bench", [&] {
    const Args args = parse(argc, argv);
    if (args.threads > 0) omp_set_num_threads(args.threads);
    struct Row {
      std::string workload;
      int64_t batch;
      double ms;
    };
    std::vector<Row> rows;
    nb::Device device = nb::Device::parse(args.device);
    // fast: TF32 tensor cores for float32 products on GPUs; on the CPU both modes are strict float32.
    nb::set_tf32(args.mode == "fast");
    const std::string dev_name = device.is_cpu() ? "cpu" : "cuda";
    for (const std::string& name : args.workloads) {
      const auto all = workloads();
      const Workload& w = all.at(name);
      nb::manual_seed(0);
      auto model = w.model();
      model->to(device);
      nb::Adam opt(model->parameters(), {.lr = 1e-3});
      std::vector<nb::Tensor> xs, ys;
      nb::Shape xshape{w.batch};
      xshape.insert(xshape.end(), w.input.begin(), w.input.end());
      std::mt19937_64 gen(0);
      std::uniform_int_distribution<int64_t> label(0, w.classes - 1);
      auto ids = [&](const nb::Shape& shape) {
        std::vector<int64_t> v(static_cast<size_t>(nb::numel_of(shape)));
        for (auto& e : v) e = label(gen);
        return nb::from_vector(v, shape, {.dtype = nb::DType::int64, .device = device});
      };
      for (int i = 0; i < 4; ++i) {
        xs.push_back(w.kind == Input::tokens ? ids(xshape) : nb::randn(xshape, {.device = device}));
        switch (w.loss) {
          case Loss::cross_entropy: ys.push_back(ids({w.batch})); break;
          case Loss::cross_entropy_per_step: ys.push_back(ids({w.batch * w.input[0]})); break;
          case Loss::bce_logits: ys.push_back(nb::gt(nb::rand({w.batch}, {.device = device}), nb::scalar(0.5, {.device = device}))); break;
        }
      }
      nb::Tensor loss;
      auto step = [&](int i) {
        opt.zero_grad();
        nb::Tensor out = (*model)(xs[i % 4]);
        switch (w.loss) {
          case Loss::cross_entropy: loss = nb::cross_entropy(out, ys[i % 4]); break;
          case Loss::cross_entropy_per_step: loss = nb::cross_entropy(out.reshape({-1, w.classes}), ys[i % 4]); break;
          case Loss::bce_logits: loss = nb::binary_cross_entropy_with_logits(out, ys[i % 4]); break;
        }
        loss.backward();
        opt.step();
      };
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < args.warmup; ++i) step(i);
      nb::synchronize(device);
      const double warm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::vector<double> times;
      for (int r = 0; r < 5; ++r) {
        nb::synchronize(device);
        auto t = std::chrono::steady_clock::now();
        for (int i = 0; i < args.steps; ++i) step(i);
        nb::synchronize(device);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / args.steps);
      }
      std::vector<double> sorted = times;
      std::sort(sorted.begin(), sorted.end());
      const double med = sorted[2];
      const double spread = (sorted.back() - sorted.front()) / med;
      fmt::print(
          "{{\"workload\": \"{}\", \"device\": \"{}\", \"mode\": \"{}\", \"batch\": {}, \"step_ms\": {:.4f}, "
          "\"samples_per_s\": {:.1f}, \"spread\": {:.3f}, \"warmup_s\": {:.2f}, \"loss\": {:.6f}, "
          "\"framework\": \"nabla\", \"threads\": {}}}\n",
          name, dev_name, args.mode, w.batch, med * 1e3, w.batch / med, spread, warm_s, loss.item(),
          omp_get_max_threads());
      std::fflush(stdout);
      rows.push_back({name, w.batch, med * 1e3});
    }
    fmt::print("\n{:12} {:9} {:>6} {:>9} {:>12}\n", "workload", "mode", "batch", "step ms", "samples/s");
    for (const Row& r : rows)
      fmt::print("{:12} {:9} {:6} {:9.3f} {:12.1f}\n", r.workload, args.mode, r.batch, r.ms, r.batch / r.ms * 1e3);
    return 0;
  });
}
