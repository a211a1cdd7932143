#!/usr/bin/env bash
# nabla demo: installs what the build needs, builds nabla and the MLP example (nothing else: no
# tests, no benchmark), and trains an MLP on Fashion-MNIST. Extra arguments go to the example
# (build/examples/mlp/nabla-mlp --help).
#
#   scripts/demo.sh [example args...]
#
# Environment: NABLA_CUDA=AUTO|ON|OFF (default AUTO), NABLA_JOBS (default: all cores),
# NABLA_FASHION_MNIST (dataset folder; default /usr/share/datasets/fashion-mnist).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

phase packages
install_packages
phase configure
# Only what the demo runs: no test suites (and so no GoogleTest), no benchmark.
configure_build -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCH=OFF
phase build
build_targets nabla-mlp
example="$NABLA_BUILD_DIR/examples/mlp/nabla-mlp"
[[ -x $example ]] || die "$example was not built"
timing_summary
say "running $example $*"
# The example's own output ends the demo, with its RESULT line last.
exec "$example" "$@"
