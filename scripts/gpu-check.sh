#!/usr/bin/env bash
# nabla on a lent GPU machine, in two prepared calls of the device tool. Everything is built on
# the development machine (--stage-carry) and carried in .gpu-carry/; the GPU machine only runs.
#
#   On the development machine:
#     scripts/gpu-check.sh --stage-carry     builds build-stage/ (Release, CUDA on, sm_90, tests,
#                                            examples, bench) and fills .gpu-carry/; prints its size
#     scripts/gpu-check.sh --check-carry     proves the carry's closure: every library a staged
#                                            binary needs is in the carry, a system basic (glibc,
#                                            libstdc++, libgcc_s) or a CUDA library the probe finds
#     scripts/gpu-check.sh --dry-run [--call N]   the phases of each call, with time estimates
#   On the GPU machine (device tool: carry [".gpu-carry"], command below, $OUT its result folder):
#     scripts/gpu-check.sh --call 1 --out $OUT   (at most 7 minutes) probe, the CUDA test binaries
#         (each under its own timeout) and the NCCL suite of nabla::dist at world size 1, short examples (MLP 3 epochs, CNN 3, CNN --bn 3, LSTM rows
#         2, char LM 300 steps), nabla-bench on all six workloads in fp32 and fast mode, and
#         torch_reference.py (fp32, tf32) in the same call
#     scripts/gpu-check.sh --call 2 --out $OUT   (at most 6 minutes) probe, compute-sanitizer's
#         memcheck, racecheck, initcheck and synccheck on small filtered subsets (reported as
#         REFUSED, not failed, when the runtime refuses the tool), then full-length examples
#
#   Other options: --phases LIST (any of probe,smi,tests,sanitize,examples,examples-full,bench,
#   torch, build; --call sets them), --budget SECONDS (wall time; a phase gets at most what is
#   left, one that cannot start is reported as not run, so the summary always comes out),
#   --workloads LIST, --torch-modes LIST (default fp32,tf32), --bench-steps N (default 30),
#   --build (configure and build build-gpu/ on the GPU machine instead of using the carry: slow).
#
# The probe (the first seconds): unpacks the carried binaries, runs `ldd` on each, and when
# cuDNN, cuBLAS or NCCL are not found system-wide adds python3's site-packages/nvidia/*/lib
# folders to LD_LIBRARY_PATH, saying so. Every phase logs under build-gpu/logs/; with --out DIR
# (default $OUT when set) DIR gets summary.txt and logs.tar.gz (the device tool returns at most 8
# files), refreshed after every phase so that a run stopped at its limit still returns what it did.
# The run ends with a one-screen summary: tests passed/failed per binary, sanitizer results, each
# example's RESULT line, the step-time table with nabla/PyTorch ratios.
#
# Exit status: 0 when every phase passed (or was skipped or refused for a missing tool), 1 when
# any failed or hit its own time limit, 2 when none failed but the budget left some unfinished.
#
# The carry (.gpu-carry/, ignored by git; at most 60 MiB with the data):
#   bin.tar.xz        the binaries and every library they need beyond glibc, libstdc++ and CUDA:
#                     libnabla, the CUDA test binaries and nabla_dist_nccl_test (GoogleTest
#                     linked statically), the
#                     examples, nabla-bench; libfmt, OpenBLAS with libgfortran/libquadmath,
#                     libgomp, zlib. Linked with an $ORIGIN rpath (DT_RPATH, which also serves the
#                     libraries' own needs), so they start from wherever they are unpacked
#   fashion-mnist/    the IDX .gz files;  fortunes.tar.xz  the char LM's text
#   torch_reference.py the PyTorch peer;  prefix/  nlohmann-json and CLI11 for --build
# NABLA_CARRY names another carry folder (e.g. to see --check-carry fail on a broken one).
set -uo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD

BUILD=build-gpu
CARRY=${NABLA_CARRY:-.gpu-carry}  # NABLA_CARRY: another folder (the checks of --check-carry)
STAGE=${NABLA_STAGE_BUILD:-build-stage}
LOG=$ROOT/$BUILD/logs
T0=$(date +%s)
CARRY_LIMIT_MIB=60

call=0 budget=570 jobs=16 dry_run=0 mode=run out_dir=${OUT:-}
torch_modes=fp32,tf32
bench_steps=30
phases=probe,smi,tests,examples,bench,torch
workloads=mlp,mlp_wide,cnn,cnn_fmnist,lstm,lstm_lm
build_here=0

say() { printf '==> %s\n' "$*"; }

# ---- the plan: phases of each call, with estimates (seconds on an H200) and limits ------------
# Estimates are guesses until a first run replaces them (the summary prints each phase's time).
# NAME|ESTIMATE|LIMIT|WHAT
# shellcheck disable=SC2034  # read through a nameref in dry_run
plan_call1=(
  "probe|15|60|unpack the binaries, ldd each, nvidia-smi, find cuDNN/cuBLAS/NCCL"
  "tests|110|200|CUDA test binaries: device, parity, nn, rnn, dist NCCL (world size 1) in parallel (own timeouts), then memory alone"
  "examples|100|300|MLP 3 epochs, CNN 3, CNN --bn 3, LSTM rows 2, char LM 300 steps (60 s each at most)"
  "bench|60|180|nabla-bench, six workloads, fp32 then fast (30 steps)"
  "torch|70|150|torch_reference.py, six workloads, fp32 and tf32 (30 steps)"
)
# shellcheck disable=SC2034
plan_call2=(
  "probe|15|60|unpack, ldd, nvidia-smi"
  "sanitize|160|240|compute-sanitizer memcheck, racecheck, initcheck, synccheck on filtered subsets"
  "examples-full|170|600|full-length examples (MLP 40 epochs, CNN 20, CNN --bn 20, then LSTM rows, char LM while the budget lasts)"
)
call_budget() { case $1 in 1) echo 420 ;; 2) echo 360 ;; *) echo 570 ;; esac; }
call_phases() { case $1 in 1) echo probe,smi,tests,examples,bench,torch ;; 2) echo probe,smi,sanitize,examples-full ;; esac; }

dry_run() {
  local c total line name est limit what
  for c in ${1:-1 2}; do
    local -n plan="plan_call$c"
    total=0
    printf '\ncall %s (budget %ss = %s min): scripts/gpu-check.sh --call %s --out $OUT\n' "$c" "$(call_budget "$c")" \
      "$(($(call_budget "$c") / 60))" "$c"
    printf '  %-14s %8s %7s  %s\n' phase estimate limit what
    for line in "${plan[@]}"; do
      IFS='|' read -r name est limit what <<<"$line"
      total=$((total + est))
      printf '  %-14s %7ss %6ss  %s\n' "$name" "$est" "$limit" "$what"
    done
    printf '  %-14s %7ss (%d min %02d s) of the %ss budget; the budget stops what runs over\n' total "$total" \
      $((total / 60)) $((total % 60)) "$(call_budget "$c")"
  done
  printf '\nThe device tool: carry [".gpu-carry"], timeout_s 450 (call 1) and 390 (call 2); machine start ~1-2 min more.\n'
}

# ---- --stage-carry: on the development machine --------------------------------------------------
# Libraries the GPU machine is assumed to have: glibc's, libstdc++/libgcc_s, and the CUDA ones that
# the probe finds (system-wide or in python3's site-packages/nvidia/*/lib), and the driver.
SYSTEM_RE='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$'
CUDA_RE='^(libcuda\.so\.1|libcudart\.so\.[0-9]+|libcublas\.so\.[0-9]+|libcublasLt\.so\.[0-9]+|libcudnn[a-z_]*\.so\.[0-9]+|libnccl\.so\.[0-9]+)$'

stage_carry() {
  set -e
  source scripts/common.sh
  local sb=$STAGE
  # $ORIGIN as DT_RPATH (--disable-new-dtags): unlike RUNPATH it also serves the libraries'
  # own needs (OpenBLAS's libgfortran), so the unpacked folder is self-contained.
  local rpath_flags="-Wl,--disable-new-dtags -Wl,-rpath,\$ORIGIN"
  say "configuring $sb (Release, CUDA on, sm_90, examples and bench)"
  NABLA_BUILD_DIR=$sb NABLA_CUDA=ON configure_build -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_BENCH=ON \
    "-DCMAKE_EXE_LINKER_FLAGS=$rpath_flags" "-DCMAKE_SHARED_LINKER_FLAGS=$rpath_flags" >/dev/null
  local targets=(nabla nabla-bench nabla-mlp nabla-cnn nabla-lstm-rows nabla-char-lm)
  local t
  for t in tests/cuda_*_test.cpp; do t=$(basename "$t" .cpp); targets+=("nabla_$t"); done
  # The NCCL suite of nabla::dist (it skips, saying why, in a build without the NCCL engine).
  local nccl=0
  [[ -f tests/dist/nccl_test.cpp ]] && nccl=1 && targets+=(nabla_dist_nccl_test)
  say "building ${targets[*]}"
  NABLA_BUILD_DIR=$sb NABLA_JOBS=${NABLA_JOBS:-2} build_targets "${targets[@]}"

  local dir=$sb/carry-bin
  rm -rf "$dir" && mkdir -p "$dir"
  cp -L "$sb"/tests/nabla_cuda_*_test "$sb"/bench/nabla-bench "$sb"/examples/*/nabla-* "$dir/"
  ((nccl)) && cp -L "$sb/tests/dist/nabla_dist_nccl_test" "$dir/"
  local soname
  soname=$(readelf -d "$sb/libnabla.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  cp -L "$sb/libnabla.so" "$dir/$soname"
  strip --strip-unneeded "$dir"/* 2>/dev/null || true
  # The libraries they need beyond the system basics and CUDA, found through ldd here, until
  # nothing new turns up (OpenBLAS brings libgfortran, which brings libquadmath).
  local added=1 lib path
  while ((added)); do
    added=0
    while read -r lib path; do
      [[ -e $dir/$lib ]] && continue
      [[ $lib =~ $SYSTEM_RE || $lib =~ $CUDA_RE || $lib == linux-vdso.so.1 ]] && continue
      [[ -f $path ]] || { echo "gpu-check: $lib not found here" >&2; exit 1; }
      cp -L "$path" "$dir/$lib"
      strip --strip-unneeded "$dir/$lib" 2>/dev/null || true
      say "carrying $lib (from $path)"
      added=1
    done < <(LD_LIBRARY_PATH=$dir ldd "$dir"/* 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u)
  done

  rm -rf "$CARRY"
  mkdir -p "$CARRY/prefix/include" "$CARRY/prefix/share/cmake"
  say "packing $(du -sh "$dir" | cut -f1) of binaries and libraries into $CARRY/bin.tar.xz"
  tar -C "$sb" -cf - carry-bin | xz -T2 -6 >"$CARRY/bin.tar.xz"
  local json_cfg=""
  for d in /usr/share/cmake/nlohmann_json /usr/lib/cmake/nlohmann_json /usr/lib/x86_64-linux-gnu/cmake/nlohmann_json \
           /usr/local/share/cmake/nlohmann_json /usr/local/lib/cmake/nlohmann_json; do
    [[ -f $d/nlohmann_jsonConfig.cmake ]] && { json_cfg=$d; break; }
  done
  if [[ -n $json_cfg && -d /usr/include/nlohmann ]]; then
    # For --build there; the package config finds the headers relative to itself.
    cp -r /usr/include/nlohmann "$CARRY/prefix/include/"
    cp -r "$json_cfg" "$CARRY/prefix/share/cmake/"
  fi
  # CLI11 (header-only) for the examples and nabla-bench; its package config also finds the
  # headers relative to itself.
  if [[ -f /usr/share/cmake/CLI11/CLI11Config.cmake && -d /usr/include/CLI ]]; then
    cp -r /usr/include/CLI "$CARRY/prefix/include/"
    cp -r /usr/share/cmake/CLI11 "$CARRY/prefix/share/cmake/"
  fi
  local data=${NABLA_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
  if [[ -d $data ]]; then
    mkdir -p "$CARRY/fashion-mnist"
    cp "$data"/*-ubyte* "$CARRY/fashion-mnist/"
    say "Fashion-MNIST from $data"
  else
    say "no Fashion-MNIST at $data; the examples will be skipped on the GPU machine"
  fi
  local text=${NABLA_TEXT:-/usr/share/games/fortunes}
  if [[ -d $text ]]; then
    # the fortune files themselves: no .dat index files, no .u8 links
    local tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/fortunes"
    find "$text" -maxdepth 1 -type f ! -name '*.*' -exec cp {} "$tmp/fortunes/" \;
    tar -C "$tmp" -cf - fortunes | xz -T2 -9 >"$CARRY/fortunes.tar.xz"
    rm -rf "$tmp"
    say "fortunes text from $text"
  else
    say "no fortunes at $text (apt-get install fortunes); the char_lm example will be skipped"
  fi
  local ref=${NABLA_TORCH_REFERENCE:-../shared/bench/torch_reference.py}
  [[ -f $ref ]] || ref=shared/bench/torch_reference.py
  if [[ -f $ref ]]; then
    cp "$ref" "$CARRY/torch_reference.py"
  else
    say "no torch_reference.py; the torch phase will be skipped"
  fi
  # .gitignore names the carry: the device tool sends it only when `carry` names it.
  git check-ignore -q "$CARRY" 2>/dev/null || say "warning: $CARRY/ is not ignored by git (.gitignore should name it)"
  set +e
  carry_size
  check_carry
}

# Prints the carry's size; fails above CARRY_LIMIT_MIB.
carry_size() {
  local kib
  kib=$(du -sk "$CARRY" | cut -f1)
  du -sh "$CARRY"/* | sed 's/^/    /'
  printf '==> carry: %d KiB = %.1f MiB in %s/ (limit %d MiB; the device tool carries at most 64 MiB with the tree)\n' \
    "$kib" "$(echo "$kib / 1024" | bc -l)" "$CARRY" "$CARRY_LIMIT_MIB"
  ((kib <= CARRY_LIMIT_MIB * 1024)) || { echo "gpu-check: the carry is over $CARRY_LIMIT_MIB MiB" >&2; return 1; }
}

# --check-carry: unpacks bin.tar.xz into a scratch folder and resolves every DT_NEEDED of every
# file in it, the way the loader will there: inside the folder (each object's rpath must hold
# $ORIGIN), a system basic, or a CUDA library left to the probe. Anything else fails the check.
check_carry() {
  [[ -f $CARRY/bin.tar.xz ]] || { echo "gpu-check: no $CARRY/bin.tar.xz (run --stage-carry)" >&2; return 1; }
  local tmp
  tmp=$(mktemp -d)
  tar -C "$tmp" -xJf "$CARRY/bin.tar.xz"
  python3 - "$tmp/carry-bin" "$SYSTEM_RE" "$CUDA_RE" <<'PY'
import os, re, subprocess, sys
d, system_re, cuda_re = sys.argv[1], re.compile(sys.argv[2]), re.compile(sys.argv[3])
files = sorted(os.listdir(d))
bad, cuda, system, glibc, glibcxx = [], set(), set(), set(), set()
for f in files:
    p = os.path.join(d, f)
    dyn = subprocess.run(["readelf", "-d", p], capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dyn)
    rpath = re.findall(r"\((?:RPATH|RUNPATH)\).*\[(.+)\]", dyn)
    kind = re.findall(r"\((RPATH|RUNPATH)\)", dyn)
    origin = any("$ORIGIN" in r.split(":") or "$ORIGIN" in r for r in rpath)
    for n in needed:
        if n in files:
            continue
        if system_re.match(n):
            system.add(n)
        elif cuda_re.match(n):
            cuda.add(n)
        else:
            bad.append(f"{f} needs {n}: not in the carry, not a system basic, not CUDA")
    exe = not f.startswith("lib")
    if exe and not origin:
        bad.append(f"{f}: no $ORIGIN in its rpath ({rpath or 'none'})")
    if "RUNPATH" in kind:
        bad.append(f"{f}: RUNPATH, not RPATH: the libraries' own needs would not search the executable's $ORIGIN")
    syms = subprocess.run(["objdump", "-T", p], capture_output=True, text=True).stdout
    glibc.update(re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", syms))
    glibcxx.update(re.findall(r"GLIBCXX_(\d+\.\d+(?:\.\d+)?)", syms))
key = lambda v: tuple(int(x) for x in v.split("."))
print(f"==> closure of {len(files)} files: {len(files) - sum(1 for f in files if f.startswith('lib'))} programs, "
      f"{sum(1 for f in files if f.startswith('lib'))} libraries carried")
print("    system basics needed:", ", ".join(sorted(system)))
print("    CUDA libraries left to the probe:", ", ".join(sorted(cuda)))
if glibc:
    print(f"    newest symbol versions needed: GLIBC_{max(glibc, key=key)}, GLIBCXX_{max(glibcxx, key=key) if glibcxx else '-'}"
          " (Ubuntu 24.04 has GLIBC 2.39, GLIBCXX 3.4.32)")
for b in bad:
    print("    MISSING:", b)
print("==> closure check:", "FAILED" if bad else "passed")
sys.exit(1 if bad else 0)
PY
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

while (($#)); do
  case $1 in
    --call) call=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --stage-carry) mode=stage; shift ;;
    --check-carry) mode=check; shift ;;
    --prebuilt) shift ;;  # the default now: kept for old command lines
    --build) build_here=1; shift ;;
    --workloads) workloads=$2; shift 2 ;;
    --torch-modes) torch_modes=$2; shift 2 ;;
    --bench-steps) bench_steps=$2; shift 2 ;;
    --phases) phases=$2; phases_set=1; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --budget) budget=$2; budget_set=1; shift 2 ;;
    --all-sanitizers | --skip-build | --no-torch) echo "gpu-check: $1 is gone; see --help" >&2; exit 2 ;;
    -h | --help) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ((dry_run)); then
  if ((call)); then dry_run "$call"; else dry_run; fi
  exit 0
fi
case $mode in
  stage) stage_carry; exit $? ;;
  check) carry_size; check_carry; exit $? ;;
esac
if ((call)); then
  [[ $call == 1 || $call == 2 ]] || { echo "gpu-check: --call 1 or --call 2" >&2; exit 2; }
  [[ -n ${phases_set:-} ]] || phases=$(call_phases "$call")
  [[ -n ${budget_set:-} ]] || budget=$(call_budget "$call")
fi
((build_here)) && phases=build,$phases

mkdir -p "$LOG"
rm -f "$LOG"/*.log "$LOG"/*.xml "$LOG"/*.json "$LOG"/phases.tsv "$LOG"/summary.txt
: >"$LOG/phases.tsv"
[[ -n $out_dir ]] && mkdir -p "$out_dir"

if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
if ! command -v compute-sanitizer >/dev/null; then
  for d in /usr/local/cuda/compute-sanitizer /usr/local/cuda/bin /opt/nvidia/compute-sanitizer; do
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
  python3 - "$LOG" "$(elapsed)" <<'PY' 2>&1 | tee "$LOG/summary.txt"
import glob, json, os, re, sys
import xml.etree.ElementTree as ET

log, total_s = sys.argv[1], int(sys.argv[2])
def read(name):
    try:
        with open(os.path.join(log, name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""

print(f"\n==================== nabla GPU check ({total_s}s) ====================")
gpu = read("smi.log").strip().splitlines()
print("GPU:", gpu[0] if gpu else "(nvidia-smi not run)")

print(f"\n{'phase':38} {'status':9} {'time':>6}  note")
for line in read("phases.tsv").splitlines():
    name, status, secs, note = (line.split("\t") + [""] * 4)[:4]
    print(f"{name:38} {status:9} {secs:>5}s  {note[:60]}")

# Tests: one gtest XML per binary (gtest-LABEL.xml).
total = {"run": 0, "passed": 0, "skipped": 0, "failed": 0}
failures = []
if glob.glob(os.path.join(log, "gtest-*")):
    print(f"\n{'test binary':36} {'run':>5} {'passed':>7} {'skipped':>8} {'failed':>7}")
for path in sorted(glob.glob(os.path.join(log, "gtest-*.xml"))):
    label = os.path.basename(path)[len("gtest-"):-len(".xml")]
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        print(f"{label:36} (no readable XML: crashed or stopped? see gtest-{label}.log)")
        continue
    n = {"run": 0, "passed": 0, "skipped": 0, "failed": 0}
    for case in root.iter("testcase"):
        n["run"] += 1
        status = case.get("status", "")
        if case.find("failure") is not None or status == "fail":
            n["failed"] += 1
            failures.append(f"{case.get('classname', '?')}.{case.get('name', '?')} ({label})")
        elif case.find("skipped") is not None or status in ("notrun", "disabled") or case.get("result") == "skipped":
            n["skipped"] += 1
        else:
            n["passed"] += 1
    for k in total:
        total[k] += n[k]
    print(f"{label:36} {n['run']:5} {n['passed']:7} {n['skipped']:8} {n['failed']:7}")
for path in sorted(glob.glob(os.path.join(log, "gtest-*.log"))):
    label = os.path.basename(path)[len("gtest-"):-len(".log")]
    if not os.path.exists(os.path.join(log, f"gtest-{label}.xml")):
        print(f"{label:36} no XML: crashed or stopped; see gtest-{label}.log")
if glob.glob(os.path.join(log, "gtest-*")):
    print(f"{'all':36} {total['run']:5} {total['passed']:7} {total['skipped']:8} {total['failed']:7}")
for name in failures[:12]:
    print(f"    FAILED {name}")
if len(failures) > 12:
    print(f"    ... and {len(failures) - 12} more (logs.tar.gz)")

# Sanitizers: one log per tool and binary.
rows = []
for path in sorted(glob.glob(os.path.join(log, "sanitizer-*.log"))):
    text = open(path, errors="replace").read()
    tool, binary = re.match(r"sanitizer-([a-z]+)-(.+)\.log", os.path.basename(path)).groups()
    m = re.search(r"ERROR SUMMARY: (\d+) error", text) or re.search(r"SUMMARY: \d+ hazards? displayed \((\d+) error", text)
    refused = re.search(r"Device not supported|error 999|Target application terminated before first instrumented|"
                        r"Unable to find injection library|CUDA_ERROR_NOT_SUPPORTED|not supported on this platform", text)
    errors = m.group(1) if m else "refused" if refused else "no summary"
    tests = re.search(r"\[==========\] (\d+) tests? from", text)
    bad = re.search(r"\[  FAILED  \] (\d+) tests?", text)
    rows.append((tool, binary, errors, tests.group(1) if tests else "?", bad.group(1) if bad else "0"))
if rows:
    print(f"\nsanitizers: {'tool':10} {'binary':28} {'errors':>8} {'tests':>6} {'failed':>6}")
    for tool, binary, errors, tests, bad in rows:
        print(f"            {tool:10} {binary:28} {errors:>8} {tests:>6} {bad:>6}")

# The examples: each ends with a RESULT line.
printed = False
for sfx, kind in (("", "short"), ("-full", "full")):
    for name, label in (("mlp", "MLP"), ("cnn", "CNN"), ("cnn-bn", "CNN --bn"), ("lstm-rows", "LSTM rows"),
                        ("char-lm", "char LM")):
        log_name = f"example-{name}{sfx}.log"
        text = read(log_name)
        if not text:
            continue
        if not printed:
            print("\nexamples (RESULT lines; s/epoch includes data loading):")
            printed = True
        m = re.search(r"RESULT (\w+)=([\d.]+) epochs=(\d+) seconds=([\d.]+) device=(\w+)", text)
        line = re.search(r"^RESULT .*$", text, re.M)
        if m:
            ep, secs = int(m.group(3)), float(m.group(4))
            print(f"  {label:9} {kind:5} {line.group(0)}  ({secs / max(ep, 1):.2f} s/epoch)")
        else:
            print(f"  {label:9} {kind:5} no RESULT line (see {log_name})")

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
    tmodes = [m for m in ("fp32", "graphed", "tf32", "bf16", "compiled") if any(k[1] == m for k in torch)]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else (v or "-")
    ratio = lambda n, t: f"{n / t:.2f}" if isinstance(n, (int, float)) and isinstance(t, (int, float)) and t else "-"
    print("\nstep ms, lower is better; nabla/torch > 1: nabla slower (fp32 against torch fp32, fast against tf32)")
    print(f"{'workload':11} {'nabla fp32':>10} {'nabla fast':>10}" + "".join(f" {'torch ' + m:>14}" for m in tmodes)
          + f" {'fp32 ratio':>10} {'fast ratio':>10}")
    for w in sorted({k[0] for k in list(nabla) + list(torch)}):
        nf, nq = nabla.get((w, "fp32")), nabla.get((w, "fast"))
        print(f"{w:11} {fmt(nf):>10} {fmt(nq):>10}" + "".join(f" {fmt(torch.get((w, m))):>14}" for m in tmodes)
              + f" {ratio(nf, torch.get((w, 'fp32'))):>10} {ratio(nq, torch.get((w, 'tf32'))):>10}")
    if ceil:
        print("device ceilings (torch):", ", ".join(f"{k} {v}" for k, v in ceil.items()))
PY
}

export_logs() {  # two files in --out: summary.txt and logs.tar.gz (the device tool returns 8 at most)
  [[ -n $out_dir && -d $out_dir ]] || return 0
  cp -f "$LOG/summary.txt" "$out_dir/summary.txt" 2>/dev/null
  tar -czf "$out_dir/logs.tar.gz.tmp" -C "$LOG" . 2>/dev/null && mv -f "$out_dir/logs.tar.gz.tmp" "$out_dir/logs.tar.gz"
}
# After every phase: the summary so far, and the logs where the device tool finds them.
checkpoint() { summary >/dev/null 2>&1; export_logs; }

# ---- where the binaries are ----------------------------------------------------------------------
# Unpacked outside the carry (build-gpu/ is ignored and not carried), so that a run here leaves the
# carry as it was.
bin_dir=$ROOT/$BUILD/bin
example_bin() { echo "$bin_dir/nabla-${1//_/-}"; }
built=1

if want build; then
  # Configure and build here (slow: minutes of device time); the carried prefix gives nlohmann-json
  # and CLI11.
  export NABLA_BUILD_DIR=$BUILD NABLA_CUDA=ON NABLA_JOBS=$jobs
  source scripts/common.sh
  cfg=(-DCMAKE_CUDA_ARCHITECTURES=90 -DNABLA_BUILD_TESTS=ON -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_BENCH=ON)
  [[ -d $CARRY/prefix ]] && cfg+=("-DCMAKE_PREFIX_PATH=$ROOT/$CARRY/prefix")
  [[ ! -f $BUILD/CMakeCache.txt ]] && command -v ninja >/dev/null && cfg+=(-G Ninja)
  export -f configure_build build_targets
  run configure configure.log 240 bash -c 'configure_build "$@"' _ "${cfg[@]}" || built=0
  ((built)) && { run build build.log 480 bash -c build_targets || built=0; }
  bin_dir=$ROOT/$BUILD/carry-bin
  mkdir -p "$bin_dir"
  cp -L "$BUILD"/tests/nabla_cuda_*_test "$BUILD"/tests/dist/nabla_dist_nccl_test "$BUILD"/bench/nabla-bench \
    "$BUILD"/examples/*/nabla-* "$BUILD"/libnabla.so.* \
    "$bin_dir/" 2>/dev/null
fi

need_build() {  # NAME: true when the binaries are there; records the phase as not run otherwise
  ((built)) && return 0
  record "$1" "NOT RUN" 0 "no binaries (the probe failed)"
  return 1
}

# ---- probe: unpack, ldd, the CUDA libraries -------------------------------------------------------
probe() {
  if [[ ! -x $bin_dir/nabla_cuda_device_test ]]; then
    if [[ -f $CARRY/bin.tar.xz ]]; then
      rm -rf "$bin_dir" "$BUILD/carry-bin"
      if command -v xz >/dev/null; then
        tar -C "$BUILD" -xJf "$CARRY/bin.tar.xz" || return 1
      else
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$CARRY/bin.tar.xz" "$BUILD" ||
          return 1
      fi
      mv "$BUILD/carry-bin" "$bin_dir"
      echo "unpacked $(ls "$bin_dir" | wc -l) files into $bin_dir"
    else
      echo "no $CARRY/bin.tar.xz: run scripts/gpu-check.sh --stage-carry on the development machine and carry .gpu-carry"
      return 1
    fi
  fi
  if [[ -f $CARRY/fortunes.tar.xz && ! -d $BUILD/fortunes ]]; then
    tar -C "$BUILD" -xJf "$CARRY/fortunes.tar.xz" 2>/dev/null ||
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$CARRY/fortunes.tar.xz" "$BUILD"
  fi
  # ldd of the programs: a carried library alone would not show the programs' $ORIGIN rpath,
  # through which its own needs (OpenBLAS's libgfortran) resolve.
  local missing programs=()
  mapfile -t programs < <(find "$bin_dir" -maxdepth 1 -type f ! -name 'lib*' | sort)
  ldd "${programs[@]}" >"$LOG/ldd.log" 2>&1
  missing=$(grep 'not found' "$LOG/ldd.log" | awk '{print $1}' | sort -u | tr '\n' ' ')
  if [[ -n $missing ]]; then
    echo "not found system-wide: $missing"
    local dirs=() d site
    for site in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
      for d in "$site"/nvidia/*/lib "$site"/nvidia/*/lib64; do [[ -d $d ]] && dirs+=("$d"); done
    done
    [[ -d /usr/local/cuda/lib64 ]] && dirs+=(/usr/local/cuda/lib64)
    if ((${#dirs[@]})); then
      local joined
      joined=$(IFS=:; echo "${dirs[*]}")
      export LD_LIBRARY_PATH=$joined${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      echo "added to LD_LIBRARY_PATH (python3's NVIDIA wheels): ${dirs[*]}"
      ldd "${programs[@]}" >"$LOG/ldd.log" 2>&1
      missing=$(grep 'not found' "$LOG/ldd.log" | awk '{print $1}' | sort -u | tr '\n' ' ')
    fi
  fi
  echo "libraries used (ldd of ${#programs[@]} programs):"
  grep '=>' "$LOG/ldd.log" | awk '{print $1, $3}' | sort -u | grep -E 'cud|cublas|nccl|blas|fmt|gomp|gfortran|stdc' | sed 's/^/    /'
  if [[ -n $missing ]]; then
    echo "STILL NOT FOUND: $missing"
    return 1
  fi
  echo "every library found"
  command -v compute-sanitizer >/dev/null && echo "compute-sanitizer: $(command -v compute-sanitizer)"
  return 0
}

if want probe; then
  # Not through run(): probe exports LD_LIBRARY_PATH, which a pipe's subshell would lose.
  say "probe"
  t_probe=$(date +%s)
  probe >"$LOG/probe.log" 2>&1
  rc=$?
  cat "$LOG/probe.log"
  if ((rc == 0)); then record probe PASS $(($(date +%s) - t_probe)); else
    record probe FAIL $(($(date +%s) - t_probe)) "see probe.log"
    built=0
  fi
  checkpoint
fi

if want smi && ! command -v nvidia-smi >/dev/null; then
  echo "(no nvidia-smi on this machine)" >"$LOG/smi.log"
elif want smi; then
  nvidia-smi -L >"$LOG/smi.log" 2>&1
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$LOG/smi.log" 2>&1
  cat "$LOG/smi.log"
fi

# ---- tests: each CUDA test binary under its own timeout -------------------------------------------
# NAME:LIMIT. the op parity suites (one per op family), nn, rnn and device run side by side (the GPU
# has room; 4 CPU threads each for the CPU references); the memory suites alone after them, since
# they read the device's free memory. Each op family's limit is the one the single parity suite had.
test_limits=(nabla_cuda_elementwise_parity_test:180 nabla_cuda_reduce_parity_test:180
  nabla_cuda_linalg_parity_test:180 nabla_cuda_loss_parity_test:180 nabla_cuda_shape_parity_test:180
  nabla_cuda_edge_parity_test:180 nabla_cuda_tensor_parity_test:180 nabla_cuda_random_parity_test:180
  nabla_cuda_optim_parity_test:180 nabla_cuda_nn_parity_test:150 nabla_cuda_rnn_parity_test:150
  nabla_cuda_device_test:30 nabla_dist_nccl_test:90)
# nabla_dist_nccl_test runs alone, without mpirun: a world of one process, whose collectives go
# through NCCL all the same (communicator, streams, events). Its np2 run is for machines with a
# GPU per rank; on one GPU the suite skips it (NCCL does not support two ranks of a communicator
# on one GPU), so it is not run here. NCCL_DEBUG=WARN: an NCCL failure says why in the log.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
run_gtest() {  # LABEL BINARY LIMIT FILTER: one binary, its own log and XML (gtest-LABEL.*)
  local label=$1 name=$2 limit=$3 filter=$4
  OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 run "test $label" "gtest-$label.log" "$limit" \
    "$bin_dir/$name" --gtest_brief=1 "--gtest_filter=$filter" "--gtest_output=xml:$LOG/gtest-$label.xml" >/dev/null
}
recount_failed() {  # from phases.tsv: background phases and corrected lines included
  failed=0
  cut -f2 "$LOG/phases.tsv" | grep -qE '^(FAIL|TIMEOUT)' && failed=1
}
if want tests && need_build tests; then
  pids=()
  for entry in "${test_limits[@]}"; do
    name=${entry%%:*} limit=${entry##*:}
    [[ -x $bin_dir/$name ]] || { record "test $name" "NOT RUN" 0 "not in the carry"; continue; }
    filter='*'
    [[ $name == nabla_cuda_nn_parity_test ]] && filter='-CudaNnMemory.*'
    run_gtest "$name" "$name" "$limit" "$filter" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  # record() ran in the background jobs: their lines are in phases.tsv, their failures are read back.
  recount_failed
  grep -E '^test ' "$LOG/phases.tsv" | sed 's/^/    /'
  [[ -x $bin_dir/nabla_cuda_memory_test ]] && run_gtest nabla_cuda_memory_test nabla_cuda_memory_test 90 '*'
  [[ -x $bin_dir/nabla_cuda_nn_parity_test ]] &&
    run_gtest nabla_cuda_nn_parity_test-memory nabla_cuda_nn_parity_test 60 'CudaNnMemory.*'
  checkpoint
fi

# ---- compute-sanitizer on small filtered subsets -------------------------------------------------
# TOOL|BINARY|FILTER: what each tool looks at, chosen for the kernels it can say something about.
sanitizer_plan=(
  "memcheck|nabla_cuda_edge_parity_test|Empty/Parity.*"
  "memcheck|nabla_cuda_reduce_parity_test|Cuda/Argmax.*70001*"
  "memcheck|nabla_cuda_elementwise_parity_test|Cuda/Softmax.*70001*"
  "memcheck|nabla_cuda_loss_parity_test|CudaTest.BackToBack*"
  "memcheck|nabla_cuda_optim_parity_test|Cuda/Optim.Direct100*/sgd*"
  "memcheck|nabla_cuda_nn_parity_test|CudaNn.ConvFallsBack*:Cuda/BatchNormTrainF32.*planes_over*:Cuda/Pool2dF32.*"
  "memcheck|nabla_cuda_rnn_parity_test|Cuda/RnnForcedCopies.*:CudaRnn.Inference*"
  "racecheck|nabla_cuda_reduce_parity_test|Cuda/Reduce.*1025x1023*"
  "racecheck|nabla_cuda_elementwise_parity_test|Cuda/Softmax.*1025x1023*"
  "racecheck|nabla_cuda_nn_parity_test|Cuda/BatchNormTrainF32.*many_pieces*"
  "initcheck|nabla_cuda_edge_parity_test|Empty/Parity.*"
  "initcheck|nabla_cuda_reduce_parity_test|Cuda/Reduce.*70001*"
  "initcheck|nabla_cuda_optim_parity_test|Cuda/Optim.Direct100*F32/adam*"
  "initcheck|nabla_cuda_nn_parity_test|Cuda/Conv2dF32.*:CudaNn.ConvFallsBack*"
  "initcheck|nabla_cuda_rnn_parity_test|Cuda/RnnForcedCopies.*"
  "synccheck|nabla_cuda_reduce_parity_test|Cuda/Reduce.*1025x1023*"
  "synccheck|nabla_cuda_elementwise_parity_test|Cuda/Softmax.*"
  "synccheck|nabla_cuda_nn_parity_test|Cuda/BatchNormTrainF32.*"
)
# What compute-sanitizer prints when the runtime will not let it instrument (seen on gVisor).
SANITIZER_REFUSED_RE='Device not supported|error 999|Target application terminated before first instrumented API call|Unable to find injection library|CUDA_ERROR_NOT_SUPPORTED|not supported on this platform'
if want sanitize && need_build sanitize; then
  if ! command -v compute-sanitizer >/dev/null; then
    record sanitize REFUSED 0 "compute-sanitizer not found"
  else
    refused=""
    for entry in "${sanitizer_plan[@]}"; do
      IFS='|' read -r tool name filter <<<"$entry"
      label="$tool $name"
      if [[ -n $refused ]]; then
        record "$label" REFUSED 0 "$refused"
        continue
      fi
      [[ -x $bin_dir/$name ]] || { record "$label" "NOT RUN" 0 "not in the carry"; continue; }
      # initcheck looks for reads of memory never written: the tests' NaN fill would hide them.
      poison=1
      [[ $tool == initcheck ]] && poison=0
      logf="sanitizer-$tool-$name.log"
      run "$label" "$logf" 120 env NABLA_TEST_POISON=$poison OMP_NUM_THREADS=4 \
        compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 50 \
        "$bin_dir/$name" --gtest_brief=1 "--gtest_filter=$filter" >/dev/null
      rc=$?
      if ((rc != 0)) && grep -qE "$SANITIZER_REFUSED_RE" "$LOG/$logf"; then
        # Not a finding: the runtime refuses the tool (compute-sanitizer works on Firecracker, not gVisor).
        sed -i '$d' "$LOG/phases.tsv"
        refused="the runtime refused compute-sanitizer: $(grep -oE "$SANITIZER_REFUSED_RE" "$LOG/$logf" | head -1)"
        record "$label" REFUSED 0 "$refused"
        recount_failed
      fi
      checkpoint
    done
  fi
fi

# ---- the examples on CUDA ---------------------------------------------------------------------
find_data() {
  data=""
  for d in "${NABLA_FASHION_MNIST:-}" "$CARRY/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    [[ -n $d ]] && compgen -G "$d/train-images-idx3-ubyte*" >/dev/null && { data=$d; break; }
  done
  text=""
  for d in "${NABLA_TEXT:-}" "$BUILD/fortunes" /usr/share/games/fortunes; do
    [[ -n $d && -e $d ]] && { text=$d; break; }
  done
}
# run_examples SUFFIX MLP_ARGS CNN_ARGS LSTM_ARGS LM_ARGS LIMIT: the five examples, short (SUFFIX
# empty) or full length (SUFFIX -full); logs example-NAME${SUFFIX}.log.
run_examples() {
  local sfx=$1 mlp_args=$2 cnn_args=$3 lstm_args=$4 lm_args=$5 limit=$6
  find_data
  if [[ -z $data ]]; then
    record "examples${sfx:+ (full)}" SKIP 0 "no Fashion-MNIST (carry .gpu-carry/fashion-mnist)"
  else
    # shellcheck disable=SC2086
    run "mlp${sfx:+ (full)}" "example-mlp$sfx.log" "$limit" "$(example_bin mlp)" --device cuda $mlp_args --data "$data"
    checkpoint
    # shellcheck disable=SC2086
    run "cnn${sfx:+ (full)}" "example-cnn$sfx.log" "$limit" "$(example_bin cnn)" --device cuda $cnn_args --data "$data"
    checkpoint
    # shellcheck disable=SC2086
    run "cnn --bn${sfx:+ (full)}" "example-cnn-bn$sfx.log" "$limit" "$(example_bin cnn)" --device cuda --bn $cnn_args --data "$data"
    checkpoint
    # shellcheck disable=SC2086
    run "lstm_rows${sfx:+ (full)}" "example-lstm-rows$sfx.log" "$limit" "$(example_bin lstm_rows)" --device cuda $lstm_args --data "$data"
    checkpoint
  fi
  if [[ -z $text ]]; then
    record "char_lm${sfx:+ (full)}" SKIP 0 "no text (carry .gpu-carry/fortunes.tar.xz)"
  else
    # shellcheck disable=SC2086
    run "char_lm${sfx:+ (full)}" "example-char-lm$sfx.log" "$limit" "$(example_bin char_lm)" "$text" --device cuda $lm_args
  fi
  checkpoint
}
if want examples && need_build examples; then
  run_examples "" "--epochs 3" "--epochs 3" "--epochs 2" "--epochs 1 --steps-per-epoch 300" 60
fi
if want examples-full && need_build examples-full; then
  run_examples -full "" "" "" "" 300
fi

# ---- throughput: nabla beside PyTorch ---------------------------------------------------------
if want bench && need_build bench; then
  run "bench fp32" bench-fp32.log 90 "$bin_dir/nabla-bench" --device cuda --mode fp32 --workload "$workloads" \
    --steps "$bench_steps" --warmup 5
  checkpoint
  run "bench fast" bench-fast.log 90 "$bin_dir/nabla-bench" --device cuda --mode fast --workload "$workloads" \
    --steps "$bench_steps" --warmup 5
  checkpoint
fi

if want torch; then
  ref=""
  for f in "${NABLA_TORCH_REFERENCE:-}" "$CARRY/torch_reference.py" ../shared/bench/torch_reference.py \
           shared/bench/torch_reference.py; do
    [[ -n $f && -f $f ]] && { ref=$f; break; }
  done
  if [[ -z $ref ]]; then
    record "torch reference" SKIP 0 "torch_reference.py not found (carry it: --stage-carry)"
  else
    PYTHONUNBUFFERED=1 run "torch reference" torch.log 150 \
      python3 "$ref" --device cuda --modes "$torch_modes" --workloads "$workloads" --steps "$bench_steps" --warmup 5
  fi
  checkpoint
fi

summary
export_logs
if ((failed)); then
  say "FAILED: at least one phase failed (logs in $LOG${out_dir:+, and $out_dir/logs.tar.gz})"
  exit 1
fi
if ((incomplete)); then
  say "INCOMPLETE: nothing failed, but the time budget left phases unfinished (logs in $LOG${out_dir:+, and $out_dir/logs.tar.gz})"
  exit 2
fi
say "all phases passed (logs in $LOG${out_dir:+, and $out_dir/logs.tar.gz})"
