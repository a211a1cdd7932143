// What the CPU backend's oneDNN paths (dnnl_conv, dnnl_norm, dnnl_pool) share: the switch that
// turns them all on or off and, in the files built with oneDNN (NABLA_WITH_DNNL=1), the engine,
// the per-thread stream, the user-managed scratchpad, the reorders between nabla's plain layouts
// and the blocked ones oneDNN's JIT kernels prefer, and the wrapper that turns oneDNN's errors
// into nabla::Error. Internal to cpu/.
#pragma once

#include <nabla/export.h>

#include <cstdint>

namespace nabla::cpu::dnnl_common {

// Built with oneDNN, and not turned off (by NABLA_CPU_DNNL=0 in the environment, read once, or
// by set_enabled(false)).
NABLA_INTERNAL_API bool enabled();
// For tests (tests compare both paths): turns the oneDNN paths on or off for the whole process.
// Returns the previous setting. Without oneDNN it stays off.
NABLA_INTERNAL_API bool set_enabled(bool on);

}  // namespace nabla::cpu::dnnl_common

#if NABLA_WITH_DNNL

#include <nabla/core/error.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <optional>
#include <string>
#include <unordered_map>

namespace nabla::cpu::dnnl_common {

inline constexpr dnnl::memory::data_type f32 = dnnl::memory::data_type::f32;

dnnl::engine& engine();
// One stream per thread: the primitives and buffers of the plans are per thread too.
dnnl::stream& stream();
// An attribute that leaves the scratchpad to the caller (one buffer per primitive, kept in the plan).
dnnl::primitive_attr user_scratchpad();
// A float32 memory over a user's buffer.
dnnl::memory user(const dnnl::memory::desc& d, const void* ptr);
// The channel-blocked layout of oneDNN's JIT kernels on this CPU for 4 axes: nChw16c with AVX-512,
// nChw8c otherwise.
dnnl::memory::format_tag blocked_tag();

// A buffer in a format oneDNN chose, and the reorder into it from the user's format (or out of it
// into the user's): absent when the two formats are the same.
struct Staged {
  std::optional<dnnl::memory> mem;
  std::optional<dnnl::reorder> reorder;

  void init(const dnnl::memory::desc& user, const dnnl::memory::desc& internal, bool into_internal);
  // The memory a primitive reads: the user's, or its reordered copy.
  dnnl::memory in(const dnnl::memory& user);
  // The memory a primitive writes; then out_done copies it into the user's.
  dnnl::memory out(const dnnl::memory& user) { return mem ? *mem : user; }
  void out_done(const dnnl::memory& user);
};

// A primitive with its descriptor (a hint for the backward ones) and its scratchpad buffer.
template <typename Prim>
struct Planned {
  typename Prim::primitive_desc pd;
  Prim prim;
  dnnl::memory scratch;

  explicit Planned(const typename Prim::primitive_desc& d) : pd(d), prim(d), scratch(d.scratchpad_desc(), engine()) {}
};

// Runs p with `args` (its inputs, already reordered) and its output `out_arg` written through
// `out` into the user's buffer `out_user`; waits for it.
template <typename Prim>
void execute(Planned<Prim>& p, std::unordered_map<int, dnnl::memory> args, int out_arg, Staged& out,
             const dnnl::memory& out_user) {
  args.emplace(out_arg, out.out(out_user));
  args.emplace(DNNL_ARG_SCRATCHPAD, p.scratch);
  p.prim.execute(stream(), args);
  out.out_done(out_user);
  stream().wait();
}

// Runs `body`; a oneDNN error becomes a nabla::Error (an OutOfMemoryError for dnnl_out_of_memory)
// "<op> (oneDNN): <message> (status <s>) for <describe()>; NABLA_CPU_DNNL=0 uses nabla's own kernels".
template <typename Body, typename Describe>
void guarded(const char* op, Body&& body, Describe&& describe) {
  try {
    body();
  } catch (const dnnl::error& e) {
    const std::string msg = fmt::format("{} (oneDNN): {} (status {}) for {}; NABLA_CPU_DNNL=0 uses nabla's own kernels",
                                        op, e.what(), static_cast<int>(e.status), describe());
    if (e.status == dnnl_out_of_memory) throw OutOfMemoryError(msg);
    throw Error(msg);
  }
}

}  // namespace nabla::cpu::dnnl_common

#endif
