#!/usr/bin/env bash
# nabla on a GPU machine, in one call: configures and builds build-gpu/ (Release, CUDA on,
# sm_90) or uses binaries built on the development machine (--prebuilt), lists the GPU, runs the
# tests (ctest, or the CUDA test binaries when prebuilt), runs the CUDA test binaries under
# compute-sanitizer, trains the examples on CUDA (MLP, CNN, CNN --bn, LSTM over image rows,
# character LSTM language model), measures nabla-bench (fp32 and fast) beside the PyTorch peer,
# and prints a summary: tests run/passed/skipped/failed, sanitizer errors, each example's result
# and epoch time, step ms of nabla and PyTorch per workload and mode.
#
#   scripts/gpu-check.sh [--all-sanitizers] [--phases LIST] [--skip-build] [--prebuilt] [--no-torch]
#                        [--torch-modes LIST] [--workloads LIST] [--epochs N] [--jobs N]
#                        [--budget SECONDS]
#   scripts/gpu-check.sh --stage-carry [--prebuilt]   (on the development machine, see below)
#
#   --all-sanitizers  racecheck, initcheck and synccheck too (memcheck always); takes longer
#   --phases LIST     some of smi,ctest,sanitize,examples,bench,torch (default: all); configure
#                     and build always run unless --skip-build or --prebuilt
#   --prebuilt        use .gpu-carry/bin (libnabla, the CUDA test binaries, examples, bench) that
#                     `--stage-carry --prebuilt` built on the development machine: no build here,
#                     which saves minutes of device time; tests then run as gtest binaries
#   --epochs N        epochs of the MLP example (default 10); the others train their defaults
#   --workloads LIST  nabla-bench/torch workloads (default: all six)
#   --budget SECONDS  wall time for the whole run (default 570, under the device tool's 10
#                     minutes); a phase gets at most what is left, and one that cannot start in
#                     time is reported as not run, so the summary always comes out
#
# Every phase runs even when an earlier one failed (those that need the build are skipped when
# it failed). Exit status: 0 when every phase passed (or was skipped for a missing input), 1 when
# any failed or hit its own time limit, 2 when none failed but the budget left some unfinished
# (run those again: e.g. --phases bench,torch).
#
# Logs: build-gpu/logs/. When OUT is set (the device tool brings back what a command writes
# under $OUT, at most 8 files), $OUT/summary.txt and $OUT/logs.tar.gz, refreshed after every
# phase so that a run stopped at its time limit still returns what it did.
#
# The GPU machine has the toolchain, CUDA, cuDNN, GoogleTest, OpenBLAS, fmt, zlib and PyTorch
# but no package registry; nothing here calls apt-get. What else the run uses travels in
# .gpu-carry/ (ignored by git), which --stage-carry fills on the development machine:
# nlohmann-json's headers and CMake package (found through CMAKE_PREFIX_PATH), the Fashion-MNIST
# IDX files for the examples, the fortunes text for the language model (Debian's `fortunes`),
# shared/bench/torch_reference.py, and with --prebuilt the binaries (built in build-stage/ with
# CUDA for sm_90). Then call the device tool with carry [".gpu-carry"] and the command
# scripts/gpu-check.sh (or scripts/gpu-check.sh --prebuilt).
#
# Environment: NABLA_TORCH_REFERENCE (default: ../shared/bench/torch_reference.py, then
# shared/bench/, then .gpu-carry/), NABLA_FASHION_MNIST (default: /usr/share/datasets/
# fashion-mnist, then .gpu-carry/fashion-mnist), NABLA_SANITIZER_TIMEOUT (seconds per binary
# and tool, default 300).
set -uo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

BUILD=build-gpu
CARRY=.gpu-carry
LOG=$ROOT/$BUILD/logs
T0=$(date +%s)

all_sanitizers=0 skip_build=0 prebuilt=0 stage=0 run_torch=1 epochs=10 jobs=16 budget=570
torch_modes=fp32,graphed,tf32,bf16,compiled
phases=smi,ctest,sanitize,examples,bench,torch
workloads=mlp,mlp_wide,cnn,cnn_fmnist,lstm,lstm_lm

say() { printf '==> %s\n' "$*"; }

# ---- --stage-carry: runs on the development machine --------------------------------------------
stage_carry() {
  set -e
  rm -rf "$CARRY"
  mkdir -p "$CARRY/prefix/include" "$CARRY/prefix/share/cmake"
  local json_cfg=""
  for d in /usr/share/cmake/nlohmann_json /usr/lib/cmake/nlohmann_json /usr/lib/x86_64-linux-gnu/cmake/nlohmann_json \
           /usr/local/share/cmake/nlohmann_json /usr/local/lib/cmake/nlohmann_json; do
    [[ -f $d/nlohmann_jsonConfig.cmake ]] && { json_cfg=$d; break; }
  done
  if [[ -n $json_cfg && -d /usr/include/nlohmann ]]; then
    # The package config finds the headers relative to itself: <prefix>/share/cmake/... and
    # <prefix>/include/nlohmann.
    cp -r /usr/include/nlohmann "$CARRY/prefix/include/"
    cp -r "$json_cfg" "$CARRY/prefix/share/cmake/"
    say "nlohmann-json from $json_cfg"
  else
    say "nlohmann-json not found here (install nlohmann-json3-dev); not staged"
  fi
  local data=${NABLA_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
  if [[ -d $data ]]; then
    cp -r "$data" "$CARRY/fashion-mnist"
    say "Fashion-MNIST from $data"
  else
    say "no Fashion-MNIST at $data; the MLP phase will be skipped on the GPU machine"
  fi
  local text=${NABLA_TEXT:-/usr/share/games/fortunes}
  if [[ -d $text ]]; then
    mkdir -p "$CARRY/fortunes"
    # the fortune files themselves: no .dat index files, no .u8 links
    find "$text" -maxdepth 1 -type f ! -name '*.*' -exec cp {} "$CARRY/fortunes/" \;
    say "fortunes text from $text"
  else
    say "no fortunes at $text (apt-get install fortunes); the char_lm example will be skipped"
  fi
  if ((prebuilt)); then
    # The binaries the GPU run needs, built here for sm_90; ctest's files name this machine's
    # paths, so the GPU side runs the test binaries directly.
    # NABLA_STAGE_BUILD names the folder (default build-stage; scripts/test.sh's build/ will do
    # when it was configured with CUDA for sm_90).
    local sb=${NABLA_STAGE_BUILD:-build-stage}
    source scripts/common.sh
    NABLA_BUILD_DIR=$sb NABLA_CUDA=ON configure_build -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_BENCH=ON >/dev/null
    NABLA_BUILD_DIR=$sb build_targets
    mkdir -p "$CARRY/bin"
    cp -a "$sb"/libnabla.so* "$sb"/tests/nabla_cuda_*_test "$sb"/bench/nabla-bench "$sb"/examples/*/nabla-* \
      "$CARRY/bin/"
    strip --strip-debug "$CARRY"/bin/nabla* "$CARRY"/bin/libnabla.so.*.*.* 2>/dev/null || true
    say "binaries in $CARRY/bin: $(du -sh "$CARRY/bin" | cut -f1)"
  fi
  local ref=${NABLA_TORCH_REFERENCE:-../shared/bench/torch_reference.py}
  if [[ -f $ref ]]; then
    cp "$ref" "$CARRY/torch_reference.py"
    say "PyTorch peer from $ref"
  else
    say "no torch_reference.py at $ref; the torch phase will be skipped"
  fi
  mkdir -p .git/info
  grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >>.git/info/exclude
  say "$(du -sh "$CARRY" | cut -f1) in $CARRY/ (the device tool carries at most 64 MiB with the tree)"
  say "next: device run, carry [\"$CARRY\"], command: scripts/gpu-check.sh"
}

while (($#)); do
  case $1 in
    --all-sanitizers) all_sanitizers=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    --prebuilt) prebuilt=1; shift ;;
    --workloads) workloads=$2; shift 2 ;;
    --no-torch) run_torch=0; shift ;;
    --torch-modes) torch_modes=$2; shift 2 ;;
    --phases) phases=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --stage-carry) stage=1; shift ;;
    -h | --help) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ((stage)); then
  stage_carry
  exit 0
fi

mkdir -p "$LOG"
rm -f "$LOG"/*.log "$LOG"/*.xml "$LOG"/*.json "$LOG"/phases.tsv "$LOG"/summary.txt
: >"$LOG/phases.tsv"

if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
if ! command -v compute-sanitizer >/dev/null; then
  for d in /usr/local/cuda/compute-sanitizer /usr/local/cuda/bin; do
    [[ -x $d/compute-sanitizer ]] && export PATH=$d:$PATH && break
  done
fi

want() { [[ ,$phases, == *,$1,* ]]; }
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((budget - $(elapsed))); }

failed=0 incomplete=0
# record NAME STATUS SECONDS NOTE
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$LOG/phases.tsv"
  case $2 in
    FAIL* | TIMEOUT*) failed=1 ;;
    CUT* | "NOT RUN") [[ ${4:-} == *budget* ]] && incomplete=1 ;;
  esac
  say "$1: $2 (${3}s)${4:+ - $4}"
}

# run NAME LOGFILE TIMEOUT CMD...: runs CMD with a time limit (capped by the budget left),
# output to the screen and to LOGFILE; records the phase. Returns CMD's status.
run() {
  local name=$1 logfile=$2 limit=$3
  shift 3
  local remaining capped=0
  remaining=$(left)
  if ((remaining < 20)); then
    record "$name" "NOT RUN" 0 "time budget spent (--budget)"
    return 125
  fi
  ((limit > remaining - 10)) && limit=$((remaining - 10)) && capped=1
  say "$name (limit ${limit}s): $*"
  local t rc
  t=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$LOG/$logfile"
  rc=${PIPESTATUS[0]}
  local dt=$(($(date +%s) - t))
  if ((rc == 0)); then
    record "$name" PASS "$dt"
  elif ((rc == 124 || rc == 137)) && ((capped)); then
    record "$name" CUT "$dt" "stopped after ${limit}s, the time budget (--budget) being spent; see $logfile"
  elif ((rc == 124 || rc == 137)); then
    record "$name" TIMEOUT "$dt" "stopped after ${limit}s; see $logfile"
  else
    record "$name" "FAIL($rc)" "$dt" "see $logfile"
  fi
  return "$rc"
}

summary() {
  python3 - "$LOG" "$(elapsed)" "$epochs" <<'PY' 2>&1 | tee "$LOG/summary.txt"
import glob, json, os, re, sys
import xml.etree.ElementTree as ET

log, total_s, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(name):
    try:
        with open(os.path.join(log, name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""

print(f"\n==================== nabla GPU check ({total_s}s) ====================")
gpu = read("smi.log").strip().splitlines()
print("GPU:", gpu[0] if gpu else "(nvidia-smi not run)")

print(f"\n{'phase':24} {'status':12} {'time':>6}  note")
for line in read("phases.tsv").splitlines():
    name, status, secs, note = (line.split("\t") + [""] * 4)[:4]
    print(f"{name:24} {status:12} {secs:>5}s  {note}")

# Tests: ctest's JUnit files (one per ctest run).
runs = passed = skipped = failed = 0
failures = []
for path in sorted(glob.glob(os.path.join(log, "ctest-*.xml")) + glob.glob(os.path.join(log, "gtest-*.xml"))):
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        continue
    for case in root.iter("testcase"):
        runs += 1
        status = case.get("status", "")
        if case.find("failure") is not None or status == "fail":
            failed += 1
            failures.append(case.get("name", "?"))
        elif case.find("skipped") is not None or status in ("notrun", "disabled") or case.get("result") == "skipped":
            skipped += 1
        else:
            passed += 1
print(f"\ntests: {runs} run, {passed} passed, {skipped} skipped, {failed} failed")
for name in failures[:25]:
    print(f"    FAILED {name}")
if len(failures) > 25:
    print(f"    ... and {len(failures) - 25} more")

# Sanitizers: one log per tool and binary.
rows = []
for path in sorted(glob.glob(os.path.join(log, "sanitizer-*.log"))):
    text = open(path, errors="replace").read()
    tool, binary = re.match(r"sanitizer-([a-z]+)-(.+)\.log", os.path.basename(path)).groups()
    m = re.search(r"ERROR SUMMARY: (\d+) error", text) or re.search(r"SUMMARY: \d+ hazards? displayed \((\d+) error", text)
    errors = m.group(1) if m else "no summary (crashed or stopped)"
    tests = re.search(r"\[==========\] (\d+) tests? from", text)
    bad = re.search(r"\[  FAILED  \] (\d+) tests?", text)
    rows.append((tool, binary, errors, tests.group(1) if tests else "?", bad.group(1) if bad else "0"))
if rows:
    print(f"\nsanitizers: {'tool':10} {'binary':28} {'errors':>8} {'tests':>6} {'failed':>6}")
    for tool, binary, errors, tests, bad in rows:
        print(f"            {tool:10} {binary:28} {errors:>8} {tests:>6} {bad:>6}")

# The examples: each ends with a RESULT line.
for log_name, label in (("example-mlp.log", "MLP"), ("example-cnn.log", "CNN"), ("example-cnn-bn.log", "CNN --bn"),
                        ("example-lstm-rows.log", "LSTM rows"), ("example-char-lm.log", "char LM")):
    text = read(log_name)
    if not text:
        continue
    m = re.search(r"RESULT (\w+)=([\d.]+) epochs=(\d+) seconds=([\d.]+) device=(\w+)", text)
    if m:
        key, val, ep, secs, dev = m.group(1), float(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5)
        print(f"\n{label} example ({dev}, {ep} epochs): {key} {val:.4f}, {secs / ep:.2f} s/epoch "
              f"({secs:.1f} s in all, data loading included)")
    else:
        print(f"\n{label} example: no RESULT line (see {log_name})")

# Step times: nabla-bench and torch_reference.py print one JSON line per run.
def jsonl(name):
    out = []
    for line in read(name).splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out
nabla = {}
for mode in ("fp32", "fast"):
    for r in jsonl(f"bench-{mode}.log"):
        if "step_ms" in r:
            nabla[(r["workload"], mode)] = r["step_ms"]
torch = {}
ceil = None
for r in jsonl("torch.log"):
    if "ceilings" in r:
        ceil = r["ceilings"]
    elif "step_ms" in r:
        torch[(r["workload"], r["mode"])] = r["step_ms"]
    elif "error" in r:
        torch[(r["workload"], r["mode"])] = "error"
if nabla or torch:
    tmodes = ["fp32", "graphed", "tf32", "bf16", "compiled"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else (v or "-")
    print("\nstep ms, lower is better (nabla fp32 compares with torch fp32/graphed, nabla fast with tf32/bf16/compiled)")
    head = f"{'workload':10} {'nabla fp32':>10} {'nabla fast':>10}" + "".join(f" {'torch ' + m:>14}" for m in tmodes)
    print(head + f" {'torch fp32/nabla fp32':>22} {'torch tf32/nabla fast':>22}")
    for w in sorted({k[0] for k in list(nabla) + list(torch)}):
        nf, nq = nabla.get((w, "fp32")), nabla.get((w, "fast"))
        row = f"{w:10} {fmt(nf):>10} {fmt(nq):>10}" + "".join(f" {fmt(torch.get((w, m))):>14}" for m in tmodes)
        tf, tt = torch.get((w, "fp32")), torch.get((w, "tf32"))
        r1 = f"{tf / nf:.2f}x" if isinstance(tf, float) and nf else "-"
        r2 = f"{tt / nq:.2f}x" if isinstance(tt, float) and nq else "-"
        print(row + f" {r1:>22} {r2:>22}")
    if ceil:
        print("device ceilings (torch):", ", ".join(f"{k} {v}" for k, v in ceil.items()))
PY
}

export_logs() {
  [[ -n ${OUT:-} && -d ${OUT:-} ]] || return 0
  cp -f "$LOG/summary.txt" "$OUT/summary.txt" 2>/dev/null
  tar -czf "$OUT/logs.tar.gz.tmp" -C "$LOG" . 2>/dev/null && mv -f "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}
# After every phase: the summary so far, and the logs where the device tool finds them.
checkpoint() { summary >/dev/null 2>&1; export_logs; }

# ---- configure and build ------------------------------------------------------------------------
built=1
# Where the binaries are: the build folder, or the carried ones (--prebuilt).
bin_lib=$BUILD bin_tests=$BUILD/tests bin_bench=$BUILD/bench/nabla-bench
example_bin() { echo "$BUILD/examples/$1/nabla-${1//_/-}"; }
if ((prebuilt)); then
  if [[ -f $CARRY/bin/libnabla.so ]]; then
    record configure SKIP 0 "--prebuilt: binaries from $CARRY/bin"
    bin_lib=$ROOT/$CARRY/bin bin_tests=$ROOT/$CARRY/bin bin_bench=$ROOT/$CARRY/bin/nabla-bench
    example_bin() { echo "$ROOT/$CARRY/bin/nabla-${1//_/-}"; }
    export LD_LIBRARY_PATH=$bin_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  else
    record configure FAIL 0 "--prebuilt, but no $CARRY/bin/libnabla.so (run --stage-carry --prebuilt first)"
    built=0
  fi
elif ((skip_build)) && [[ -f $BUILD/CMakeCache.txt ]]; then
  record configure SKIP 0 "--skip-build"
else
  export NABLA_BUILD_DIR=$BUILD NABLA_CUDA=ON NABLA_JOBS=$jobs
  # configure_build and build_targets only run CMake (common.sh's package installation is not
  # called: there is no registry on the GPU machine).
  source scripts/common.sh
  cfg=(-DCMAKE_CUDA_ARCHITECTURES=90 -DNABLA_BUILD_TESTS=ON -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_BENCH=ON)
  [[ -d $CARRY/prefix ]] && cfg+=("-DCMAKE_PREFIX_PATH=$ROOT/$CARRY/prefix")
  [[ ! -f $BUILD/CMakeCache.txt ]] && command -v ninja >/dev/null && cfg+=(-G Ninja)
  export -f configure_build build_targets
  run configure configure.log 240 bash -c 'configure_build "$@"' _ "${cfg[@]}" || built=0
  checkpoint
  if ((built)); then
    run build build.log 480 bash -c build_targets || built=0
    checkpoint
  else
    record build "NOT RUN" 0 "configure failed"
  fi
fi

need_build() {  # NAME: true when the build is there; records the phase as not run otherwise
  ((built)) && return 0
  record "$1" "NOT RUN" 0 "no build"
  return 1
}

# ---- the GPU ------------------------------------------------------------------------------------
if want smi; then
  run nvidia-smi smi.log 30 nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$LOG/smi-details.log" 2>&1
  checkpoint
fi

# ---- tests --------------------------------------------------------------------------------------
if want ctest && need_build ctest && ((prebuilt)); then
  # Carried binaries: the CUDA suites, each a gtest binary (the CPU suites ran on the
  # development machine). Memory suites alone, after the others.
  mapfile -t bins < <(ls "$bin_tests"/nabla_cuda_*_test 2>/dev/null)
  for bin in "${bins[@]}"; do
    name=$(basename "$bin")
    filter=-CudaNnMemory.*
    [[ $name == nabla_cuda_memory_test ]] && continue
    OMP_NUM_THREADS=4 run "gtest $name" "gtest-$name.log" 300 \
      "$bin" --gtest_brief=1 "--gtest_filter=$filter" "--gtest_output=xml:$LOG/gtest-$name.xml"
    checkpoint
  done
  for bin in "$bin_tests/nabla_cuda_memory_test" "$bin_tests/nabla_cuda_nn_parity_test"; do
    [[ -x $bin ]] || continue
    name=$(basename "$bin")
    filter='*'
    [[ $name == nabla_cuda_nn_parity_test ]] && filter='CudaNnMemory.*'
    run "gtest $name (serial)" "gtest-serial-$name.log" 180 \
      "$bin" --gtest_brief=1 "--gtest_filter=$filter" "--gtest_output=xml:$LOG/gtest-serial-$name.xml"
    checkpoint
  done
elif want ctest && need_build ctest; then
  # The memory tests read the device's free memory, which other processes change: everything
  # else in parallel (few CPU threads each, so 16 processes don't oversubscribe the cores), then
  # those alone (all of cuda_memory_test, and the CudaNnMemory suite of cuda_nn_parity_test).
  serial_tests='^cuda_memory_test\.|^cuda_nn_parity_test\.CudaNnMemory\.'
  OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 run "ctest (parallel)" ctest-parallel.log 300 \
    ctest --test-dir "$BUILD" --output-on-failure --parallel "$jobs" --timeout 300 \
    -E "$serial_tests" --output-junit "$LOG/ctest-parallel.xml"
  checkpoint
  run "ctest (memory, serial)" ctest-serial.log 180 \
    ctest --test-dir "$BUILD" --output-on-failure --parallel 1 --timeout 300 \
    -R "$serial_tests" --output-junit "$LOG/ctest-serial.xml"
  checkpoint
fi

# ---- compute-sanitizer ------------------------------------------------------------------------
if want sanitize && need_build sanitize; then
  if ! command -v compute-sanitizer >/dev/null; then
    record sanitize FAIL 0 "compute-sanitizer not found"
  else
    tools=(memcheck)
    ((all_sanitizers)) && tools+=(racecheck initcheck synccheck)
    mapfile -t bins < <(ls "$bin_tests"/nabla_cuda_*_test 2>/dev/null)
    for tool in "${tools[@]}"; do
      for bin in "${bins[@]}"; do
        name=$(basename "$bin")
        args=(--gtest_brief=1)
        # A refused cudaMallocAsync is an API error to the sanitizer (nabla handles it), and
        # the memory-use tests measure free memory, which the sanitizer's own allocations move.
        [[ $name == nabla_cuda_memory_test ]] &&
          args+=("--gtest_filter=-CudaOom.*:CudaMemory.FreedBlockStaysInThePool:CudaMemory.*DoNotGrow*")
        [[ $name == nabla_cuda_nn_parity_test ]] && args+=("--gtest_filter=-CudaNnMemory.*")
        # The RNN suite's 96 float32 shapes each launch hundreds of cuDNN kernels, slow under a
        # sanitizer: one length/batch/hidden of them (both cells, directions and state modes),
        # the float64 cases and the rest of the suite.
        [[ $name == nabla_cuda_rnn_parity_test ]] &&
          args+=("--gtest_filter=Cuda/RnnLayerF32.*T7_B5_I6_H33*:Cuda/RnnLayerF64.*:CudaRnn.*")
        # initcheck looks for reads of memory never written: the tests' NaN fill would hide them.
        envs=(NABLA_TEST_POISON=1)
        [[ $tool == initcheck ]] && envs=(NABLA_TEST_POISON=0)
        run "$tool $name" "sanitizer-$tool-$name.log" "${NABLA_SANITIZER_TIMEOUT:-300}" \
          env "${envs[@]}" compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 50 "$bin" "${args[@]}"
        checkpoint
      done
    done
  fi
fi

# ---- the examples on CUDA ---------------------------------------------------------------------
if want examples && need_build examples; then
  data=""
  for d in "${NABLA_FASHION_MNIST:-}" /usr/share/datasets/fashion-mnist "$CARRY/fashion-mnist"; do
    [[ -n $d ]] && compgen -G "$d/train-images-idx3-ubyte*" >/dev/null && { data=$d; break; }
  done
  if [[ -z $data ]]; then
    record "examples (Fashion-MNIST)" SKIP 0 "no Fashion-MNIST (set NABLA_FASHION_MNIST or use --stage-carry)"
  else
    run "mlp example" example-mlp.log 120 "$(example_bin mlp)" --device cuda --epochs "$epochs" --data "$data"
    checkpoint
    run "cnn example" example-cnn.log 240 "$(example_bin cnn)" --device cuda --data "$data"
    checkpoint
    run "cnn --bn example" example-cnn-bn.log 240 "$(example_bin cnn)" --device cuda --bn --data "$data"
    checkpoint
    run "lstm_rows example" example-lstm-rows.log 300 "$(example_bin lstm_rows)" --device cuda --data "$data"
    checkpoint
  fi
  text=""
  for d in "${NABLA_TEXT:-}" /usr/share/games/fortunes "$CARRY/fortunes"; do
    [[ -n $d && -e $d ]] && { text=$d; break; }
  done
  if [[ -z $text ]]; then
    record "char_lm example" SKIP 0 "no text (apt-get install fortunes here, or use --stage-carry)"
  else
    run "char_lm example" example-char-lm.log 300 "$(example_bin char_lm)" "$text" --device cuda
  fi
  checkpoint
fi

# ---- throughput: nabla beside PyTorch ---------------------------------------------------------
if want bench && need_build bench; then
  run "bench fp32" bench-fp32.log 150 "$bin_bench" --device cuda --mode fp32 --workload "$workloads"
  checkpoint
  run "bench fast" bench-fast.log 150 "$bin_bench" --device cuda --mode fast --workload "$workloads"
  checkpoint
fi

if want torch && ((run_torch)); then
  ref=""
  for f in "${NABLA_TORCH_REFERENCE:-}" ../shared/bench/torch_reference.py shared/bench/torch_reference.py \
           "$CARRY/torch_reference.py"; do
    [[ -n $f && -f $f ]] && { ref=$f; break; }
  done
  if [[ -z $ref ]]; then
    record "torch reference" SKIP 0 "torch_reference.py not found (set NABLA_TORCH_REFERENCE or use --stage-carry)"
  else
    PYTHONUNBUFFERED=1 run "torch reference" torch.log 420 \
      python3 "$ref" --device cuda --modes "$torch_modes" --workloads "$workloads"
  fi
  checkpoint
fi

summary
export_logs
if ((failed)); then
  say "FAILED: at least one phase failed (logs in $LOG${OUT:+, and $OUT/logs.tar.gz})"
  exit 1
fi
if ((incomplete)); then
  say "INCOMPLETE: nothing failed, but the time budget left phases unfinished (logs in $LOG${OUT:+, and $OUT/logs.tar.gz})"
  exit 2
fi
say "all phases passed (logs in $LOG${OUT:+, and $OUT/logs.tar.gz})"
