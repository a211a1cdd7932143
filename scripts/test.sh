#!/usr/bin/env bash
# nabla tests: installs what the build needs, builds everything in build/ (Release, CUDA when
# nvcc is found) and runs the whole test suite with ctest. Exits non-zero when a test fails.
# A second run reuses the configured build/ and ccache, so it only rebuilds what changed.
#
#   scripts/test.sh [ctest args...]      e.g. scripts/test.sh -R Tensor
#
# In CI (CI=true, which .ci/run sets) two more phases follow, each failing the run on any report:
#   - sanitize: build-asan/ (CPU only, RelWithDebInfo, NABLA_SANITIZE=address,undefined) and its
#     whole ctest under ASan, LSan and UBSan, canary included (tests/sanitizer_canary.cpp);
#   - fuzz: scripts/fuzz.sh, each libFuzzer target for NABLA_FUZZ_SECONDS (60) seconds.
# A developer's plain run skips them; NABLA_SANITIZE_TESTS=1 and NABLA_FUZZ_SECONDS=N turn them
# on (=0 turns them off in CI). The ctest args given apply to the normal test phase only.
#
# Environment: NABLA_CUDA=AUTO|ON|OFF (default AUTO), NABLA_JOBS (default: all cores),
# NABLA_TEST_TIMEOUT (seconds per test, default 600), NABLA_SANITIZE_TESTS, NABLA_FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

if [[ ${CI:-} == true ]]; then ci=1; else ci=0; fi
sanitize_tests=${NABLA_SANITIZE_TESTS:-$ci}
fuzz_seconds=${NABLA_FUZZ_SECONDS:-$(( ci ? 60 : 0 ))}
extra_packages=()
(( fuzz_seconds > 0 )) && extra_packages+=(clang libomp-dev)

phase packages
install_packages "${NABLA_TEST_PACKAGES[@]}" "${extra_packages[@]}"
setup_test_python
phase configure
configure_build
phase build
build_targets
phase test
status=0
# --timeout bounds each test, so a hung test fails instead of stalling CI.
ctest --test-dir "$NABLA_BUILD_DIR" --output-on-failure --parallel "$NABLA_JOBS" \
  --timeout "${NABLA_TEST_TIMEOUT:-600}" "$@" || status=$?
failed=()
(( status == 0 )) || failed+=("tests (ctest exited with $status)")

if (( sanitize_tests )); then
  phase sanitize-build
  asan_dir=${NABLA_ASAN_BUILD_DIR:-build-asan}
  # -O1: a fifth less compile time than -O2 (measured on the former ops_grad_test: 31 vs 39 s), and still fast tests.
  NABLA_BUILD_DIR=$asan_dir NABLA_CUDA=OFF configure_build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG" -DNABLA_SANITIZE=address,undefined \
    -DNABLA_BUILD_EXAMPLES=OFF -DNABLA_BUILD_BENCH=OFF
  NABLA_BUILD_DIR=$asan_dir build_targets
  phase sanitize-test
  # detect_leaks=1: a leak fails its test (checked: libgomp's and OpenBLAS's thread pools give no
  # leak reports, so no suppressions are needed).
  # allocator_may_return_null=1: an impossible allocation (tests ask for 2^63 bytes) returns null,
  # which nabla turns into its out-of-memory Error, as malloc does without ASan; by default ASan
  # would abort instead. nabla_install_consumer is left out: it builds an installed copy
  # without the sanitizer flags.
  s_status=0
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:print_stacktrace=1:strict_string_checks=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$asan_dir" --output-on-failure --parallel "$NABLA_JOBS" \
    --timeout "${NABLA_TEST_TIMEOUT:-600}" -E '^nabla_install_consumer$' || s_status=$?
  (( s_status == 0 )) || failed+=("sanitized tests (ctest exited with $s_status)")
fi

if (( fuzz_seconds > 0 )); then
  phase fuzz  # fuzz.sh prints the times of its build and of each target
  f_status=0
  bash scripts/fuzz.sh "$fuzz_seconds" || f_status=$?
  (( f_status == 0 )) || failed+=("fuzzing (scripts/fuzz.sh exited with $f_status)")
fi

timing_summary
if (( ${#failed[@]} )); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all tests passed"
