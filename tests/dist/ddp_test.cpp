// Data-parallel training across ranks: DistributedDataParallel and Model::fit on a distributed
// model, run under `mpiexec -n 2` (and alone: a world of one, where they must equal plain
// training). Every rank builds the reference (one process, the doubled batch) itself.
#include <nabla/dist/ddp.h>
#include <nabla/dist/dist.h>
#include <nabla/nabla.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>

namespace nb = nabla;
using nb::DType;
using nb::Tensor;
using ::testing::HasSubstr;

namespace {

// A regression set: x [n, 6], y [n, 3] (float64 or float32), the same on every rank.
nb::data::Dataset regression_data(int64_t n, DType dtype, uint64_t seed = 7) {
  nb::manual_seed(seed);
  Tensor x = nb::randn({n, 6}, {.dtype = DType::float64});
  Tensor w = nb::randn({6, 3}, {.dtype = DType::float64});
  Tensor y = nb::matmul(nb::tanh(x), w) + nb::randn({n, 3}, {.dtype = DType::float64}, 0, 0.1);
  return {x.to(dtype), y.to(dtype)};
}

// A classification set: x [n, 5], y int64 [n] in 0..3.
nb::data::Dataset class_data(int64_t n, uint64_t seed = 11) {
  nb::manual_seed(seed);
  Tensor x = nb::randn({n, 5});
  Tensor y = nb::argmax(nb::matmul(x, nb::randn({5, 4})), 1);
  return {x, y};
}

nb::Model mlp(DType dtype, uint64_t seed, int64_t in = 6, int64_t out = 3) {
  nb::manual_seed(seed);
  nb::Model m{nb::Dense(in, 16, {.dtype = dtype}), nb::Tanh(), nb::Dense(16, 16, {.dtype = dtype}), nb::ReLU(),
              nb::Dense(16, out, {.dtype = dtype})};
  return m;
}

double max_abs_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto va = a[i].to(DType::float64).to_vector<double>(), vb = b[i].to(DType::float64).to_vector<double>();
    for (size_t k = 0; k < va.size(); ++k) d = std::max(d, std::abs(va[k] - vb[k]));
  }
  return d;
}

// Every rank's parameters (as float64) are the same: their max over ranks equals their min.
void expect_equal_across_ranks(const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    Tensor hi = p.to(DType::float64).contiguous(), lo = nb::neg(hi);
    nb::dist::allreduce(hi, nb::dist::ReduceOp::max);
    nb::dist::allreduce(lo, nb::dist::ReduceOp::max);
    const auto vh = hi.to_vector<double>(), vl = lo.to_vector<double>();
    for (size_t k = 0; k < vh.size(); ++k) ASSERT_EQ(vh[k], -vl[k]) << "ranks differ at element " << k;
  }
}

struct Recipe {
  const char* name;
  std::function<std::shared_ptr<nb::Optimizer>()> make;
  double clip_norm = 0;
  double l2 = 0;  // an L2 penalty on the first layer's weight (Model::regularize)
};

std::vector<Recipe> recipes() {
  return {{"sgd_momentum", [] { return std::make_shared<nb::SGD>(nb::SGDOptions{.lr = 0.05, .momentum = 0.9}); }},
          {"adam", [] { return std::make_shared<nb::Adam>(nb::AdamOptions{.lr = 3e-3}); }},
          {"adam_clipped", [] { return std::make_shared<nb::Adam>(nb::AdamOptions{.lr = 3e-3}); }, 0.05},
          {"sgd_l2", [] { return std::make_shared<nb::SGD>(nb::SGDOptions{.lr = 0.05}); }, 0, 1e-2}};
}

// Trains (distributed or not) for the given steps' worth of data and returns the parameters.
std::vector<Tensor> train(const Recipe& r, DType dtype, const nb::data::Dataset& data, int64_t batch, bool distributed,
                          int64_t epochs = 1) {
  nb::Model m = mlp(DType::float64, 3);  // the same initial weights in both dtypes
  if (dtype != DType::float64) m.module().to(dtype);
  if (distributed) m.distribute();
  m.compile(r.make(), nb::MSELoss(), {}, {.clip_norm = r.clip_norm});
  if (r.l2 > 0) m.regularize(m.layer(0), nb::L2(r.l2));
  m.fit(data, {.epochs = epochs, .batch_size = batch, .seed = 5, .verbose = 0});
  return m.parameters();
}

// ---- equivalence with one process and the doubled batch -------------------------------------

// 2 ranks x batch 32 against 1 rank x batch 64, 20 steps, float64: the same global batches (each
// rank takes half of each), so the averaged gradient is the doubled batch's up to the rounding of
// a different summation order (about 1e-16 relative), which 20 steps of these optimizers do not
// blow up to 1e-12.
TEST(DdpEquivalence, TwoRanksTimesHalfTheBatchEqualOneProcessFloat64) {
  const int world = nb::dist::world_size();
  const auto data = regression_data(64 * 20, DType::float64);
  for (const Recipe& r : recipes()) {
    SCOPED_TRACE(r.name);
    const auto ref = train(r, DType::float64, data, 64, false);
    const auto got = train(r, DType::float64, data, 64 / world, true);
    EXPECT_LE(max_abs_diff(ref, got), 1e-12);
    expect_equal_across_ranks(got);
  }
}

// Uneven last batches: 64 * 5 + 3 samples (the last global batch has 3 rows: 1 and 2 per rank)
// and 64 * 5 + 1 (one rank gets none: it joins the average with weight 0). Each rank's gradient
// is weighted by its share of the global batch, so the result is still the doubled batch's.
TEST(DdpEquivalence, UnevenAndEmptyLastBatchesFloat64) {
  const int world = nb::dist::world_size();
  for (int64_t n : {64 * 5 + 3, 64 * 5 + 1}) {
    SCOPED_TRACE(n);
    const auto data = regression_data(n, DType::float64);
    const Recipe r = recipes()[1];
    const auto ref = train(r, DType::float64, data, 64, false, 2);
    const auto got = train(r, DType::float64, data, 64 / world, true, 2);
    EXPECT_LE(max_abs_diff(ref, got), 1e-12);
    expect_equal_across_ranks(got);
  }
}

// float32: the distributed run is the same computation as the one-process run in another
// summation order, so its distance from the float64 result is of the size of the one-process
// float32 run's own rounding error e32 = max |ref32 - ref64| (about 1e-7 here, over 20 steps and
// ~450 parameters). Bound: 4 e32 (measured: 1.0-1.1 e32). A DDP that does not average (weight 1)
// is off by the size of the steps (1e-2 and more) for SGD.
TEST(DdpEquivalence, Float32WithinTheRoundingOfFloat32) {
  const int world = nb::dist::world_size();
  const auto data64 = regression_data(64 * 20, DType::float64);
  const nb::data::Dataset data32{data64.x.to(DType::float32), data64.y.to(DType::float32)};
  for (const Recipe& r : recipes()) {
    SCOPED_TRACE(r.name);
    const auto ref64 = train(r, DType::float64, data64, 64, false);
    const auto ref32 = train(r, DType::float32, data32, 64, false);
    const auto got32 = train(r, DType::float32, data32, 64 / world, true);
    const double e32 = max_abs_diff(ref32, ref64);
    EXPECT_LE(max_abs_diff(got32, ref64), 4 * e32) << "e32 " << e32;
    expect_equal_across_ranks(got32);
  }
}

// ---- overlap -----------------------------------------------------------------------------------

// The last layer's gradients are final early in the backward; their bucket's allreduce must be
// moving data while the backward still computes the first (large) layer's. The engine's start
// time of bucket 0 is compared with the end of backward(); on a busy machine one step can miss,
// so one of five must show it (a DDP that waits for the end of the backward never does).
TEST(DdpOverlap, FirstBucketStartsBeforeTheBackwardEnds) {
  if (nb::dist::world_size() == 1) GTEST_SKIP() << "needs 2 ranks";
  nb::manual_seed(1);
  nb::Sequential model{nb::Dense(1024, 1024), nb::ReLU(), nb::Dense(1024, 1024), nb::ReLU(), nb::Dense(1024, 8)};
  auto params = model.parameters();
  // Buckets of about one layer: the last Dense's weight and bias come first.
  nb::dist::DistributedDataParallel ddp(params, {}, {.bucket_cap_mb = 1, .record_timeline = true});
  ASSERT_GE(ddp.num_buckets(), 3);
  const auto b0 = ddp.bucket_parameters(0);
  EXPECT_EQ(b0.front(), static_cast<int>(params.size()) - 1) << "bucket 0 must hold the last parameter";
  Tensor x = nb::randn({256, 1024}), y = nb::randn({256, 8});
  int overlapped = 0;
  for (int step = 0; step < 5; ++step) {
    for (auto& p : params) p.zero_grad();
    ddp.clear_timeline();
    Tensor loss = nb::mse_loss(model.forward(x), y);
    loss.backward();
    const auto backward_end = std::chrono::steady_clock::now();
    ddp.synchronize();
    std::optional<std::chrono::steady_clock::time_point> launch0, started0;
    for (const auto& e : ddp.timeline()) {
      if (e.bucket != 0) continue;
      if (e.what == "launch") launch0 = e.at;
      if (e.what == "done") started0 = e.started;
    }
    ASSERT_TRUE(launch0 && started0);
    EXPECT_LT(*launch0, backward_end) << "bucket 0 was launched only after the backward";
    if (*started0 < backward_end) ++overlapped;
  }
  EXPECT_GE(overlapped, 1) << "bucket 0's allreduce never started before the backward ended";
  expect_equal_across_ranks(params);
}

// ---- the gradients are the average ---------------------------------------------------------

TEST(Ddp, GradientsAreTheAverageOverRanksAndUnusedParametersCountAsZero) {
  const int rank = nb::dist::rank(), world = nb::dist::world_size();
  Tensor a = nb::zeros({3}, {.dtype = DType::float64}).requires_grad_();
  Tensor b = nb::zeros({2}, {.dtype = DType::float64}).requires_grad_();
  nb::dist::DistributedDataParallel ddp({a, b});
  // Rank r: loss = (r + 1) * sum(a); b is used on rank 0 only.
  Tensor loss = nb::sum(a) * double(rank + 1);
  if (rank == 0) loss = loss + nb::sum(b) * 4.0;
  loss.backward();
  ddp.synchronize();
  double mean_coef = 0;
  for (int r = 0; r < world; ++r) mean_coef += (r + 1.0) / world;
  EXPECT_EQ(a.grad().to_vector<double>(), std::vector<double>(3, mean_coef));
  EXPECT_EQ(b.grad().to_vector<double>(), std::vector<double>(2, 4.0 / world));
  // The second step reuses the buckets.
  a.zero_grad();
  b.zero_grad();
  (nb::sum(a) * 2.0).backward();
  ddp.synchronize();
  EXPECT_EQ(a.grad().to_vector<double>(), std::vector<double>(3, 2.0));
  if (world > 1) {
    EXPECT_EQ(b.grad().to_vector<double>(), std::vector<double>(2, 0.0));  // unused everywhere: zero
  } else {
    EXPECT_FALSE(b.grad().defined());  // one process: synchronize changes nothing
  }
}

TEST(Ddp, StartsFromRankZerosParameters) {
  nb::manual_seed(100 + nb::dist::rank());  // different weights on every rank
  nb::Sequential model{nb::Dense(4, 3), nb::BatchNorm1d(3)};
  auto params = model.parameters();
  std::vector<Tensor> buffers;
  for (auto& [name, t] : model.named_buffers()) buffers.push_back(t);
  nb::dist::DistributedDataParallel ddp(params, buffers);
  expect_equal_across_ranks(params);
}

TEST(Ddp, DifferentModelsOnTheRanksAreAnErrorNamingBoth) {
  if (nb::dist::world_size() == 1) GTEST_SKIP() << "needs 2 ranks";
  const int rank = nb::dist::rank();
  nb::Sequential model{nb::Dense(4, rank == 0 ? 3 : 5), nb::Dense(rank == 0 ? 3 : 5, 2)};
  try {
    nb::dist::DistributedDataParallel ddp(model.parameters());
    ADD_FAILURE() << "no error";
  } catch (const nb::dist::CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("differ between ranks"));
    EXPECT_THAT(e.what(), HasSubstr("[3, 4]"));
    EXPECT_THAT(e.what(), HasSubstr("[5, 4]"));
  }
  nb::dist::barrier();  // the group still works
}

TEST(Ddp, ASecondBackwardBeforeSynchronizeIsAnError) {
  if (nb::dist::world_size() == 1) GTEST_SKIP() << "needs 2 ranks (one process averages nothing)";
  Tensor a = nb::ones({2}, {.dtype = DType::float64}).requires_grad_();
  nb::dist::DistributedDataParallel ddp({a});
  nb::sum(a).backward();
  EXPECT_THROW(nb::sum(a).backward(), nb::Error);
  ddp.synchronize();
}

// ---- fit across ranks --------------------------------------------------------------------------

TEST(DistFit, MetricsAndLossesAreThoseOfTheWholeData) {
  const auto data = class_data(500);
  const auto val = class_data(203, 12);
  nb::manual_seed(4);
  nb::Model a{nb::Dense(5, 16), nb::ReLU(), nb::Dense(16, 4)};
  a.distribute();
  a.compile(nb::Adam({.lr = 1e-2}), nb::CrossEntropyLoss(), {"accuracy", "f1"});
  auto h = a.fit(data, {.epochs = 2, .batch_size = 25, .validation = val, .verbose = 0});
  // evaluate on a distributed model shards the data; on a plain copy of the weights it does not.
  const nb::Logs dist_eval = a.evaluate(val);
  nb::manual_seed(4);
  nb::Model b{nb::Dense(5, 16), nb::ReLU(), nb::Dense(16, 4)};
  b.compile(nb::Adam({.lr = 1e-2}), nb::CrossEntropyLoss(), {"accuracy", "f1"});
  b.load_state_dict(a.state_dict());
  const nb::Logs whole = b.evaluate(val);
  for (const char* k : {"loss", "accuracy", "f1"}) {
    SCOPED_TRACE(k);
    EXPECT_NEAR(dist_eval.at(k), whole.at(k), 1e-6);
    EXPECT_NEAR(h.at(std::string("val_") + k).back(), whole.at(k), 1e-6);
  }
  // The same logs on every rank (summed, not each rank's own).
  Tensor acc = nb::full({1}, h.at("accuracy").back(), {.dtype = DType::float64});
  Tensor hi = acc.clone(), lo = nb::neg(acc);
  nb::dist::allreduce(hi, nb::dist::ReduceOp::max);
  nb::dist::allreduce(lo, nb::dist::ReduceOp::max);
  EXPECT_EQ(hi.item(), -lo.item());
}

TEST(DistFit, OnlyRankZeroWritesFiles) {
  const int rank = nb::dist::rank();
  const auto dir = std::filesystem::temp_directory_path() / "nabla_dist_fit_files";
  if (rank == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  nb::dist::barrier();
  // The same paths on every rank (one machine): a rank != 0 writing would show as a second file
  // or a torn one; each rank also names a file of its own, which must exist for rank 0 only.
  const std::string own = (dir / fmt::format("rank{}.csv", rank)).string();
  nb::Model m = mlp(DType::float32, 3);
  m.distribute();
  m.compile(nb::SGD({.lr = 0.01}), nb::MSELoss());
  m.fit(regression_data(200, DType::float32),
        {.epochs = 2, .batch_size = 20, .callbacks = {nb::ModelCheckpoint((dir / "ckpt.safetensors").string()),
                                                      nb::CSVLogger(own)},
         .verbose = 0});
  nb::dist::barrier();
  EXPECT_EQ(std::filesystem::exists(own), rank == 0);
  EXPECT_TRUE(std::filesystem::exists(dir / "ckpt.safetensors"));
  nb::dist::barrier();
}

// Resuming from a checkpoint that rank 0 wrote gives the parameters of an uninterrupted run.
TEST(DistFit, ResumingFromACheckpointEqualsAnUninterruptedRun) {
  const auto data = regression_data(300, DType::float64);
  const auto path = (std::filesystem::temp_directory_path() / "nabla_dist_resume.safetensors").string();
  auto make = [] {
    nb::Model m = mlp(DType::float64, 21);
    m.distribute();
    m.compile(nb::Adam({.lr = 1e-2}), nb::MSELoss());
    return m;
  };
  nb::Model whole = make();
  whole.fit(data, {.epochs = 3, .batch_size = 16, .seed = 9, .verbose = 0});

  nb::Model first = make();
  first.fit(data, {.epochs = 1, .batch_size = 16, .seed = 9, .verbose = 0});
  if (nb::dist::rank() == 0) first.save_checkpoint(path);
  nb::dist::barrier();
  nb::Model resumed = make();
  resumed.load_checkpoint(path);
  resumed.fit(data, {.epochs = 3, .batch_size = 16, .seed = 9, .verbose = 0, .initial_epoch = resumed.epoch()});
  EXPECT_LE(max_abs_diff(whole.parameters(), resumed.parameters()), 1e-12);
  expect_equal_across_ranks(resumed.parameters());
  nb::dist::barrier();
}

}  // namespace
