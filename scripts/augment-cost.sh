#!/usr/bin/env bash
# What augmentation costs a CPU epoch: 784-800-10, batch-128 Adam, 2 epochs, alternately with
# `--augment none`, `affine` and `elastic`, ROUNDS times each (default 5). Prints each run's
# s/epoch (train's own figure: the distortion of every image and the rebuilt sparse rows are in
# it, the data loading before the first epoch is not) and the medians with their ratios to none.
# Usage: [ROUNDS=5] scripts/augment-cost.sh [EPOCHS] (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-2}"
bin=target/release/gpu-mnist
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kinds=(none affine elastic)
for round in $(seq "${ROUNDS:-5}"); do
  for kind in "${kinds[@]}"; do
    "$bin" train --backend cpu --hidden 800 --batch-size 128 --epochs "$epochs" --optimizer adam --lr 0.002 \
      --augment "$kind" --out "$work/model.safetensors" > "$work/run.log"
    s=$(sed -n 's/^time:.*, \([0-9.]*\) s\/epoch).*/\1/p' "$work/run.log")
    echo "round $round $kind: $s s/epoch"
    echo "$s" >> "$work/$kind"
  done
done
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
none=$(median "$work/none")
for kind in "${kinds[@]}"; do
  m=$(median "$work/$kind")
  echo "$kind: median $m s/epoch, $(awk -v a="$m" -v b="$none" 'BEGIN { printf "%.2f", a / b }')x none"
done
