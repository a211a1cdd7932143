// CPU-vs-CUDA parity of the losses, forward and backward, and the errors a bad label raises on
// CUDA. The parity check is in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;
using nabla::test::error_of;

// ---- losses ------------------------------------------------------------------------------------

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
  }
  return "?";
}

std::vector<Case> loss_cases() {
  std::vector<Case> out;
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    const std::string rn = reduction_name(r);
    auto tol = [&](int64_t n) {  // n: elements summed into the loss
      const Tol t = r == Reduction::none ? Tol{} : sum_tol(n);
      return f32(t, {n > 64 ? 1e-3 : 1e-4, r == Reduction::mean ? 1e-6 / double(n) + 1e-9 : 1e-6});
    };
    for (Shape s : {Shape{8, 13}, Shape{4097}, Shape{1}}) {
      const int64_t n = nb::numel_of(s);
      out.push_back({"mse_" + shape_name(s) + "_" + rn, {arg(s), arg(s)},
                     [r](const auto& x) { return nb::mse_loss(x[0], x[1], r); }, tol(n)});
      out.push_back({"l1_" + shape_name(s) + "_" + rn, {arg(s), arg(s)},
                     [r](const auto& x) { return nb::l1_loss(x[0], x[1], r); }, tol(n)});
      out.push_back({"bce_" + shape_name(s) + "_" + rn, {arg(s, 0.02, 0.98), arg(s, 0, 1)},
                     [r](const auto& x) { return nb::binary_cross_entropy(x[0], x[1], r); }, tol(n)});
      out.push_back({"bce_logits_" + shape_name(s) + "_" + rn, {arg(s, -6, 6), arg(s, 0, 1)},
                     [r](const auto& x) { return nb::binary_cross_entropy_with_logits(x[0], x[1], r); }, tol(n)});
    }
    const std::vector<std::pair<int64_t, int64_t>> batches = {{64, 10}, {5, 4097}, {3, 1}, {1025, 7}, {2, 1023}};
    for (const auto& batch : batches) {
      const int64_t n = batch.first, c = batch.second;
      const std::string nc = std::to_string(n) + "x" + std::to_string(c);
      Options o = tol(std::max(n, c));
      out.push_back({"cross_entropy_int64_" + nc + "_" + rn, {arg({n, c}, -4, 4), given([=] { return labels(n, c); })},
                     [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, o});
      out.push_back({"cross_entropy_probs_" + nc + "_" + rn,
                     {arg({n, c}, -4, 4),
                      given([=] { return nb::softmax(nb::randn({n, c}), 1); }, /*grad=*/true)},
                     [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, o});
      out.push_back({"nll_" + nc + "_" + rn, {arg({n, c}, -6, 0), given([=] { return labels(n, c, DType::int64, 9); })},
                     [r](const auto& x) { return nb::nll_loss(x[0], x[1], r); }, o});
    }
    out.push_back({"cross_entropy_int32_64x10_" + rn,
                   {arg({64, 10}, -4, 4), given([] { return labels(64, 10, DType::int32); })},
                   [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, tol(64)});
    out.push_back({"cross_entropy_transposed_logits_64x10_" + rn,
                   {arg({64, 10}, -4, 4, Layout::transposed), given([] { return labels(64, 10); })},
                   [r](const auto& x) { return nb::cross_entropy(x[0], x[1], r); }, tol(64)});
  }
  return out;
}
INSTANTIATE_TEST_SUITE_P(Loss, Parity, ::testing::ValuesIn(loss_cases()), case_name);

std::vector<Case> loss_f64_cases() {
  const Options o = f64({1e-10, 1e-12}, {1e-10, 1e-13});
  return {
      {"cross_entropy_int64_64x10_f64", {arg({64, 10}, -4, 4), given([] { return labels(64, 10); })},
       [](const auto& x) { return nb::cross_entropy(x[0], x[1]); }, o},
      {"cross_entropy_int64_5x4097_f64", {arg({5, 4097}, -4, 4), given([] { return labels(5, 4097); })},
       [](const auto& x) { return nb::cross_entropy(x[0], x[1], Reduction::sum); }, o},
      {"mse_8x13_f64", {arg({8, 13}), arg({8, 13})}, [](const auto& x) { return nb::mse_loss(x[0], x[1]); }, o},
  };
}
INSTANTIATE_TEST_SUITE_P(LossF64, Parity, ::testing::ValuesIn(loss_f64_cases()), case_name);

// ---- label errors ------------------------------------------------------------------------------

bool names_loss_op(const std::string& what) {
  return what.find("cross_entropy") != std::string::npos || what.find("nll_loss") != std::string::npos;
}

// After a reported label error the device is usable: a correct step on CUDA gives the CPU's loss.
void expect_device_usable() {
  Tensor x = nb::randn({8, 5}), y = labels(8, 5);
  const double want = nb::cross_entropy(x, y).item();
  double got = 0;
  EXPECT_NO_THROW(got = nb::cross_entropy(x.to(kCuda), y.to(kCuda)).item());
  EXPECT_NEAR(got, want, 1e-5 * std::abs(want) + 1e-6);
  EXPECT_NO_THROW(nb::cuda::synchronize()) << "the reported error must not be reported again";
}

TEST_F(CudaTest, CrossEntropyLabelOutOfRangeThrowsAtItem) {
  Tensor logits = nb::randn({6, 10}, {.device = kCuda});
  // The last row's label points past the end of the logits: a kernel that indexes with it
  // unchecked reads (and, backward, writes) out of bounds, which compute-sanitizer reports.
  Tensor y = nb::from_vector(std::vector<int64_t>{0, 3, 10, 2, 9, 11}, {6}, {.dtype = DType::int64, .device = kCuda});
  const std::string what = error_of([&] { nb::cross_entropy(logits, y).item(); });
  EXPECT_TRUE(names_loss_op(what)) << what;
  EXPECT_NE(what.find("label 10 at index 2"), std::string::npos) << what;
  EXPECT_NE(what.find("10 classes"), std::string::npos) << what;
  // The CPU says the same at once.
  const std::string cpu = error_of([&] { nb::cross_entropy(logits.to(nb::Device::cpu()), y.to(nb::Device::cpu())); });
  EXPECT_NE(cpu.find("label 10 at index 2"), std::string::npos) << cpu;
  expect_device_usable();
}

TEST_F(CudaTest, CrossEntropyNegativeLabelThrowsAtSynchronize) {
  Tensor logits = nb::randn({4097, 3}, {.device = kCuda, .requires_grad = true});
  std::vector<int64_t> v(4097, 1);
  v[4000] = -3;
  v[4001] = 7;
  v[4096] = 5;  // past the end of the buffer if used unchecked
  Tensor y = nb::from_vector(v, {4097}, {.dtype = DType::int64, .device = kCuda});
  const std::string what = error_of([&] {
    Tensor loss = nb::cross_entropy(logits, y);
    loss.backward();
    nb::cuda::synchronize();
  });
  EXPECT_TRUE(names_loss_op(what)) << what;
  EXPECT_NE(what.find("label -3 at index 4000"), std::string::npos) << what;
  EXPECT_NE(what.find("3 bad labels"), std::string::npos) << what;
  expect_device_usable();
}

TEST_F(CudaTest, NllLossInt32LabelOutOfRangeThrowsAtCopyToHost) {
  Tensor logp = nb::log_softmax(nb::randn({5, 4}, {.device = kCuda}));
  Tensor y = nb::from_vector(std::vector<int32_t>{1, 2, 3, 4, 0}, {5}, {.dtype = DType::int32, .device = kCuda});
  const std::string what = error_of([&] { nb::nll_loss(logp, y, Reduction::none).to(nb::Device::cpu()); });
  EXPECT_NE(what.find("nll_loss"), std::string::npos) << what;
  EXPECT_NE(what.find("label 4 at index 3"), std::string::npos) << what;
  expect_device_usable();
}

// A training step with a bad batch fails; the next good step trains and matches the CPU.
TEST_F(CudaTest, TrainingContinuesAfterLabelError) {
  nb::manual_seed(11);
  nb::Sequential cpu{nb::Dense(12, 8), nb::ReLU(), nb::Dense(8, 3)};
  nb::manual_seed(11);
  nb::Sequential gpu{nb::Dense(12, 8), nb::ReLU(), nb::Dense(8, 3)};
  gpu.to(kCuda);
  nb::Adam oc(cpu.parameters(), {.lr = 1e-2}), og(gpu.parameters(), {.lr = 1e-2});
  Tensor x = nb::randn({9, 12});
  Tensor bad = nb::from_vector(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 0, 1}, {9}, {.dtype = DType::int64});
  const std::string what = error_of([&] {
    og.zero_grad();
    Tensor loss = nb::cross_entropy(gpu(x.to(kCuda)), bad.to(kCuda));
    loss.backward();
    loss.item();
  });
  EXPECT_TRUE(names_loss_op(what)) << what;
  // Whatever the failed step left in the gradients is discarded by zero_grad; the weights are
  // still the CPU's.
  ASSERT_TRUE(params_close(gpu.parameters(), cpu.parameters(), {0, 0}, "after the failed step"));
  Tensor good = labels(9, 3);
  for (int step = 0; step < 2; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = nb::cross_entropy(cpu(x), good), lg = nb::cross_entropy(gpu(x.to(kCuda)), good.to(kCuda));
    lc.backward();
    lg.backward();
    oc.step();
    og.step();
    EXPECT_TRUE(allclose(lg, lc, {1e-4, 1e-6}, "loss"));
  }
  EXPECT_TRUE(params_close(gpu.parameters(), cpu.parameters(), {1e-5, 1e-6}, "after two good steps"));
}

// Bad batches back to back, each with its own bad label: the flags must be reset (on the work
// stream) before the next check reads them, or a check sees the previous failure, skips its
// batch, and the error is lost or names the previous batch's label. Big batches keep the check
// kernel busy right after the reset, where an unordered reset would lose the race.
TEST_F(CudaTest, BackToBackLabelErrorsEachReportTheirOwnLabel) {
  const int64_t n = 1 << 20, classes = 10;
  Tensor logp = nb::log_softmax(nb::randn({n, classes}, {.device = kCuda}));
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<int64_t> v(static_cast<size_t>(n), 1);
    const int64_t at = 1000 + 37 * round, label = classes + round;
    v[static_cast<size_t>(at)] = label;
    Tensor y = nb::from_vector(v, {n}, {.dtype = DType::int64, .device = kCuda});
    const std::string what = error_of([&] { nb::nll_loss(logp, y).item(); });
    EXPECT_NE(what.find(fmt::format("label {} at index {}", label, at)), std::string::npos) << what;
    EXPECT_NE(what.find("1 bad labels"), std::string::npos) << what;
    // A good batch right after: no stale failure.
    Tensor good = nb::from_vector(std::vector<int64_t>(static_cast<size_t>(n), 2), {n},
                                  {.dtype = DType::int64, .device = kCuda});
    EXPECT_NO_THROW(nb::nll_loss(logp, good).item());
  }
}

}  // namespace
