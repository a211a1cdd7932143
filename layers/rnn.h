// Recurrent layers (PyTorch's LSTM and GRU): num_layers stacked layers, optionally
// bidirectional, dropout between layers in training. Parameters are named and shaped as PyTorch's
// (weight_ih_l0 (G hidden, input), weight_hh_l0 (G hidden, hidden), bias_ih_l0, bias_hh_l0, and
// ..._reverse for the second direction; gates i, f, g, o for the LSTM, r, z, n for the GRU), and
// initialized U(-1/sqrt(hidden), 1/sqrt(hidden)) as PyTorch does, so a model means the same on
// the CPU, on a GPU and in PyTorch.
//
// Each layer's parameters are views of one packed buffer in the layout of their device's backend
// (on a GPU: cuDNN's weight space), so a step uses them without copying. After Module::to() the
// buffer is rebuilt on the new device at the next forward (once).
//
//   nabla::LSTM lstm(28, 128, {.batch_first = true});
//   auto out = lstm.forward_state(x, {});   // out.output (batch, seq, 128), out.h, out.c (1, batch, 128)
#pragma once

#include <nabla/export.h>

#include <nabla/core/ops/rnn.h>
#include <nabla/layers/module.h>

namespace nabla {

struct RnnOptions {
  int64_t num_layers = 1;
  bool batch_first = false;  // x (batch, seq, features) instead of (seq, batch, features)
  double dropout = 0;        // on the outputs of every layer but the last, in training
  bool bidirectional = false;
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

// Initial or final states: (num_layers * directions, batch, hidden); undefined means zeros.
// c is the LSTM's cell state (undefined for a GRU).
struct RnnState {
  Tensor h, c;
};

struct RnnOutput {
  Tensor output;  // (batch, seq, directions * hidden) or (seq, batch, ...): every step of the last layer
  Tensor h, c;    // the states after the last step, as RnnState
};

class NABLA_API RnnBase : public Module {
 public:
  // The output sequence, from zero initial states.
  Tensor forward(const Tensor& x) override;
  // Output and final states, from `state`.
  RnnOutput forward_state(const Tensor& x, const RnnState& state = {});
  std::string to_string() const override;

  int64_t input_size() const { return input_; }
  int64_t hidden_size() const { return hidden_; }
  int64_t num_layers() const { return opts_.num_layers; }
  int64_t directions() const { return opts_.bidirectional ? 2 : 1; }

 protected:
  RnnBase(RnnCell cell, int64_t input_size, int64_t hidden_size, RnnOptions opts);

 private:
  struct Layer {
    std::vector<RnnWeights> w;  // one per direction; each a view of `packed`
    Tensor packed;
    std::vector<int64_t> offsets;
  };
  // Makes each layer's parameters views of one packed buffer on their device, when they are not.
  void pack();

  RnnCell cell_;
  int64_t input_, hidden_;
  RnnOptions opts_;
  std::vector<Layer> layers_;
  std::string label_;
};

class NABLA_API LSTM : public RnnBase {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, RnnOptions opts = {})
      : RnnBase(RnnCell::lstm, input_size, hidden_size, opts) {}
  std::string type_name() const override { return "LSTM"; }
};

class NABLA_API GRU : public RnnBase {
 public:
  GRU(int64_t input_size, int64_t hidden_size, RnnOptions opts = {})
      : RnnBase(RnnCell::gru, input_size, hidden_size, opts) {}
  std::string type_name() const override { return "GRU"; }
};

// The last step of a sequence: (batch, seq, f) -> (batch, f) when batch_first, else
// (seq, batch, f) -> (batch, f). Lets a Dense read an LSTM's last output in a Sequential.
class NABLA_API LastStep : public Module {
 public:
  explicit LastStep(bool batch_first = false) : batch_first_(batch_first) {}
  Tensor forward(const Tensor& x) override { return last_step(x, batch_first_); }
  std::string type_name() const override { return "LastStep"; }
  std::string to_string() const override { return batch_first_ ? "LastStep(batch_first)" : "LastStep"; }

 private:
  bool batch_first_;
};

}  // namespace nabla
