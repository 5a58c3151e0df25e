#!/usr/bin/env bash
# One report from a machine with a GPU, in under 8 minutes (the steps' limits add up to 7.7):
#   1. the adapters wgpu sees (`gpu-mnist devices`),
#   2. the tuner's search on this adapter, every candidate's time (`bench --tune`), then the
#      step's kernels as tuned, against the CPU,
#   3. the GPU tests when cargo can build them here, else the command-line checks,
#   4. the default run: 500 full-batch iterations of 784-128-10, verified every 100,
#   5. 784-800-10 with mini-batch Adam, 20 epochs (CI's accuracy run), on the GPU.
#
# Usage: scripts/gpu-report.sh [REPORT]     (default: gpu-report.md in the current folder)
# It uses target/release/gpu-mnist, building it when cargo is here and the binary is not.
# GPU_MNIST_ADAPTER picks an adapter by name; GPU_REPORT_QUICK=1 shrinks every run (for trying
# the script on a software adapter). Each step has its own time limit; one that fails or runs
# out is reported and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."

report="$(realpath -m "${1:-gpu-report.md}")"
bin=target/release/gpu-mnist
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# The tuner's cache starts empty, so the search below is this adapter's own.
export GPU_MNIST_CACHE_DIR="$(mktemp -d)"
adapter=()
[ -n "${GPU_MNIST_ADAPTER:-}" ] && adapter=(--adapter "$GPU_MNIST_ADAPTER")

if [ "${GPU_REPORT_QUICK:-0}" = 1 ]; then
  full=(--iterations 4 --samples 3000 --verify-every 2)
  adam=(--epochs 1 --samples 3000)
  bench=(--samples 3000 --repeats 2 --warmup 1)
else
  full=(--iterations 500 --verify-every 100)
  adam=(--epochs 20)
  bench=()
fi

if [ ! -x "$bin" ]; then
  cargo build --release --quiet || { echo "no $bin and no build: run cargo build --release first"; exit 1; }
fi

: >"$report"
log() { printf '%s\n' "$@" | tee -a "$report"; }
# step TITLE SECONDS COMMAND...: runs COMMAND under a time limit, its output into the report.
step() {
  local title=$1 limit=$2 start rc
  shift 2
  log "" "## $title" "" '```' "\$ $*"
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR | tee -a "$report"
  rc=${PIPESTATUS[0]}
  log '```' "exit $rc after $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s$([ "$rc" = 124 ] && echo " (ran past ${limit} s)")"
}

log "# gpu-mnist on $(hostname): $(date -u +%Y-%m-%dT%H:%MZ)" "" "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && log "" '```' "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv)" '```'

step "Adapters" 30 "$bin" devices
step "Tuning, then the step as tuned (GPU and CPU)" 120 "$bin" bench --tune "${bench[@]}" "${adapter[@]}"
if command -v cargo >/dev/null && [ "${GPU_REPORT_TESTS:-1}" = 1 ]; then
  step "GPU tests" 150 cargo test --release --test gpu_kernels --test gpu_training --test gpu_batches \
    --test gpu_optimizers --test gpu_depth --test gpu_limits --test tuning -- --include-ignored
else
  step "Command-line checks: tilings and limits, verified" 120 bash -c "
    for t in register shared auto; do $bin train --backend gpu --tiling \$t --iterations 6 --samples 6000 --verify-every 3 ${adapter[*]} --out /tmp/t.safetensors || exit 1; done
    $bin train --backend gpu --limits webgpu --batch-size 128 --epochs 1 --samples 6000 --verify-every 20 ${adapter[*]} --out /tmp/t.safetensors"
fi
step "Default run: 784-128-10, 500 full-batch iterations" 60 \
  "$bin" train --backend gpu "${full[@]}" "${adapter[@]}" --out /tmp/gpu-report-default.safetensors
step "784-800-10, mini-batch Adam (batch 128)" 100 \
  "$bin" train --backend gpu --hidden 800 --batch-size 128 "${adam[@]}" --optimizer adam --lr 0.002 \
  --lr-schedule cosine --weight-decay 0.1 "${adapter[@]}" --out /tmp/gpu-report-adam.safetensors

log "" "## Summary" ""
grep -E '^(time: |final: |GPU: auto matmul)|s per iteration|<- chosen|^## |^exit ' "$report" | grep -v '^\$' | sed 's/^/    /' | tee -a "$report" >/dev/null
echo "report: $report"
