# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): package installation,
# configure and build of build/, and phase timing. Expects `set -euo pipefail` and the
# repository root as the working directory.

# Debian/Ubuntu packages the build uses. OpenBLAS is checked separately (either variant will do).
NABLA_PACKAGES=(build-essential cmake ccache pkg-config libfmt-dev nlohmann-json3-dev zlib1g-dev libdnnl-dev
  libgtest-dev libbenchmark-dev dataset-fashion-mnist fortunes python3-numpy python3-pip gnuplot-nox)
# Python modules of the safetensors interop test (tests/safetensors_interop.py). Debian has no
# python3-safetensors, so it comes from pip; see install_python_modules.
NABLA_PYTHON_MODULES=(numpy safetensors)
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

# Installs the missing Debian packages, then the missing Python modules.
install_packages() {
  install_debian_packages "$@"
  install_python_modules
}

# Installs the missing packages with apt-get (as root, or through sudo). Runs apt-get update
# only when something is missing, so a second run costs a few dpkg queries.
install_debian_packages() {
  if ! command -v dpkg-query >/dev/null; then
    warn "not a Debian/Ubuntu system: install by hand: ${NABLA_PACKAGES[*]} libopenblas-openmp-dev"
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

# Installs with pip, for the python3 on PATH (which need not be Debian's, e.g. under pyenv), each
# module of NABLA_PYTHON_MODULES that it cannot import; nothing when all import.
install_python_modules() {
  if ! command -v python3 >/dev/null; then
    warn "no python3: the safetensors interop test will be skipped"
    return 0
  fi
  local missing=() m
  for m in "${NABLA_PYTHON_MODULES[@]}"; do
    python3 -c "import $m" 2>/dev/null || missing+=("$m")
  done
  if (( ${#missing[@]} == 0 )); then
    return 0
  fi
  local where=(--break-system-packages)
  if (( $(id -u) == 0 )); then where+=(--root-user-action=ignore); else where+=(--user); fi
  say "pip installing for $(command -v python3): ${missing[*]}"
  if ! python3 -m pip install -q --disable-pip-version-check "${where[@]}" "${missing[@]}"; then
    warn "could not pip install ${missing[*]}; the safetensors interop test will be skipped"
  fi
}

# configure_build: configures $NABLA_BUILD_DIR (Release, CUDA AUTO unless NABLA_CUDA is set,
# tests on). Re-running it on a configured folder is quick and rebuilds nothing.
configure_build() {
  local args=(-S . -B "$NABLA_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
    -DNABLA_CUDA="${NABLA_CUDA:-AUTO}" -DNABLA_BUILD_TESTS=ON)
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
