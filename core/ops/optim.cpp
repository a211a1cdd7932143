// Optimizer updates: checks, then one backend call per (device, dtype) group of tensors.
#include <nabla/core/ops/optim.h>

#include <nabla/core/ops/util.h>

#include <map>
#include <tuple>

namespace nabla::update {

namespace {

void check_state(const Tensor& param, const Tensor& t, const char* op, const char* what, size_t i) {
  NABLA_CHECK(t.defined(), "{}: parameter {}: {} is missing", op, i, what);
  detail::check_same(param, t, op, "param", what);
  NABLA_CHECK(t.shape() == param.shape(), "{}: parameter {}: {} has shape {}, expected the parameter's {}", op, i,
              what, shape_str(t.shape()), shape_str(param.shape()));
  NABLA_CHECK(t.is_contiguous(), "{}: parameter {}: {} {} is not contiguous", op, i, what, shape_str(t.shape()));
}

// Checks the group (states named by `names`, null where the optimizer doesn't use one) and calls
// run(dtype, device, ParamGroup) once per (device, dtype).
template <typename Run>
void for_groups(const Group& g, const char* op, const char* const names[3], Run&& run) {
  const size_t n = g.params.size();
  NABLA_CHECK(g.grads.size() == n && g.steps.size() == n, "{}: {} parameters but {} gradients and {} step counts",
              op, n, g.grads.size(), g.steps.size());
  const std::vector<Tensor>* states[3] = {&g.state0, &g.state1, &g.state2};
  for (size_t i = 0; i < n; ++i) {
    const Tensor& p = g.params[i];
    detail::check_float(p, op, "param");
    NABLA_CHECK(p.is_contiguous(), "{}: parameter {} {} is not contiguous", op, i, shape_str(p.shape()));
    check_state(p, g.grads[i], op, "grad", i);
    NABLA_CHECK(g.steps[i] >= 1, "{}: parameter {}: step counts from 1, got {}", op, i, g.steps[i]);
    for (int k = 0; k < 3; ++k)
      if (names[k]) {
        NABLA_CHECK(states[k]->size() == n, "{}: {} {} tensors for {} parameters", op, states[k]->size(), names[k], n);
        check_state(p, (*states[k])[i], op, names[k], i);
      }
  }
  // (device kind, index, dtype) -> member indices
  std::map<std::tuple<int, int, int>, std::vector<size_t>> parts;
  for (size_t i = 0; i < n; ++i) {
    const Tensor& p = g.params[i];
    if (p.numel() == 0) continue;
    parts[{static_cast<int>(p.device().kind), p.device().index, static_cast<int>(p.dtype())}].push_back(i);
  }
  for (auto& [key, idx] : parts) {
    std::vector<void*> params, s0, s1, s2;
    std::vector<const void*> grads;
    std::vector<int64_t> sizes, steps;
    for (size_t i : idx) {
      g.params[i].bump_version();
      for (int k = 0; k < 3; ++k)
        if (names[k]) (*states[k])[i].bump_version();
      params.push_back(g.params[i].data_ptr());
      grads.push_back(g.grads[i].data_ptr());
      s0.push_back(names[0] ? g.state0[i].data_ptr() : nullptr);
      s1.push_back(names[1] ? g.state1[i].data_ptr() : nullptr);
      s2.push_back(names[2] ? g.state2[i].data_ptr() : nullptr);
      sizes.push_back(g.params[i].numel());
      steps.push_back(g.steps[i]);
    }
    ParamGroup pg;
    pg.count = static_cast<int64_t>(idx.size());
    pg.params = params.data();
    pg.grads = grads.data();
    pg.state0 = s0.data();
    pg.state1 = s1.data();
    pg.state2 = s2.data();
    pg.sizes = sizes.data();
    pg.steps = steps.data();
    const Tensor& first = g.params[idx[0]];
    run(detail::be(first), first.dtype(), pg);
  }
}

}  // namespace

void sgd(const Group& g, double lr, double momentum, double dampening, double weight_decay, bool nesterov) {
  const char* names[3] = {momentum != 0 ? "momentum buffer" : nullptr, nullptr, nullptr};
  for_groups(g, "SGD", names, [&](Backend& b, DType t, const ParamGroup& pg) {
    b.sgd_step(t, pg, lr, momentum, dampening, weight_decay, nesterov);
  });
}

void adam(const Group& g, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
  const char* names[3] = {"first moment", "second moment", nullptr};
  for_groups(g, decoupled ? "AdamW" : "Adam", names, [&](Backend& b, DType t, const ParamGroup& pg) {
    b.adam_step(t, pg, lr, beta1, beta2, eps, weight_decay, decoupled);
  });
}

void adagrad(const Group& g, double lr, double lr_decay, double weight_decay, double eps) {
  const char* names[3] = {"sum of squares", nullptr, nullptr};
  for_groups(g, "Adagrad", names, [&](Backend& b, DType t, const ParamGroup& pg) {
    b.adagrad_step(t, pg, lr, lr_decay, weight_decay, eps);
  });
}

void rmsprop(const Group& g, double lr, double alpha, double eps, double weight_decay, double momentum,
             bool centered) {
  const char* names[3] = {"square average", momentum > 0 ? "momentum buffer" : nullptr,
                          centered ? "gradient average" : nullptr};
  for_groups(g, "RMSprop", names, [&](Backend& b, DType t, const ParamGroup& pg) {
    b.rmsprop_step(t, pg, lr, alpha, eps, weight_decay, momentum, centered);
  });
}

}  // namespace nabla::update
