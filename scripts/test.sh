#!/usr/bin/env bash
# nabla tests: installs what the build needs, builds everything in build/ (Release, CUDA when
# nvcc is found) and runs the whole test suite with ctest. Exits non-zero when a test fails.
# A second run reuses the configured build/ and ccache, so it only rebuilds what changed.
#
#   scripts/test.sh [ctest args...]      e.g. scripts/test.sh -R Tensor
#
# Environment: NABLA_CUDA=AUTO|ON|OFF (default AUTO), NABLA_JOBS (default: all cores),
# NABLA_TEST_TIMEOUT (seconds per test, default 600).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

phase packages
install_packages
phase configure
configure_build
phase build
build_targets
phase test
status=0
# --timeout bounds each test, so a hung test fails instead of stalling CI.
ctest --test-dir "$NABLA_BUILD_DIR" --output-on-failure --parallel "$NABLA_JOBS" \
  --timeout "${NABLA_TEST_TIMEOUT:-600}" "$@" || status=$?
timing_summary
if (( status != 0 )); then
  say "FAILED: ctest exited with $status"
  exit "$status"
fi
say "all tests passed"
