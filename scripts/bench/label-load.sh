#!/usr/bin/env bash
# Load test of `labelgen label` (issue 17): simulated logs of about N turns
# each, labelled by a tiny trained model; prints the turns in, the label
# rows out (counted by `labelgen validate`, must be equal), the seconds and
# the peak RSS (GNU time's %M). Sizes above 200,000 turns need --large:
# they take minutes and gigabytes of simulated logs.
# Usage: scripts/bench/label-load.sh [--threads T] [--large] [--model DIR] [--precision P] [TURNS...]   (default: 10000 100000)
# --model: a trained model directory to label with instead of the tiny one
# (e.g. the default-size labeller scripts/demo.sh trains); --precision:
# label's --precision (f32, the default, or int16).
# Measured 2026-12-03 on the 2-core dev machine, 1 thread, with another
# build running: 10,169 turns in = 10,169 rows out, 3.7 s, peak RSS 139 MiB;
# 99,933 in = 99,933 out, 36.5 s, peak RSS 162 MiB (10x the turns, +17%).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=1
large=0
model=""
precision=f32
sizes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --large) large=1; shift ;;
    --model) model="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    *) sizes+=("$1"); shift ;;
  esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
for n in "${sizes[@]}"; do
  if [ "$n" -gt 200000 ] && [ "$large" -eq 0 ]; then
    echo "$n turns: pass --large to run above 200,000 turns" >&2
    exit 2
  fi
done
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
cargo build --release --quiet
labelgen="$CARGO_TARGET_DIR/release/labelgen"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores; label --threads $threads --precision $precision"

if [ -z "$model" ]; then
  # The model: tests/common's tiny encoder (pretrain_tiny), trained 2 epochs.
  model="$tmp/model"
  "$labelgen" simulate --dialogues 200 --seed 4 --out "$tmp/train" --quiet > /dev/null
  "$labelgen" synth --logs "$tmp/train/turns" --out "$tmp/synth" --quiet > /dev/null
  "$labelgen" pretrain --data "$tmp/synth" --out "$tmp/pre" --max-steps 2 --hidden-size 16 \
    --layers 1 --heads 2 --dialogue-layers 1 --vocab-size 300 --max-tokens 24 --batch-size 8 \
    --quiet > /dev/null
  "$labelgen" train --init "$tmp/pre" --logs "$tmp/train/turns" --labels "$tmp/train/annotations" \
    --out "$model" --epochs 2 --batch-size 8 --seed 2 --quiet > /dev/null
fi
echo "model: $model"

for n in "${sizes[@]}"; do
  # The simulator averages about 2.8 turns a dialogue.
  dialogues=$(( (n * 10 + 27) / 28 ))
  "$labelgen" simulate --dialogues "$dialogues" --seed 7 --out "$tmp/logs-$n" --quiet > "$tmp/sim.json"
  /usr/bin/time -f "%M %e" -o "$tmp/time" "$labelgen" label --model "$model" \
    --logs "$tmp/logs-$n/turns" --out "$tmp/labels-$n" --threads "$threads" --precision "$precision" --quiet > "$tmp/label.json"
  "$labelgen" validate "$tmp/labels-$n" --table labels --json > "$tmp/valid.json"
  python3 - "$tmp/sim.json" "$tmp/label.json" "$tmp/valid.json" "$tmp/time" <<'PY'
import json, sys
sim, label, valid = (json.load(open(p)) for p in sys.argv[1:4])
rss_kb, wall = open(sys.argv[4]).read().split()
rows_in, rows_out = sim["turns"], valid["rows"]
print(f"{rows_in} turns in ({sim['dialogues']} dialogues), {rows_out} label rows out, "
      f"{label['turns']} labelled ({label['distinct_turns_encoded']} distinct turns encoded), {valid['errors']} invalid; "
      f"{float(wall):.1f} s, peak RSS {int(rss_kb) / 1024:.0f} MiB")
if rows_in != rows_out or label["turns"] != rows_in or not valid["valid"]:
    sys.exit("rows lost: turns in != label rows out")
PY
  rm -rf "$tmp/logs-$n" "$tmp/labels-$n"
done
