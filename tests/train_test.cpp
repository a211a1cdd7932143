// End to end: the MLP learns Fashion-MNIST from a few thousand images in seconds.
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace nb = nabla;

namespace {

double accuracy(nb::Module& model, const nb::data::Dataset& data) {
  nb::NoGrad no_grad;
  model.eval();
  auto pred = nb::argmax(model(data.x), 1).to_vector<int64_t>();
  auto labels = data.y.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels[i];
  model.train();
  return static_cast<double>(correct) / static_cast<double>(pred.size());
}

}  // namespace

TEST(Train, MlpOnFashionMnistSubset_4000train_2000test_3epochs) {
  const char* env = std::getenv("NABLA_FASHION_MNIST");
  const std::string dir = env ? env : "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "Fashion-MNIST not installed at " << dir;
  nb::manual_seed(0);
  auto data = nb::data::fashion_mnist();
  auto train = data.train.take(4000).normalize(0.2860, 0.3530);
  auto test = data.test.take(2000).normalize(0.2860, 0.3530);

  nb::Sequential model{nb::Flatten(), nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 128), nb::ReLU(),
                       nb::Dense(128, 10)};
  const double untrained = accuracy(model, test);
  nb::Adam opt(model.parameters(), {.lr = 1e-3});
  nb::data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
  double first_loss = 0, last_loss = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    double sum = 0;
    for (auto& batch : loader) {
      auto loss = nb::cross_entropy(model(batch.x), batch.y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      sum += loss.item();
    }
    (epoch == 0 ? first_loss : last_loss) = sum / loader.size();
  }
  const double trained = accuracy(model, test);
  // Ten balanced classes: an untrained net is near 0.1; this recipe reaches about 0.8.
  EXPECT_LT(untrained, 0.3);
  EXPECT_GT(trained, 0.75) << "untrained " << untrained;
  EXPECT_LT(last_loss, 0.7 * first_loss);
  EXPECT_EQ(nb::tape_size(), 0u);  // nothing left recorded once the step's graph is gone
}
