// Trains the 784-256-128-10 MLP on Fashion-MNIST with Adam and reports the test accuracy.
//
//   nabla-mlp [--epochs 40] [--batch 128] [--lr 1e-3] [--device best|cpu|cuda] [--data DIR]
//             [--seed 0] [--train-limit N]
//
// Recipe: inputs standardized with the training set's mean and standard deviation, Adam with a
// cosine learning-rate decay, light dropout between the hidden layers. Ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

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

// Fraction of rows of `data` whose argmax logit is the label.
double accuracy(nb::Module& model, const nb::data::Dataset& data, nb::Device device) {
  nb::NoGrad no_grad;
  model.eval();
  nb::data::DataLoader loader(data, {.batch_size = 1000, .shuffle = false, .device = device});
  int64_t correct = 0;
  for (auto& batch : loader) {
    auto pred = nb::argmax(model(batch.x), 1).to_vector<int64_t>();
    auto labels = batch.y.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels[i];
  }
  model.train();
  return static_cast<double>(correct) / static_cast<double>(data.size());
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

    nb::Sequential model{nb::Flatten(),        nb::Dense(784, 256), nb::ReLU(), nb::Dropout(args.dropout),
                         nb::Dense(256, 128), nb::ReLU(),          nb::Dropout(args.dropout), nb::Dense(128, 10)};
    model.to(device);
    fmt::print("{}\n{} parameters, device {}\n", model.to_string(), model.num_parameters(), device);

    nb::Adam opt(model.parameters(), {.lr = args.lr});
    nb::data::DataLoader loader(data.train, {.batch_size = args.batch, .shuffle = true, .seed = args.seed,
                                             .device = device});
    const int64_t steps_per_epoch = loader.size();
    const int64_t total_steps = steps_per_epoch * args.epochs;
    int64_t step = 0;
    double test_acc = 0;
    for (int epoch = 1; epoch <= args.epochs; ++epoch) {
      fmt::print("Epoch {}/{}\n", epoch, args.epochs);
      nb::ProgressBar bar(steps_per_epoch);
      // Running loss and accuracy stay on the device; reading them is a host synchronization,
      // so it happens only every 50 steps (for the progress bar) and at the end of the epoch.
      nb::Tensor loss_sum = nb::zeros({}, {.device = device}), correct = nb::zeros({}, {.device = device});
      int64_t seen = 0, done = 0;
      auto metrics = [&] {
        return std::vector<std::pair<std::string, double>>{
            {"loss", loss_sum.item() / static_cast<double>(seen)},
            {"accuracy", correct.item() / static_cast<double>(seen)}};
      };
      for (auto& batch : loader) {
        // Cosine decay of the learning rate over the whole run.
        opt.set_lr(0.5 * args.lr * (1 + std::cos(M_PI * static_cast<double>(step) / total_steps)));
        nb::Tensor logits = model(batch.x);
        nb::Tensor loss = nb::cross_entropy(logits, batch.y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        ++step;
        ++done;
        seen += batch.size();
        {
          nb::NoGrad no_grad;
          loss_sum = loss_sum + loss * static_cast<double>(batch.size());
          nb::Tensor pred = nb::argmax(logits, 1).to(nb::DType::float32);
          correct = correct + nb::sum(nb::eq(pred, batch.y.to(nb::DType::float32)));
        }
        if (done % 50 == 0 || done == steps_per_epoch) bar.update(done, metrics());
      }
      test_acc = accuracy(model, data.test, device);
      bar.finish({{"test_accuracy", test_acc}});
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("RESULT test_accuracy={:.4f} epochs={} seconds={:.1f} device={}\n", test_acc, args.epochs, seconds,
               device.is_cpu() ? "cpu" : "cuda");
    return 0;
  } catch (const nb::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
