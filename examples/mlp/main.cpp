// Trains the 784-256-128-10 MLP on Fashion-MNIST with Adam and reports the test accuracy.
//
//   nabla-mlp [--epochs 40] [--batch 128] [--lr 1e-3] [--device best|cpu|cuda] [--data DIR]
//             [--seed 0] [--train-limit N]
//
// Recipe: inputs standardized with the training set's mean and standard deviation, Adam with a
// cosine learning-rate decay per step, light dropout between the hidden layers. Trained with
// Model::compile / fit; writes mlp.safetensors, mlp_history.csv and, with gnuplot,
// mlp_history.png in the current folder. Ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

#include "../common/history_plot.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

namespace nb = nabla;

namespace {

struct Args {
  int epochs = 40;
  int64_t batch = 128;
  double lr = 1e-3;
  double dropout = 0.2;
  std::string device = "best";
  std::string data;
  uint64_t seed = 0;
  int64_t train_limit = 0;  // 0: the whole training set
};

[[noreturn]] void usage(const char* msg) {
  fmt::print(stderr,
             "{}\nusage: nabla-mlp [--epochs N] [--batch N] [--lr X] [--dropout P] [--device best|cpu|cuda]\n"
             "                 [--data DIR] [--seed N] [--train-limit N]\n",
             msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(fmt::format("missing value after {}", k).c_str());
      return argv[++i];
    };
    try {
      if (k == "--epochs") a.epochs = std::stoi(val());
      else if (k == "--batch") a.batch = std::stoll(val());
      else if (k == "--lr") a.lr = std::stod(val());
      else if (k == "--dropout") a.dropout = std::stod(val());
      else if (k == "--device") a.device = val();
      else if (k == "--data") a.data = val();
      else if (k == "--seed") a.seed = std::stoull(val());
      else if (k == "--train-limit") a.train_limit = std::stoll(val());
      else if (k == "--help" || k == "-h") usage("Trains an MLP on Fashion-MNIST.");
      else usage(fmt::format("unknown argument {}", k).c_str());
    } catch (const std::logic_error&) {
      usage(fmt::format("bad value for {}", k).c_str());
    }
  }
  if (a.epochs < 1 || a.batch < 1 || a.lr <= 0) usage("epochs, batch and lr must be positive");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  try {
    const auto t0 = std::chrono::steady_clock::now();
    nb::manual_seed(args.seed);
    nb::Device device = nb::Device::parse(args.device);

    auto data = nb::data::fashion_mnist(args.data);
    if (args.train_limit > 0) data.train = data.train.take(args.train_limit);
    // Standardize with the training set's statistics.
    const double mean = data.train.x.mean().item();
    const double stddev = std::sqrt(nb::mean(nb::pow(nb::affine(data.train.x, 1, -mean), 2)).item());
    data.train = data.train.normalize(mean, stddev);
    data.test = data.test.normalize(mean, stddev);
    fmt::print("Fashion-MNIST: {} training and {} test images; pixel mean {:.4f}, std {:.4f}\n", data.train.size(),
               data.test.size(), mean, stddev);

    nb::Model model{nb::Flatten(),       nb::Dense(784, 256), nb::ReLU(), nb::Dropout(args.dropout),
                    nb::Dense(256, 128), nb::ReLU(),          nb::Dropout(args.dropout), nb::Dense(128, 10)};
    model.to(device);
    model.compile(nb::Adam({.lr = args.lr}), nb::CrossEntropyLoss(), {"accuracy"});
    model.summary({1, 28, 28});
    fmt::print("device {}\n", device);

    // Cosine decay of the learning rate over the whole run, step by step.
    const int64_t steps_per_epoch = (data.train.size() + args.batch - 1) / args.batch;
    const nb::CosineDecay cosine{.initial_lr = args.lr, .total = steps_per_epoch * args.epochs};
    auto history = model.fit(data.train, {.epochs = args.epochs,
                                          .batch_size = args.batch,
                                          .validation = data.test,
                                          .seed = args.seed,
                                          .callbacks = {nb::LearningRateScheduler(cosine, nb::ScheduleUnit::step)}});
    const double test_acc = history.at("val_accuracy").back();
    model.save("mlp.safetensors");
    fmt::print("wrote mlp.safetensors, {}\n", examples::save_history(history, "mlp"));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("RESULT test_accuracy={:.4f} epochs={} seconds={:.1f} device={}\n", test_acc, args.epochs, seconds,
               device.is_cpu() ? "cpu" : "cuda");
    return 0;
  } catch (const nb::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
