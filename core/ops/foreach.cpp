// Multi-tensor arithmetic: checks, then one backend call per (device, dtype) of the tensors.
#include <nabla/core/ops/foreach.h>

#include <nabla/core/ops/util.h>

#include <map>
#include <tuple>
#include <utility>

namespace nabla::foreach {

namespace {

// A list argument of an op and its name in messages.
struct Input {
  const TensorList* list;
  const char* name;
};

// Checks x, the inputs (pairwise like x) and the scalars, before anything changes.
// `xname` names x in messages.
void check(const char* op, const TensorList& x, std::initializer_list<Input> inputs, const Scalars* a,
           const char* xname = "x") {
  const size_t n = x.size();
  for (const Input& in : inputs)
    NABLA_CHECK(in.list->size() == n, "{}: list '{}' has {} tensors, expected {} (as many as '{}')", op, in.name,
                in.list->size(), n, xname);
  if (a && a->one_each())
    NABLA_CHECK(a->size() == n, "{}: {} scalars for {} tensors, expected one per tensor (or one for all)", op,
                a->size(), n);
  for (size_t i = 0; i < n; ++i) {
    const Tensor& t = x[i];
    NABLA_CHECK(t.defined(), "{}: tensor {} of '{}' is undefined", op, i, xname);
    NABLA_CHECK_DTYPE(is_floating(t.dtype()), "{}: tensor {} of '{}' has dtype {}, expected float32 or float64", op, i,
                      xname, t.dtype());
    NABLA_CHECK(t.is_contiguous(), "{}: tensor {} of '{}' ({}) is not contiguous", op, i, xname,
                shape_str(t.shape()));
    for (const Input& in : inputs) {
      const Tensor& u = (*in.list)[i];
      NABLA_CHECK(u.defined(), "{}: tensor {} of '{}' is undefined", op, i, in.name);
      NABLA_CHECK_SHAPE(u.shape() == t.shape(), "{}: tensor {} of '{}' has shape {}, expected {} (that of 'x')", op, i,
                        in.name, shape_str(u.shape()), shape_str(t.shape()));
      NABLA_CHECK_DTYPE(u.dtype() == t.dtype(), "{}: tensor {} of '{}' has dtype {}, expected {} (that of 'x')", op, i,
                        in.name, u.dtype(), t.dtype());
      NABLA_CHECK(u.device() == t.device(), "{}: tensor {} of '{}' is on {}, expected {} (that of 'x')", op, i,
                  in.name, u.device(), t.device());
      NABLA_CHECK(u.is_contiguous(), "{}: tensor {} of '{}' ({}) is not contiguous", op, i, in.name,
                  shape_str(u.shape()));
    }
  }
}

// Checks, then calls the backend once per (device, dtype) of x's non-empty tensors.
void run(const char* op, ForeachOp kind, const TensorList& x, const TensorList* y, const TensorList* z,
         const Scalars* a) {
  if (z)
    check(op, x, {{y, "y"}, {z, "z"}}, a);
  else if (y)
    check(op, x, {{y, "y"}}, a);
  else
    check(op, x, {}, a);
  // (device kind, index, dtype) -> tensor indices, in order
  std::map<std::tuple<int, int, int>, std::vector<size_t>> groups;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].numel() == 0) continue;
    groups[{static_cast<int>(x[i].device().kind), x[i].device().index, static_cast<int>(x[i].dtype())}].push_back(i);
  }
  for (const auto& [key, idx] : groups) {
    std::vector<void*> xs;
    std::vector<const void*> ys, zs;
    std::vector<double> as;
    std::vector<int64_t> sizes;
    for (size_t i : idx) {
      x[i].bump_version();
      xs.push_back(x[i].data_ptr());
      if (y) ys.push_back((*y)[i].data_ptr());
      if (z) zs.push_back((*z)[i].data_ptr());
      if (a) as.push_back((*a)[i]);
      sizes.push_back(x[i].numel());
    }
    ForeachLists l;
    l.count = static_cast<int64_t>(idx.size());
    l.x = xs.data();
    l.y = y ? ys.data() : nullptr;
    l.z = z ? zs.data() : nullptr;
    l.a = a ? as.data() : nullptr;
    l.sizes = sizes.data();
    const Tensor& first = x[idx.front()];
    detail::be(first).foreach(kind, first.dtype(), l);
  }
}

// New uninitialized tensors like y's (checked as an op's inputs are).
TensorList empty_like(const char* op, const TensorList& y) {
  check(op, y, {}, nullptr, "y");
  TensorList out;
  out.reserve(y.size());
  for (const Tensor& t : y) out.push_back(Tensor::empty(t.shape(), {.dtype = t.dtype(), .device = t.device()}, op));
  return out;
}

}  // namespace

void copy_(const TensorList& x, const TensorList& y) { run("foreach::copy_", ForeachOp::copy, x, &y, nullptr, nullptr); }
void sqrt_(const TensorList& x) { run("foreach::sqrt_", ForeachOp::sqrt, x, &x, nullptr, nullptr); }
void mul_(const TensorList& x, const Scalars& a) { run("foreach::mul_", ForeachOp::mul, x, nullptr, nullptr, &a); }
void div_(const TensorList& x, const Scalars& a) { run("foreach::div_", ForeachOp::div, x, nullptr, nullptr, &a); }
void add_(const TensorList& x, const Scalars& a) { run("foreach::add_", ForeachOp::add, x, nullptr, nullptr, &a); }
void add_(const TensorList& x, const TensorList& y, const Scalars& a) {
  run("foreach::add_", ForeachOp::axpy, x, &y, nullptr, &a);
}
void addcmul_(const TensorList& x, const TensorList& y, const TensorList& z, const Scalars& a) {
  run("foreach::addcmul_", ForeachOp::addcmul, x, &y, &z, &a);
}
void addcdiv_(const TensorList& x, const TensorList& y, const TensorList& z, const Scalars& a) {
  run("foreach::addcdiv_", ForeachOp::addcdiv, x, &y, &z, &a);
}
void lerp_(const TensorList& x, const TensorList& y, const Scalars& w) {
  run("foreach::lerp_", ForeachOp::lerp, x, &y, nullptr, &w);
}

TensorList clone(const TensorList& y) {
  TensorList out = empty_like("foreach::clone", y);
  run("foreach::clone", ForeachOp::copy, out, &y, nullptr, nullptr);
  return out;
}

TensorList sqrt(const TensorList& y) {
  TensorList out = empty_like("foreach::sqrt", y);
  run("foreach::sqrt", ForeachOp::sqrt, out, &y, nullptr, nullptr);
  return out;
}

TensorList add(const TensorList& x, const TensorList& y, const Scalars& a) {
  check("foreach::add", x, {{&y, "y"}}, &a);
  TensorList out = clone(x);
  run("foreach::add", ForeachOp::axpy, out, &y, nullptr, &a);
  return out;
}

}  // namespace nabla::foreach
