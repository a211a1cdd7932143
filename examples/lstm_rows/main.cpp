// Reads each Fashion-MNIST image as a sequence of 28 rows of 28 pixels: LSTM(28 -> 128) over the
// rows, its last output into Dense(128 -> 10). Adam, and reports the test accuracy.
//
//   nabla-lstm-rows [--epochs 30] [--batch 128] [--lr 2e-3] [--hidden 128] [--augment 1]
//                   [--clip 1] [--device best|cpu|cuda] [--data DIR] [--seed 0] [--train-limit N]
//
// Recipe (the layers stay LSTM + Dense): inputs standardized with the training set's mean and
// standard deviation; each epoch sees the images shifted by up to 2 pixels and mirrored
// left-right at random; Adam with a short warm-up and a cosine decay of the learning rate;
// gradients clipped to a global norm of --clip (on the device). Ends with one line
//   RESULT test_accuracy=<x> epochs=<n> seconds=<s> device=<d>
#include <nabla/nabla.h>

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
  if (a.epochs < 1 || a.batch < 1 || a.lr <= 0 || a.hidden < 1) usage("epochs, batch, hidden and lr must be positive");
  return a;
}

// A copy of the images (float32 [N, 1, 28, 28] on the CPU), each shifted by a random (dy, dx) in
// [-2, 2]^2 (zeros shifted in) and mirrored left-right with probability 1/2.
nb::Tensor augment(const nb::Tensor& x, std::mt19937_64& gen) {
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
  return nb::from_vector(dst, x.shape());
}

// Fraction of rows of `data` whose argmax logit is the label.
double accuracy(nb::Module& model, const nb::data::Dataset& data, nb::Device device) {
  nb::NoGrad no_grad;
  model.eval();
  nb::data::DataLoader loader(data, {.batch_size = 1000, .shuffle = false, .device = device});
  nb::Tensor correct = nb::zeros({}, {.device = device});
  for (auto& batch : loader) {
    nb::Tensor pred = nb::argmax(model(batch.x), 1).to(nb::DType::float32);
    correct = correct + nb::sum(nb::eq(pred, batch.y.to(nb::DType::float32)));
  }
  model.train();
  return correct.item() / static_cast<double>(data.size());
}

// Scales every gradient by min(1, max_norm / global norm), all on the device.
void clip_grad_norm(const std::vector<nb::Tensor>& params, double max_norm) {
  nb::NoGrad ng;
  nb::Tensor total;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    nb::Tensor sq = nb::sum(nb::mul(p.grad(), p.grad()));
    total = total.defined() ? nb::add(total, sq) : sq;
  }
  if (!total.defined()) return;
  nb::Tensor scale = nb::clamp(nb::div(nb::full({}, max_norm, total.options()), nb::affine(nb::sqrt(total), 1, 1e-6)),
                               0, 1);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().copy_(nb::mul(p.grad(), scale));
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  try {
    const auto t0 = std::chrono::steady_clock::now();
    nb::manual_seed(args.seed);
    std::mt19937_64 gen(args.seed);
    nb::Device device = nb::Device::parse(args.device);

    auto data = nb::data::fashion_mnist(args.data);
    if (args.train_limit > 0) data.train = data.train.take(args.train_limit);
    const double mean = data.train.x.mean().item();
    const double stddev = std::sqrt(nb::mean(nb::pow(nb::affine(data.train.x, 1, -mean), 2)).item());
    const nb::data::Dataset raw_train = data.train;
    const nb::data::Dataset test = data.test.normalize(mean, stddev);
    fmt::print("Fashion-MNIST: {} training and {} test images; pixel mean {:.4f}, std {:.4f}; augmentation {}\n",
               raw_train.size(), test.size(), mean, stddev, args.augment ? "shift 2 px + mirror" : "off");

    // [N, 1, 28, 28] -> [N, 28 rows, 28 pixels] -> LSTM -> last step -> Dense
    nb::Sequential model{nb::Flatten(1, 2), nb::LSTM(28, args.hidden, {.batch_first = true}), nb::LastStep(true),
                         nb::Dense(args.hidden, 10)};
    model.to(device);
    fmt::print("{}\n{} parameters, device {}\n", model.to_string(), model.num_parameters(), device);

    nb::Adam opt(model.parameters(), {.lr = args.lr});
    const int64_t steps_per_epoch = (raw_train.size() + args.batch - 1) / args.batch;
    const int64_t total_steps = steps_per_epoch * args.epochs;
    const int64_t warmup = std::min<int64_t>(steps_per_epoch / 2, total_steps / 10);
    int64_t step = 0;
    double test_acc = 0;
    for (int epoch = 1; epoch <= args.epochs; ++epoch) {
      nb::data::Dataset train = raw_train;
      if (args.augment) train.x = augment(raw_train.x, gen);
      train = train.normalize(mean, stddev);
      nb::data::DataLoader loader(train, {.batch_size = args.batch, .shuffle = true,
                                          .seed = args.seed * 1000 + static_cast<uint64_t>(epoch), .device = device});
      fmt::print("Epoch {}/{}\n", epoch, args.epochs);
      nb::ProgressBar bar(steps_per_epoch);
      // Running loss and accuracy stay on the device; reading them synchronizes, so it happens
      // only every 50 steps (for the progress bar) and at the end of the epoch.
      nb::Tensor loss_sum = nb::zeros({}, {.device = device}), correct = nb::zeros({}, {.device = device});
      int64_t seen = 0, done = 0;
      auto metrics = [&] {
        return std::vector<std::pair<std::string, double>>{
            {"loss", loss_sum.item() / static_cast<double>(seen)},
            {"accuracy", correct.item() / static_cast<double>(seen)}};
      };
      for (auto& batch : loader) {
        const double lr = step < warmup
                              ? args.lr * static_cast<double>(step + 1) / static_cast<double>(warmup)
                              : 0.5 * args.lr *
                                    (1 + std::cos(M_PI * static_cast<double>(step - warmup) /
                                                  static_cast<double>(total_steps - warmup)));
        opt.set_lr(lr);
        nb::Tensor logits = model(batch.x);
        nb::Tensor loss = nb::cross_entropy(logits, batch.y);
        opt.zero_grad();
        loss.backward();
        if (args.clip > 0) clip_grad_norm(opt.params(), args.clip);
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
      test_acc = accuracy(model, test, device);
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
