// Embedding, LSTM and GRU on the CPU: forward values against step-by-step references written with
// core ops from PyTorch's equations, float64 gradient checks through time (several lengths, two
// directions, initial states, every weight), float32 against float64, the layers (PyTorch names
// and shapes, stacking, batch_first, packed parameters that optimizers update), and errors.
#include "test_util.h"

#include <nabla/cpu/dnnl_conv.h>
#include <nabla/layers/layers.h>
#include <nabla/optim/optim.h>

#include <cmath>

namespace nb = nabla;
using nb::DType;
using nb::RnnCell;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::HasSubstr;

namespace {

// ---- references -----------------------------------------------------------------------------

struct Ref {
  Tensor y, h, c;
};

Tensor chunk(const Tensor& t, int64_t k, int64_t h) { return t.slice(1, k * h, (k + 1) * h); }

// One direction of one layer, step by step, from the equations of core/backend.h (PyTorch's).
Ref reference(RnnCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0, const nb::RnnWeights& w, bool reverse) {
  const int64_t T = x.shape()[0], B = x.shape()[1], H = w.w_hh.shape()[1];
  Tensor h = h0.defined() ? h0 : nb::zeros({B, H}, x.options());
  Tensor c = c0.defined() ? c0 : nb::zeros({B, H}, x.options());
  std::vector<Tensor> ys(static_cast<size_t>(T));
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    Tensor xt = x.slice(0, t, t + 1).squeeze(0);
    Tensor gx = nb::add(nb::matmul(xt, w.w_ih.t()), w.b_ih);
    Tensor gh = nb::add(nb::matmul(h, w.w_hh.t()), w.b_hh);
    if (cell == RnnCell::lstm) {
      Tensor g = nb::add(gx, gh);
      Tensor i = nb::sigmoid(chunk(g, 0, H)), f = nb::sigmoid(chunk(g, 1, H)), gg = nb::tanh(chunk(g, 2, H)),
             o = nb::sigmoid(chunk(g, 3, H));
      c = nb::add(nb::mul(f, c), nb::mul(i, gg));
      h = nb::mul(o, nb::tanh(c));
    } else {
      Tensor r = nb::sigmoid(nb::add(chunk(gx, 0, H), chunk(gh, 0, H)));
      Tensor z = nb::sigmoid(nb::add(chunk(gx, 1, H), chunk(gh, 1, H)));
      Tensor n = nb::tanh(nb::add(chunk(gx, 2, H), nb::mul(r, chunk(gh, 2, H))));
      h = nb::add(nb::mul(nb::sub(nb::ones_like(z), z), n), nb::mul(z, h));
    }
    ys[size_t(t)] = h.unsqueeze(0);
  }
  return {nb::concat(ys, 0), h, c};
}

nb::RnnWeights weights(RnnCell cell, int64_t in, int64_t hidden, double scale = 0.6) {
  const int64_t gh = (cell == RnnCell::lstm ? 4 : 3) * hidden;
  return {input({gh, in}, -scale, scale), input({gh, hidden}, -scale, scale), input({gh}, -scale, scale),
          input({gh}, -scale, scale)};
}

// y, h, c of rnn_layer flattened and joined: one tensor whose every element is checked.
Tensor joined(const nb::RnnLayerResult& r) {
  std::vector<Tensor> parts{r.y.reshape({-1}), r.h.reshape({-1})};
  if (r.c.defined()) parts.push_back(r.c.reshape({-1}));
  return nb::concat(parts, 0);
}

struct RnnCase {
  std::string name;
  RnnCell cell;
  int64_t T, B, I, H, D;
  bool h0, c0;
};

std::string case_name(const ::testing::TestParamInfo<RnnCase>& info) { return info.param.name; }

std::vector<RnnCase> rnn_cases() {
  std::vector<RnnCase> cases;
  for (RnnCell cell : {RnnCell::lstm, RnnCell::gru}) {
    const std::string c = cell == RnnCell::lstm ? "lstm" : "gru";
    const bool lstm = cell == RnnCell::lstm;
    cases.push_back({c + "_len1", cell, 1, 2, 3, 2, 1, false, false});
    cases.push_back({c + "_len4", cell, 4, 2, 3, 3, 1, false, false});
    cases.push_back({c + "_len6_batch3_states", cell, 6, 3, 2, 2, 1, true, lstm});
    cases.push_back({c + "_bidirectional_len5", cell, 5, 2, 3, 2, 2, false, false});
    cases.push_back({c + "_bidirectional_states", cell, 3, 2, 2, 3, 2, true, lstm});
    if (lstm) cases.push_back({c + "_h0_only", cell, 3, 2, 2, 2, 1, true, false});
  }
  return cases;
}

class RnnLayerTest : public ::testing::TestWithParam<RnnCase> {
 protected:
  // inputs: x, [h0], [c0], then 4 weights per direction
  Tensors make_inputs() const {
    const RnnCase& k = GetParam();
    Tensors in{input({k.T, k.B, k.I}, -1, 1)};
    if (k.h0) in.push_back(input({k.D, k.B, k.H}, -0.8, 0.8));
    if (k.c0) in.push_back(input({k.D, k.B, k.H}, -0.8, 0.8));
    for (int64_t d = 0; d < k.D; ++d) {
      nb::RnnWeights w = weights(k.cell, k.I, k.H);
      in.insert(in.end(), {w.w_ih, w.w_hh, w.b_ih, w.b_hh});
    }
    return in;
  }
  nb::RnnLayerResult run(const Tensors& x) const {
    const RnnCase& k = GetParam();
    size_t at = 1;
    Tensor h0 = k.h0 ? x[at++] : Tensor(), c0 = k.c0 ? x[at++] : Tensor();
    std::vector<nb::RnnWeights> w;
    for (int64_t d = 0; d < k.D; ++d, at += 4) w.push_back({x[at], x[at + 1], x[at + 2], x[at + 3]});
    return nb::rnn_layer(k.cell, x[0], h0, c0, w);
  }
};

TEST_P(RnnLayerTest, MatchesStepByStepReference) {
  const RnnCase& k = GetParam();
  nb::manual_seed(17);
  Tensors in = make_inputs();
  nb::RnnLayerResult r = run(in);
  ASSERT_EQ(r.y.shape(), (Shape{k.T, k.B, k.D * k.H}));
  ASSERT_EQ(r.h.shape(), (Shape{k.D, k.B, k.H}));
  EXPECT_EQ(r.c.defined(), k.cell == RnnCell::lstm);
  size_t at = 1;
  Tensor h0 = k.h0 ? in[at++] : Tensor(), c0 = k.c0 ? in[at++] : Tensor();
  for (int64_t d = 0; d < k.D; ++d, at += 4) {
    nb::RnnWeights w{in[at], in[at + 1], in[at + 2], in[at + 3]};
    auto pick = [&](const Tensor& s) { return s.defined() ? s.slice(0, d, d + 1).squeeze(0) : Tensor(); };
    Ref ref = reference(k.cell, in[0], pick(h0), pick(c0), w, d == 1);
    EXPECT_TRUE(near(r.y.slice(2, d * k.H, (d + 1) * k.H), ref.y.contiguous().to_vector<double>(), {k.T, k.B, k.H},
                     1e-12, 1e-10))
        << "direction " << d;
    EXPECT_TRUE(near(pick(r.h), ref.h.to_vector<double>(), {k.B, k.H}, 1e-12, 1e-10)) << "direction " << d;
    if (k.cell == RnnCell::lstm) {
      EXPECT_TRUE(near(pick(r.c), ref.c.to_vector<double>(), {k.B, k.H}, 1e-12, 1e-10)) << "direction " << d;
    }
  }
}

TEST_P(RnnLayerTest, Float64GradientThroughTime) {
  nb::manual_seed(23);
  Tensors in = make_inputs();
  auto f = [this](const Tensors& x) { return joined(run(x)); };
  EXPECT_TRUE(gradcheck(f, in));
  EXPECT_TRUE(float32_agrees(f, in, 2e-4));
}

INSTANTIATE_TEST_SUITE_P(Rnn, RnnLayerTest, ::testing::ValuesIn(rnn_cases()), case_name);

TEST(RnnLayer, OnlyTheSequenceUsedStillGivesStateGradients) {
  // The loss reads y only: h and c get no gradient and are treated as zero.
  nb::manual_seed(3);
  Tensor x = input({4, 2, 3}, -1, 1), h0 = input({1, 2, 2}, -1, 1), c0 = input({1, 2, 2}, -1, 1);
  nb::RnnWeights w = weights(RnnCell::lstm, 3, 2);
  EXPECT_TRUE(gradcheck(
      [](const Tensors& t) { return nb::rnn_layer(RnnCell::lstm, t[0], t[1], t[2], {{t[3], t[4], t[5], t[6]}}).y; },
      {x, h0, c0, w.w_ih, w.w_hh, w.b_ih, w.b_hh}));
  // ... and the final state only
  EXPECT_TRUE(gradcheck(
      [](const Tensors& t) { return nb::rnn_layer(RnnCell::gru, t[0], t[1], {}, {{t[2], t[3], t[4], t[5]}}).h; },
      {x, h0, input({6, 3}, -1, 1), input({6, 2}, -1, 1), input({6}), input({6})}));
}

TEST(RnnLayer, NoGradRunsWithoutReserve) {
  nb::manual_seed(4);
  nb::RnnWeights w = weights(RnnCell::lstm, 3, 4);
  Tensor x = input({5, 2, 3});
  nb::RnnLayerResult a = nb::rnn_layer(RnnCell::lstm, x, {}, {}, {w});
  nb::NoGrad ng;
  nb::RnnLayerResult b = nb::rnn_layer(RnnCell::lstm, x, {}, {}, {w});
  EXPECT_FALSE(b.y.requires_grad());
  EXPECT_TRUE(near(b.y, a.y.to_vector<double>(), a.y.shape(), 0, 0));
}

// ---- float32 LSTM and GRU on oneDNN (cpu/dnnl_rnn.cpp) against nabla's own kernels ----------

const char* cell_name(RnnCell cell) { return cell == RnnCell::lstm ? "lstm" : "gru"; }

// Every output and gradient of one layer: y, h, (LSTM) c, then the gradients of x, h0, (LSTM) c0
// and of every weight, of the loss sum(r * [y, h, c]) with fixed random r. inputs: x, h0, (LSTM)
// c0, then 4 weights per direction.
std::vector<std::vector<double>> rnn_everything(RnnCell cell, const Tensors& inputs, const Tensor& r, int64_t D,
                                                DType dtype) {
  Tensors x;
  for (const Tensor& t : inputs) x.push_back(t.detach().to(dtype).requires_grad_(true));
  const bool lstm = cell == RnnCell::lstm;
  std::vector<nb::RnnWeights> w;
  for (size_t d = 0, k = lstm ? 3 : 2; d < size_t(D); ++d, k += 4) w.push_back({x[k], x[k + 1], x[k + 2], x[k + 3]});
  nb::RnnLayerResult out = nb::rnn_layer(cell, x[0], x[1], lstm ? x[2] : Tensor(), w);
  Tensor all = joined(out);
  nb::sum(nb::mul(all, r.to(dtype))).backward();
  std::vector<std::vector<double>> res{out.y.to_vector<double>(), out.h.to_vector<double>()};
  if (lstm) res.push_back(out.c.to_vector<double>());
  for (const Tensor& t : x) res.push_back(t.grad().to_vector<double>());
  return res;
}

struct DnnlRnnCase {
  std::string name;
  int64_t T, B, I, H, D;
};

// Both float32 paths (oneDNN on and off) are held to the float64 result of nabla's own kernels,
// element by element, to |d| <= tol (1 + |ref|) with tol = 2 gamma_{K T}, u = 2^-24: a dot product
// of I + H + 2 terms per pre-activation (inputs, recurrent inputs and both biases), K = that for an
// LSTM and one more for a GRU (its candidate's recurrent sum is multiplied by r before it joins the
// input side's), and an error that can travel through T steps of the recurrence (sigmoid and tanh
// do not amplify it: their slopes are at most 1). Measured here: both paths stay between 1e-8 and
// 3e-6, oneDNN's about as close as the own kernels'.
class RnnDnnlCells : public ::testing::TestWithParam<RnnCell> {};

TEST_P(RnnDnnlCells, Float32MatchesFloat64AsOwnKernelsDo) {
  if (!nb::cpu::dnnl_conv::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  const RnnCell cell = GetParam();
  const bool lstm = cell == RnnCell::lstm;
  const std::vector<DnnlRnnCase> cases{{"len1", 1, 2, 3, 2, 1},          {"len7_odd_sizes", 7, 3, 5, 6, 1},
                                       {"bidirectional", 6, 4, 7, 5, 2}, {"wider", 12, 16, 33, 17, 1},
                                       {"batch1_bidirectional", 9, 1, 8, 16, 2}};
  using Names = std::vector<std::string>;
  const Names names = lstm ? Names{"y", "h", "c", "dx", "dh0", "dc0"} : Names{"y", "h", "dx", "dh0"};
  int differing = 0;  // outputs where the two paths differ in some bit: the oneDNN path did run
  for (const DnnlRnnCase& k : cases) {
    SCOPED_TRACE(k.name);
    nb::manual_seed(41);
    Tensors in{input({k.T, k.B, k.I}, -1, 1), input({k.D, k.B, k.H}, -0.8, 0.8)};
    if (lstm) in.push_back(input({k.D, k.B, k.H}, -0.8, 0.8));
    for (int64_t d = 0; d < k.D; ++d) {
      nb::RnnWeights w = weights(cell, k.I, k.H, 0.5);
      in.insert(in.end(), {w.w_ih, w.w_hh, w.b_ih, w.b_hh});
    }
    const Tensor r = input({k.T * k.B * k.D * k.H + (lstm ? 2 : 1) * k.D * k.B * k.H}, 0.5, 1.5);
    const auto ref = rnn_everything(cell, in, r, k.D, DType::float64);
    const auto dnnl = rnn_everything(cell, in, r, k.D, DType::float32);
    const bool was = nb::cpu::dnnl_conv::set_enabled(false);
    const auto own = rnn_everything(cell, in, r, k.D, DType::float32);
    nb::cpu::dnnl_conv::set_enabled(was);
    const double u = std::ldexp(1.0, -24), kt = double((k.I + k.H + (lstm ? 2 : 3)) * k.T);
    const double tol = 2 * kt * u / (1 - kt * u);
    const size_t first_weight = names.size();
    for (size_t o = 0; o < ref.size(); ++o) {
      static const char* kWeights[] = {"dw_ih", "dw_hh", "db_ih", "db_hh"};
      const size_t wo = o - first_weight;
      const std::string what =
          o < first_weight ? names[o] : kWeights[wo % 4] + ("[" + std::to_string(wo / 4) + "]");
      ASSERT_EQ(dnnl[o].size(), ref[o].size()) << what;
      double worst_dnnl = 0, worst_own = 0;
      for (size_t j = 0; j < ref[o].size(); ++j) {
        const double scale = 1 + std::abs(ref[o][j]);
        worst_dnnl = std::max(worst_dnnl, std::abs(dnnl[o][j] - ref[o][j]) / scale);
        worst_own = std::max(worst_own, std::abs(own[o][j] - ref[o][j]) / scale);
      }
      EXPECT_LE(worst_dnnl, tol) << what << ": oneDNN's largest error (own kernels: " << worst_own << ")";
      EXPECT_LE(worst_own, tol) << what << ": the own kernels' largest error";
      if (dnnl[o] != own[o]) ++differing;
    }
  }
  EXPECT_GT(differing, 0) << "the oneDNN and own float32 paths agree bit for bit everywhere: oneDNN did not run";
}

// The backward follows the path its forward took, whatever the switch says in between; inference
// (no reserve) gives the training forward's values.
TEST_P(RnnDnnlCells, BackwardFollowsItsForwardAndInferenceAgrees) {
  if (!nb::cpu::dnnl_conv::enabled()) GTEST_SKIP() << "built without oneDNN, or NABLA_CPU_DNNL=0";
  const RnnCell cell = GetParam();
  nb::manual_seed(43);
  nb::RnnWeights w64 = weights(cell, 6, 5, 0.5);
  nb::RnnWeights w{w64.w_ih.to(DType::float32), w64.w_hh.to(DType::float32), w64.b_ih.to(DType::float32),
                   w64.b_hh.to(DType::float32)};
  const Tensor x0 = input({8, 3, 6}, -1, 1).to(DType::float32);
  auto gradient = [&](bool flip_between) {
    Tensor x = x0.detach().clone().requires_grad_(true);
    Tensor y = nb::rnn_layer(cell, x, {}, {}, {w}).y;
    const bool was = nb::cpu::dnnl_conv::set_enabled(!flip_between);
    nb::sum(y).backward();
    nb::cpu::dnnl_conv::set_enabled(was);
    return std::make_pair(y.to_vector<double>(), x.grad().to_vector<double>());
  };
  const auto straight = gradient(false), flipped = gradient(true);
  EXPECT_EQ(straight.second, flipped.second);
  nb::NoGrad ng;
  const Tensor y_inference = nb::rnn_layer(cell, x0, {}, {}, {w}).y;
  EXPECT_TRUE(near(y_inference, straight.first, y_inference.shape(), 1e-6, 1e-6));
}

// batch_first: oneDNN takes the batch-major input as it is (ntc) instead of a transposed copy;
// values and gradients as the sequence-major layer's, float32 and float64 (which transposes).
TEST_P(RnnDnnlCells, BatchFirstTakesTheInputAsItIs) {
  const RnnCell cell = GetParam();
  for (DType dtype : {DType::float32, DType::float64}) {
    SCOPED_TRACE(nb::dtype_name(dtype));
    nb::manual_seed(47);
    nb::RnnWeights w64 = weights(cell, 6, 5, 0.5);
    nb::RnnWeights w{w64.w_ih.to(dtype), w64.w_hh.to(dtype), w64.b_ih.to(dtype), w64.b_hh.to(dtype)};
    const Tensor x_bm = input({3, 7, 6}, -1, 1).to(dtype);  // (batch, seq, input)
    const Tensor r = input({3, 7, 5}, 0.5, 1.5).to(dtype);
    auto run = [&](bool batch_first) {
      Tensor x = (batch_first ? x_bm : x_bm.transpose(0, 1).contiguous()).detach().clone().requires_grad_(true);
      nb::RnnLayerResult out = nb::rnn_layer(cell, x, {}, {}, {w}, {}, cell_name(cell), batch_first);
      Tensor y = batch_first ? out.y : out.y.transpose(0, 1);
      EXPECT_EQ(y.shape(), (Shape{3, 7, 5}));
      nb::sum(nb::mul(y, r)).backward();
      Tensor dx = batch_first ? x.grad() : x.grad().transpose(0, 1);
      return std::make_pair(y.contiguous().to_vector<double>(), dx.contiguous().to_vector<double>());
    };
    const auto bm = run(true), sm = run(false);
    // The two layouts may take different kernels: each within 2 gamma_{K T} of the exact value
    // (as Float32MatchesFloat64AsOwnKernelsDo), so they differ by at most twice that.
    const double u = dtype == DType::float32 ? std::ldexp(1.0, -24) : std::ldexp(1.0, -53),
                 kt = (6 + 5 + (cell == RnnCell::lstm ? 2 : 3)) * 7;
    const double tol = 4 * kt * u / (1 - kt * u);
    EXPECT_TRUE(near(nb::from_vector(bm.first), sm.first, {int64_t(sm.first.size())}, tol, tol));
    EXPECT_TRUE(near(nb::from_vector(bm.second), sm.second, {int64_t(sm.second.size())}, tol, tol));
  }
}

std::string cell_case_name(const ::testing::TestParamInfo<RnnCell>& info) { return cell_name(info.param); }

INSTANTIATE_TEST_SUITE_P(RnnDnnl, RnnDnnlCells, ::testing::Values(RnnCell::lstm, RnnCell::gru), cell_case_name);

// ---- embedding --------------------------------------------------------------------------------

TEST(Embedding, LooksUpRows) {
  Tensor w = f64({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor y = nb::embedding(i64({2, 0, 2, 1}, {2, 2}), w);
  EXPECT_TRUE(near(y, {20, 21, 0, 1, 20, 21, 10, 11}, {2, 2, 2}));
}

TEST(Embedding, GradientAddsRepeatedIndicesAndSkipsPadding) {
  nb::manual_seed(5);
  Tensor ids = i64({1, 3, 1, 0, 3, 3, 2}, {7});
  EXPECT_TRUE(gradcheck([ids](const Tensors& x) { return nb::embedding(ids, x[0]); }, {input({5, 3})}));
  EXPECT_TRUE(gradcheck([ids](const Tensors& x) { return nb::embedding(ids.reshape({7, 1}), x[0]); },
                        {input({5, 3})}));
  // With padding_idx the padding row gets no gradient although it feeds the output (as in
  // PyTorch), so it is checked by value: row r gets (count of r in ids) * dy, row 3 nothing.
  Tensor w = input({5, 3}).requires_grad_(true);
  nb::sum(nb::embedding(ids, w, 3)).backward();
  EXPECT_TRUE(near(w.grad(), {1, 1, 1, 2, 2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0}, {5, 3}));
}

TEST(Embedding, LayerPaddingRowStartsAtZero) {
  nb::manual_seed(6);
  nb::Embedding e(10, 4, {.padding_idx = 2});
  EXPECT_EQ(e.weight().shape(), (Shape{10, 4}));
  EXPECT_TRUE(near(e.weight().slice(0, 2, 3), {0, 0, 0, 0}, {1, 4}, 0, 0));
  EXPECT_GT(nb::sum(nb::abs(e.weight())).item(), 1);
  EXPECT_EQ(e.named_parameters()[0].first, "weight");
  EXPECT_EQ(e(i64({1, 2, 9}, {3})).shape(), (Shape{3, 4}));
  EXPECT_EQ(e.to_string(), "Embedding(10, 4, padding_idx 2)");
}

TEST(Embedding, Errors) {
  nb::Embedding e(10, 4);
  EXPECT_THAT(error_of([&] { e(i64({1, 10, 3})); }),
              HasSubstr("Embedding(10, 4): index 10 at position 1 is out of range for 10 rows (expected 0..9)"));
  EXPECT_THAT(error_of([&] { e(i64({-1})); }), HasSubstr("index -1 at position 0"));
  EXPECT_THAT(error_of([&] { e(f32({1, 2})); }), HasSubstr("Embedding(10, 4): indices have dtype float32, expected int64"));
  EXPECT_THAT(error_of([] { nb::Embedding(10, 4, {.padding_idx = 10}); }), HasSubstr("padding_idx 10 is out of range"));
  EXPECT_THAT(error_of([] { nb::Embedding(0, 4); }), HasSubstr("must be positive"));
}

// ---- layers ---------------------------------------------------------------------------------

TEST(RnnLayers, PyTorchNamesAndShapes) {
  nb::LSTM lstm(5, 7, {.num_layers = 2, .bidirectional = true});
  const std::vector<std::pair<std::string, Shape>> expect{
      {"weight_ih_l0", {28, 5}},           {"weight_hh_l0", {28, 7}},         {"bias_ih_l0", {28}},
      {"bias_hh_l0", {28}},                {"weight_ih_l0_reverse", {28, 5}}, {"weight_hh_l0_reverse", {28, 7}},
      {"bias_ih_l0_reverse", {28}},        {"bias_hh_l0_reverse", {28}},      {"weight_ih_l1", {28, 14}},
      {"weight_hh_l1", {28, 7}},           {"bias_ih_l1", {28}},              {"bias_hh_l1", {28}},
      {"weight_ih_l1_reverse", {28, 14}},  {"weight_hh_l1_reverse", {28, 7}}, {"bias_ih_l1_reverse", {28}},
      {"bias_hh_l1_reverse", {28}}};
  auto got = lstm.named_parameters();
  ASSERT_EQ(got.size(), expect.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, expect[i].first);
    EXPECT_EQ(got[i].second.shape(), expect[i].second) << got[i].first;
  }
  nb::GRU gru(3, 4);
  EXPECT_EQ(gru.named_parameters()[0].second.shape(), (Shape{12, 3}));
  EXPECT_EQ(gru.num_parameters(), 12 * 3 + 12 * 4 + 24);
  EXPECT_EQ(lstm.to_string(), "LSTM(5->7, layers 2, bidirectional)");
  // PyTorch's initialization bound 1/sqrt(hidden)
  EXPECT_LE(nb::max(nb::abs(got[1].second)).item(), 1 / std::sqrt(7.0));
}

TEST(RnnLayers, StackedBidirectionalMatchesLayerByLayer) {
  nb::manual_seed(8);
  nb::LSTM lstm(3, 4, {.num_layers = 2, .batch_first = true, .bidirectional = true, .dtype = DType::float64});
  Tensor x = input({2, 5, 3}, -1, 1);  // batch-first
  Tensor h0 = input({4, 2, 4}, -1, 1), c0 = input({4, 2, 4}, -1, 1);
  nb::RnnOutput out = lstm.forward_state(x, {h0, c0});
  ASSERT_EQ(out.output.shape(), (Shape{2, 5, 8}));
  ASSERT_EQ(out.h.shape(), (Shape{4, 2, 4}));
  auto p = lstm.parameters();
  auto w = [&](int64_t l, int64_t d) {
    const size_t b = size_t(8 * l + 4 * d);
    return nb::RnnWeights{p[b], p[b + 1], p[b + 2], p[b + 3]};
  };
  Tensor seq = x.transpose(0, 1);
  std::vector<Tensor> hs, cs;
  for (int64_t l = 0; l < 2; ++l) {
    auto r = nb::rnn_layer(RnnCell::lstm, seq, h0.slice(0, 2 * l, 2 * l + 2), c0.slice(0, 2 * l, 2 * l + 2),
                           {w(l, 0), w(l, 1)});
    seq = r.y;
    hs.push_back(r.h);
    cs.push_back(r.c);
  }
  EXPECT_TRUE(near(out.output, seq.transpose(0, 1).contiguous().to_vector<double>(), {2, 5, 8}, 0, 0));
  EXPECT_TRUE(near(out.h, nb::concat(hs, 0).to_vector<double>(), {4, 2, 4}, 0, 0));
  EXPECT_TRUE(near(out.c, nb::concat(cs, 0).to_vector<double>(), {4, 2, 4}, 0, 0));
  // gradients reach the input and the initial states through both layers and directions
  EXPECT_TRUE(gradcheck(
      [&lstm](const Tensors& t) {
        auto o = lstm.forward_state(t[0], {t[1], t[2]});
        return nb::concat({o.output.reshape({-1}), o.h.reshape({-1}), o.c.reshape({-1})}, 0);
      },
      {x, h0, c0}));
}

TEST(RnnLayers, ParametersStayPackedAndOptimizersUpdateThem) {
  nb::manual_seed(9);
  nb::GRU gru(3, 5, {.num_layers = 2, .dtype = DType::float64});
  Tensor x = input({4, 2, 3});
  nb::Adam opt(gru.parameters(), {.lr = 0.05});
  Tensor before = gru(x).detach().clone();
  nb::sum(gru(x)).backward();
  opt.step();
  Tensor after = gru(x).detach();
  // the update reached the weights the layer computes with
  EXPECT_GT(nb::max(nb::abs(nb::sub(after, before))).item(), 1e-4);
  // and the computation equals one with the (updated) parameters packed afresh
  auto p = gru.parameters();
  auto r0 = nb::rnn_layer(RnnCell::gru, x, {}, {}, {{p[0].clone(), p[1].clone(), p[2].clone(), p[3].clone()}});
  auto r1 = nb::rnn_layer(RnnCell::gru, r0.y, {}, {}, {{p[4].clone(), p[5].clone(), p[6].clone(), p[7].clone()}});
  EXPECT_TRUE(near(after, r1.y.to_vector<double>(), after.shape(), 0, 0));
  // converting the dtype repacks at the next forward, keeping parameter identity
  Tensor w0 = p[0];
  gru.to(DType::float32);
  EXPECT_EQ(gru(x.to(DType::float32)).dtype(), DType::float32);
  EXPECT_EQ(w0.dtype(), DType::float32);
  EXPECT_EQ(gru.parameters()[0].impl(), w0.impl());
}

TEST(RnnLayers, SequentialWithEmbeddingLstmLastStepDense) {
  nb::manual_seed(10);
  nb::Sequential model{nb::Embedding(20, 6), nb::LSTM(6, 8, {.batch_first = true}), nb::LastStep(true),
                       nb::Dense(8, 3)};
  Tensor ids = i64({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4});
  Tensor y = model(ids);
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  nb::cross_entropy(y, i64({0, 1, 2})).backward();
  for (auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(nb::sum(nb::abs(p.grad())).item(), 0) << name;
  }
  EXPECT_EQ(model.named_parameters()[1].first, "1.weight_ih_l0");
}

TEST(RnnLayers, DropoutBetweenLayersOnlyInTraining) {
  nb::manual_seed(11);
  nb::LSTM lstm(3, 16, {.num_layers = 2, .dropout = 0.5, .dtype = DType::float64});
  Tensor x = input({3, 2, 3});
  Tensor a = lstm(x), b = lstm(x);
  EXPECT_GT(nb::max(nb::abs(nb::sub(a, b))).item(), 1e-6);  // different masks
  lstm.eval();
  EXPECT_TRUE(near(lstm(x), lstm(x).to_vector<double>(), a.shape(), 0, 0));
}

TEST(RnnLayers, LastStep) {
  Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {2, 3, 2});
  EXPECT_TRUE(near(nb::last_step(x, true), {5, 6, 11, 12}, {2, 2}));
  EXPECT_TRUE(near(nb::last_step(x, false), {7, 8, 9, 10, 11, 12}, {3, 2}));
  EXPECT_THAT(error_of([] { nb::last_step(nb::zeros({3})); }), HasSubstr("last_step: input has shape [3]"));
}

TEST(RnnLayers, Errors) {
  nb::LSTM lstm(4, 3, {.batch_first = true});
  EXPECT_THAT(error_of([&] { lstm(nb::zeros({2, 5, 3})); }),
              HasSubstr("LSTM(4->3): input has shape [2, 5, 3], expected [batch, seq, 4]"));
  EXPECT_THAT(error_of([&] { lstm.forward_state(nb::zeros({2, 5, 4}), {nb::zeros({1, 3, 3}), {}}); }),
              HasSubstr("initial state has shape [1, 3, 3], expected [1, 2, 3]"));
  nb::GRU gru(4, 3);
  EXPECT_THAT(error_of([&] { gru.forward_state(nb::zeros({5, 2, 4}), {{}, nb::zeros({1, 2, 3})}); }),
              HasSubstr("GRU(4->3): a GRU has no cell state"));
  EXPECT_THAT(error_of([] { nb::LSTM(4, 3, {.dropout = 1}); }), HasSubstr("dropout 1 is outside [0, 1)"));
  EXPECT_THAT(error_of([] { nb::LSTM(4, 0); }), HasSubstr("must be positive"));
  nb::RnnWeights w = weights(RnnCell::lstm, 3, 2);
  EXPECT_THAT(error_of([&] { nb::rnn_layer(RnnCell::lstm, input({4, 2, 5}), {}, {}, {w}, {}, "lstm"); }),
              HasSubstr("lstm: input has 5 features (shape [4, 2, 5]), expected 3"));
  EXPECT_THAT(error_of([&] { nb::rnn_layer(RnnCell::lstm, input({0, 2, 3}), {}, {}, {w}); }),
              HasSubstr("empty sequence or batch"));
}

}  // namespace
