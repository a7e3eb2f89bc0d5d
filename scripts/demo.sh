#!/usr/bin/env bash
# The main job on the embedded default data: build labelgen, simulate a day
# of assistant logs with 3-annotator gold, validate the tables, and judge the
# single-pass annotator against the gold (the bar the model must clear).
# Usage: scripts/demo.sh [OUT_DIR] [DIALOGUES]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/demo}"
dialogues="${2:-5000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
cargo build --release
labelgen="$CARGO_TARGET_DIR/release/labelgen"
mkdir -p "$out"
echo "== simulate $dialogues dialogues -> $out/sim"
"$labelgen" simulate --dialogues "$dialogues" --seed 1 --out "$out/sim" --force > "$out/simulate.json"
echo "== validate"
"$labelgen" validate "$out/sim/turns" --table turns
"$labelgen" validate "$out/sim/annotations" --table annotations --turns "$out/sim/turns"
echo "simulation summary: $out/simulate.json"
echo "== eval: the single-pass annotator against unanimous 3-annotator gold"
"$labelgen" eval --gold "$out/sim/annotations" --turns "$out/sim/turns" --out "$out/eval" --force > "$out/eval.json"
echo "report: $out/eval/report.md (plots in $out/eval/plots, review list in $out/eval/review)"
