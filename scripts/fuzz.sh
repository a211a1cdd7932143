#!/usr/bin/env bash
# nabla fuzzing: builds the libFuzzer targets with clang (build-fuzz/: NABLA_FUZZ=ON, CPU only,
# ASan + UBSan) and runs each for SECONDS (default 60) on a copy of its seed corpus
# (tests/fuzz/corpus/<target>/). Exits non-zero on any finding: the reproducer is then copied to
# tests/fuzz/crashes/<target>/ so that, once fixed, it becomes a regression input of the normal
# test suite (tests/fuzz_regression_test.cpp); commit it with the fix.
#
#   scripts/fuzz.sh            60 s per target (what CI runs, see scripts/test.sh)
#   scripts/fuzz.sh 600        the 10-minute run per target
#   scripts/fuzz.sh 60 idx     one target: idx, safetensors or json_metadata
#
# Environment: NABLA_FUZZ_JOBS (parallel fuzzing processes per target, default 1),
# NABLA_FUZZ_FLAGS (more libFuzzer flags, after ours, e.g. "-max_len=4096"),
# NABLA_FUZZ_BUILD_DIR (default build-fuzz), NABLA_JOBS (build parallelism).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

seconds=${1:-60}
shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=(idx safetensors json_metadata)
[[ $seconds =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [seconds] [target...]"
build_dir=${NABLA_FUZZ_BUILD_DIR:-build-fuzz}
fuzz_jobs=${NABLA_FUZZ_JOBS:-1}

if ! command -v clang++ >/dev/null; then
  phase packages
  install_debian_packages clang libomp-dev  # Debian's clang ships libFuzzer (libclang_rt.fuzzer); clang -fopenmp needs libomp
  command -v clang++ >/dev/null || die "clang++ not found, and installing Debian's clang failed"
fi

phase fuzz-build
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DNABLA_CUDA=OFF -DNABLA_FUZZ=ON -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_EXAMPLES=OFF \
  -DNABLA_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" --parallel "$NABLA_JOBS" \
  --target "${targets[@]/#/nabla_fuzz_}"

# detect_leaks: a reader that leaks on a bad file is a finding too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# -jobs (even -jobs=1) runs the fuzzer in child processes logging to ./fuzz-<n>.log: only for N > 1.
parallel=()
(( fuzz_jobs > 1 )) && parallel=(-jobs="$fuzz_jobs" -workers="$fuzz_jobs")

status=0
for t in "${targets[@]}"; do
  phase "fuzz-$t"
  work=$build_dir/fuzz-work/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
  # -rss_limit_mb/-malloc_limit_mb: a file that makes a reader allocate more than 1 GiB (the
  # seeds hold a few KB) is a finding, which is how "declares a terabyte" bugs show up.
  # -timeout: one input taking over 10 s is a finding (a hang).
  set +e
  # shellcheck disable=SC2086
  "$build_dir/tests/fuzz/nabla_fuzz_$t" "$work/corpus" tests/fuzz/crashes/"$t" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 "${parallel[@]}" \
    -artifact_prefix="$work/artifacts/" ${NABLA_FUZZ_FLAGS:-} >"$work/log" 2>&1
  rc=$?
  set -e
  # -jobs writes one log per job (fuzz-<n>.log in the working folder) instead of to stdout.
  if (( fuzz_jobs > 1 )); then cat fuzz-*.log >>"$work/log" 2>/dev/null || true; rm -f fuzz-*.log; fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^#[0-9]+ +DONE' \
    "$work/log" | sed 's/^/    /' || true
  findings=("$work"/artifacts/*)
  if (( rc != 0 )) || [[ -e ${findings[0]} ]]; then
    status=1
    say "fuzz-$t: FINDING (exit $rc); log: $work/log"
    grep -E 'ERROR: |runtime error|SUMMARY' "$work/log" | head -5 | sed 's/^/    /' || true
    for f in "${findings[@]}"; do
      [[ -e $f ]] || continue
      cp "$f" tests/fuzz/crashes/"$t"/
      say "reproducer saved as tests/fuzz/crashes/$t/$(basename "$f") (rerun: $build_dir/tests/fuzz/nabla_fuzz_$t tests/fuzz/crashes/$t/$(basename "$f"))"
    done
  fi
done
timing_summary
if (( status != 0 )); then
  say "FAILED: the fuzzers found something (see above)"
  exit 1
fi
say "fuzzing: no findings"
