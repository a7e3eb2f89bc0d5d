#!/usr/bin/env bash
# Simulator throughput (turns/s, Parquet writing included), three runs.
# Usage: scripts/bench-simulate.sh [DIALOGUES]
set -euo pipefail
cd "$(dirname "$0")/.."
dialogues="${1:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
cargo build --release --quiet
labelgen="$CARGO_TARGET_DIR/release/labelgen"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: labelgen simulate --dialogues $dialogues --seed N --out DIR --quiet"
for run in 1 2 3; do
  "$labelgen" simulate --dialogues "$dialogues" --seed "$run" --out "$tmp/run$run" --quiet > "$tmp/summary.json"
  python3 - "$tmp/summary.json" "$run" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"run {sys.argv[2]}: {s['turns']} turns in {s['seconds']:.2f} s = {s['turns_per_second']:,.0f} turns/s")
PY
  rm -rf "$tmp/run$run"
done
