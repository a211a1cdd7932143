// The input-validation audit (issue 7): every public op fed at least one bad input (wrong dtype,
// rank or shape, an axis, index, label or slice bound out of range, a negative size) must throw a
// nabla::Error, before any kernel runs, whose message names the op and the offending value.
//
// kPublicOps is the audit: every public op of core/ops/*.h, the Tensor methods that take axes,
// shapes, indices, dtypes or devices, the factories, and the layers. CoverageTest fails when one of
// them has no row in the table. Device-mismatch rows need a second device; this table runs on the
// CPU only (there is one device), so it has none.
#include <nabla/core/ops.h>
#include <nabla/layers/layers.h>

#include "test_util.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

namespace nabla::test {
namespace {

using ::testing::HasSubstr;

struct Row {
  std::string op;                     // the public op this row exercises (an entry of kPublicOps)
  std::string what;                   // the bad input, for the test name
  std::function<void()> call;
  std::vector<std::string> must_contain;  // the op's name and the offending value
};

void PrintTo(const Row& r, std::ostream* os) { *os << r.op << " (" << r.what << ")"; }

Tensor F(const Shape& s) { return zeros(s); }                      // float32
Tensor D(const Shape& s) { return zeros(s, kF64); }                // float64
Tensor I(const Shape& s) { return zeros(s, {.dtype = DType::int64}); }

// Every public op, by the name its messages use.
const std::vector<std::string> kPublicOps = {
    // core/ops/elementwise.h
    "add", "sub", "mul", "div", "maximum", "minimum", "eq", "ne", "gt", "ge", "lt", "le", "neg", "exp",
    "log", "sqrt", "abs", "pow", "clamp", "affine", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu",
    "softplus", "softmax", "log_softmax",
    // core/ops/reduce.h
    "sum", "mean", "max", "min", "argmax", "sum_to",
    // core/ops/linalg.h
    "matmul", "linear",
    // core/ops/loss.h
    "mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
    "nll_loss",
    // core/ops/shape.h
    "concat", "dropout",
    // core/ops/conv.h, pool.h, norm.h, embedding.h, rnn.h
    "conv2d", "conv1d", "Padding", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "batch_norm", "embedding",
    "rnn_layer", "last_step",
    // core/ops/foreach.h
    "foreach::copy_", "foreach::sqrt_", "foreach::mul_", "foreach::div_", "foreach::add_", "foreach::addcmul_",
    "foreach::addcdiv_", "foreach::lerp_", "foreach::clone", "foreach::sqrt", "foreach::add",
    // core/tensor.h: methods
    "Tensor::empty", "size", "data", "requires_grad_", "set_grad", "backward", "reshape", "view", "flatten",
    "transpose", "slice", "unsqueeze", "squeeze", "expand", "to", "item", "copy_", "set_data",
    // core/tensor.h: factories
    "zeros", "ones", "full", "arange", "rand", "randn", "from_vector",
    // layers
    "Dense", "Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d",
    "Embedding", "LSTM", "GRU", "LastStep", "Dropout", "Flatten", "Softmax", "LogSoftmax",
};

std::vector<Row> rows() {
  std::vector<Row> r;
  auto row = [&](std::string op, std::string what, std::function<void()> f, std::vector<std::string> m) {
    r.push_back({std::move(op), std::move(what), std::move(f), std::move(m)});
  };

  // ---- elementwise: binary ops, mismatched shapes and dtypes
  row("add", "shapes", [] { add(F({2, 3}), F({4})); }, {"add", "[2, 3]", "[4]"});
  row("add", "dtypes", [] { add(F({2}), D({2})); }, {"add", "float32", "float64"});
  row("sub", "shapes", [] { sub(F({2, 3}), F({3, 2})); }, {"sub", "[2, 3]", "[3, 2]"});
  row("sub", "dtypes", [] { sub(F({2}), I({2})); }, {"sub", "float32", "int64"});
  row("mul", "shapes", [] { mul(F({5}), F({4})); }, {"mul", "[5]", "[4]"});
  row("div", "shapes", [] { div(F({2, 2}), F({3})); }, {"div", "[2, 2]", "[3]"});
  row("div", "dtypes", [] { div(D({2}), F({2})); }, {"div", "float64", "float32"});
  row("maximum", "shapes", [] { maximum(F({2}), F({3})); }, {"maximum", "[2]", "[3]"});
  row("minimum", "dtypes", [] { minimum(F({2}), D({2})); }, {"minimum", "float32", "float64"});
  row("eq", "shapes", [] { eq(F({2}), F({3})); }, {"eq", "[2]", "[3]"});
  row("ne", "shapes", [] { ne(F({4, 1}), F({3, 2})); }, {"ne", "[4, 1]", "[3, 2]"});
  row("gt", "dtypes", [] { gt(F({2}), I({2})); }, {"gt", "float32", "int64"});
  row("ge", "shapes", [] { ge(F({2}), F({3})); }, {"ge", "[2]", "[3]"});
  row("lt", "shapes", [] { lt(F({2}), F({3})); }, {"lt", "[2]", "[3]"});
  row("le", "shapes", [] { le(F({2}), F({3})); }, {"le", "[2]", "[3]"});
  row("add", "operator+", [] { (void)(F({2}) + F({3})); }, {"add", "[2]", "[3]"});

  // ---- elementwise: unary float ops given integer tensors, undefined tensors
  row("neg", "undefined", [] { neg(Tensor()); }, {"neg", "undefined"});
  row("exp", "int64", [] { exp(I({2})); }, {"exp", "int64"});
  row("log", "int64", [] { log(I({2})); }, {"log", "int64"});
  row("sqrt", "int64", [] { sqrt(I({2})); }, {"sqrt", "int64"});
  row("abs", "undefined", [] { abs(Tensor()); }, {"abs", "undefined"});
  row("pow", "int64", [] { pow(I({2}), 2.0); }, {"pow", "int64"});
  row("clamp", "lo above hi", [] { clamp(F({2}), 3.0, 1.0); }, {"clamp", "3", "1"});
  row("affine", "int64", [] { affine(I({2}), 2.0, 1.0); }, {"affine", "int64"});
  row("relu", "undefined", [] { relu(Tensor()); }, {"relu", "undefined"});
  row("leaky_relu", "int64", [] { leaky_relu(I({2})); }, {"leaky_relu", "int64"});
  row("elu", "int64", [] { elu(I({2})); }, {"elu", "int64"});
  row("sigmoid", "int64", [] { sigmoid(I({2})); }, {"sigmoid", "int64"});
  row("tanh", "int64", [] { tanh(I({2})); }, {"tanh", "int64"});
  row("gelu", "int64", [] { gelu(I({2})); }, {"gelu", "int64"});
  row("softplus", "int64", [] { softplus(I({2})); }, {"softplus", "int64"});
  row("softmax", "axis 2", [] { softmax(F({2, 3}), 2); }, {"softmax", "axis 2"});
  row("softmax", "int64", [] { softmax(I({2, 3})); }, {"softmax", "int64"});
  row("log_softmax", "axis -3", [] { log_softmax(F({2, 3}), -3); }, {"log_softmax", "axis -3"});

  // ---- reductions
  row("sum", "axis 2", [] { sum(F({2, 3}), {2}); }, {"sum", "axis 2"});
  row("mean", "axis -3", [] { mean(F({2, 3}), {-3}); }, {"mean", "axis -3"});
  row("max", "axis 5", [] { max(F({2, 3}), {5}); }, {"max", "axis 5"});
  row("max", "empty", [] { max(F({0, 3})); }, {"max", "[0, 3]"});
  row("min", "axis 4", [] { min(F({2, 3}), {4}); }, {"min", "axis 4"});
  row("argmax", "axis 2", [] { argmax(F({2, 3}), 2); }, {"argmax", "axis 2"});
  row("sum_to", "shape", [] { sum_to(F({2, 3}), {4}); }, {"sum_to", "[2, 3]", "[4]"});

  // ---- linalg
  row("matmul", "inner", [] { matmul(F({2, 3}), F({4, 2})); }, {"matmul", "[2, 3]", "[4, 2]"});
  row("matmul", "0-d", [] { matmul(F({}), F({2})); }, {"matmul", "[]"});
  row("linear", "in features", [] { linear(F({2, 3}), F({5, 4})); }, {"linear", "[2, 3]", "[5, 4]"});
  row("linear", "bias", [] { linear(F({2, 4}), F({5, 4}), F({4})); }, {"linear", "bias", "[4]"});
  row("linear", "int weight", [] { linear(F({2, 4}), I({5, 4})); }, {"linear", "int64"});

  // ---- losses
  row("mse_loss", "shapes", [] { mse_loss(F({2, 3}), F({3, 2})); }, {"mse_loss", "[2, 3]", "[3, 2]"});
  row("l1_loss", "shapes", [] { l1_loss(F({4}), F({4, 1})); }, {"l1_loss", "[4]", "[4, 1]"});
  row("binary_cross_entropy", "shapes", [] { binary_cross_entropy(F({2}), F({3})); },
      {"binary_cross_entropy", "[2]", "[3]"});
  row("binary_cross_entropy", "int64", [] { binary_cross_entropy(I({2}), I({2})); },
      {"binary_cross_entropy", "int64"});
  row("binary_cross_entropy_with_logits", "shapes",
      [] { binary_cross_entropy_with_logits(F({2}), F({3})); }, {"binary_cross_entropy_with_logits", "[2]", "[3]"});
  row("cross_entropy", "label 5", [] { cross_entropy(F({2, 3}), i64({0, 5})); },
      {"cross_entropy", "label 5", "3 classes"});
  row("cross_entropy", "label -1", [] { cross_entropy(F({2, 3}), i64({-1, 0})); }, {"cross_entropy", "label -1"});
  row("cross_entropy", "probability shape", [] { cross_entropy(F({2, 3}), F({2})); },
      {"cross_entropy", "[2]", "[2, 3]"});
  row("cross_entropy", "label count", [] { cross_entropy(F({2, 3}), i64({0, 1, 2})); },
      {"cross_entropy", "[3]", "[2, 3]"});
  row("nll_loss", "label 3", [] { nll_loss(F({1, 3}), i64({3})); }, {"nll_loss", "label 3"});
  row("nll_loss", "rank", [] { nll_loss(F({3}), i64({0})); }, {"nll_loss", "[3]"});

  // ---- shape.h
  row("concat", "axis 2", [] { concat({F({2, 3}), F({2, 3})}, 2); }, {"concat", "axis 2"});
  row("concat", "shapes", [] { concat({F({2, 3}), F({2, 4})}, 0); }, {"concat", "[2, 3]", "[2, 4]"});
  row("concat", "dtypes", [] { concat({F({2}), D({2})}); }, {"concat", "float32", "float64"});
  row("concat", "empty list", [] { concat({}); }, {"concat", "no tensors"});
  row("dropout", "p 1.5", [] { dropout(F({2}), 1.5, true); }, {"dropout", "1.5"});
  row("dropout", "p -0.1", [] { dropout(F({2}), -0.1, true); }, {"dropout", "-0.1"});

  // ---- conv
  row("conv2d", "rank", [] { conv2d(F({1, 3, 8}), F({4, 3, 3, 3})); }, {"conv2d", "[1, 3, 8]"});
  row("conv2d", "channels", [] { conv2d(F({1, 2, 8, 8}), F({4, 3, 3, 3})); }, {"conv2d", "[1, 2, 8, 8]", "3"});
  row("conv2d", "kernel too big", [] { conv2d(F({1, 3, 2, 2}), F({4, 3, 3, 3})); }, {"conv2d", "[1, 3, 2, 2]"});
  row("conv2d", "stride 0", [] { conv2d(F({1, 3, 8, 8}), F({4, 3, 3, 3}), {}, {.stride = 0}); },
      {"conv2d", "stride", "0"});
  row("conv2d", "groups 2", [] { conv2d(F({1, 3, 8, 8}), F({4, 3, 3, 3}), {}, {.groups = 2}); },
      {"conv2d", "groups", "2"});
  row("conv2d", "padding -1", [] { conv2d(F({1, 3, 8, 8}), F({4, 3, 3, 3}), {}, {.padding = -1}); },
      {"conv2d", "padding", "-1"});
  row("conv2d", "bias", [] { conv2d(F({1, 3, 8, 8}), F({4, 3, 3, 3}), F({5})); }, {"conv2d", "bias", "[5]"});
  row("conv1d", "rank", [] { conv1d(F({3, 8}), F({4, 3, 3})); }, {"conv1d", "[3, 8]"});
  row("conv1d", "dilation 0", [] { conv1d(F({1, 3, 8}), F({4, 3, 3}), {}, {.dilation = 0}); },
      {"conv1d", "dilation", "0"});
  row("Padding", "mode", [] { Padding p("full"); }, {"padding", "full"});

  // ---- pool
  row("max_pool2d", "rank", [] { max_pool2d(F({3, 8, 8}), 2); }, {"max_pool2d", "[3, 8, 8]"});
  row("max_pool2d", "kernel 0", [] { max_pool2d(F({1, 3, 8, 8}), 0); }, {"max_pool2d", "kernel", "0"});
  row("avg_pool2d", "kernel too big", [] { avg_pool2d(F({1, 1, 2, 2}), 3); }, {"avg_pool2d", "[1, 1, 2, 2]"});
  row("avg_pool2d", "padding 2", [] { avg_pool2d(F({1, 1, 8, 8}), 2, {.padding = 2}); },
      {"avg_pool2d", "padding", "2"});
  row("global_avg_pool2d", "rank", [] { global_avg_pool2d(F({3, 8})); }, {"global_avg_pool2d", "[3, 8]"});

  // ---- batch_norm
  row("batch_norm", "features", [] { batch_norm(F({4, 3}), F({5}), F({5}), F({5}), F({5}), true); },
      {"batch_norm", "[4, 3]", "[5]"});
  row("batch_norm", "rank", [] { batch_norm(F({4}), F({4}), F({4}), F({4}), F({4}), true); },
      {"batch_norm", "[4]"});
  row("batch_norm", "momentum 2", [] { batch_norm(F({4, 3}), F({3}), F({3}), F({3}), F({3}), true, 2.0); },
      {"batch_norm", "momentum", "2"});
  row("batch_norm", "eps -1", [] { batch_norm(F({4, 3}), F({3}), F({3}), F({3}), F({3}), true, 0.1, -1); },
      {"batch_norm", "eps", "-1"});

  // ---- embedding
  row("embedding", "id 7", [] { embedding(i64({1, 7}), F({5, 2})); }, {"embedding", "7", "5"});
  row("embedding", "id -2", [] { embedding(i64({-2}), F({5, 2})); }, {"embedding", "-2"});
  row("embedding", "float ids", [] { embedding(F({2}), F({5, 2})); }, {"embedding", "float32"});
  row("embedding", "weight rank", [] { embedding(i64({0}), F({5})); }, {"embedding", "[5]"});
  row("embedding", "padding_idx 9", [] { embedding(i64({0}), F({5, 2}), 9); }, {"embedding", "padding_idx", "9"});

  // ---- rnn
  row("rnn_layer", "rank", [] {
        RnnWeights w{F({4, 3}), F({4, 1}), F({4}), F({4})};
        rnn_layer(RnnCell::lstm, F({5, 3}), {}, {}, {w});
      }, {"rnn", "[5, 3]"});
  row("rnn_layer", "input size", [] {
        RnnWeights w{F({12, 3}), F({12, 4}), F({12}), F({12})};
        rnn_layer(RnnCell::gru, F({5, 2, 7}), {}, {}, {w});
      }, {"rnn", "7"});
  row("last_step", "rank", [] { last_step(F({5})); }, {"last_step", "[5]"});
  row("last_step", "empty sequence", [] { last_step(F({0, 2, 3})); }, {"last_step", "[0, 2, 3]"});

  // ---- foreach.h (multi-tensor arithmetic): the list's index, and what was expected vs what came
  using TL = foreach::TensorList;
  row("foreach::copy_", "shape", [] { foreach::copy_(TL{F({3}), F({2})}, TL{F({3}), F({4})}); },
      {"foreach::copy_", "tensor 1", "[4]", "[2]"});
  row("foreach::sqrt_", "int64", [] { foreach::sqrt_(TL{F({2}), I({2})}); }, {"foreach::sqrt_", "tensor 1", "int64"});
  row("foreach::mul_", "scalar count", [] { foreach::mul_(TL{F({2}), F({3})}, std::vector<double>{0.5}); },
      {"foreach::mul_", "1 scalars", "2 tensors"});
  row("foreach::div_", "undefined", [] { foreach::div_(TL{F({2}), Tensor()}, 2.0); },
      {"foreach::div_", "tensor 1", "undefined"});
  row("foreach::add_", "list length", [] { foreach::add_(TL{F({2}), F({3})}, TL{F({2})}); },
      {"foreach::add_", "'y'", "1 tensors", "expected 2"});
  row("foreach::addcmul_", "dtype", [] { foreach::addcmul_(TL{F({2})}, TL{F({2})}, TL{D({2})}); },
      {"foreach::addcmul_", "'z'", "float64", "float32"});
  row("foreach::addcdiv_", "shape", [] { foreach::addcdiv_(TL{F({2, 3})}, TL{F({3, 2})}, TL{F({2, 3})}); },
      {"foreach::addcdiv_", "'y'", "[3, 2]", "[2, 3]"});
  row("foreach::lerp_", "not contiguous", [] { foreach::lerp_(TL{F({3, 2})}, TL{F({2, 3}).t()}, 0.1); },
      {"foreach::lerp_", "'y'", "[3, 2]", "contiguous"});
  row("foreach::clone", "int64", [] { foreach::clone(TL{I({2})}); }, {"foreach::clone", "int64"});
  row("foreach::sqrt", "undefined", [] { foreach::sqrt(TL{Tensor()}); }, {"foreach::sqrt", "tensor 0", "undefined"});
  row("foreach::add", "dtype", [] { foreach::add(TL{D({2})}, TL{F({2})}, 0.1); },
      {"foreach::add", "float32", "float64"});

  // ---- Tensor methods
  row("Tensor::empty", "negative", [] { Tensor::empty({2, -3}); }, {"Tensor::empty", "[2, -3]"});
  row("size", "axis 2", [] { (void)F({2, 3}).size(2); }, {"size", "axis 2"});
  row("size", "axis -3", [] { (void)F({2, 3}).size(-3); }, {"size", "axis -3"});
  row("data", "dtype", [] { (void)F({2}).data<double>(); }, {"data", "float64", "float32"});
  row("requires_grad_", "int64", [] { I({2}).requires_grad_(true); }, {"requires_grad_", "int64"});
  row("set_grad", "shape", [] {
        Tensor x = F({2}).requires_grad_(true);
        x.set_grad(F({3}));
      }, {"set_grad", "[3]", "[2]"});
  row("backward", "non-scalar", [] {
        Tensor x = F({2}).requires_grad_(true);
        mul(x, x).backward();
      }, {"backward", "[2]"});
  row("backward", "gradient shape", [] {
        Tensor x = F({2}).requires_grad_(true);
        mul(x, x).backward(F({3}));
      }, {"backward", "[3]", "[2]"});
  row("reshape", "numel", [] { F({2, 3}).reshape({4}); }, {"reshape", "[2, 3]", "[4]"});
  row("reshape", "two -1", [] { F({2, 3}).reshape({-1, -1}); }, {"reshape", "[-1, -1]"});
  row("reshape", "negative", [] { F({2, 3}).reshape({-2, -3}); }, {"reshape", "[-2, -3]"});
  row("view", "non-contiguous", [] { F({2, 3}).transpose(0, 1).view({6}); }, {"view", "[3, 2]"});
  row("view", "numel", [] { F({2, 3}).view({5}); }, {"view", "[2, 3]", "[5]"});
  row("flatten", "axis 3", [] { F({2, 3}).flatten(0, 3); }, {"flatten", "axis 3"});
  row("flatten", "start after end", [] { F({2, 3, 4}).flatten(2, 1); }, {"flatten", "2", "1"});
  row("transpose", "axis 2", [] { F({2, 3}).transpose(0, 2); }, {"transpose", "axis 2"});
  row("slice", "axis 2", [] { F({2, 3}).slice(2, 0, 1); }, {"slice", "axis 2"});
  row("slice", "step 0", [] { F({4}).slice(0, 0, 4, 0); }, {"slice", "step", "0"});
  row("slice", "step -1", [] { F({4}).slice(0, 3, 1, -1); }, {"slice", "step", "-1"});
  row("slice", "0-d", [] { F({}).slice(0, 0, 1); }, {"slice", "0-dimensional"});
  row("unsqueeze", "axis 3", [] { F({2, 3}).unsqueeze(3); }, {"unsqueeze", "axis 3"});
  row("unsqueeze", "axis -4", [] { F({2, 3}).unsqueeze(-4); }, {"unsqueeze", "axis -4"});
  row("squeeze", "size 3", [] { F({2, 3}).squeeze(1); }, {"squeeze", "axis 1", "size 3"});
  row("squeeze", "axis 2", [] { F({2, 3}).squeeze(2); }, {"squeeze", "axis 2"});
  row("expand", "incompatible", [] { F({2, 3}).expand({2, 4}); }, {"expand", "[2, 3]", "[2, 4]"});
  row("expand", "fewer dims", [] { F({2, 3}).expand({3}); }, {"expand", "[2, 3]", "[3]"});
  row("to", "no such device", [] { F({2}).to(Device::cuda(7)); }, {"to", "cuda:7"});
  row("item", "numel", [] { (void)F({2, 3}).item(); }, {"item", "[2, 3]"});
  row("copy_", "shape", [] { F({2, 3}).copy_(F({4})); }, {"copy_", "[4]", "[2, 3]"});
  row("set_data", "undefined", [] {
        Tensor x = F({2});
        x.set_data(Tensor());
      }, {"set_data", "undefined"});

  // ---- factories
  row("zeros", "negative", [] { zeros({-1, 2}); }, {"zeros", "[-1, 2]"});
  row("ones", "negative", [] { ones({3, -2}); }, {"ones", "[3, -2]"});
  row("full", "negative", [] { full({-4}, 1.0); }, {"full", "[-4]"});
  row("zeros", "no such device", [] { zeros({2}, {.device = Device::cuda(7)}); }, {"zeros", "cuda:7"});
  row("rand", "no such device", [] { rand({2}, {.device = Device::cuda(7)}); }, {"rand", "cuda:7"});
  row("from_vector", "no such device", [] { from_vector(std::vector<float>{1}, {}, {.device = Device::cuda(7)}); },
      {"from_vector", "cuda:7"});
  row("arange", "step 0", [] { arange(0, 5, 0); }, {"arange", "step", "0"});
  row("arange", "negative n", [] { arange(int64_t{-3}); }, {"arange", "-3"});
  row("rand", "lo above hi", [] { rand({2}, {}, 2, 1); }, {"rand", "2", "1"});
  row("rand", "int64", [] { rand({2}, {.dtype = DType::int64}); }, {"rand", "int64"});
  row("rand", "negative", [] { rand({-2}); }, {"rand", "[-2]"});
  row("randn", "stddev -1", [] { randn({2}, {}, 0, -1); }, {"randn", "-1"});
  row("from_vector", "count", [] { from_vector(std::vector<double>{1, 2, 3}, {2, 2}); },
      {"from_vector", "3", "[2, 2]"});
  row("from_vector", "negative", [] { from_vector(std::vector<double>{1, 2}, {-1, -2}); },
      {"from_vector", "[-1, -2]"});

  // ---- sizes that overflow int64 (issue 11): a clear error, never a tiny buffer
  constexpr int64_t kBig = int64_t{1} << 62, kMax = std::numeric_limits<int64_t>::max();
  row("zeros", "numel overflows", [] { zeros({kBig, 4}); }, {"zeros", "[4611686018427387904, 4]", "int64"});
  row("ones", "bytes overflow", [] { ones({int64_t{1} << 61, 2}); }, {"ones", "[2305843009213693952, 2]", "bytes"});
  row("full", "numel overflows", [] { full({3, kBig, 5}, 1.0); }, {"full", "[3, 4611686018427387904, 5]"});
  row("Tensor::empty", "numel overflows", [] { Tensor::empty({kBig, kBig}); }, {"Tensor::empty", "int64"});
  row("Tensor::empty", "out of memory", [] { Tensor::empty({int64_t{1} << 60}); },
      {"Tensor::empty", "[1152921504606846976]", "4611686018427387904 bytes", "out of memory"});
  row("zeros", "out of memory", [] { zeros({int64_t{1} << 40, int64_t{1} << 20}); },
      {"zeros", "[1099511627776, 1048576]", "bytes", "out of memory"});
  // An op's output that cannot be had names the op (small inputs, a huge broadcast or lookup).
  // 256 TiB each: beyond the 128 TiB of user address space, so the allocation fails even where
  // the kernel overcommits memory.
  row("add", "output out of memory", [] { add(zeros({int64_t{1} << 23, 1}), zeros({1, int64_t{1} << 23})); },
      {"add: cannot allocate", "[8388608, 8388608]", "bytes", "out of memory"});
  row("embedding", "output out of memory",
      [] { embedding(zeros({int64_t{1} << 22}, {.dtype = DType::int64}), zeros({1, int64_t{1} << 24})); },
      {"embedding: cannot allocate", "[4194304, 16777216]", "bytes", "out of memory"});
  row("rand", "numel overflows", [] { rand({kBig, 4}); }, {"rand", "[4611686018427387904, 4]"});
  row("randn", "numel overflows", [] { randn({4, kBig}); }, {"randn", "[4, 4611686018427387904]"});
  row("rand", "generator offset past 2^64", [] {
        const RngState saved = rng_state();
        set_rng_state({7, std::numeric_limits<uint64_t>::max() - 5});
        const std::string msg = error_of([] { rand({8}); });
        set_rng_state(saved);
        fail("{}", msg);
      }, {"rand", "counter 18446744073709551610", "2^64", "manual_seed"});
  row("reshape", "numel overflows", [] { F({8}).reshape({kBig, 8}); }, {"reshape", "[4611686018427387904, 8]"});
  row("reshape", "-1 with overflow", [] { F({0}).reshape({kBig, -1, 8}); }, {"reshape", "int64"});
  row("view", "numel overflows", [] { F({8}).view({kBig, 4, 2}); }, {"view", "[4611686018427387904, 4, 2]"});
  row("expand", "numel overflows", [] { F({1, 1}).expand({int64_t{1} << 32, int64_t{1} << 32}); },
      {"expand", "[4294967296, 4294967296]"});
  row("add", "broadcast overflows", [] {
        add(F({1, 1}).expand({int64_t{1} << 31, 1}), F({1, 1}).expand({1, int64_t{1} << 33}));
      }, {"add", "[2147483648, 8589934592]", "int64"});
  row("matmul", "output overflows", [] {
        matmul(F({1, 1}).expand({int64_t{1} << 40, 1}), F({1, 1}).expand({1, int64_t{1} << 40}));
      }, {"matmul", "[1099511627776, 1099511627776]"});
  row("concat", "length overflows", [] { concat({F({1}).expand({kMax}), F({2})}, 0); },
      {"concat", "9223372036854775807 + 2"});
  row("conv2d", "padding overflows", [] { conv2d(F({1, 1, 4, 4}), F({1, 1, 3, 3}), {}, {.padding = kBig}); },
      {"conv2d", "padding", "overflows"});
  row("conv2d", "dilation overflows", [] { conv2d(F({1, 1, 4, 4}), F({1, 1, 3, 3}), {}, {.dilation = kBig}); },
      {"conv2d", "dilated kernel", "4611686018427387904"});
  row("conv1d", "padding overflows", [] { conv1d(F({1, 1, 4}), F({1, 1, 3}), {}, {.padding = kBig}); },
      {"conv1d", "padding", "overflows"});
  row("max_pool2d", "padding overflows", [] {
        max_pool2d(F({1, 1, 1, 1}).expand({1, 1, kMax - 2, 1}), {kMax, 1}, {.padding = Padding(kBig - 1, 0)});
      }, {"max_pool2d", "padded height", "overflows"});
  row("arange", "step of the wrong sign", [] { arange(0, 5, -1); }, {"arange", "inconsistent with step sign", "-1"});
  row("arange", "end below start", [] { arange(5, 0, 1); }, {"arange", "inconsistent with step sign", "5"});
  row("arange", "too many", [] { arange(0, 1e300, 1e-300); }, {"arange", "too many"});
  row("arange", "NaN", [] { arange(0, std::nan(""), 1); }, {"arange", "nan"});

  // ---- layers: constructors
  row("Dense", "in 0", [] { Dense(0, 4); }, {"Dense", "0"});
  row("Dense", "out -1", [] { Dense(4, -1); }, {"Dense", "-1"});
  row("Dense", "forward features", [] { Dense(4, 2).forward(F({3, 5})); }, {"Dense(4->2)", "[3, 5]"});
  row("Dense", "forward int", [] { Dense(4, 2).forward(I({3, 4})); }, {"Dense(4->2)", "int64"});
  row("Conv2d", "kernel 0", [] { Conv2d(3, 4, 0); }, {"Conv2d", "kernel", "0"});
  row("Conv2d", "groups 2", [] { Conv2d(3, 4, 3, {.groups = 2}); }, {"Conv2d", "groups", "2"});
  row("Conv2d", "forward channels", [] { Conv2d(3, 4, 3).forward(F({1, 2, 8, 8})); },
      {"Conv2d(3->4, 3x3)", "[1, 2, 8, 8]"});
  row("Conv1d", "in -1", [] { Conv1d(-1, 4, 3); }, {"Conv1d", "-1"});
  row("Conv1d", "forward rank", [] { Conv1d(3, 4, 3).forward(F({3, 8})); }, {"Conv1d", "[3, 8]"});
  row("MaxPool2d", "kernel 0", [] { MaxPool2d(0); }, {"MaxPool2d", "kernel", "0"});
  row("MaxPool2d", "forward rank", [] { MaxPool2d(2).forward(F({8, 8})); }, {"MaxPool2d", "[8, 8]"});
  row("AvgPool2d", "kernel -2", [] { AvgPool2d(-2); }, {"AvgPool2d", "-2"});
  row("GlobalAvgPool2d", "forward rank", [] { GlobalAvgPool2d().forward(F({2, 3})); },
      {"GlobalAvgPool2d", "[2, 3]"});
  row("BatchNorm1d", "features 0", [] { BatchNorm1d(0); }, {"BatchNorm1d", "0"});
  row("BatchNorm1d", "forward features", [] { BatchNorm1d(3).forward(F({4, 5})); }, {"BatchNorm1d", "[4, 5]"});
  row("BatchNorm2d", "forward rank", [] { BatchNorm2d(3).forward(F({4, 3})); }, {"BatchNorm2d", "[4, 3]"});
  row("Embedding", "num 0", [] { Embedding(0, 4); }, {"Embedding", "0"});
  row("Embedding", "padding_idx 9", [] { Embedding(5, 4, {.padding_idx = 9}); }, {"Embedding", "9"});
  row("Embedding", "forward id 5", [] { Embedding(5, 4).forward(i64({0, 5})); }, {"Embedding", "5"});
  row("Embedding", "forward float ids", [] { Embedding(5, 4).forward(F({2})); }, {"Embedding", "float32"});
  row("LSTM", "hidden 0", [] { LSTM(3, 0); }, {"LSTM", "0"});
  row("LSTM", "num_layers 0", [] { LSTM(3, 4, {.num_layers = 0}); }, {"LSTM", "num_layers", "0"});
  row("LSTM", "forward input size", [] { LSTM(3, 4).forward(F({5, 2, 7})); }, {"LSTM", "7"});
  row("GRU", "dropout 1.5", [] { GRU(3, 4, {.num_layers = 2, .dropout = 1.5}); }, {"GRU", "1.5"});
  row("GRU", "forward rank", [] { GRU(3, 4).forward(F({5, 3})); }, {"GRU", "[5, 3]"});
  row("GRU", "forward state shape", [] { GRU(3, 4).forward_state(F({5, 2, 3}), {F({1, 2, 5}), {}}); },
      {"GRU", "[1, 2, 5]"});
  row("LastStep", "forward rank", [] { LastStep().forward(F({4})); }, {"last_step", "[4]"});
  row("Dropout", "p 1.5", [] { Dropout(1.5); }, {"Dropout", "1.5"});
  row("Flatten", "forward axis", [] { Flatten(3).forward(F({2, 3})); }, {"flatten", "axis 3"});
  row("Softmax", "forward axis", [] { Softmax(2).forward(F({2, 3})); }, {"softmax", "axis 2"});
  row("LogSoftmax", "forward axis", [] { LogSoftmax(-3).forward(F({2, 3})); }, {"log_softmax", "axis -3"});

  // ---- NaN options are "not a number" (not "negative"); allocations name the layer (issue 11)
  const double nan = std::nan("");
  row("Dropout", "p NaN", [nan] { Dropout d(nan); }, {"Dropout", "probability", "not a number"});
  row("dropout", "p NaN", [nan] { dropout(F({2}), nan, true); }, {"dropout", "probability", "not a number"});
  row("batch_norm", "eps NaN", [nan] { batch_norm(F({2, 3}), {}, {}, {}, {}, true, 0.1, nan); },
      {"batch_norm", "eps", "not a number"});
  row("BatchNorm1d", "momentum NaN", [nan] { BatchNorm1d(3, {.momentum = nan}); },
      {"BatchNorm1d", "momentum", "not a number"});
  row("GRU", "dropout NaN", [nan] { GRU(3, 4, {.num_layers = 2, .dropout = nan}); }, {"GRU", "dropout", "not a number"});
  row("rand", "lo NaN", [nan] { rand({2}, {}, nan, 1); }, {"rand", "lower bound", "not a number"});
  row("randn", "stddev NaN", [nan] { randn({2}, {}, 0, nan); }, {"randn", "standard deviation", "not a number"});
  row("Dense", "weight out of memory", [] { Dense(int64_t{1} << 30, int64_t{1} << 30); },
      {"Dense(1073741824->1073741824) weight", "[1073741824, 1073741824]", "bytes", "out of memory"});
  row("Dense", "weight numel overflows", [] { Dense(int64_t{1} << 62, 4); },
      {"Dense(4611686018427387904->4) weight", "int64"});
  row("Conv2d", "kernel size overflows", [] { Conv2d(1, 1, Size2(int64_t{1} << 40, int64_t{1} << 40)); },
      {"Conv2d(1->1, 1099511627776x1099511627776)", "kernel size", "overflows"});
  row("Embedding", "weight out of memory", [] { Embedding(int64_t{1} << 40, int64_t{1} << 20); },
      {"Embedding(1099511627776, 1048576) weight", "out of memory"});
  row("LSTM", "gate rows overflow", [] { LSTM(4, int64_t{1} << 62); }, {"LSTM(4->4611686018427387904)", "overflows"});
  return r;
}

// Mismatched devices need a second device: skipped on a machine (or build) without CUDA.
TEST(ValidationDeviceTest, MismatchedDevicesNameOpAndDevices) {
  if (Device::best().is_cpu()) GTEST_SKIP() << "no second device";
  const Device g = Device::best();
  EXPECT_THAT(error_of([&] { add(F({2}), zeros({2}, {.device = g})); }),
              ::testing::AllOf(HasSubstr("add"), HasSubstr("cpu"), HasSubstr(g.str())));
  EXPECT_THAT(error_of([&] { matmul(F({2, 2}), zeros({2, 2}, {.device = g})); }),
              ::testing::AllOf(HasSubstr("matmul"), HasSubstr("cpu"), HasSubstr(g.str())));
}

class ValidationTest : public ::testing::TestWithParam<Row> {};

TEST_P(ValidationTest, RejectsWithNamedError) {
  const Row& row = GetParam();
  const std::string msg = error_of(row.call);
  ASSERT_NE(msg, "(no error)") << row.op << " accepted " << row.what;
  ASSERT_EQ(msg.rfind("(other exception", 0), std::string::npos) << msg;
  for (const std::string& s : row.must_contain) EXPECT_THAT(msg, HasSubstr(s)) << row.op << " (" << row.what << ")";
}

INSTANTIATE_TEST_SUITE_P(Table, ValidationTest, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<Row>& info) {
                           return test_name(info.param.op + "_" + info.param.what) + "_" +
                                  std::to_string(info.index);
                         });

TEST(ValidationCoverageTest, EveryPublicOpHasARow) {
  const std::vector<Row> table = rows();
  std::set<std::string> covered;
  for (const Row& row : table) {
    EXPECT_NE(std::find(kPublicOps.begin(), kPublicOps.end(), row.op), kPublicOps.end())
        << "row for " << row.op << " names no public op in kPublicOps";
    covered.insert(row.op);
  }
  std::set<std::string> ops(kPublicOps.begin(), kPublicOps.end());
  EXPECT_EQ(ops.size(), kPublicOps.size()) << "kPublicOps has duplicates";
  for (const std::string& op : ops) EXPECT_TRUE(covered.count(op)) << "public op " << op << " has no row";
  std::printf("validation table: %zu ops covered of %zu public ops, %zu rows\n", covered.size(), ops.size(),
              table.size());
}

}  // namespace
}  // namespace nabla::test
