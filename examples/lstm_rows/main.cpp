// Reads each Fashion-MNIST image as a sequence of 28 rows of 28 pixels: LSTM(28 -> 128) over the
// rows, its last output into Dense(128 -> 10); trained with Model::compile/fit, Adam.
//
//   nabla-lstm-rows [--epochs 30] [--batch 128] [--lr 2e-3] [--hidden 128] [--clip 1] [--augment 1]
//                   [--device best|cpu|cuda] [--data DIR] [--seed 0] [--train-limit N]
//
// Recipe (the layers stay LSTM + Dense): inputs standardized with the training set's mean and
// standard deviation; each epoch sees the images shifted by up to 2 pixels and mirrored
// left-right at random; Adam with a short linear warm-up and a cosine decay of the learning rate;
// gradients clipped to a global norm of --clip. Writes lstm_rows.safetensors and its history;
// ends with one line
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
  int epochs = 30;
  int64_t batch = 128;
  double lr = 2e-3;
  int64_t hidden = 128;
  double clip = 1.0;
  bool augment = true;
  std::string device = "best";
  std::string data;
  uint64_t seed = 0;
  int64_t train_limit = 0;  // 0: the whole training set
};

[[noreturn]] void usage(const char* msg) {
  fmt::print(stderr,
             "{}\nusage: nabla-lstm-rows [--epochs N] [--batch N] [--lr X] [--hidden N] [--clip X] [--augment 0|1]\n"
             "                       [--device best|cpu|cuda] [--data DIR] [--seed N] [--train-limit N]\n",
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
      else if (k == "--hidden") a.hidden = std::stoll(val());
      else if (k == "--clip") a.clip = std::stod(val());
      else if (k == "--augment") a.augment = std::stoi(val()) != 0;
      else if (k == "--device") a.device = val();
      else if (k == "--data") a.data = val();
      else if (k == "--seed") a.seed = std::stoull(val());
      else if (k == "--train-limit") a.train_limit = std::stoll(val());
      else if (k == "--help" || k == "-h") usage("Trains an LSTM over the rows of Fashion-MNIST images.");
      else usage(fmt::format("unknown argument {}", k).c_str());
    } catch (const std::logic_error&) {
      usage(fmt::format("bad value for {}", k).c_str());
    }
  }
  if (a.epochs < 1 || a.batch < 1 || a.lr <= 0 || a.hidden < 1 || a.clip < 0)
    usage("epochs, batch, hidden and lr must be positive, clip not negative");
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
    const double mean = data.train.x.mean().item();
    const double stddev = std::sqrt(nb::mean(nb::pow(nb::affine(data.train.x, 1, -mean), 2)).item());
    const nb::data::Dataset raw_train = data.train;
    const nb::data::Dataset test = data.test.normalize(mean, stddev);
    fmt::print("Fashion-MNIST: {} training and {} test images; pixel mean {:.4f}, std {:.4f}; augmentation {}\n",
               raw_train.size(), test.size(), mean, stddev, args.augment ? "shift 2 px + mirror" : "off");

    // [N, 1, 28, 28] -> [N, 28 rows, 28 pixels] -> LSTM -> its last step -> Dense
    nb::Model model{nb::Flatten(1, 2), nb::LSTM(28, args.hidden, {.batch_first = true}), nb::LastStep(true),
                    nb::Dense(args.hidden, 10)};
    model.to(device);
    model.compile(nb::Adam({.lr = args.lr}), nb::CrossEntropyLoss(), {"accuracy"}, {.clip_norm = args.clip});
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
    model.save("lstm_rows.safetensors");
    fmt::print("wrote lstm_rows.safetensors, {}\n", examples::save_history(history, "lstm_rows"));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("RESULT test_accuracy={:.4f} epochs={} seconds={:.1f} device={}\n", test_acc, args.epochs, seconds,
               device.is_cpu() ? "cpu" : "cuda");
    return 0;
  } catch (const nb::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
