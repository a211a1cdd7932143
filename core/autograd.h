// Reverse-mode autograd: the thread's tape.
//
// Every differentiable op that runs while grad mode is on and has an input that requires a
// gradient appends one Node to the calling thread's tape. A Node holds the op's inputs, a
// backward function, and its position on the tape. Output tensors point at their Node (so the
// graph lives exactly as long as something can still call backward through it); a Node never
// holds its outputs, which is what keeps the graph free of reference cycles: a backward function
// that needs an output captures `out.detach()`.
//
// backward() walks the tape from the newest reachable entry to the oldest, calls each entry's
// backward with the gradients of its outputs, and adds the results into the inputs' gradients.
// Leaves keep the sum in .grad(). Unless retain_graph, each entry is released after its backward
// runs, and a second backward through it is an error.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

namespace nabla {

// Gradients for each output in; one gradient per input out (undefined where not needed).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

struct Node {
  std::string op;              // for error messages
  std::string layer;           // the AnomalyLayer open when recorded; set only in anomaly mode
  std::vector<Tensor> inputs;  // all inputs, in the op's order
  std::vector<Tensor> saved_outputs;  // outputs the backward reads (detached), if any
  std::vector<Shape> output_shapes;
  BackwardFn backward;         // null once released
  uint64_t seq = 0;            // position on the thread's tape
  bool inputs_saved = true;    // the backward reads the inputs' values (see Saved)

  // Storage versions of inputs then saved_outputs when recorded (-1: undefined); backward throws
  // when one has changed since. Inline for the usual few tensors: recording allocates nothing more.
  static constexpr size_t kInlineVersions = 4;
  int64_t versions_inline[kInlineVersions] = {};
  std::vector<int64_t> versions_more;
  int64_t& saved_version(size_t k) {
    return k < kInlineVersions ? versions_inline[k] : versions_more[k - kInlineVersions];
  }
};

// Grad mode of the calling thread: on by default.
NABLA_API bool grad_enabled();
NABLA_API void set_grad_enabled(bool on);

// Turns recording off for its lifetime (evaluation, optimizer updates).
class NoGrad {
 public:
  NoGrad() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGrad() { set_grad_enabled(prev_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// True when an op over these inputs must be recorded.
NABLA_API bool needs_grad(std::initializer_list<const Tensor*> inputs);
NABLA_API bool needs_grad(const std::vector<Tensor>& inputs);

// Whether an op's backward reads its inputs' values (mul, matmul, exp...) or only their shapes
// (add, views, concat, sum...): only values read are checked for in-place changes, as PyTorch
// checks only the tensors an op saves.
enum class Saved { inputs, none };

// Appends a tape entry for `op` that produced `outputs` from `inputs`, and marks the outputs as
// requiring grad. Call only when needs_grad(inputs), after the outputs are computed: in anomaly
// mode (core/anomaly.h) record() checks them for NaN/Inf and throws, naming `op`.
// The inputs' storage versions are saved with them (so are those of `saved_outputs`: outputs,
// detached, that the backward reads); if any has changed when backward reaches this entry (an
// in-place write: fill_, copy_, an optimizer step...), backward throws naming the op and tensor.
NABLA_API void record(const char* op, std::vector<Tensor> inputs, std::vector<Tensor*> outputs,
            BackwardFn backward, std::vector<Tensor> saved_outputs = {}, Saved saved = Saved::inputs);

// Number of live entries on the calling thread's tape (for tests and diagnostics).
NABLA_API size_t tape_size();

// Runs backward from `roots` with gradients `grads` (see Tensor::backward).
NABLA_API void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

namespace detail {
// Post-accumulate-grad hooks alive in the process: backward looks for them only when some exist.
std::atomic<int64_t>& live_grad_hooks();
}  // namespace detail

}  // namespace nabla
