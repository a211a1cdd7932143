#!/usr/bin/env bash
# GPU soak test (not in CI): trains the Fashion-MNIST CNN (examples/cnn) on the GPU for about
# 30 minutes while sampling the device memory in use, and fails when it grows after the first
# epoch: a leak in the CUDA backend (a tensor, a plan, a cuDNN workspace kept per step) shows up
# here long before it would fill a device.
#
#   scripts/soak-gpu.sh                       30 minutes, build*/examples/cnn/nabla-cnn
#   SOAK_SECONDS=600 scripts/soak-gpu.sh      shorter
#   scripts/soak-gpu.sh --analyze SAMPLES     only the verdict on a samples file from a past run
#
# How it judges: every SOAK_INTERVAL seconds it records "seconds epoch MiB" (the epoch that the
# program last announced with "Epoch k/N", and nvidia-smi's memory.used of GPU SOAK_GPU) in
# soak-<date>/samples.txt. The baseline is the largest sample taken during epoch 2 (epoch 1 is
# warm-up: the memory pool, cuDNN plans and the evaluation buffers are allocated then); the run
# fails when any later sample exceeds it by more than SOAK_MAX_GROWTH_MIB (64). The pool keeps
# freed memory for reuse, so a healthy run is flat after epoch 1. At least 3 epochs must start.
# The GPU should be otherwise idle: memory.used counts every process on it.
#
# Environment: SOAK_SECONDS (1800), SOAK_INTERVAL (5), SOAK_MAX_GROWTH_MIB (64), SOAK_GPU (0),
# SOAK_CNN (the nabla-cnn binary; default: the newest build*/examples/cnn/nabla-cnn),
# SOAK_ARGS (extra nabla-cnn arguments, e.g. "--bn"), SOAK_OUT (output folder).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

max_growth=${SOAK_MAX_GROWTH_MIB:-64}

# analyze SAMPLES: prints the verdict; exit 0 (flat), 1 (grew), 2 (not enough data).
analyze() {
  awk -v max_growth="$max_growth" '
    NF == 3 && $1 ~ /^[0-9.]+$/ && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ {
      n++; last_epoch = $2
      if ($2 == 2 && (base == "" || $3 > base)) base = $3
      if ($2 >= 2) { after++; if (peak == "" || $3 > peak) { peak = $3; peak_t = $1; peak_e = $2 } }
      if ($2 == 1 && (first == "" || $3 > first)) first = $3
    }
    END {
      if (n == 0) { print "soak: no samples"; exit 2 }
      if (base == "" || last_epoch < 3) {
        printf "soak: not enough epochs (%d samples, last epoch %d): need samples from epoch 2 and epoch 3 started\n", n, last_epoch
        exit 2
      }
      growth = peak - base
      printf "soak: %d samples; epoch 1 peak %s MiB; baseline (epoch 2 peak) %d MiB; peak after %d MiB at %ss (epoch %d); growth %d MiB (limit %d)\n", n, first == "" ? "?" : first, base, peak, peak_t, peak_e, growth, max_growth
      if (growth > max_growth) { print "soak: FAILED: device memory grew after the first epoch"; exit 1 }
      print "soak: passed: device memory flat after the first epoch"
    }' "$1"
}

if [[ ${1:-} == --analyze ]]; then
  [[ -f ${2:-} ]] || { echo "usage: scripts/soak-gpu.sh --analyze SAMPLES" >&2; exit 2; }
  analyze "$2"
  exit $?
fi

seconds=${SOAK_SECONDS:-1800}
interval=${SOAK_INTERVAL:-5}
gpu=${SOAK_GPU:-0}
cnn=${SOAK_CNN:-}
if [[ -z $cnn ]]; then
  cnn=$(ls -t build*/examples/cnn/nabla-cnn 2>/dev/null | head -1 || true)
fi
[[ -n $cnn && -x $cnn ]] || { echo "soak: no nabla-cnn (build with CUDA and examples, or set SOAK_CNN)" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "soak: nvidia-smi not found" >&2; exit 2; }
mem_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu" | head -1 | tr -d ' '; }
[[ $(mem_used) =~ ^[0-9]+$ ]] || { echo "soak: nvidia-smi gave no memory.used for GPU $gpu: '$(mem_used)'" >&2; exit 2; }

out=${SOAK_OUT:-soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
samples=$out/samples.txt
log=$out/cnn.log
: >"$samples"
echo "soak: $cnn on GPU $gpu for ${seconds}s, sampling every ${interval}s into $out/"

# Enough epochs to outlast the run; the program is stopped when the time is up. stdbuf: the
# "Epoch k/N" lines must reach the log as they are printed, not when stdout's buffer fills.
# shellcheck disable=SC2086
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$gpu} stdbuf -oL -eL \
  "$cnn" --device cuda --epochs 100000 ${SOAK_ARGS:-} >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

start=$SECONDS
status=running
while true; do
  if ! kill -0 "$pid" 2>/dev/null; then status=exited; break; fi
  elapsed=$(( SECONDS - start ))
  (( elapsed >= seconds )) && break
  epoch=$(grep -ao 'Epoch [0-9][0-9]*/' "$log" 2>/dev/null | tail -1 | tr -dc '0-9' || true)
  mem=$(mem_used || true)
  [[ $mem =~ ^[0-9]+$ ]] && echo "$elapsed ${epoch:-0} $mem" >>"$samples"
  sleep "$interval"
done

rc=0
if [[ $status == exited ]]; then
  wait "$pid" || rc=$?
  if (( rc != 0 )); then
    echo "soak: FAILED: nabla-cnn exited with $rc after $(( SECONDS - start ))s; last lines of $log:" >&2
    tail -5 "$log" | tr '\r' '\n' | tail -5 >&2
    exit 1
  fi
  echo "soak: warning: nabla-cnn finished before ${seconds}s"
else
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
fi
trap - EXIT
analyze "$samples"
