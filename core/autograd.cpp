#include <nabla/core/autograd.h>

#include <nabla/core/anomaly.h>
#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/util.h>

#include <queue>
#include <unordered_set>
#include <unordered_map>

namespace nabla {

namespace {

thread_local bool t_grad_enabled = true;

// The thread's tape: entries in recording order. Entries are owned by the tensors they produced
// (so an unused graph frees itself); the tape keeps weak references and forgets dead ones.
struct Tape {
  uint64_t next_seq = 1;
  std::vector<std::weak_ptr<Node>> entries;
  size_t compact_at = 1024;

  void push(const std::shared_ptr<Node>& n) {
    entries.push_back(n);
    if (entries.size() >= compact_at) {
      std::erase_if(entries, [](const std::weak_ptr<Node>& w) {
        auto n = w.lock();
        return !n || !n->backward;
      });
      compact_at = std::max<size_t>(1024, 2 * entries.size());
    }
  }
};
thread_local Tape t_tape;

// Adds g into the gradient of leaf tensor t. A gradient that nothing else holds is adopted as
// it is; one that may be shared (an op passing its incoming gradient through) is copied first,
// since a leaf's gradient is later accumulated in place.
void accumulate_leaf(const Tensor& t, Tensor g) {
  TensorImpl* impl = t.impl();
  if (!impl->grad) {
    const bool exclusive = g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1 &&
                           g.is_contiguous() && g.offset() == 0;
    impl->grad = exclusive ? g.impl_ptr() : g.clone().impl_ptr();
    return;
  }
  Tensor acc(impl->grad);
  NABLA_ASSERT(acc.shape() == g.shape());
  detail::check_same(acc, g, "backward (accumulating a leaf's gradient)", "grad", "incoming");
  acc.bump_version();
  backend(acc.device()).binary(BinaryOp::add, acc.dtype(), acc.data_ptr(), acc.data_ptr(), g.data_ptr(),
                              detail::make_layout(acc.shape(), acc.strides(), acc.strides(), g.strides()));
}

// Frees a tape node without recursion. Releasing a node's inputs can release the nodes that
// produced them, and so on down the graph: dropping the result of a long loop (10^5 ops, say a
// running total of losses) without calling backward would recurse once per op through the
// destructors and overflow the stack. Nodes whose last owner is being released go to an explicit
// stack instead.
void release_node(Node* node) {
  std::vector<std::shared_ptr<Node>> stack;
  auto release_inputs = [&stack](Node& n) {
    // First the backward function: what it captures is among the inputs (or detached), so this
    // frees no node, and the inputs' use counts below are then exact.
    n.backward = nullptr;
    n.saved_outputs.clear();
    for (Tensor& t : n.inputs) {
      TensorImpl* impl = t.impl();
      if (impl && t.impl_ptr().use_count() == 1 && impl->grad_fn && impl->grad_fn.use_count() == 1)
        stack.push_back(std::move(impl->grad_fn));
    }
    n.inputs.clear();
  };
  release_inputs(*node);
  delete node;
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    release_inputs(*n);
  }  // each n is deleted here, with no inputs left to recurse into
}

// The k-th tensor whose version a node saved: its inputs, then its saved outputs.
const Tensor& saved_tensor(const Node& n, size_t k) {
  return k < n.inputs.size() ? n.inputs[k] : n.saved_outputs[k - n.inputs.size()];
}

// Throws when a tensor `node` saved was changed in place since: its backward would compute with
// the new values and give a wrong gradient without a word.
void check_versions(Node& node) {
  const size_t n_saved = node.inputs.size() + node.saved_outputs.size();
  for (size_t k = node.inputs_saved ? 0 : node.inputs.size(); k < n_saved; ++k) {
    const Tensor& t = saved_tensor(node, k);
    if (!t.defined() || t.version() == node.saved_version(k)) continue;
    const bool is_input = k < node.inputs.size();
    fail("backward of {}: {} {} (shape {}) was modified in place after it was saved (version {}, now {}); "
         "clone it before changing it",
         node.op, is_input ? "input" : "output", is_input ? k : k - node.inputs.size(), shape_str(t.shape()),
         node.saved_version(k), t.version());
  }
}

// Calls a leaf's post-accumulate hooks (a copy of the list: a hook may remove itself).
void run_post_accumulate_hooks(const Tensor& t) {
  auto hooks = t.impl()->post_accumulate_hooks;
  for (auto& [handle, fn] : hooks) fn(t);
}

}  // namespace

std::atomic<int64_t>& detail::live_grad_hooks() {
  static std::atomic<int64_t> n{0};
  return n;
}

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* op, std::vector<Tensor> inputs, std::vector<Tensor*> outputs, BackwardFn backward,
            std::vector<Tensor> saved_outputs, Saved saved) {
  std::string layer;
  if (anomaly_enabled()) {
    layer = anomaly_layer();
    detail::anomaly_check_forward(op, layer, inputs, outputs);
  }
  std::shared_ptr<Node> node(new Node, release_node);
  node->op = op;
  node->layer = std::move(layer);
  node->inputs = std::move(inputs);
  node->saved_outputs = std::move(saved_outputs);
  node->inputs_saved = saved == Saved::inputs;
  const size_t n_saved = node->inputs.size() + node->saved_outputs.size();
  if (n_saved > Node::kInlineVersions) node->versions_more.resize(n_saved - Node::kInlineVersions);
  for (size_t k = node->inputs_saved ? 0 : node->inputs.size(); k < n_saved; ++k) {
    const Tensor& t = saved_tensor(*node, k);
    node->saved_version(k) = t.defined() ? t.version() : -1;
  }
  node->backward = std::move(backward);
  node->seq = t_tape.next_seq++;
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* impl = outputs[i]->impl();
    NABLA_ASSERT(impl->grad_fn == nullptr);
    impl->grad_fn = node;
    impl->output_nr = static_cast<int>(i);
    impl->requires_grad = true;
    node->output_shapes.push_back(impl->shape);
  }
  t_tape.push(node);
}

size_t tape_size() {
  size_t n = 0;
  for (const auto& w : t_tape.entries) {
    auto node = w.lock();
    if (node && node->backward) ++n;
  }
  return n;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  NABLA_ASSERT(roots.size() == grads.size());
  struct Later {
    bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
      return a->seq < b->seq;
    }
  };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, Later> ready;
  std::unordered_map<Node*, std::vector<Tensor>> pending;
  NoGrad no_grad;  // backward functions are not themselves recorded

  // Sends gradient g to tensor t: into its producer's pending outputs, or into a leaf's .grad.
  auto send = [&](const Tensor& t, Tensor g) {
    if (!t.requires_grad()) return;
    const auto& fn = t.grad_fn();
    if (!fn) {
      accumulate_leaf(t, std::move(g));
      return;
    }
    auto [it, fresh] = pending.try_emplace(fn.get());
    if (fresh) {
      it->second.resize(fn->output_shapes.size());
      ready.push(fn);
    }
    Tensor& slot = it->second[t.impl()->output_nr];
    slot = slot.defined() ? add(slot, g) : std::move(g);
  };

  // Leaves with post-accumulate hooks: how many uses of each (edges from reachable nodes) the
  // walk has still to go through. A leaf's hooks run when its count reaches zero (its gradient is
  // final); those of leaves whose users the walk never reaches (no gradient flowed there) run at
  // the end. Counted only when some hook exists anywhere, so a plain backward pays nothing.
  std::unordered_map<TensorImpl*, int64_t> leaf_uses;
  std::vector<Tensor> hooked_leaves;  // in first-seen order, for the calls at the end
  if (detail::live_grad_hooks().load(std::memory_order_relaxed) > 0) {
    std::unordered_set<Node*> seen;
    std::vector<Node*> stack;
    auto visit = [&](const Tensor& t) {
      if (!t.defined() || !t.requires_grad()) return;
      if (const auto& fn = t.grad_fn()) {
        if (seen.insert(fn.get()).second) stack.push_back(fn.get());
      } else if (!t.impl()->post_accumulate_hooks.empty()) {
        if (leaf_uses[t.impl()]++ == 0) hooked_leaves.push_back(t);
      }
    };
    for (const Tensor& r : roots) visit(r);
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const Tensor& in : n->inputs) visit(in);
    }
  }
  auto used = [&](const Tensor& t) {
    if (leaf_uses.empty() || !t.defined() || t.grad_fn()) return;
    auto it = leaf_uses.find(t.impl());
    if (it == leaf_uses.end() || --it->second != 0) return;
    run_post_accumulate_hooks(t);
  };

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    detail::check_defined(root, "backward", "tensor");
    NABLA_CHECK(root.requires_grad(),
                "backward: tensor {} does not require grad and has no grad_fn (was it computed under "
                "NoGrad, or from tensors none of which requires grad?)",
                shape_str(root.shape()));
    Tensor g = grads[i];
    if (!g.defined()) {
      NABLA_CHECK_SHAPE(root.numel() == 1,
                        "backward: a gradient can be implied only for a scalar; tensor has shape {}, pass "
                        "backward(gradient) with that shape",
                        shape_str(root.shape()));
      g = ones(root.shape(), root.options());
    } else {
      NABLA_CHECK_SHAPE(g.shape() == root.shape(), "backward: gradient has shape {}, tensor has shape {}",
                        shape_str(g.shape()), shape_str(root.shape()));
      detail::check_same(root, g, "backward", "tensor", "gradient");
    }
    send(root, g);
    used(root);
  }

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    auto it = pending.find(node.get());
    std::vector<Tensor> gouts = std::move(it->second);
    pending.erase(it);
    NABLA_CHECK(node->backward != nullptr,
                "backward: trying to go through op '{}' a second time, but its saved values were freed "
                "by the first backward; pass retain_graph=true to the first backward()",
                node->op);
    check_versions(*node);
    const TensorOptions gopts = node->inputs.empty() ? TensorOptions{} : node->inputs[0].options();
    for (size_t k = 0; k < gouts.size(); ++k) {
      if (!gouts[k].defined()) gouts[k] = zeros(node->output_shapes[k], gopts);
      else if (!gouts[k].is_contiguous()) gouts[k] = gouts[k].contiguous();
    }
    std::vector<Tensor> gins = node->backward(gouts);
    NABLA_ASSERT(gins.size() == node->inputs.size());
    if (anomaly_enabled()) detail::anomaly_check_backward(node->op, node->layer, node->inputs, gouts, gins);
    gouts.clear();
    for (size_t k = 0; k < gins.size(); ++k) {
      if (!gins[k].defined()) continue;
      const Tensor& in = node->inputs[k];
      if (!in.defined() || !in.requires_grad()) continue;
      if (gins[k].shape() != in.shape())
        internal_error(__FILE__, __LINE__,
                       fmt::format("backward of '{}' gave a gradient {} for input {} of shape {}", node->op,
                                   shape_str(gins[k].shape()), k, shape_str(in.shape())));
      send(in, std::move(gins[k]));
    }
    if (!leaf_uses.empty())
      for (const Tensor& in : node->inputs) used(in);
    if (!retain_graph) {
      node->backward = nullptr;
      node->inputs.clear();
      node->saved_outputs.clear();
    }
  }
  // Leaves whose users were never reached (the gradient stopped before them): final too.
  for (const Tensor& t : hooked_leaves) {
    auto it = leaf_uses.find(t.impl());
    if (it->second > 0) {
      it->second = 0;
      run_post_accumulate_hooks(t);
    }
  }
  detail::anomaly_step_done();
}

}  // namespace nabla
