// Tests of core/anomaly: detect_anomaly names the op, the layer and the step of the first NaN or
// Inf, forward and backward; off, nothing is checked; has_nonfinite and count_nonfinite.
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.h"

namespace nb = nabla;
using nabla::test::f32;
using nabla::test::f64;
using nabla::test::error_of;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

nb::Tensor leaf(std::vector<double> v, nb::DType dt = nb::DType::float64) {
  nb::Tensor t = dt == nb::DType::float64 ? f64(std::move(v)) : f32(std::move(v));
  t.requires_grad_(true);
  return t;
}

class Anomaly : public ::testing::Test {
 protected:
  void SetUp() override { nb::set_anomaly_step(0); }
  void TearDown() override { nb::detect_anomaly(false); }
};

}  // namespace

TEST(NonFinite, CountsNaNAndBothInfinities_f32_f64) {
  for (nb::DType dt : {nb::DType::float32, nb::DType::float64}) {
    nb::Tensor bad = leaf({1, kNaN, kInf, -kInf, 2, 0}, dt);
    EXPECT_TRUE(nb::has_nonfinite(bad)) << nb::dtype_name(dt);
    EXPECT_EQ(nb::count_nonfinite(bad), 3) << nb::dtype_name(dt);
    nb::Tensor good = leaf({1, -3e30, 0, 2}, dt);
    EXPECT_FALSE(nb::has_nonfinite(good)) << nb::dtype_name(dt);
    EXPECT_EQ(nb::count_nonfinite(good), 0) << nb::dtype_name(dt);
  }
  EXPECT_EQ(nb::tape_size(), 0u) << "the checks must not record anything";
}

TEST(NonFinite, LargeStridedAndNonFloatTensors) {
  std::vector<double> v(100000, 1.5);
  v[77777] = kNaN;
  nb::Tensor big = f32(v, {1000, 100});
  EXPECT_TRUE(nb::has_nonfinite(big));
  EXPECT_EQ(nb::count_nonfinite(big.t()), 1);  // a non-contiguous view
  EXPECT_FALSE(nb::has_nonfinite(nb::test::i64({1, 2, 3})));
  EXPECT_FALSE(nb::has_nonfinite(nb::Tensor::empty({0, 3})));
  EXPECT_THROW(nb::has_nonfinite(nb::Tensor()), nb::Error);
}

TEST_F(Anomaly, ForwardNaNNamesTheOpOutputAndCount) {
  nb::DetectAnomaly on;
  nb::Tensor x = leaf({-1, 2, -3});
  std::string msg = error_of([&] { nb::log(x); });
  EXPECT_NE(msg.find("anomaly (forward, step 0)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("op 'log'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 non-finite values"), std::string::npos) << msg;
  EXPECT_NE(msg.find("output 0 of shape [3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("its inputs were finite"), std::string::npos) << msg;
}

TEST_F(Anomaly, ForwardSaysWhenTheInputWasAlreadyBad) {
  nb::DetectAnomaly on;
  nb::Tensor x = leaf({1, kNaN});
  std::string msg = error_of([&] { x * 2.0; });
  EXPECT_NE(msg.find("op 'affine'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 0 of shape [2] already had 1 non-finite value"), std::string::npos) << msg;
}

TEST_F(Anomaly, BackwardOnlyInfNamesTheOp) {
  // sqrt(0) = 0 is fine forward; its gradient 1 / (2 sqrt(0)) is +Inf.
  nb::DetectAnomaly on;
  nb::Tensor x = leaf({0, 4});
  nb::Tensor loss = nb::sum(nb::sqrt(x) * 3.0);
  EXPECT_DOUBLE_EQ(loss.item(), 6.0);
  std::string msg = error_of([&] { loss.backward(); });
  EXPECT_NE(msg.find("anomaly (backward, step 0)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("backward of op 'sqrt'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 non-finite value"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gradient of input 0 of shape [2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("incoming gradients were finite"), std::string::npos) << msg;
  EXPECT_FALSE(x.grad().defined()) << "the bad gradient must not reach the leaf";
}

TEST_F(Anomaly, BackwardSaysWhenTheIncomingGradientWasBad) {
  nb::DetectAnomaly on;
  nb::Tensor x = leaf({1, 2});
  nb::Tensor y = x * 2.0;
  std::string msg = error_of([&] { y.backward(f64({kNaN, 1})); });
  EXPECT_NE(msg.find("backward of op 'affine'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("incoming gradient 0 of shape [2] already had 1 non-finite value"), std::string::npos)
      << msg;
}

TEST_F(Anomaly, OffNeverThrowsAndLetsNaNThrough) {
  ASSERT_FALSE(nb::anomaly_enabled());
  nb::Tensor x = leaf({-1, 0, 4});
  nb::Tensor y = nb::log(x) + nb::sqrt(x);
  EXPECT_TRUE(std::isnan(y.to_vector<double>()[0]));
  EXPECT_NO_THROW(nb::sum(nb::sqrt(x)).backward());
  EXPECT_TRUE(std::isinf(x.grad().to_vector<double>()[1]));
}

TEST_F(Anomaly, GuardRestoresThePreviousSetting) {
  {
    nb::DetectAnomaly on;
    EXPECT_TRUE(nb::anomaly_enabled());
    {
      nb::DetectAnomaly off(false);
      EXPECT_FALSE(nb::anomaly_enabled());
      EXPECT_NO_THROW(nb::log(leaf({-1})));
    }
    EXPECT_TRUE(nb::anomaly_enabled());
  }
  EXPECT_FALSE(nb::anomaly_enabled());
}

TEST_F(Anomaly, UnrecordedOpsAreNotChecked) {
  nb::DetectAnomaly on;
  EXPECT_NO_THROW(nb::log(f64({-1})));  // no input requires grad
  nb::NoGrad no_grad;
  EXPECT_NO_THROW(nb::log(leaf({-1})));
}

TEST_F(Anomaly, StepCountsBackwardCallsAndCanBeSet) {
  nb::DetectAnomaly on;
  nb::Tensor x = leaf({1, 2});
  for (int i = 0; i < 3; ++i) nb::sum(x * 2.0).backward();
  EXPECT_EQ(nb::anomaly_step(), 3);
  std::string msg = error_of([&] { nb::log(x - 5.0); });
  EXPECT_NE(msg.find("step 3"), std::string::npos) << msg;
  nb::set_anomaly_step(41);
  msg = error_of([&] { nb::log(x - 5.0); });
  EXPECT_NE(msg.find("step 41"), std::string::npos) << msg;
}

TEST_F(Anomaly, SequentialLayerIsNamedInForward) {
  // float32 overflow: 1e30 * 1e30 is Inf, made by the Dense layer from finite inputs.
  nb::Sequential model{nb::Dense(2, 2), nb::ReLU()};
  {
    nb::NoGrad no_grad;
    for (nb::Tensor& p : model.parameters()) {
      float* d = p.data<float>();
      for (int64_t i = 0; i < p.numel(); ++i) d[i] = 1e30f;
    }
  }
  nb::Tensor x = f32({1e30, 1e30, 1, 1}, {2, 2});
  nb::DetectAnomaly on;
  std::string msg = error_of([&] { model(x); });
  EXPECT_NE(msg.find("op 'linear' in Sequential layer 0 (Dense(2->2, bias))"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("Sequential layer 0"), msg.rfind("Sequential layer 0")) << "named twice: " << msg;
  EXPECT_NE(msg.find("2 non-finite values"), std::string::npos) << msg;
  EXPECT_NE(msg.find("its inputs were finite"), std::string::npos) << msg;
}

TEST_F(Anomaly, ModuleCallAndUserScopesNameTheLayerInBackward) {
  nb::DetectAnomaly on;
  nb::Dense dense(2, 1);
  std::string msg = error_of([&] { dense(f32({kInf, 1}, {1, 2})); });
  EXPECT_NE(msg.find("op 'linear' in Dense(2->1, bias)"), std::string::npos) << msg;

  nb::Tensor x = leaf({0, 1});
  nb::Tensor y;
  {
    nb::AnomalyLayer scope("my block");
    EXPECT_EQ(nb::anomaly_layer(), "my block");
    y = nb::sqrt(x);
  }
  EXPECT_EQ(nb::anomaly_layer(), "");
  msg = error_of([&] { nb::sum(y).backward(); });
  EXPECT_NE(msg.find("backward of op 'sqrt' in my block"), std::string::npos) << msg;
}

TEST_F(Anomaly, FiniteTrainingStepsPassAndMatchOffMode) {
  // The checks read values and never change them: same losses with anomaly mode on and off.
  auto run = [](bool on) {
    nb::manual_seed(3);
    nb::Sequential model{nb::Dense(4, 8), nb::Tanh(), nb::Dense(8, 3)};
    nb::SGD opt(model.parameters(), {.lr = 0.1});
    nb::Tensor x = nb::randn({16, 4});
    std::vector<int64_t> labels(16);
    for (int i = 0; i < 16; ++i) labels[static_cast<size_t>(i)] = i % 3;
    nb::Tensor y = nb::test::i64(labels);
    nb::DetectAnomaly guard(on);
    std::vector<double> losses;
    for (int i = 0; i < 5; ++i) {
      nb::Tensor loss = nb::cross_entropy(model(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      losses.push_back(loss.item());
    }
    return losses;
  };
  EXPECT_EQ(run(true), run(false));
}
