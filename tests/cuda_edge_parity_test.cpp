// CPU-vs-CUDA parity across op families: backward adding into an existing gradient, and empty
// tensors through every op. The parity check is in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// Backward adds into an existing gradient on CUDA as on the CPU (every input starts at a random G0).
std::vector<Case> accumulate_cases() {
  Options o = f32({1e-4, 1e-6}, sum_tol(1025));
  o.accumulate = true;
  Options g = gemm_options(1025, Precision::f32);
  g.accumulate = true;
  return {
      {"add_row_broadcast_1025x1023", {arg({1025, 1023}), arg({1023})},
       [](const auto& x) { return nb::add(x[0], x[1]); }, o},
      {"reused_input_mul_exp_17x241", {arg({17, 241})},
       [](const auto& x) { return nb::mul(x[0], nb::exp(x[0])); }, o},
      {"softmax_7x1023", {arg({7, 1023})}, [](const auto& x) { return nb::softmax(x[0]); },
       [] { Options s = f32({1e-3, 1e-6}, {1e-3, 1e-5}); s.accumulate = true; return s; }()},
      {"sum_axis0_1025x7", {arg({1025, 7})}, [](const auto& x) { return nb::sum(x[0], {0}); }, o},
      {"matmul_33x1025_1025x17", {arg({33, 1025}, -1, 1), arg({1025, 17}, -1, 1)},
       [](const auto& x) { return nb::matmul(x[0], x[1]); }, g},
      {"linear_1025x37_23", {arg({1025, 37}, -1, 1), arg({23, 37}, -1, 1), arg({23}, -1, 1)},
       [](const auto& x) { return nb::linear(x[0], x[1], x[2]); }, g},
  };
}
INSTANTIATE_TEST_SUITE_P(Accumulate, Parity, ::testing::ValuesIn(accumulate_cases()), case_name);

// ---- empty tensors through every op -------------------------------------------------------------

// Zero-element inputs (a zero batch, a zero feature axis): every kernel must launch nothing, or a
// grid of at least one block that writes nothing, and the outputs that are not empty (a sum over
// nothing, a product with k = 0, a weight gradient from a zero batch) must be zeros or the bias.
std::vector<Case> empty_cases() {
  using V = std::vector<Tensor>;
  const auto fo = forward_only({0, 0});
  const auto ex = f32({0, 0}, {0, 0});
  std::vector<Case> c;
  for (const Shape& sh : {Shape{0}, Shape{0, 5}, Shape{2, 0, 3}}) {
    const std::string n = "empty_" + shape_name(sh) + "_";
    c.push_back({n + "relu", {arg(sh)}, [](const V& x) { return nb::relu(x[0]); }, ex});
    c.push_back({n + "exp", {arg(sh)}, [](const V& x) { return nb::exp(x[0]); }, ex});
    c.push_back({n + "log", {arg(sh, 0.5, 2)}, [](const V& x) { return nb::log(x[0]); }, ex});
    c.push_back({n + "tanh", {arg(sh)}, [](const V& x) { return nb::tanh(x[0]); }, ex});
    c.push_back({n + "sigmoid", {arg(sh)}, [](const V& x) { return nb::sigmoid(x[0]); }, ex});
    c.push_back({n + "gelu", {arg(sh)}, [](const V& x) { return nb::gelu(x[0]); }, ex});
    c.push_back({n + "softplus", {arg(sh)}, [](const V& x) { return nb::softplus(x[0]); }, ex});
    c.push_back({n + "pow", {arg(sh, 0.5, 2)}, [](const V& x) { return nb::pow(x[0], 3.0); }, ex});
    c.push_back({n + "clamp", {arg(sh)}, [](const V& x) { return nb::clamp(x[0], -1, 1); }, ex});
    c.push_back({n + "add", {arg(sh), arg(sh)}, [](const V& x) { return nb::add(x[0], x[1]); }, ex});
    c.push_back({n + "mul", {arg(sh), arg(sh)}, [](const V& x) { return nb::mul(x[0], x[1]); }, ex});
    c.push_back({n + "div", {arg(sh), arg(sh, 0.5, 2)}, [](const V& x) { return nb::div(x[0], x[1]); }, ex});
    c.push_back({n + "maximum", {arg(sh), arg(sh)}, [](const V& x) { return nb::maximum(x[0], x[1]); }, ex});
    c.push_back({n + "lt", {arg(sh), arg(sh)}, [](const V& x) { return nb::lt(x[0], x[1]); }, fo});
    c.push_back({n + "sum_all", {arg(sh)}, [](const V& x) { return nb::sum(x[0]); }, ex});  // 0
    c.push_back({n + "dropout", {arg(sh)}, [](const V& x) { return nb::dropout(x[0], 0.5, true); }, fo});
    c.push_back({n + "clone", {arg(sh)}, [](const V& x) { return x[0].clone(); }, ex});
  }
  // broadcasting an empty operand, and against one
  c.push_back({"empty_0x5_add_5", {arg({0, 5}), arg({5})}, [](const V& x) { return nb::add(x[0], x[1]); }, ex});
  c.push_back({"empty_0x5_mul_1x5", {arg({0, 5}), arg({1, 5})}, [](const V& x) { return nb::mul(x[0], x[1]); }, ex});
  // reductions: over an empty axis (sums of nothing: zeros), and along a full axis of nothing
  c.push_back({"empty_0x5_sum_axis0", {arg({0, 5})}, [](const V& x) { return nb::sum(x[0], {0}); }, ex});
  c.push_back({"empty_3x0_sum_axis1_keep", {arg({3, 0})}, [](const V& x) { return nb::sum(x[0], {1}, true); }, ex});
  c.push_back({"empty_0x5_sum_axis1", {arg({0, 5})}, [](const V& x) { return nb::sum(x[0], {1}); }, ex});
  c.push_back({"empty_0x5_mean_axis1", {arg({0, 5})}, [](const V& x) { return nb::mean(x[0], {1}); }, ex});
  c.push_back({"empty_0x5_argmax_axis1", {arg({0, 5})}, [](const V& x) { return nb::argmax(x[0], 1); }, fo});
  c.push_back({"empty_0x5_sum_to_5", {arg({0, 5})}, [](const V& x) { return nb::sum_to(x[0], {5}); }, ex});
  // softmax over rows of nothing, and of no rows
  c.push_back({"empty_0x5_softmax", {arg({0, 5})}, [](const V& x) { return nb::softmax(x[0], -1); }, ex});
  c.push_back({"empty_0x5_log_softmax", {arg({0, 5})}, [](const V& x) { return nb::log_softmax(x[0], -1); }, ex});
  c.push_back({"empty_3x0_softmax", {arg({3, 0})}, [](const V& x) { return nb::softmax(x[0], -1); }, ex});
  // products: m = 0, and k = 0 (the output is zeros: beta must not read the uninitialized C)
  c.push_back({"empty_0x5_matmul_5x3", {arg({0, 5}), arg({5, 3})}, [](const V& x) { return nb::matmul(x[0], x[1]); },
               ex});
  c.push_back({"empty_3x0_matmul_0x4", {arg({3, 0}), arg({0, 4})}, [](const V& x) { return nb::matmul(x[0], x[1]); },
               ex});
  c.push_back({"empty_batch0_matmul", {arg({0, 3, 4}), arg({0, 4, 2})},
               [](const V& x) { return nb::matmul(x[0], x[1]); }, ex});
  c.push_back({"empty_linear_batch0", {arg({0, 5}), arg({3, 5}), arg({3})},
               [](const V& x) { return nb::linear(x[0], x[1], x[2]); }, ex});
  c.push_back({"empty_linear_in0_is_bias", {arg({4, 0}), arg({3, 0}), arg({3})},
               [](const V& x) { return nb::linear(x[0], x[1], x[2]); }, ex});
  // losses summed over no rows: 0, and no gradient to anything
  c.push_back({"empty_cross_entropy_sum", {arg({0, 5}), given([] { return labels(0, 5); })},
               [](const V& x) { return nb::cross_entropy(x[0], x[1], Reduction::sum); }, ex});
  c.push_back({"empty_nll_loss_none", {arg({0, 5}), given([] { return labels(0, 5); })},
               [](const V& x) { return nb::nll_loss(x[0], x[1], Reduction::none); }, ex});
  c.push_back({"empty_mse_loss_sum", {arg({0, 3}), arg({0, 3})},
               [](const V& x) { return nb::mse_loss(x[0], x[1], Reduction::sum); }, ex});
  // convolution, pooling and normalization of a zero batch: the weight gradient is zeros
  c.push_back({"empty_conv2d_batch0", {arg({0, 3, 8, 8}), arg({4, 3, 3, 3}), arg({4})},
               [](const V& x) { return nb::conv2d(x[0], x[1], x[2], {.padding = 1}); }, ex});
  c.push_back({"empty_max_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::max_pool2d(x[0], 2); }, ex});
  c.push_back({"empty_avg_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::avg_pool2d(x[0], 2); }, ex});
  c.push_back({"empty_global_avg_pool2d_batch0", {arg({0, 3, 8, 8})},
               [](const V& x) { return nb::global_avg_pool2d(x[0]); }, ex});
  c.push_back({"empty_batch_norm_eval_batch0",
               {arg({0, 3, 4, 4}), arg({3}), arg({3}), given([] { return nb::rand({3}, {}, -1, 1); }),
                given([] { return nb::rand({3}, {}, 0.5, 2); })},
               [](const V& x) { return nb::batch_norm(x[0], x[1], x[2], x[3], x[4], false); }, ex});
  // embedding of no indices: the weight gradient is zeros
  c.push_back({"empty_embedding_no_indices", {given([] { return labels(0, 10); }), arg({10, 4})},
               [](const V& x) { return nb::embedding(x[0], x[1]); }, ex});
  c.push_back({"empty_concat_0x5_3x5", {arg({0, 5}), arg({3, 5})},
               [](const V& x) { return nb::concat({x[0], x[1]}, 0); }, ex});
  return c;
}
INSTANTIATE_TEST_SUITE_P(Empty, Parity, ::testing::ValuesIn(empty_cases()), case_name);

// What the CPU refuses on empty inputs, CUDA refuses too, with the same message (max and min have
// no identity: nabla refuses an empty input outright).
TEST_F(CudaTest, EmptyRefusedAlikeOnBothDevices) {
  const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> ops = {
      {"max axis 1", [](const Tensor& x) { return nb::max(x, {1}); }},
      {"min", [](const Tensor& x) { return nb::min(x); }},
      // an LSTM over a batch of none (cuDNN has no empty RNN data either)
      {"lstm batch 0",
       [](const Tensor& x) {
         const Tensor w = nb::rand({16, 4}, {.device = x.device()}), b = nb::rand({16}, {.device = x.device()});
         return nb::rnn_layer(nb::RnnCell::lstm, nb::rand({3, 0, 4}, {.device = x.device()}), {}, {},
                              {{w, nb::rand({16, 4}, {.device = x.device()}), b, b}})
             .y;
       }},
  };
  for (const auto& [name, f] : ops) {
    SCOPED_TRACE(name);
    const Tensor x = nb::rand({0, 5});
    std::string on_cpu, on_cuda;
    try {
      f(x);
    } catch (const nb::Error& e) {
      on_cpu = e.what();
    }
    try {
      f(x.to(kCuda));
    } catch (const nb::Error& e) {
      on_cuda = e.what();
    }
    EXPECT_FALSE(on_cpu.empty()) << "the CPU accepts it now: move it to empty_cases()";
    EXPECT_EQ(on_cuda, on_cpu);
  }
}

// The CPU side of the cases above (runs without a GPU): the reference must be defined on empty
// inputs for the parity to mean anything.
TEST(EmptyOnTheCpu, EveryCaseRunsForwardAndBackward) {
  for (const Case& k : empty_cases()) {
    SCOPED_TRACE(k.name);
    std::vector<Tensor> in;
    for (const Arg& a : k.args) {
      Tensor t = a.make ? a.make() : random_base(a, k.o.dtype);
      if (!a.make && nb::is_floating(t.dtype())) t.requires_grad_(true);
      in.push_back(t);
    }
    Tensor out;
    EXPECT_NO_THROW(out = k.f(in));
    if (out.defined() && out.requires_grad()) {
      EXPECT_NO_THROW(nb::sum(out).backward());
    }
    EXPECT_EQ(nb::tape_size(), 0u);
  }
}

}  // namespace
