// Module, Dense, activations, Dropout, Flatten, Sequential and the initializers.
#include <nabla/core/ops.h>
#include <nabla/layers/layers.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"

namespace nb = nabla;
using ::testing::HasSubstr;

using nb::test::error_of;

TEST(Sequential, NamesParametersAsPyTorch) {
  nb::Sequential model{nb::Flatten(), nb::Dense(12, 5), nb::ReLU(), nb::Dense(5, 3, {.bias = false})};
  auto named = model.named_parameters();
  ASSERT_EQ(named.size(), 3u);
  EXPECT_EQ(named[0].first, "1.weight");
  EXPECT_EQ(named[0].second.shape(), (nb::Shape{5, 12}));
  EXPECT_EQ(named[1].first, "1.bias");
  EXPECT_EQ(named[1].second.shape(), (nb::Shape{5}));
  EXPECT_EQ(named[2].first, "3.weight");
  EXPECT_EQ(model.num_parameters(), 5 * 12 + 5 + 3 * 5);
  for (auto& p : model.parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Sequential, NestedNamesAndSharedLayers) {
  auto shared = std::make_shared<nb::Dense>(4, 4);
  nb::Sequential inner{nb::Dense(4, 4), nb::Tanh()};
  nb::Sequential model{std::move(inner), shared, shared};
  auto named = model.named_parameters();
  ASSERT_EQ(named.size(), 6u);
  EXPECT_EQ(named[0].first, "0.0.weight");
  EXPECT_EQ(named[2].first, "1.weight");
  EXPECT_EQ(named[4].first, "2.weight");
  // The same layer twice: one set of weights, two names (as PyTorch's named_parameters with remove_duplicate=False).
  EXPECT_EQ(named[2].second.impl(), named[4].second.impl());
}

TEST(Sequential, ForwardMatchesManualComposition_Batch3) {
  nb::manual_seed(3);
  nb::Dense d1(6, 4), d2(4, 2);
  nb::Sequential model{d1, nb::ReLU(), d2};  // copies share parameters with d1, d2
  auto x = nb::randn({3, 6});
  auto y = model(x);
  auto ref = nb::linear(nb::relu(nb::linear(x, d1.weight(), d1.bias())), d2.weight(), d2.bias());
  auto a = y.to_vector<float>(), b = ref.to_vector<float>();
  ASSERT_EQ(a.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], b[i]);
}

// A Conv2d followed by a ReLU runs as one fused op (Conv2dParams::relu): the same output and
// gradients as the layers one by one, and one tape entry fewer per pair; not in anomaly mode,
// and not for a ReLU that follows anything else.
TEST(Sequential, FusesConv2dWithTheReLUAfterIt) {
  nb::manual_seed(5);
  nb::Conv2d c1(2, 8, 3, {.padding = 1}), c2(8, 4, 3);
  nb::Dense d(4 * 3 * 3, 3);
  nb::Sequential model{c1, nb::ReLU(), nb::MaxPool2d(2), c2, nb::ReLU(), nb::Flatten(), d, nb::ReLU()};
  const nb::Tensor x0 = nb::rand({3, 2, 10, 10}, {}, -1, 1);
  auto run = [&](bool layer_by_layer, bool anomaly) {
    nb::DetectAnomaly mode(anomaly);
    model.zero_grad();
    nb::Tensor x = x0.detach().clone().requires_grad_(true);
    const size_t before = nb::tape_size();
    nb::Tensor y = x;
    if (layer_by_layer) {
      for (size_t i = 0; i < model.size(); ++i) y = model[i](y);
    } else {
      y = model(x);
    }
    const size_t entries = nb::tape_size() - before;
    nb::sum(nb::mul(y, y)).backward();
    std::vector<std::vector<float>> out{y.to_vector<float>(), x.grad().to_vector<float>()};
    for (const nb::Tensor& p : model.parameters()) out.push_back(p.grad().to_vector<float>());
    return std::make_pair(out, entries);
  };
  const auto [fused, fused_entries] = run(false, false);
  const auto [separate, separate_entries] = run(true, false);
  const auto [anomaly, anomaly_entries] = run(false, true);
  EXPECT_EQ(fused_entries + 2, separate_entries) << "two Conv2d + ReLU pairs fused";
  EXPECT_EQ(anomaly_entries, separate_entries) << "anomaly mode runs each layer on its own";
  ASSERT_EQ(fused.size(), separate.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(fused[i], separate[i]) << "output " << i;
    EXPECT_EQ(anomaly[i], separate[i]) << "output " << i;
  }
}

TEST(Sequential, ShapeErrorNamesLayerAndShapes) {
  nb::Sequential model{nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 10)};
  auto msg = error_of([&] { model(nb::zeros({32, 783})); });
  EXPECT_THAT(msg, HasSubstr("Sequential layer 0"));
  EXPECT_THAT(msg, HasSubstr("Dense(784->256)"));
  EXPECT_THAT(msg, HasSubstr("[32, 783]"));
  EXPECT_THAT(msg, HasSubstr("[*, 784]"));
  EXPECT_THAT(error_of([&] { model[3]; }), HasSubstr("index 3 out of range for 3 layers"));
}

TEST(Dense, ForwardValuesByHand_2x3to2) {
  nb::Dense d(3, 2);
  d.weight().copy_(nb::from_vector({1, 2, 3, -1, 0, 1}, {2, 3}));
  d.bias().copy_(nb::from_vector({0.5, -0.5}));
  auto y = d(nb::from_vector({1, 1, 1, 2, 0, -1}, {2, 3})).to_vector<float>();
  // rows: [1,1,1] -> [6.5, -0.5]; [2,0,-1] -> [2-3+0.5, -2-1-0.5] = [-0.5, -3.5]
  EXPECT_EQ(y, (std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f}));
}

TEST(Dense, ThreeDimensionalInputAndToString) {
  nb::Dense d(5, 7);
  EXPECT_EQ(d(nb::zeros({2, 3, 5})).shape(), (nb::Shape{2, 3, 7}));
  EXPECT_EQ(d.to_string(), "Dense(5->7, bias)");
  EXPECT_EQ(nb::Dense(5, 7, {.bias = false}).to_string(), "Dense(5->7, no bias)");
  EXPECT_THAT(error_of([] { nb::Dense(0, 3); }), HasSubstr("Dense"));
}

TEST(Dense, GradientsReachWeightAndBias) {
  nb::Dense d(3, 2, {.dtype = nb::DType::float64});
  auto x = nb::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, {.dtype = nb::DType::float64});
  nb::sum(d(x)).backward();
  // d(sum(xW^T + b))/dW[o, i] = sum over rows of x[:, i]; /db[o] = rows
  EXPECT_EQ(d.weight().grad().to_vector<double>(), (std::vector<double>{5, 7, 9, 5, 7, 9}));
  EXPECT_EQ(d.bias().grad().to_vector<double>(), (std::vector<double>{2, 2}));
}

TEST(Module, TrainEvalPropagatesAndDropoutFollows) {
  nb::Sequential model{nb::Dense(4, 4), nb::Dropout(0.5)};
  EXPECT_TRUE(model.is_training());
  EXPECT_TRUE(model[1].is_training());
  model.eval();
  EXPECT_FALSE(model[1].is_training());
  auto x = nb::ones({64, 4});
  auto h = model[0](x);
  auto y = model(x);
  EXPECT_EQ(y.to_vector<float>(), h.to_vector<float>());  // identity in eval
  model.train();
  nb::manual_seed(0);
  auto z = model[1](nb::ones({1000})).to_vector<float>();
  int zeros = 0;
  for (float v : z) {
    EXPECT_TRUE(v == 0.0f || v == 2.0f) << v;
    zeros += v == 0.0f;
  }
  EXPECT_GT(zeros, 400);
  EXPECT_LT(zeros, 600);
  EXPECT_THAT(error_of([] { nb::Dropout(1.5); }), HasSubstr("Dropout"));
}

TEST(Module, ToDtypeKeepsIdentityAndZeroGrad) {
  nb::Sequential model{nb::Dense(3, 2)};
  auto w = model.parameters()[0];
  nb::sum(model(nb::ones({1, 3}))).backward();
  EXPECT_TRUE(w.grad().defined());
  model.zero_grad();
  EXPECT_FALSE(w.grad().defined());
  model.to(nb::DType::float64);
  EXPECT_EQ(w.dtype(), nb::DType::float64);  // the same handle sees the converted data
  EXPECT_EQ(model(nb::ones({1, 3}, {.dtype = nb::DType::float64})).dtype(), nb::DType::float64);
  model.to(nb::Device::cpu());
  EXPECT_THAT(error_of([&] { model.to(nb::DType::int64); }), HasSubstr("float32 or float64"));
}

TEST(Activations, LayersMatchOps) {
  auto x = nb::from_vector({-2, -0.5, 0.5, 2}, {2, 2});
  auto same = [&](nb::Module&& m, const nb::Tensor& ref) {
    EXPECT_EQ(m(x).to_vector<float>(), ref.to_vector<float>()) << m.to_string();
  };
  same(nb::ReLU(), nb::relu(x));
  same(nb::LeakyReLU(0.2), nb::leaky_relu(x, 0.2));
  same(nb::ELU(0.7), nb::elu(x, 0.7));
  same(nb::Sigmoid(), nb::sigmoid(x));
  same(nb::Tanh(), nb::tanh(x));
  same(nb::GELU(), nb::gelu(x));
  same(nb::SiLU(), nb::silu(x));
  same(nb::Hardtanh(), nb::hardtanh(x));
  same(nb::Hardtanh(-0.25, 1.5), nb::hardtanh(x, -0.25, 1.5));
  same(nb::Softmax(), nb::softmax(x, -1));
  same(nb::LogSoftmax(0), nb::log_softmax(x, 0));
  EXPECT_EQ(nb::Flatten()(nb::zeros({2, 3, 4, 5})).shape(), (nb::Shape{2, 60}));
  EXPECT_EQ(nb::Flatten(2)(nb::zeros({2, 3, 4, 5})).shape(), (nb::Shape{2, 3, 20}));
  EXPECT_EQ(nb::LeakyReLU(0.2).to_string(), "LeakyReLU(0.2)");
  EXPECT_EQ(nb::SiLU().to_string(), "SiLU");
  EXPECT_EQ(nb::Hardtanh().to_string(), "Hardtanh(min_val=-1, max_val=1)");
  EXPECT_EQ(nb::Hardtanh(-0.5, 2).to_string(), "Hardtanh(min_val=-0.5, max_val=2)");
}

TEST(Activations, HardtanhMinAboveMaxIsAnErrorAtConstruction) {
  EXPECT_THAT(error_of([] { nb::Hardtanh(1, -1); }),
              ::testing::AllOf(HasSubstr("Hardtanh"), HasSubstr("min_val 1"), HasSubstr("max_val -1")));
}

TEST(Activations, SiLUAndHardtanhInASequential_Backward) {
  nb::manual_seed(3);
  nb::Sequential model{nb::Dense(4, 8), nb::SiLU(), nb::Dense(8, 8), nb::Hardtanh(-0.5, 0.5), nb::Dense(8, 2)};
  auto x = nb::rand({5, 4}, {}, -1, 1);
  auto y = model(x);
  EXPECT_EQ(y.shape(), (nb::Shape{5, 2}));
  nb::sum(y).backward();
  for (const auto& p : model.parameters()) EXPECT_TRUE(p.grad().defined());
}

// Sample moments of each initializer against its defining variance.
class InitTest : public ::testing::TestWithParam<std::tuple<nb::Init, double>> {};

TEST_P(InitTest, MeanAndVarianceMatchDefinition_fan300x200) {
  auto [kind, var] = GetParam();
  nb::manual_seed(42);
  auto t = nb::initialize({300, 200}, kind, 200, 300, {.dtype = nb::DType::float64});
  auto v = t.to_vector<double>();
  double m = 0, s = 0;
  for (double e : v) m += e;
  m /= v.size();
  for (double e : v) s += (e - m) * (e - m);
  s /= v.size();
  EXPECT_NEAR(m, kind == nb::Init::ones ? 1.0 : 0.0, 0.002 + 3 * std::sqrt(var / v.size()));
  EXPECT_NEAR(s, var, 0.03 * var + 1e-12) << nb::init_name(kind);
}

INSTANTIATE_TEST_SUITE_P(
    Initializers, InitTest,
    ::testing::Values(std::make_tuple(nb::Init::torch_default, 1.0 / 200 / 3),  // U(+-a): a^2/3
                      std::make_tuple(nb::Init::glorot_uniform, 2.0 / 500), std::make_tuple(nb::Init::glorot_normal, 2.0 / 500),
                      std::make_tuple(nb::Init::he_uniform, 2.0 / 200), std::make_tuple(nb::Init::he_normal, 2.0 / 200),
                      std::make_tuple(nb::Init::lecun_uniform, 1.0 / 200), std::make_tuple(nb::Init::lecun_normal, 1.0 / 200),
                      std::make_tuple(nb::Init::zeros, 0.0), std::make_tuple(nb::Init::ones, 0.0)),
    [](const auto& info) { return std::string(nb::init_name(std::get<0>(info.param))); });

TEST(Init, UniformStaysInBounds) {
  auto v = nb::initialize({1000}, nb::Init::he_uniform, 6, 6, {.dtype = nb::DType::float64}).to_vector<double>();
  for (double e : v) EXPECT_LE(std::abs(e), 1.0);  // sqrt(6/6)
  EXPECT_THAT(error_of([] { nb::initialize({2}, nb::Init::he_normal, 0, 3); }), HasSubstr("fan_in"));
}
