# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): package installation,
# configure and build of build/, and phase timing. Expects `set -euo pipefail` and the
# repository root as the working directory.

# Debian/Ubuntu packages that building the library and the examples and running them use
# (OpenBLAS is checked separately: either variant will do). Each for:
#   build-essential, cmake: the compiler and the build; ccache: cheap rebuilds (NABLA_CCACHE);
#   libfmt-dev, nlohmann-json3-dev, zlib1g-dev: the library; libdnnl-dev: its oneDNN kernels;
#   libcli11-dev: the command line of the examples and nabla-bench (not of the library);
#   dataset-fashion-mnist: the examples' data; gnuplot-nox: the examples' plots of their history.
#   libopenmpi-dev, openmpi-bin: nabla::dist's MPI engine and mpirun (data-parallel training, its tests).
NABLA_PACKAGES=(build-essential cmake ccache libfmt-dev nlohmann-json3-dev zlib1g-dev libdnnl-dev libcli11-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist gnuplot-nox)
# What scripts/test.sh adds: GoogleTest; fortunes, the text of the char_lm CLI test; python3-venv
# and python3-numpy for the safetensors interop test's virtual environment (setup_test_python);
# pkg-config for the pkg-config consumer test (tests/install).
NABLA_TEST_PACKAGES=(libgtest-dev fortunes python3-venv python3-numpy pkg-config)
NABLA_BLAS_PACKAGES=(libopenblas-openmp-dev libopenblas-pthread-dev libopenblas-dev)
NABLA_BUILD_DIR=${NABLA_BUILD_DIR:-build}
NABLA_JOBS=${NABLA_JOBS:-$(nproc 2>/dev/null || echo 2)}
# ccache keys on the compile command, which names absolute paths: with the checkout as base_dir
# they become relative, so a second clone or worktree (CI's fresh clone included) reuses the
# objects another one compiled.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}

_nabla_t0=$(date +%s)
_nabla_phase_t0=$_nabla_t0
_nabla_phase_name=""
_nabla_timings=()

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# phase NAME: ends the previous phase (printing its time) and starts NAME.
phase() {
  _phase_end
  _nabla_phase_name=$1
  _nabla_phase_t0=$(date +%s)
  say "$1"
}
_phase_end() {
  if [[ -n $_nabla_phase_name ]]; then
    local dt=$(( $(date +%s) - _nabla_phase_t0 ))
    _nabla_timings+=("$(printf '%-10s %4ds' "$_nabla_phase_name" "$dt")")
    say "$_nabla_phase_name: done in ${dt}s"
    _nabla_phase_name=""
  fi
}
# Prints the time of each phase and the total.
timing_summary() {
  _phase_end
  say "times:"
  local line
  for line in "${_nabla_timings[@]}"; do printf '    %s\n' "$line"; done
  printf '    %-10s %4ds\n' total $(( $(date +%s) - _nabla_t0 ))
}

_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# Installs the missing Debian packages of NABLA_PACKAGES and the arguments.
install_packages() {
  install_debian_packages "$@"
}

# Installs the missing packages with apt-get (as root, or through sudo). Runs apt-get update
# only when something is missing, so a second run costs a few dpkg queries.
install_debian_packages() {
  if ! command -v dpkg-query >/dev/null; then
    warn "not a Debian/Ubuntu system: install by hand: ${NABLA_PACKAGES[*]} $* libopenblas-openmp-dev"
    return 0
  fi
  local missing=() p
  for p in "${NABLA_PACKAGES[@]}" "$@"; do
    _installed "$p" || missing+=("$p")
  done
  local blas_ok=0
  for p in "${NABLA_BLAS_PACKAGES[@]}"; do
    _installed "$p" && blas_ok=1
  done
  (( blas_ok )) || missing+=(libopenblas-openmp-dev)
  if (( ${#missing[@]} == 0 )); then
    say "all packages present"
    return 0
  fi
  say "installing: ${missing[*]}"
  local sudo=()
  if (( $(id -u) != 0 )); then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}), and not root and no sudo: install them as root"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
     ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    # Hosts without a package registry (e.g. some GPU machines) may still have all that the
    # build needs; let CMake and the programs say what is really missing.
    warn "could not install ${missing[*]}; continuing with what is installed"
  fi
}

# The Python of the safetensors interop test (tests/safetensors_interop.py, which imports numpy
# and safetensors): a virtual environment in $NABLA_BUILD_DIR/python-venv (the path that
# tests/CMakeLists.txt gives the test) made from Debian's python3 with its system site packages,
# so numpy is Debian's python3-numpy; safetensors, which Debian 12 does not package, is
# pip-installed into the environment, never into the system's Python. Without network the test
# skips itself. Quick when the environment already imports both.
setup_test_python() {
  local py=/usr/bin/python3
  [[ -x $py ]] || py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    warn "no python3: the safetensors interop test will be skipped"
    return 0
  fi
  local venv=$NABLA_BUILD_DIR/python-venv
  if [[ ! -x $venv/bin/python3 ]]; then
    say "making the interop test's Python environment $venv (from $py)"
    if ! "$py" -m venv --system-site-packages "$venv"; then
      warn "could not make $venv (python3-venv missing?); the safetensors interop test will use python3 on PATH"
      rm -rf "$venv"
      return 0
    fi
  fi
  local missing=() m
  for m in numpy safetensors; do
    "$venv/bin/python3" -c "import $m" 2>/dev/null || missing+=("$m")
  done
  (( ${#missing[@]} == 0 )) && return 0
  say "pip installing into $venv: ${missing[*]}"
  if ! "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${missing[@]}"; then
    warn "could not pip install ${missing[*]}; the safetensors interop test will be skipped"
  fi
}

# configure_build [CMAKE ARGS...]: configures $NABLA_BUILD_DIR (Release, CUDA AUTO unless
# NABLA_CUDA is set, tests, examples and bench on unless an argument turns them off, as
# scripts/demo.sh does; set explicitly, so that a run of test.sh after demo.sh in the same
# build/ builds them all again). Re-running it on a configured folder is quick and rebuilds
# nothing.
configure_build() {
  local args=(-S . -B "$NABLA_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
    -DNABLA_CUDA="${NABLA_CUDA:-AUTO}" -DNABLA_BUILD_TESTS=ON -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_BENCH=ON)
  # nvcc is commonly installed outside PATH.
  if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  cmake "${args[@]}" "$@"
}

# build_targets [TARGET...]: builds the given targets (all when none) with every core.
build_targets() {
  local targets=()
  (( $# )) && targets=(--target "$@")
  cmake --build "$NABLA_BUILD_DIR" --parallel "$NABLA_JOBS" "${targets[@]}"
}
