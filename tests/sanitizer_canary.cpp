// The sanitizer canary: proves that a sanitized build (NABLA_SANITIZE=address,undefined) really
// catches errors. Built and registered only in such a build; each ctest passes only when the
// sanitizer's report for the planted bug appears in the output (see tests/CMakeLists.txt), so a
// build where the flags silently fell off fails these tests instead of passing everything.
//
//   nabla_sanitizer_canary heap-overflow     writes one int past a heap array
//   nabla_sanitizer_canary signed-overflow   INT_MAX + 1
#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

namespace {

// Not inlined, with the index from the command line, so the compiler cannot see the bug.
[[gnu::noinline]] void store(int* p, int i, int v) { p[i] = v; }
[[gnu::noinline]] int add(int a, int b) { return a + b; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s heap-overflow|signed-overflow\n", argv[0]);
    return 2;
  }
  const int n = argc + 6;  // 8, unknown to the compiler
  if (std::strcmp(argv[1], "heap-overflow") == 0) {
    std::vector<int> v(static_cast<size_t>(n));
    store(v.data(), n, 1);
    std::printf("no report: v[%d] written past the end\n", n);
    return 0;
  }
  if (std::strcmp(argv[1], "signed-overflow") == 0) {
    int r = add(INT_MAX, argc - 1);
    std::printf("no report: INT_MAX + 1 gave %d\n", r);
    return 0;
  }
  std::fprintf(stderr, "unknown canary '%s'\n", argv[1]);
  return 2;
}
