// CPU-vs-CUDA parity of the recurrent layers and the embedding, plus what only the CUDA side has:
// the weight layout taken from cuDNN's weight space (which path, offsets inside it and apart),
// the LSTM / GRU layers repacking their parameters for cuDNN after to(cuda) and an optimizer
// updating that packed buffer, the embedding backward giving the same bits twice, and an
// out-of-range index reported at the next synchronization.
//
// The CPU backend is the reference. rnn_layer runs on the same random inputs on both (initial
// states or none, one or two directions), compares y, h and c, then backward of a random
// weighting of all three and compares the gradients of x, h0, c0 and every weight. Tolerances,
// float32: 1e-3 relative, absolute terms growing with the square root of the longest sum
// (over the steps, the batch and the features for a weight gradient). float64: 1e-9 relative.
//
// Every test skips itself without a CUDA device (tests/cuda_test_util.h).
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include "cuda_test_util.h"

#include <nabla/cuda/test_hooks.cuh>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

namespace nb = nabla;
using nb::DType;
using nb::RnnCell;
using nb::Shape;
using nb::Tensor;

namespace {

using nabla::test::parity::allclose;
using nabla::test::kCuda;
using nabla::test::parity::same_bits;
using nabla::test::parity::Tol;

class CudaRnn : public nabla::test::CudaTest {};

// ---- rnn_layer ------------------------------------------------------------------------------------

struct RnnCase {
  std::string name;
  RnnCell cell;
  int64_t T, B, I, H, D;
  bool states;  // h0 (and c0 for an LSTM) given
  DType dtype = DType::float32;
};
void PrintTo(const RnnCase& c, std::ostream* os) { *os << c.name; }

RnnCase rnn_case(RnnCell cell, int64_t T, int64_t B, int64_t I, int64_t H, int64_t D, bool states,
                 DType dtype = DType::float32) {
  const std::string name = fmt::format("{}_T{}_B{}_I{}_H{}_{}{}{}", cell == RnnCell::lstm ? "lstm" : "gru", T, B, I,
                                       H, D == 2 ? "bidirectional" : "unidirectional", states ? "_states" : "",
                                       dtype == DType::float64 ? "_f64" : "");
  return {name, cell, T, B, I, H, D, states, dtype};
}

std::vector<RnnCase> f32_cases() {
  std::vector<RnnCase> c;
  for (RnnCell cell : {RnnCell::lstm, RnnCell::gru})
    for (int64_t T : {1, 7, 33})
      for (int64_t B : {1, 5})
        for (int64_t H : {8, 33})
          for (int64_t D : {1, 2})
            for (bool states : {false, true}) c.push_back(rnn_case(cell, T, B, 6, H, D, states));
  return c;
}

std::vector<RnnCase> f64_cases() {
  std::vector<RnnCase> c;
  for (RnnCell cell : {RnnCell::lstm, RnnCell::gru}) {
    c.push_back(rnn_case(cell, 7, 5, 6, 8, 1, true, DType::float64));
    c.push_back(rnn_case(cell, 33, 5, 6, 33, 2, true, DType::float64));
    c.push_back(rnn_case(cell, 1, 1, 6, 8, 2, false, DType::float64));
  }
  return c;
}

// The inputs of one case on one device: x, [h0, c0], then w_ih, w_hh, b_ih, b_hh per direction.
struct RnnInputs {
  Tensor x, h0, c0;
  std::vector<nb::RnnWeights> w;
  std::vector<Tensor> all() const {
    std::vector<Tensor> v{x};
    if (h0.defined()) v.push_back(h0);
    if (c0.defined()) v.push_back(c0);
    for (const nb::RnnWeights& d : w) v.insert(v.end(), {d.w_ih, d.w_hh, d.b_ih, d.b_hh});
    return v;
  }
};

RnnInputs make_inputs(const RnnCase& k) {
  const nb::TensorOptions o{.dtype = k.dtype};
  const int64_t gh = (k.cell == RnnCell::lstm ? 4 : 3) * k.H;
  const double bound = 1.0 / std::sqrt(double(k.H));
  RnnInputs in;
  in.x = nb::rand({k.T, k.B, k.I}, o, -1, 1);
  if (k.states) {
    in.h0 = nb::rand({k.D, k.B, k.H}, o, -0.8, 0.8);
    if (k.cell == RnnCell::lstm) in.c0 = nb::rand({k.D, k.B, k.H}, o, -0.8, 0.8);
  }
  for (int64_t d = 0; d < k.D; ++d)
    in.w.push_back({nb::rand({gh, k.I}, o, -bound, bound), nb::rand({gh, k.H}, o, -bound, bound),
                    nb::rand({gh}, o, -bound, bound), nb::rand({gh}, o, -bound, bound)});
  return in;
}

RnnInputs to_leaves(const RnnInputs& src, nb::Device dev) {
  auto leaf = [&](const Tensor& t) { return t.defined() ? t.detach().to(dev).requires_grad_(true) : Tensor(); };
  RnnInputs r{leaf(src.x), leaf(src.h0), leaf(src.c0), {}};
  for (const nb::RnnWeights& d : src.w) r.w.push_back({leaf(d.w_ih), leaf(d.w_hh), leaf(d.b_ih), leaf(d.b_hh)});
  return r;
}

std::vector<std::string> input_names(const RnnCase& k) {
  std::vector<std::string> n{"x"};
  if (k.states) n.push_back("h0");
  if (k.states && k.cell == RnnCell::lstm) n.push_back("c0");
  for (int64_t d = 0; d < k.D; ++d)
    for (const char* w : {"w_ih", "w_hh", "b_ih", "b_hh"}) n.push_back(fmt::format("{} of direction {}", w, d));
  return n;
}

class RnnLayerParity : public nabla::test::CudaParamTest<RnnCase> {
 protected:
  void run() {
    const RnnCase& k = GetParam();
    const RnnInputs base = make_inputs(k);
    const RnnInputs c = to_leaves(base, nb::Device::cpu()), g = to_leaves(base, kCuda);
    nb::RnnLayerResult rc = nb::rnn_layer(k.cell, c.x, c.h0, c.c0, c.w);
    nb::RnnLayerResult rg = nb::rnn_layer(k.cell, g.x, g.h0, g.c0, g.w);
    const bool f64 = k.dtype == DType::float64;
    const double sf = std::sqrt(double(k.T * std::max(k.I, k.H)));
    const Tol fwd = f64 ? Tol{1e-9, 1e-12 * sf} : Tol{1e-3, 1e-5 * sf};
    EXPECT_TRUE(allclose(rg.y, rc.y, fwd, "y"));
    EXPECT_TRUE(allclose(rg.h, rc.h, fwd, "h"));
    if (k.cell == RnnCell::lstm) {
      EXPECT_TRUE(allclose(rg.c, rc.c, fwd, "c"));
    }

    // Backward of sum(y wy) + sum(h wh) (+ sum(c wc)), the same random weighting on both.
    const nb::TensorOptions o{.dtype = k.dtype};
    const Tensor wy = nb::rand(rc.y.shape(), o, 0.5, 1.5), wh = nb::rand(rc.h.shape(), o, 0.5, 1.5);
    const Tensor wc = k.cell == RnnCell::lstm ? nb::rand(rc.c.shape(), o, 0.5, 1.5) : Tensor();
    auto loss = [&](const nb::RnnLayerResult& r, nb::Device dev) {
      Tensor l = nb::add(nb::sum(nb::mul(r.y, wy.to(dev))), nb::sum(nb::mul(r.h, wh.to(dev))));
      return r.c.defined() ? nb::add(l, nb::sum(nb::mul(r.c, wc.to(dev)))) : l;
    };
    loss(rc, nb::Device::cpu()).backward();
    loss(rg, kCuda).backward();
    const double sb = std::sqrt(double(k.T * k.B * std::max(k.I, k.H) * (k.cell == RnnCell::lstm ? 4 : 3)));
    const Tol bwd = f64 ? Tol{1e-9, 1e-12 * sb} : Tol{1e-3, 1e-5 * sb};
    const std::vector<Tensor> ic = c.all(), ig = g.all();
    const std::vector<std::string> names = input_names(k);
    for (size_t i = 0; i < ic.size(); ++i)
      EXPECT_TRUE(allclose(ig[i].grad(), ic[i].grad(), bwd, "gradient of " + names[i]));
    EXPECT_EQ(nb::tape_size(), 0u);
  }
};
std::string rnn_name(const ::testing::TestParamInfo<RnnCase>& i) { return i.param.name; }

class RnnLayerF32 : public RnnLayerParity {};
TEST_P(RnnLayerF32, ForwardBackward) { run(); }
INSTANTIATE_TEST_SUITE_P(Cuda, RnnLayerF32, ::testing::ValuesIn(f32_cases()), rnn_name);

class RnnLayerF64 : public RnnLayerParity {};
TEST_P(RnnLayerF64, ForwardBackward) { run(); }
INSTANTIATE_TEST_SUITE_P(Cuda, RnnLayerF64, ::testing::ValuesIn(f64_cases()), rnn_name);

// The weight-copy fallback (cuda/rnn.cu: every call copies the parameters into a cuDNN weight
// space, and the gradient back out), forced on through the test hook: cuDNN 9 lays its weights
// out so that the fallback is never taken by itself. Sizes no other test uses, so that their
// layouts are made while the hook is on.
class RnnForcedCopies : public RnnLayerParity {
 protected:
  void SetUp() override {
    RnnLayerParity::SetUp();
    nabla::cuda::test_hooks::force_rnn_weight_copies(true);
  }
  void TearDown() override {
    nabla::cuda::test_hooks::force_rnn_weight_copies(false);
    RnnLayerParity::TearDown();
  }
};
TEST_P(RnnForcedCopies, ForwardBackward) {
  const RnnCase& k = GetParam();
  if (k.dtype == DType::float32) {
    EXPECT_FALSE(nb::cuda::test_hooks::rnn_weights_in_place(0, k.cell == RnnCell::lstm, k.I, k.H, k.D))
        << "the hook did not force the fallback (was this layout made before?)";
  }
  run();
}
INSTANTIATE_TEST_SUITE_P(Cuda, RnnForcedCopies,
                         ::testing::Values(rnn_case(RnnCell::lstm, 5, 3, 5, 11, 1, true),
                                           rnn_case(RnnCell::lstm, 4, 2, 5, 11, 2, false),
                                           rnn_case(RnnCell::gru, 6, 3, 7, 13, 2, true),
                                           rnn_case(RnnCell::gru, 3, 2, 7, 13, 1, true, DType::float64)),
                         rnn_name);

// Inference (no tape, no reserve) gives what the training forward gives.
TEST_F(CudaRnn, InferenceMatchesTraining_lstm_T9_B3_I4_H16_bidirectional) {
  const RnnCase k = rnn_case(RnnCell::lstm, 9, 3, 4, 16, 2, true);
  const RnnInputs g = to_leaves(make_inputs(k), kCuda);
  nb::RnnLayerResult train = nb::rnn_layer(k.cell, g.x, g.h0, g.c0, g.w);
  nb::RnnLayerResult infer;
  {
    nb::NoGrad ng;
    infer = nb::rnn_layer(k.cell, g.x, g.h0, g.c0, g.w);
  }
  // Two cuDNN code paths (inference and training kernels), free to sum each gate's dot product
  // in a different order: not bit-identical. The bound, in float32 (TF32 is off): a gate's
  // pre-activation sums K = I + H products and 2 biases; a different order changes it by at most
  // gamma_K * S, gamma_K = K eps / (1 - K eps) with eps = 2^-24, S the sum of the terms' sizes:
  // |x| <= 1, |h| <= 1, weights and biases <= 1 / sqrt(H), so S <= (I + H + 2) / sqrt(H). The
  // activations are 1-Lipschitz; c_t = f c_{t-1} + i g (f < 1) carries each step's error on, so
  // after T steps y and h are off by at most about T (2 gamma_K S) (the c sum and the i g product
  // each add a share), plus 2 eps for the final tanh and product. Relative: 4 eps.
  const double eps = 0x1p-24, K = double(k.I + k.H);
  const double gamma = K * eps / (1 - K * eps), S = (k.I + k.H + 2) / std::sqrt(double(k.H));
  const Tol tol{4 * eps, double(k.T) * 2 * gamma * S + 2 * eps};
  EXPECT_TRUE(allclose(infer.y, train.y.detach().to(nb::Device::cpu()), tol, "y"));
  EXPECT_TRUE(allclose(infer.h, train.h.detach().to(nb::Device::cpu()), tol, "h"));
  nb::sum(train.y).backward();  // the training forward's tape entry, used up
  EXPECT_EQ(nb::tape_size(), 0u);
}

// ---- the weight layout ----------------------------------------------------------------------------

struct LayoutCase {
  RnnCell cell;
  int64_t I, H, D;
};

// Which path each configuration takes is printed (and recorded as a test property); either is
// correct, but the parameters must lie inside the layout, apart from each other, and the query
// must give the same answer twice (it is cached).
TEST_F(CudaRnn, WeightLayoutInsideAndDisjoint_lstm_gru_I1to300_H1to128) {
  const std::vector<LayoutCase> cases = {{RnnCell::lstm, 6, 8, 1},   {RnnCell::lstm, 6, 33, 2},
                                         {RnnCell::lstm, 1, 1, 1},   {RnnCell::lstm, 300, 128, 2},
                                         {RnnCell::gru, 6, 8, 1},    {RnnCell::gru, 6, 33, 2},
                                         {RnnCell::gru, 17, 5, 2},   {RnnCell::gru, 300, 128, 1}};
  std::string paths;
  for (const LayoutCase& c : cases) {
    const bool lstm = c.cell == RnnCell::lstm;
    const int64_t G = lstm ? 4 : 3;
    const std::string what = fmt::format("{} I{} H{} D{}", lstm ? "lstm" : "gru", c.I, c.H, c.D);
    std::vector<int64_t> off, again, cpu_off;
    const int64_t total = nb::rnn_packed_layout(c.cell, c.I, c.H, c.D, DType::float32, kCuda, &off);
    EXPECT_EQ(nb::rnn_packed_layout(c.cell, c.I, c.H, c.D, DType::float32, kCuda, &again), total) << what;
    EXPECT_EQ(again, off) << what;
    const int64_t cpu_total = nb::rnn_packed_layout(c.cell, c.I, c.H, c.D, DType::float32, nb::Device::cpu(), &cpu_off);
    const bool in_place = nb::cuda::test_hooks::rnn_weights_in_place(0, lstm, c.I, c.H, c.D);
    paths += fmt::format("{}: {} (total {}, CPU {}); ", what, in_place ? "in place" : "copy fallback", total, cpu_total);
    if (!in_place) {
      EXPECT_EQ(off, cpu_off) << what << ": the fallback uses the CPU's layout";
      EXPECT_EQ(total, cpu_total) << what;
    }
    EXPECT_GE(total, cpu_total) << what;
    // [begin, end) of each parameter
    std::vector<std::pair<int64_t, int64_t>> spans;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t sizes[4] = {G * c.H * c.I, G * c.H * c.H, G * c.H, G * c.H};
      for (int j = 0; j < 4; ++j) spans.push_back({off[size_t(4 * d + j)], off[size_t(4 * d + j)] + sizes[j]});
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 0; i < spans.size(); ++i) {
      EXPECT_GE(spans[i].first, 0) << what;
      EXPECT_LE(spans[i].second, total) << what;
      if (i > 0) {
      EXPECT_LE(spans[i - 1].second, spans[i].first) << what << ": parameters overlap";
    }
    }
  }
  RecordProperty("rnn_weight_paths", paths);
  std::printf("cuda rnn weight layout: %s\n", paths.c_str());
}

// ---- the layers -----------------------------------------------------------------------------------

template <typename Layer>
void layer_parity(RnnCell cell) {
  const bool lstm = cell == RnnCell::lstm;
  const nb::RnnOptions opts{.num_layers = 2, .batch_first = true, .dropout = 0, .bidirectional = true};
  nb::manual_seed(31);
  Layer cpu(7, 9, opts);
  nb::manual_seed(31);
  Layer gpu(7, 9, opts);
  gpu.to(kCuda);
  const Tensor x = nb::rand({4, 11, 7}, {}, -1, 1);  // (batch, seq, features)
  const Tensor h0 = nb::rand({4, 4, 9}, {}, -0.5, 0.5), c0 = lstm ? nb::rand({4, 4, 9}, {}, -0.5, 0.5) : Tensor();
  auto state_on = [&](nb::Device d) { return nb::RnnState{h0.to(d), lstm ? c0.to(d) : Tensor()}; };
  nb::Adam opt_c(cpu.parameters(), {.lr = 0.02}), opt_g(gpu.parameters(), {.lr = 0.02});

  nb::RnnOutput oc = cpu.forward_state(x, state_on(nb::Device::cpu()));
  nb::RnnOutput og = gpu.forward_state(x.to(kCuda), state_on(kCuda));
  const Tol tol{1e-3, 1e-4};
  EXPECT_TRUE(allclose(og.output, oc.output, tol, "output"));
  EXPECT_TRUE(allclose(og.h, oc.h, tol, "h"));
  if (lstm) {
    EXPECT_TRUE(allclose(og.c, oc.c, tol, "c"));
  }
  const Tensor w = nb::rand(oc.output.shape(), {}, 0.5, 1.5);
  nb::sum(nb::mul(oc.output, w)).backward();
  nb::sum(nb::mul(og.output, w.to(kCuda))).backward();
  const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_EQ(pg[i].first, pc[i].first);
    EXPECT_TRUE(pg[i].second.device().is_cuda()) << pg[i].first;
    EXPECT_TRUE(allclose(pg[i].second.grad(), pc[i].second.grad(), {2e-3, 2e-4}, "gradient of " + pc[i].first));
  }

  // One Adam step each: the update reaches the packed buffer cuDNN computes with.
  const Tensor before = og.output.detach().to(nb::Device::cpu());
  opt_c.step();
  opt_g.step();
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_TRUE(allclose(pg[i].second.detach(), pc[i].second.detach(), {1e-4, 1e-5}, "parameter " + pc[i].first));
  nb::NoGrad ng;
  const Tensor after_c = cpu.forward_state(x, state_on(nb::Device::cpu())).output;
  const Tensor after_g = gpu.forward_state(x.to(kCuda), state_on(kCuda)).output;
  EXPECT_GT(nb::max(nb::abs(nb::sub(after_g.to(nb::Device::cpu()), before))).item(), 1e-3);
  EXPECT_TRUE(allclose(after_g, after_c, {2e-3, 2e-4}, "output after a step"));
}

TEST_F(CudaRnn, LstmLayerMatchesCpu_2layers_bidirectional_batch_first_4x11x7_to_9) { layer_parity<nb::LSTM>(RnnCell::lstm); }
TEST_F(CudaRnn, GruLayerMatchesCpu_2layers_bidirectional_batch_first_4x11x7_to_9) { layer_parity<nb::GRU>(RnnCell::gru); }

// ---- embedding ------------------------------------------------------------------------------------

Tensor ids_tensor(const std::vector<int64_t>& v, const Shape& shape, nb::Device d = nb::Device::cpu()) {
  return nb::from_vector(v, shape).to(d);
}

// Ids skewed towards small values (many repeats of the first rows), in [0, num).
std::vector<int64_t> skewed_ids(int64_t n, int64_t num) {
  const std::vector<double> u = nb::rand({n}, {.dtype = DType::float64}).to_vector<double>();
  std::vector<int64_t> v(static_cast<size_t>(n), 0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::min<int64_t>(num - 1, int64_t(u[i] * u[i] * u[i] * double(num)));
  return v;
}

struct EmbeddingRun {
  Tensor y, dweight;
};

EmbeddingRun embedding_step(const Tensor& w0, const Tensor& ids, int64_t padding_idx, const Tensor& dy) {
  Tensor w = w0.detach().clone().requires_grad_(true);
  Tensor y = nb::embedding(ids, w, padding_idx);
  nb::sum(nb::mul(y, dy)).backward();
  return {y.detach(), w.grad()};
}

void embedding_parity(int64_t num, int64_t dim, const Shape& ids_shape, int64_t padding_idx, DType dtype,
                      bool twice) {
  const int64_t n = nb::numel_of(ids_shape);
  const std::vector<int64_t> v = skewed_ids(n, num);
  Shape y_shape = ids_shape;
  y_shape.push_back(dim);
  const Tensor w = nb::rand({num, dim}, {.dtype = dtype}, -1, 1), dy = nb::rand(y_shape, {.dtype = dtype}, -1, 1);
  const EmbeddingRun c = embedding_step(w, ids_tensor(v, ids_shape), padding_idx, dy);
  const Tensor ids_g = ids_tensor(v, ids_shape, kCuda);
  const EmbeddingRun g = embedding_step(w.to(kCuda), ids_g, padding_idx, dy.to(kCuda));
  EXPECT_TRUE(allclose(g.y, c.y, {0, 0}, "y (a gather: exact)"));
  // The same sums in the same order as the CPU (sorted by row, stable in position).
  EXPECT_TRUE(allclose(g.dweight, c.dweight, {1e-6, 1e-7}, "dweight"));
  if (twice) {
    const EmbeddingRun again = embedding_step(w.to(kCuda), ids_g, padding_idx, dy.to(kCuda));
    EXPECT_TRUE(same_bits(again.dweight, g.dweight, "dweight, second run"));
  }
}

TEST_F(CudaRnn, EmbeddingRepeatedIdsAndPadding_50x17_ids4x33_pad3) {
  embedding_parity(50, 17, {4, 33}, 3, DType::float32, true);
}
TEST_F(CudaRnn, EmbeddingNoPadding_7x5_ids40) { embedding_parity(7, 5, {40}, -1, DType::float32, false); }
TEST_F(CudaRnn, EmbeddingFloat64_30x9_ids3x20_pad0) { embedding_parity(30, 9, {3, 20}, 0, DType::float64, true); }
TEST_F(CudaRnn, EmbeddingLargeVocabBitIdentical_10000x300_ids128x100) {
  embedding_parity(10000, 300, {128, 100}, -1, DType::float32, true);
}

TEST_F(CudaRnn, EmbeddingOutOfRangeReportedAtSynchronization_10x4) {
  nb::Embedding e(10, 4);
  e.to(kCuda);
  nb::NoGrad ng;
  const Tensor ids = ids_tensor({1, 10, 3}, {3}, kCuda);
  std::string message;
  try {
    Tensor y = e(ids);
    nb::cuda::synchronize();
  } catch (const nb::Error& err) {
    message = err.what();
  }
  EXPECT_NE(message.find("Embedding(10, 4): index 10 at position 1 is out of range for 10 rows (expected 0..9)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("reported at the next synchronization"), std::string::npos) << message;
  // The flags are reset: the next good lookup and synchronization pass.
  EXPECT_NO_THROW({
    Tensor y = e(ids_tensor({0, 9}, {2}, kCuda));
    nb::cuda::synchronize();
  });
}

}  // namespace
