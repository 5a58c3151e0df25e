#!/usr/bin/env bash
# What following a run on the page costs: the same CPU training run, alternately without and with
# `--serve` and headless Chromium showing the page, ROUNDS times each (default 5). Prints, per
# run, the s/iteration over the second half of the run (from the report point at half way to the
# end: the page is open and loaded by then, so the browser's start is left out) and over the
# whole run, and the median ratios. Usage: [ROUNDS=5] scripts/serve-overhead.sh [ITERATIONS]
# (default 100).
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
# Seconds per iteration between the report point at half the run and the last one.
second_half() {
  awk -v half=$((iterations / 2)) '/^iter / { it = $2; s = $(NF - 1); gsub(/[(]/, "", s)
    if (it >= half && !start) { start = it; t0 = s } last = it; t1 = s }
    END { printf "%.4f", (t1 - t0) / (last - start) }' "$1"
}

plain() {
  "$bin" "${args[@]}" > "$work/plain.log"
  echo "$(second_half "$work/plain.log") $(per_iteration "$work/plain.log")"
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
  echo "$(second_half "$work/served.log") $(per_iteration "$work/served.log")"
}

ratio() { awk -v s="$1" -v p="$2" 'BEGIN { printf "%.3f", s / p }'; }
steady=(); whole=()
rounds="${ROUNDS:-5}"
for round in $(seq "$rounds"); do
  read -r p_half p_all < <(plain)
  read -r s_half s_all < <(served)
  steady+=("$(ratio "$s_half" "$p_half")"); whole+=("$(ratio "$s_all" "$p_all")")
  echo "round $round: second half $p_half -> $s_half s/iteration (${steady[-1]}x), whole run $p_all -> $s_all (${whole[-1]}x)"
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
echo "median ratio with the page open: $(median "${steady[@]}")x over the second half, $(median "${whole[@]}")x over the whole run ($iterations iterations, CPU backend, full MNIST)"
