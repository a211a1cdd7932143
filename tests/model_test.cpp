// Model: compile / fit / evaluate / predict on small problems with known answers, summary()
// parameter counts and shape errors, regularization and clipping, save / load and checkpoint
// resume (the resumed run's losses equal the uninterrupted run's, bit for bit).
#include <nabla/nabla.h>

#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace nb = nabla;
using nb::test::error_of;
using nb::test::f32;
using ::testing::HasSubstr;

namespace {

std::string temp_path(const std::string& name) { return nb::test::temp_path("nabla_model_test", name); }

// y = 2 x0 - 3 x1 + 1 on 64 points of [-1, 1]^2.
nb::data::Dataset linear_data() {
  nb::manual_seed(3);
  nb::Tensor x = nb::rand({64, 2}, {}, -1, 1);
  auto xv = x.to_vector<float>();
  std::vector<float> y;
  for (size_t i = 0; i < 64; ++i) y.push_back(2 * xv[2 * i] - 3 * xv[2 * i + 1] + 1);
  return {x, nb::from_vector(y, {64, 1})};
}

// Three Gaussian blobs around (±2, 0) and (0, 2.5) with std 0.3: separable.
nb::data::Dataset blobs(int64_t n, uint64_t seed) {
  nb::manual_seed(seed);
  nb::Tensor noise = nb::randn({n, 2}, {}, 0, 0.3);
  auto nv = noise.to_vector<float>();
  const float cx[3] = {-2, 2, 0}, cy[3] = {0, 0, 2.5};
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % 3;
    x.push_back(cx[c] + nv[2 * i]);
    x.push_back(cy[c] + nv[2 * i + 1]);
    y.push_back(c);
  }
  return {nb::from_vector(x, {n, 2}), nb::from_vector(y)};
}

std::vector<std::vector<float>> weights_of(const nb::Model& m) {
  std::vector<std::vector<float>> out;
  for (auto& [n, t] : m.state_dict())
    if (nb::is_floating(t.dtype())) out.push_back(t.to_vector<float>());
  return out;
}

// Records every batch's loss (reading it: a test may synchronize).
struct LossRecorder : nb::Callback {
  std::vector<double> losses;
  void on_batch_end(nb::Model&, const nb::BatchInfo& info) override { losses.push_back(info.loss.item()); }
};

}  // namespace

TEST(ModelFit, LinearRegressionFindsTheCoefficients) {
  auto data = linear_data();
  nb::manual_seed(0);
  nb::Model model{nb::Dense(2, 1)};
  model.compile(nb::SGD({.lr = 0.2}), nb::MSELoss(), {"mae"});
  auto history = model.fit(data, {.epochs = 150, .batch_size = 16, .verbose = 0});
  auto w = model.module().named_parameters();  // one layer: the model is that Dense
  ASSERT_EQ(w.size(), 2u);
  auto wv = w[0].second.to_vector<float>();
  EXPECT_NEAR(wv[0], 2, 1e-3);
  EXPECT_NEAR(wv[1], -3, 1e-3);
  EXPECT_NEAR(w[1].second.item(), 1, 1e-3);
  ASSERT_EQ(history.size(), 150u);
  EXPECT_LT(history.at("loss").back(), 1e-6);
  EXPECT_LT(history.at("mae").back(), 1e-3);
  EXPECT_GT(history.at("loss").front(), 100 * history.at("loss").back());
  // evaluate's loss is the MSE of predict's outputs.
  auto logs = model.evaluate(data, {.batch_size = 10});
  nb::Tensor mse = nb::mse_loss(model.predict(data.x, 7), data.y);
  EXPECT_NEAR(logs.at("loss"), mse.item(), 1e-9 + 1e-5 * mse.item());
}

TEST(ModelFit, BlobsClassifierIsAccurateAndEvaluateAgreesWithPredict) {
  auto train = blobs(300, 1), test = blobs(150, 2);
  nb::manual_seed(0);
  nb::Model model{nb::Dense(2, 16), nb::ReLU(), nb::Dense(16, 3)};
  model.compile(nb::Adam({.lr = 0.05}), nb::CrossEntropyLoss(), {"accuracy", nb::F1Score()});
  auto history = model.fit(train, {.epochs = 8, .batch_size = 32, .validation = test, .verbose = 0});
  for (const char* key : {"loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr"})
    EXPECT_TRUE(history.contains(key)) << key;
  EXPECT_EQ(history.keys().back(), "lr");
  EXPECT_EQ(history.epochs(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_GT(history.at("val_accuracy").back(), 0.97);
  EXPECT_LT(history.at("val_loss").back(), history.at("val_loss").front());
  EXPECT_DOUBLE_EQ(history.at("lr").back(), 0.05);

  auto logs = model.evaluate(test, {.batch_size = 32});  // fit validates in batches of batch_size
  EXPECT_DOUBLE_EQ(logs.at("accuracy"), history.at("val_accuracy").back());  // same weights, same pass
  EXPECT_DOUBLE_EQ(logs.at("loss"), history.at("val_loss").back());
  nb::Tensor out = model.predict(test.x, 64);
  EXPECT_FALSE(out.requires_grad());
  EXPECT_EQ(out.shape(), (nb::Shape{150, 3}));
  auto pred = nb::argmax(out, 1).to_vector<int64_t>();
  auto y = test.y.to_vector<int64_t>();
  int64_t right = 0;
  for (size_t i = 0; i < y.size(); ++i) right += pred[i] == y[i];
  EXPECT_NEAR(logs.at("accuracy"), static_cast<double>(right) / 150, 1e-9);
  EXPECT_NEAR(logs.at("loss"), nb::cross_entropy(out, test.y).item(), 1e-6);
}

TEST(ModelFit, ValidationSplitTakesTheEndOfTheData) {
  auto data = blobs(100, 4);
  nb::manual_seed(0);
  nb::Model model{nb::Dense(2, 3)};
  model.compile(nb::SGD({.lr = 0.1}), nb::cross_entropy, {"accuracy"});
  auto history = model.fit(data, {.epochs = 2, .batch_size = 16, .validation_split = 0.25, .verbose = 0});
  // The last 25 samples are the validation set: evaluating them now gives the last val_ values.
  auto logs = model.evaluate(data.subset(75, 100), {.batch_size = 16});
  EXPECT_DOUBLE_EQ(logs.at("loss"), history.at("val_loss").back());
  EXPECT_DOUBLE_EQ(logs.at("accuracy"), history.at("val_accuracy").back());
  EXPECT_THAT(error_of([&] { model.fit(data, {.validation = data, .validation_split = 0.1}); }), HasSubstr("not both"));
}

TEST(ModelPredict, BatchedMatchesOneForwardToRoundingAndKeepsTheMode) {
  nb::manual_seed(0);
  nb::Model model{nb::Dense(4, 8), nb::Dropout(0.5), nb::Dense(8, 2)};
  nb::Tensor x = nb::randn({37, 4});
  model.module().eval();
  nb::Tensor full;
  {
    nb::NoGrad ng;
    full = model(x);
  }
  model.module().train();
  nb::Tensor batched = model.predict(x, 5);
  EXPECT_TRUE(model.module().is_training());
  // Not bitwise: BLAS picks its kernel and summation order by the matrix shape (5 rows against
  // 37), so the two runs round differently. Each is within the float32 error bound of the exact
  // result: a layer's dot products of length n (plus the bias) are off by at most
  // gamma(n + 1) = (n + 1) u / (1 - (n + 1) u) times the same sums taken over absolute values,
  // whatever the order or FMA use; ReLU and eval-mode Dropout add nothing, and the second layer
  // carries the first's error through |W2|. So |batched - full| <= 2 (g1 + g2 (1 + g1)) m, with
  // m = |W2| (|W1| |x| + |b1|) + |b2| computed in float64.
  const auto p = model.parameters();
  const auto w1 = p[0].to_vector<float>(), b1 = p[1].to_vector<float>();
  const auto w2 = p[2].to_vector<float>(), b2 = p[3].to_vector<float>();
  const auto xv = x.to_vector<float>(), bv = batched.to_vector<float>(), fv = full.to_vector<float>();
  const double u = std::ldexp(1.0, -24);
  auto gamma = [u](int n) { return n * u / (1 - n * u); };
  const double g1 = gamma(4 + 1), g2 = gamma(8 + 1);
  ASSERT_EQ(bv.size(), fv.size());
  for (size_t r = 0; r < 37; ++r) {
    double m1[8];
    for (size_t j = 0; j < 8; ++j) {
      m1[j] = std::fabs(b1[j]);
      for (size_t k = 0; k < 4; ++k) m1[j] += std::fabs(w1[j * 4 + k]) * std::fabs(xv[r * 4 + k]);
    }
    for (size_t o = 0; o < 2; ++o) {
      double m = std::fabs(b2[o]);
      for (size_t j = 0; j < 8; ++j) m += std::fabs(w2[o * 8 + j]) * m1[j];
      const double bound = 2 * (g1 + g2 * (1 + g1)) * m;
      EXPECT_LE(std::fabs(double(bv[r * 2 + o]) - double(fv[r * 2 + o])), bound) << "row " << r << " output " << o;
    }
  }
}

TEST(ModelCompile, ErrorsAndSharing) {
  nb::Sequential seq{nb::Dense(3, 2)};
  nb::Model model(seq);
  EXPECT_EQ(model.parameters()[0].impl(), seq.parameters()[0].impl()) << "the Model shares the Sequential's tensors";
  auto data = blobs(9, 1);
  EXPECT_THAT(error_of([&] { model.fit(data); }), HasSubstr("not compiled"));
  EXPECT_THAT(error_of([&] { model.compile(nb::Adam(), nb::CrossEntropyLoss(), {"accuracy", "acc", "nope"}); }),
              HasSubstr("metric 'nope' is unknown"));
  EXPECT_THAT(error_of([&] { model.compile(nb::Adam(), nb::CrossEntropyLoss(), {"accuracy", "accuracy"}); }),
              HasSubstr("named 'accuracy'"));
  model.compile(nb::Adam(), [](const nb::Tensor& o, const nb::Tensor& y) { return nb::cross_entropy(o, y); });
  EXPECT_EQ(model.loss().name(), "loss");
  EXPECT_EQ(std::string(model.optimizer().name()), "Adam");
  EXPECT_EQ(model.optimizer().params().size(), 2u);
  EXPECT_THAT(error_of([&] { model.layer(1); }), HasSubstr("out of range"));
}

// ---- summary ----------------------------------------------------------------------------------

namespace {

// The row of layer `name` in a summary table, split into whitespace-separated words.
std::vector<std::string> row(const std::string& summary, const std::string& name) {
  std::istringstream in(summary);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string s; words >> s;) w.push_back(s);
    if (!w.empty() && w[0] == name) return w;
  }
  return {};
}

std::string grouped(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

}  // namespace

TEST(ModelSummary, ParameterCountsAndShapesOfEveryLayerType) {
  nb::Model model{nb::Conv2d(1, 8, 3, {.padding = 1}),  // 8*1*9 + 8 = 80
                  nb::BatchNorm2d(8),                    // 16 trainable + 16 running statistics
                  nb::ReLU(),
                  nb::MaxPool2d(2),                      // -> 8x6x6
                  nb::AvgPool2d(3, {.stride = 1, .padding = 1}),
                  nb::Conv2d(8, 4, 3, {.bias = false}),  // 4*8*9 = 288, -> 4x4x4
                  nb::GlobalAvgPool2d(),                 // -> 4
                  nb::Flatten(),
                  nb::Dense(4, 6),                       // 30
                  nb::BatchNorm1d(6),                    // 12 + 12
                  nb::Tanh(),
                  nb::Dropout(0.1),
                  nb::Dense(6, 3, {.bias = false}),      // 18
                  nb::Softmax()};
  const std::string s = model.summary({1, 12, 12}, nb::DType::float32, nullptr);
  struct Want {
    const char* name;
    int64_t params;
    const char* shape;
  };
  const Want want[] = {{"0", 80, "[N, 8, 12, 12]"}, {"1", 32, "[N, 8, 12, 12]"}, {"2", 0, "[N, 8, 12, 12]"},
                       {"3", 0, "[N, 8, 6, 6]"},     {"4", 0, "[N, 8, 6, 6]"},     {"5", 288, "[N, 4, 4, 4]"},
                       {"6", 0, "[N, 4]"},           {"7", 0, "[N, 4]"},           {"8", 30, "[N, 6]"},
                       {"9", 24, "[N, 6]"},          {"10", 0, "[N, 6]"},          {"11", 0, "[N, 6]"},
                       {"12", 18, "[N, 3]"},         {"13", 0, "[N, 3]"}};
  for (const Want& w : want) {
    auto r = row(s, w.name);
    ASSERT_GE(r.size(), 3u) << "no row for layer " << w.name << " in\n" << s;
    EXPECT_EQ(r.back(), grouped(w.params)) << "layer " << w.name << "\n" << s;
    EXPECT_NE(s.find(w.shape), std::string::npos) << w.shape;
  }
  const int64_t trainable = 80 + 16 + 288 + 30 + 12 + 18, buffers = 16 + 12;
  EXPECT_EQ(model.num_parameters(), trainable);
  EXPECT_THAT(s, HasSubstr("Total params: " + grouped(trainable + buffers) + "\n"));
  EXPECT_THAT(s, HasSubstr("Trainable params: " + grouped(trainable) + "\n"));
  EXPECT_THAT(s, HasSubstr("Non-trainable params: " + grouped(buffers) + "\n"));
  EXPECT_THAT(row(s, "5")[1], HasSubstr("Conv2d"));
}

TEST(ModelSummary, RecurrentLayersFromTokenIds) {
  // The shape pass runs a zero batch of int64 ids through the embedding.
  nb::Model lstm{nb::Embedding(50, 8),                                         // 400
                 nb::LSTM(8, 16, {.num_layers = 2, .batch_first = true}),       // 1664 + 2176
                 nb::LastStep(true), nb::Dense(16, 3)};                         // 51
  const std::string s = lstm.summary({7}, nb::DType::int64, nullptr);
  const std::pair<const char*, int64_t> counts[] = {{"0", 400}, {"1", 1664 + 2176}, {"2", 0}, {"3", 51}};
  for (const auto& [name, params] : counts) {
    auto r = row(s, name);
    ASSERT_GE(r.size(), 3u) << "no row for layer " << name << " in\n" << s;
    EXPECT_EQ(r.back(), grouped(params)) << "layer " << name << "\n" << s;
  }
  for (const char* shape : {"[N, 7, 8]", "[N, 7, 16]", "[N, 16]", "[N, 3]"}) EXPECT_THAT(s, HasSubstr(shape));
  EXPECT_THAT(s, HasSubstr("Total params: " + grouped(400 + 1664 + 2176 + 51) + "\n"));
  EXPECT_EQ(lstm.num_parameters(), 400 + 1664 + 2176 + 51);
  // a bidirectional GRU doubles its parameters and its output features
  nb::Model gru{nb::Embedding(20, 4), nb::GRU(4, 5, {.batch_first = true, .bidirectional = true}), nb::LastStep(true),
                nb::Dense(10, 2)};
  const std::string g = gru.summary({6}, nb::DType::int64, nullptr);
  EXPECT_EQ(row(g, "1").back(), grouped(2 * (3 * 5 * 4 + 3 * 5 * 5 + 2 * 15))) << g;
  EXPECT_THAT(g, HasSubstr("[N, 6, 10]"));
  // an LSTM fed the wrong feature size is named before any training step
  nb::Model bad{nb::Embedding(20, 4), nb::LSTM(6, 5, {.batch_first = true})};
  EXPECT_THAT(error_of([&] { bad.summary({6}, nb::DType::int64, nullptr); }), HasSubstr("LSTM(6->5)"));
}

TEST(ModelSummary, FrozenParametersBigCountsAndUnbuilt) {
  nb::Dense big(784, 256);
  big.weight().requires_grad_(false);
  nb::Model model{nb::Flatten(), big, nb::ReLU(), nb::Dense(256, 10)};
  const std::string before = model.summary(nullptr);
  EXPECT_THAT(before, HasSubstr("?"));
  EXPECT_EQ(row(before, "1").back(), "200,960");
  EXPECT_THAT(before, HasSubstr("Trainable params: 2,826\n"));  // 256 + 256*10 + 10
  EXPECT_THAT(before, HasSubstr("Non-trainable params: 200,704\n"));
  model.build({1, 28, 28});
  EXPECT_THAT(model.summary(nullptr), HasSubstr("[N, 10]"));
  // compile binds only the trainable parameters.
  model.compile(nb::SGD(), nb::CrossEntropyLoss());
  EXPECT_EQ(model.optimizer().params().size(), 3u);
}

TEST(ModelSummary, ShapeErrorNamesTheLayerBeforeTheFirstBatch) {
  nb::Model model{nb::Flatten(), nb::Dense(784, 128), nb::ReLU(), nb::Dense(100, 10)};
  EXPECT_THAT(error_of([&] { model.summary({1, 28, 28}, nb::DType::float32, nullptr); }),
              HasSubstr("summary: layer 3 (Dense(100->10"));
  model.compile(nb::SGD(), nb::CrossEntropyLoss());
  nb::data::Dataset data{nb::zeros({4, 1, 28, 28}), nb::from_vector(std::vector<int64_t>{0, 1, 2, 3})};
  const auto before = weights_of(model);
  EXPECT_THAT(error_of([&] { model.fit(data, {.verbose = 0}); }), HasSubstr("fit: layer 3 (Dense(100->10"));
  EXPECT_EQ(weights_of(model), before) << "no step was taken";
  EXPECT_EQ(model.global_step(), 0);
}

// ---- regularization and clipping --------------------------------------------------------------

TEST(ModelRegularize, PenaltyIsAddedToTheLossAndShrinksWeights) {
  nb::manual_seed(0);
  nb::Model model{nb::Dense(2, 4), nb::ReLU(), nb::Dense(4, 1)};
  model.regularize(model.layer(0), nb::L2(0.1)).regularize(model.layer(2), nb::L1L2(0.01, 0.02));
  auto w0 = model.layer(0).named_parameters()[0].second.to_vector<double>();
  auto w2 = model.layer(2).named_parameters()[0].second.to_vector<double>();
  double want = 0;
  for (double v : w0) want += 0.1 * v * v;
  for (double v : w2) want += 0.01 * std::abs(v) + 0.02 * v * v;
  EXPECT_NEAR(model.regularization_loss().item(), want, 1e-6);
  EXPECT_THAT(error_of([&] { model.regularize(model.layer(1), nb::L2(1)); }), HasSubstr("no parameter named 'weight'"));
  EXPECT_THAT(error_of([&] { model.regularize(f32({1}), nb::L2(1)); }), HasSubstr("not a parameter"));

  // evaluate's loss = data loss + penalty.
  auto data = linear_data();
  model.compile(nb::SGD({.lr = 0.05}), nb::MSELoss());
  nb::Tensor plain = nb::mse_loss(model.predict(data.x), data.y);
  EXPECT_NEAR(model.evaluate(data).at("loss"), plain.item() + model.regularization_loss().item(), 1e-5);

  // A strong L2 penalty ends with smaller weights than none.
  auto norm_after = [&](double l2) {
    nb::manual_seed(5);
    nb::Model m{nb::Dense(2, 1)};
    if (l2 > 0) m.regularize(m.module(), nb::L2(l2));
    m.compile(nb::SGD({.lr = 0.1}), nb::MSELoss());
    m.fit(data, {.epochs = 40, .batch_size = 16, .verbose = 0});
    double n = 0;
    for (float v : m.module().named_parameters()[0].second.to_vector<float>()) n += v * v;
    return n;
  };
  EXPECT_LT(norm_after(1.0), 0.5 * norm_after(0));
}

TEST(ModelCompile, ClippingByValueAndNormBoundsTheStep) {
  auto data = linear_data();
  for (bool by_norm : {false, true}) {
    nb::manual_seed(0);
    nb::Model model{nb::Dense(2, 1)};
    model.compile(nb::SGD({.lr = 1.0}), nb::MSELoss(), {},
                  by_norm ? nb::CompileOptions{.clip_norm = 1e-3} : nb::CompileOptions{.clip_value = 1e-3});
    const auto before = weights_of(model);
    model.fit(data.take(16), {.epochs = 1, .batch_size = 16, .verbose = 0});  // one step
    const auto after = weights_of(model);
    double sq = 0;
    for (size_t t = 0; t < before.size(); ++t)
      for (size_t i = 0; i < before[t].size(); ++i) {
        const double d = after[t][i] - before[t][i];
        EXPECT_LE(std::abs(d), 1e-3 + 1e-7) << (by_norm ? "norm" : "value");
        sq += d * d;
      }
    if (by_norm) {
      EXPECT_NEAR(std::sqrt(sq), 1e-3, 1e-5) << "the unclipped gradient is far larger than 1e-3";
    }
  }
}

// ---- files ------------------------------------------------------------------------------------

TEST(ModelSave, RoundTripGivesIdenticalOutputsAndTorchNames) {
  nb::manual_seed(1);
  nb::Model a{nb::Dense(3, 5), nb::BatchNorm1d(5), nb::ReLU(), nb::Dense(5, 2)};
  a.compile(nb::Adam({.lr = 0.01}), nb::CrossEntropyLoss());
  nb::data::Dataset data{nb::randn({30, 3}), nb::from_vector(std::vector<int64_t>(30, 1))};
  a.fit(data, {.epochs = 2, .batch_size = 8, .verbose = 0});  // moves the BN statistics
  nb::Tensor x = nb::randn({6, 3});
  const std::string path = temp_path("roundtrip.safetensors");
  a.save(path);

  auto header = nb::read_safetensors_header(path);
  std::vector<std::string> names;
  for (const auto& e : header.tensors) names.push_back(e.name);
  for (const char* n : {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked", "3.weight", "3.bias"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  EXPECT_EQ(names.size(), 9u);
  auto arch = nlohmann::json::parse(header.metadata.at("nabla.architecture"));
  EXPECT_EQ(arch.at("type"), "Sequential");
  EXPECT_EQ(arch.at("model"), a.to_string());
  EXPECT_EQ(arch.at("tensors").size(), 9u);
  EXPECT_EQ(arch.at("tensors")[0].at("shape"), (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(header.metadata.count("nabla.training"), 0u) << "save() writes weights only";

  nb::manual_seed(99);
  nb::Model b{nb::Dense(3, 5), nb::BatchNorm1d(5), nb::ReLU(), nb::Dense(5, 2)};
  EXPECT_NE(b.predict(x).to_vector<float>(), a.predict(x).to_vector<float>());
  b.load(path);
  EXPECT_EQ(b.predict(x).to_vector<float>(), a.predict(x).to_vector<float>());
  b.module().train();
  {
    // The batch counter continues from the file's value (BatchNorm keeps a host copy of it).
    nb::NoGrad ng;
    b(x);
  }
  auto count = [](const nb::Model& m) {
    for (auto& [name, t] : m.state_dict())
      if (name == "1.num_batches_tracked") return t.item<int64_t>();
    return int64_t{-1};
  };
  EXPECT_EQ(count(a), 8) << "2 epochs of 4 batches";
  EXPECT_EQ(count(b), count(a) + 1);
}

TEST(ModelSave, LoadReportsEveryMismatchBeforeReadingData) {
  nb::Model a{nb::Dense(3, 5), nb::ReLU(), nb::Dense(5, 2)};
  const std::string path = temp_path("mismatch.safetensors");
  a.save(path);
  nb::Model b{nb::Dense(3, 4), nb::ReLU(), nb::Dense(4, 2, {.bias = false}), nb::Dense(2, 2)};
  const auto before = weights_of(b);
  const std::string msg = error_of([&] { b.load(path); });
  EXPECT_THAT(msg, HasSubstr("load " + path));
  EXPECT_THAT(msg, HasSubstr("2 missing [3.weight, 3.bias]"));
  EXPECT_THAT(msg, HasSubstr("1 unexpected [2.bias]"));
  EXPECT_THAT(msg, HasSubstr("3 mismatched"));
  EXPECT_THAT(msg, HasSubstr("0.weight (file float32 [5, 3], model float32 [4, 3])"));
  EXPECT_EQ(weights_of(b), before) << "nothing was loaded";

  nb::Model c{nb::Dense(3, 5, {.dtype = nb::DType::float64}), nb::ReLU(), nb::Dense(5, 2)};
  EXPECT_THAT(error_of([&] { c.load(path); }), HasSubstr("0.weight (file float32 [5, 3], model float64 [5, 3])"));
  c.compile(nb::SGD(), nb::MSELoss());
  EXPECT_THAT(error_of([&] { c.load_checkpoint(path); }), HasSubstr("no 'nabla.training' metadata"));
}

namespace {

struct TrainRun {
  std::vector<double> losses;
  std::vector<double> epoch_losses;
  std::vector<std::vector<float>> weights;
};

nb::Model make_resume_model() {
  return nb::Model{nb::Dense(6, 16), nb::BatchNorm1d(16), nb::ReLU(), nb::Dropout(0.3), nb::Dense(16, 3)};
}

TrainRun continue_training(nb::Model& m, const nb::data::Dataset& data) {
  auto rec = std::make_shared<LossRecorder>();
  auto h = m.fit(data, {.epochs = 4, .batch_size = 10, .seed = 42, .callbacks = {rec}, .verbose = 0,
                        .initial_epoch = m.epoch()});
  return {rec->losses, h.at("loss"), weights_of(m)};
}

}  // namespace

TEST(ModelResume, ResumeEqualsUninterrupted) {
  nb::manual_seed(11);
  nb::Tensor x = nb::randn({45, 6});
  nb::data::Dataset data{x, nb::from_vector(std::vector<int64_t>(45, 0))};
  {
    auto yv = std::vector<int64_t>(45);
    auto xv = x.to_vector<float>();
    for (size_t i = 0; i < 45; ++i) yv[i] = xv[6 * i] > 0.3 ? 2 : xv[6 * i + 1] > 0 ? 1 : 0;
    data.y = nb::from_vector(yv);
  }
  const std::string path = temp_path("resume.safetensors");
  auto compile = [](nb::Model& m) {
    m.compile(nb::Adam({.lr = 0.01, .weight_decay = 1e-3}), nb::CrossEntropyLoss(), {"accuracy"});
    m.regularize(m.layer(0), nb::L2(1e-3));
  };

  nb::manual_seed(1);
  nb::Model a = make_resume_model();
  compile(a);
  a.fit(data, {.epochs = 2, .batch_size = 10, .seed = 42, .verbose = 0});
  a.save_checkpoint(path);
  EXPECT_EQ(a.epoch(), 2);
  EXPECT_EQ(a.global_step(), 10);
  const TrainRun first = continue_training(a, data);
  ASSERT_EQ(first.losses.size(), 10u);

  nb::manual_seed(2);  // other initial weights and another random stream: the file must fix both
  nb::Model b = make_resume_model();
  compile(b);
  b.load_checkpoint(path);
  EXPECT_EQ(b.epoch(), 2);
  EXPECT_EQ(b.global_step(), 10);
  const TrainRun second = continue_training(b, data);
  EXPECT_EQ(first.losses, second.losses);
  EXPECT_EQ(first.epoch_losses, second.epoch_losses);
  EXPECT_EQ(first.weights, second.weights);

  // The test can fail: without the random state (dropout) the losses differ.
  nb::Model c = make_resume_model();
  compile(c);
  c.load_checkpoint(path);
  nb::manual_seed(12345);
  const TrainRun third = continue_training(c, data);
  EXPECT_NE(first.losses, third.losses);
  EXPECT_EQ(first.losses[0] == third.losses[0], false);

  auto header = nb::read_safetensors_header(path);
  auto training = nlohmann::json::parse(header.metadata.at("nabla.training"));
  EXPECT_EQ(training.at("epoch"), 2);
  EXPECT_EQ(training.at("optimizer").at("name"), "Adam");
  EXPECT_DOUBLE_EQ(training.at("optimizer").at("hyperparameters").at("weight_decay").get<double>(), 1e-3);
  EXPECT_NE(header.find("optimizer.state.0.exp_avg"), nullptr);
  EXPECT_NE(header.find("optimizer.state.0.step"), nullptr);
  // A checkpoint also loads as weights; a different optimizer is refused.
  nb::Model d = make_resume_model(), e = make_resume_model();
  d.load(path);
  compile(e);
  e.load_checkpoint(path);
  EXPECT_EQ(weights_of(d), weights_of(e));
  d.compile(nb::SGD(), nb::CrossEntropyLoss());
  EXPECT_THAT(error_of([&] { d.load_checkpoint(path); }), HasSubstr("written by the Adam optimizer"));
}
