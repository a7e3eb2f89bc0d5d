#!/usr/bin/env bash
# Label throughput (turns/s, model load, Parquet reading and writing
# included) of a trained model, on 1 and 2 threads side by side, and the
# share of turns the encoder ran on (repeated turns are encoded once).
# Usage: scripts/bench-label.sh MODEL_DIR [DIALOGUES]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/bench-label.sh MODEL_DIR [DIALOGUES]}"
dialogues="${2:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
cargo build --release --quiet
labelgen="$CARGO_TARGET_DIR/release/labelgen"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$labelgen" simulate --dialogues "$dialogues" --seed 3 --out "$tmp/logs" --quiet > /dev/null
for threads in 1 2; do
  echo "command: labelgen label --model $model --logs LOGS($dialogues dialogues) --out DIR --threads $threads --quiet"
  "$labelgen" label --model "$model" --logs "$tmp/logs/turns" --out "$tmp/labels$threads" --threads "$threads" --quiet > "$tmp/summary.json"
  python3 - "$tmp/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  {s['turns']} turns in {s['seconds']:.2f} s = {s['turns_per_second']:,.0f} turns/s; "
      f"encoder ran on {s['distinct_turns_encoded']} distinct turns ({s['distinct_turns_encoded'] / s['turns']:.1%})")
PY
done
