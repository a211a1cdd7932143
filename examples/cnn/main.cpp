// Trains the two-convolution CNN of the benchmark workload cnn_fmnist on Fashion-MNIST with Adam
// and reports the test accuracy; --bn adds batch normalization after each convolution and dropout
// before the classifier.
//
//   nabla-cnn [--epochs 20] [--batch 128] [--lr 1e-3] [--bn] [--augment 1] [--device best|cpu|cuda]
//             [--data DIR] [--seed 0] [--train-limit N]
//
//   Conv 1->32 3x3 pad 1, [BN], ReLU, MaxPool 2; Conv 32->64 3x3 pad 1, [BN], ReLU, MaxPool 2;
//   Flatten, [Dropout 0.25], Dense 3136->128, ReLU, [Dropout 0.4], Dense 128->10
//
// Recipe (the layers stay those of the plain network): inputs standardized with the training
// set's mean and standard deviation; each epoch sees the training images shifted by up to 2
// pixels in each direction and mirrored left-right at random (clothing is left-right symmetric);
// Adam with a short linear warm-up and a cosine decay of the learning rate. Trained with
// Model::compile / fit (the augmentation is fit's per-epoch data hook, seeded per epoch so that a
// resumed run sees the same images); writes cnn.safetensors, cnn_history.csv and, with gnuplot,
// cnn_history.png in the current folder. Ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

#include "../common/augment.h"
#include "../common/history_plot.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace nb = nabla;

namespace {

struct Args {
  int epochs = 20;
  int64_t batch = 128;
  double lr = 1e-3;
  bool bn = false;
  bool augment = true;
  std::string device = "best";
  std::string data;
  uint64_t seed = 0;
  int64_t train_limit = 0;  // 0: the whole training set
};

[[noreturn]] void usage(const char* msg) {
  fmt::print(stderr,
             "{}\nusage: nabla-cnn [--epochs N] [--batch N] [--lr X] [--bn] [--augment 0|1]\n"
             "                 [--device best|cpu|cuda] [--data DIR] [--seed N] [--train-limit N]\n",
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
      else if (k == "--bn") a.bn = true;
      else if (k == "--augment") a.augment = std::stoi(val()) != 0;
      else if (k == "--device") a.device = val();
      else if (k == "--data") a.data = val();
      else if (k == "--seed") a.seed = std::stoull(val());
      else if (k == "--train-limit") a.train_limit = std::stoll(val());
      else if (k == "--help" || k == "-h") usage("Trains a CNN on Fashion-MNIST.");
      else usage(fmt::format("unknown argument {}", k).c_str());
    } catch (const std::logic_error&) {
      usage(fmt::format("bad value for {}", k).c_str());
    }
  }
  if (a.epochs < 1 || a.batch < 1 || a.lr <= 0) usage("epochs, batch and lr must be positive");
  return a;
}

nb::Sequential make_model(bool bn) {
  nb::Sequential m;
  m.add(nb::Conv2d(1, 32, 3, {.padding = 1}));
  if (bn) m.add(nb::BatchNorm2d(32));
  m.add(nb::ReLU()).add(nb::MaxPool2d(2));
  m.add(nb::Conv2d(32, 64, 3, {.padding = 1}));
  if (bn) m.add(nb::BatchNorm2d(64));
  m.add(nb::ReLU()).add(nb::MaxPool2d(2)).add(nb::Flatten());
  if (bn) m.add(nb::Dropout(0.25));
  m.add(nb::Dense(7 * 7 * 64, 128)).add(nb::ReLU());
  if (bn) m.add(nb::Dropout(0.4));
  m.add(nb::Dense(128, 10));
  return m;
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
    const double mean = data.train.x.mean().item();
    const double stddev = std::sqrt(nb::mean(nb::pow(nb::affine(data.train.x, 1, -mean), 2)).item());
    const nb::data::Dataset raw_train = data.train;
    const nb::data::Dataset test = data.test.normalize(mean, stddev);
    fmt::print("Fashion-MNIST: {} training and {} test images; pixel mean {:.4f}, std {:.4f}; augmentation {}\n",
               raw_train.size(), test.size(), mean, stddev, args.augment ? "shift 2 px + mirror" : "off");

    nb::Model model(make_model(args.bn));
    model.to(device);
    model.compile(nb::Adam({.lr = args.lr}), nb::CrossEntropyLoss(), {"accuracy"});
    model.summary({1, 28, 28});
    fmt::print("device {}\n", device);

    const int64_t steps_per_epoch = (raw_train.size() + args.batch - 1) / args.batch;
    const int64_t total_steps = steps_per_epoch * args.epochs;
    const int64_t warmup = std::min<int64_t>(steps_per_epoch / 2, total_steps / 10);
    const nb::CosineDecay schedule{.initial_lr = args.lr, .total = total_steps, .warmup = warmup};
    // Each epoch trains on freshly augmented, standardized images.
    auto epoch_data = [&](const nb::data::Dataset& train, int64_t epoch) {
      nb::data::Dataset d = train;
      if (args.augment) {
        std::mt19937_64 gen(args.seed * 1000 + static_cast<uint64_t>(epoch));
        d.x = examples::shift_and_mirror(train.x, gen);
      }
      return d.normalize(mean, stddev);
    };
    auto history = model.fit(raw_train, {.epochs = args.epochs,
                                         .batch_size = args.batch,
                                         .validation = test,
                                         .seed = args.seed,
                                         .callbacks = {nb::LearningRateScheduler(schedule, nb::ScheduleUnit::step)},
                                         .epoch_data = epoch_data});
    const double test_acc = history.at("val_accuracy").back();
    model.save("cnn.safetensors");
    fmt::print("wrote cnn.safetensors, {}\n", examples::save_history(history, "cnn"));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("RESULT test_accuracy={:.4f} epochs={} seconds={:.1f} device={}\n", test_acc, args.epochs, seconds,
               device.is_cpu() ? "cpu" : "cuda");
    return 0;
  } catch (const nb::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
