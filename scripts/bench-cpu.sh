#!/usr/bin/env bash
# CPU throughput, nabla beside PyTorch in one run: builds nabla-bench, then runs it and
# shared/bench/torch_reference.py (Debian's python3-torch) on the same workloads and threads,
# alternating them (nabla, PyTorch, nabla, PyTorch, ...) for --rounds rounds per workload, so that
# a machine whose speed drifts weighs on both alike. Prints every round, then per workload the
# best step time of each, their ratio, and the peak resident memory of each process (GNU time's
# maximum RSS), with the date and the CPU model: the README's table comes from this output.
#
#   scripts/bench-cpu.sh [--workloads mlp,mlp_wide,cnn,cnn_fmnist,lstm] [--threads 2] [--steps 50]
#                        [--warmup 10] [--wide-steps 10] [--wide-warmup 2] [--rounds 3] [--busy N]
#
# mlp_wide takes --wide-steps and --wide-warmup instead: its step takes seconds on 2 cores and each
# program times 5 repetitions of the steps, so 50 steps would make one round pair last 20 minutes.
#
# --busy N runs N busy loops beside both programs while they are measured: a shared machine whose
# other users want the cores (README, "Threads on a busy machine").
#
# Environment: NABLA_TORCH_REFERENCE (default: ../shared/bench/torch_reference.py).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

workloads=mlp,mlp_wide,cnn,cnn_fmnist,lstm threads=2 steps=50 warmup=10 wide_steps=10 wide_warmup=2 rounds=3 busy=0
while (( $# )); do
  case $1 in
    --workloads) workloads=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --wide-steps) wide_steps=$2; shift 2 ;;
    --wide-warmup) wide_warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --busy) busy=$2; shift 2 ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
reference=${NABLA_TORCH_REFERENCE:-../shared/bench/torch_reference.py}
[[ -f $reference ]] || die "PyTorch peer not found at $reference (set NABLA_TORCH_REFERENCE)"

phase packages
install_packages python3-torch time
phase configure
configure_build -DNABLA_BUILD_TESTS=OFF  # nabla-bench only: no GoogleTest needed
phase build
cmake --build "$NABLA_BUILD_DIR" --parallel "$NABLA_JOBS" --target nabla-bench
phase bench
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not '$rounds'"
[[ $busy =~ ^[0-9]+$ ]] || die "--busy must be a number of processes, not '$busy'"
out=$(mktemp -d)
busy_pids=()
stop_busy() { (( ${#busy_pids[@]} )) && kill "${busy_pids[@]}" 2>/dev/null; busy_pids=(); }
trap stop_busy EXIT
for (( i = 0; i < busy; ++i )); do
  sh -c 'while :; do :; done' &
  busy_pids+=($!)
done
say "$(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); $(nproc) cores; $threads threads; $busy busy processes beside"
# One run: appends the program's JSON line, with "peak_kb" (GNU time's maximum resident set
# size) and "round" added, to $out/<side>.jsonl.
run_one() {
  local side=$1 round=$2; shift 2
  local log=$out/run.txt mem=$out/mem.txt
  OMP_NUM_THREADS=$threads /usr/bin/time -f '%M' -o "$mem" "$@" >"$log" 2>&1 || { cat "$log"; die "$side failed"; }
  local line
  line=$(grep '^{' "$log" | tail -1) || die "$side printed no result: $(tail -3 "$log")"
  printf '%s\n' "${line%\}}, \"peak_kb\": $(tail -1 "$mem"), \"round\": $round}" >>"$out/$side.jsonl"
  printf '    round %d %-6s %s\n' "$round" "$side" "$(grep -o '"step_ms": [0-9.]*' <<<"$line")"
}
IFS=, read -ra wl <<<"$workloads"
for w in "${wl[@]}"; do
  s=$steps u=$warmup
  [[ $w == mlp_wide ]] && s=$wide_steps u=$wide_warmup
  say "$w ($s steps after $u warm-up steps, 5 repetitions per program run)"
  for (( r = 1; r <= rounds; ++r )); do
    run_one nabla "$r" "$NABLA_BUILD_DIR/bench/nabla-bench" --workload "$w" --device cpu --threads "$threads" \
      --steps "$s" --warmup "$u"
    run_one torch "$r" /usr/bin/python3 "$reference" --device cpu --modes fp32 --threads "$threads" --workloads "$w" \
      --steps "$s" --warmup "$u"
  done
done
stop_busy
timing_summary
/usr/bin/python3 - "$out/nabla.jsonl" "$out/torch.jsonl" <<'PY'
import json, sys
def rows(path):
    by = {}
    for line in open(path):
        r = json.loads(line)
        by.setdefault(r["workload"], []).append(r)
    return by
nabla, torch = rows(sys.argv[1]), rows(sys.argv[2])
print(f"\n{'workload':10} {'rounds':>6} {'nabla best ms':>14} {'torch best ms':>14} {'torch/nabla':>12} {'nabla peak MiB':>15} {'torch peak MiB':>15}")
for w, rs in nabla.items():
    ts = torch.get(w, [])
    nb = min(r["step_ms"] for r in rs)
    tb = min(r["step_ms"] for r in ts) if ts else float("nan")
    nm = max(r["peak_kb"] for r in rs) / 1024
    tm = max(r["peak_kb"] for r in ts) / 1024 if ts else float("nan")
    print(f"{w:10} {len(rs):6} {nb:14.3f} {tb:14.3f} {tb / nb:11.2f}x {nm:15.1f} {tm:15.1f}")
PY
