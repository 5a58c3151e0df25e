#!/usr/bin/env bash
# What following a run on the page costs: the same CPU training run, alternately without and with
# `--serve` and headless Chromium showing the page, ROUNDS times each (default 5); prints the
# s/iteration of each run and the median ratio. Usage: [ROUNDS=5] scripts/serve-overhead.sh
# [ITERATIONS] (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${1:-100}"
bin=target/release/gpu-mnist
chromium="${GPU_MNIST_CHROMIUM:-/usr/lib/chromium/chromium}"
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
args=(train --backend cpu --iterations "$iterations" --out "$work/model.safetensors")
per_iteration() { sed -n 's/^time:.*(\([0-9.]*\) s\/iteration.*/\1/p' "$1"; }

plain() {
  "$bin" "${args[@]}" > "$work/plain.log"
  per_iteration "$work/plain.log"
}

served() {
  "$bin" "${args[@]}" --serve 0 > "$work/served.log" &
  local run=$!
  until grep -q 'serving the run at' "$work/served.log"; do sleep 0.1; done
  local url
  url=$(sed -n 's/.*serving the run at \(http[^ ]*\).*/\1/p' "$work/served.log")
  "$chromium" --headless=new --no-sandbox --user-data-dir="$work/profile" --window-size=1280,900 "$url" \
    > /dev/null 2>&1 &
  local browser=$!
  until grep -q 'the page is still at' "$work/served.log"; do sleep 0.2; done
  kill "$run" "$browser" 2>/dev/null || true
  wait "$run" "$browser" 2>/dev/null || true
  per_iteration "$work/served.log"
}

ratios=()
rounds="${ROUNDS:-5}"
for round in $(seq "$rounds"); do
  p=$(plain); s=$(served)
  r=$(awk -v s="$s" -v p="$p" 'BEGIN { printf "%.3f", s / p }')
  ratios+=("$r")
  echo "round $round: without the page $p s/iteration, with it $s s/iteration: ${r}x"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
echo "median ratio with the page open: ${median}x ($iterations iterations, CPU backend, full MNIST)"
