#!/usr/bin/env bash
# CPU throughput, nabla beside PyTorch in one run: builds nabla-bench, then runs it and
# shared/bench/torch_reference.py (Debian's python3-torch) on the same workloads and threads,
# and prints both step times with their ratio.
#
#   scripts/bench-cpu.sh [--workloads mlp,mlp_wide,cnn,cnn_fmnist,lstm] [--threads 2] [--steps 50] [--warmup 10]
#
# Environment: NABLA_TORCH_REFERENCE (default: ../shared/bench/torch_reference.py).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source scripts/common.sh

workloads=mlp,mlp_wide,cnn,cnn_fmnist,lstm threads=2 steps=50 warmup=10
while (( $# )); do
  case $1 in
    --workloads) workloads=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
reference=${NABLA_TORCH_REFERENCE:-../shared/bench/torch_reference.py}
[[ -f $reference ]] || die "PyTorch peer not found at $reference (set NABLA_TORCH_REFERENCE)"

phase packages
install_packages python3-torch
phase configure
configure_build
phase build
cmake --build "$NABLA_BUILD_DIR" --parallel "$NABLA_JOBS" --target nabla-bench
phase bench
out=$(mktemp -d)
OMP_NUM_THREADS=$threads "$NABLA_BUILD_DIR/bench/nabla-bench" --workload "$workloads" --device cpu \
  --threads "$threads" --steps "$steps" --warmup "$warmup" | tee "$out/nabla.txt"
/usr/bin/python3 "$reference" --device cpu --modes fp32 --threads "$threads" --workloads "$workloads" \
  --steps "$steps" --warmup "$warmup" | tee "$out/torch.txt"
timing_summary
/usr/bin/python3 - "$out/nabla.txt" "$out/torch.txt" <<'PY'
import json, sys
def rows(path):
    return {r["workload"]: r for r in (json.loads(l) for l in open(path) if l.startswith("{"))}
nabla, torch = rows(sys.argv[1]), rows(sys.argv[2])
print(f"\n{'workload':10} {'threads':>7} {'nabla ms':>10} {'torch ms':>10} {'torch/nabla':>12}")
for w, r in nabla.items():
    t = torch.get(w, {}).get("step_ms")
    ratio = f"{t / r['step_ms']:.2f}x" if t else "-"
    print(f"{w:10} {r['threads']:7} {r['step_ms']:10.3f} {t if t else float('nan'):10.3f} {ratio:>12}")
PY
