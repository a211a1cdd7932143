// The switch, engine, streams and reorders shared by the oneDNN paths (see dnnl_common.h).
#include <nabla/cpu/dnnl_common.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace nabla::cpu::dnnl_common {

#if NABLA_WITH_DNNL

namespace {

std::atomic<int> g_enabled{-1};  // -1: the environment not read yet

bool env_enabled() {
  const char* e = std::getenv("NABLA_CPU_DNNL");
  return !(e != nullptr && std::strcmp(e, "0") == 0);
}

}  // namespace

bool enabled() {
  int e = g_enabled.load(std::memory_order_relaxed);
  if (e < 0) {
    e = env_enabled() ? 1 : 0;
    g_enabled.store(e, std::memory_order_relaxed);
  }
  return e == 1;
}

bool set_enabled(bool on) {
  const bool was = enabled();
  g_enabled.store(on ? 1 : 0);
  return was;
}

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::memory user(const dnnl::memory::desc& d, const void* ptr) {
  return dnnl::memory(d, engine(), const_cast<void*>(ptr));
}

dnnl::memory::format_tag blocked_tag() {
  using isa = dnnl::cpu_isa;
  using tag = dnnl::memory::format_tag;
  static const bool wide = [] {
    switch (dnnl::get_effective_cpu_isa()) {
      case isa::avx512_mic:
      case isa::avx512_mic_4ops:
      case isa::avx512_core:
      case isa::avx512_core_vnni:
      case isa::avx512_core_bf16:
      case isa::avx512_core_amx:
        return true;
      default:
        return false;
    }
  }();
  return wide ? tag::nChw16c : tag::nChw8c;
}

void Staged::init(const dnnl::memory::desc& user, const dnnl::memory::desc& internal, bool into_internal) {
  if (user == internal) return;
  mem.emplace(internal, engine());
  reorder.emplace(into_internal ? dnnl::reorder::primitive_desc(engine(), user, engine(), internal)
                                : dnnl::reorder::primitive_desc(engine(), internal, engine(), user));
}

dnnl::memory Staged::in(const dnnl::memory& user) {
  if (!mem) return user;
  reorder->execute(stream(), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, *mem}});
  return *mem;
}

void Staged::out_done(const dnnl::memory& user) {
  if (mem) reorder->execute(stream(), {{DNNL_ARG_FROM, *mem}, {DNNL_ARG_TO, user}});
}

#else  // no oneDNN in this build

bool enabled() { return false; }
bool set_enabled(bool) { return false; }

#endif

}  // namespace nabla::cpu::dnnl_common
