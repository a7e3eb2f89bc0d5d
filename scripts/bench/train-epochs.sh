#!/usr/bin/env bash
# Seconds per `labelgen train` epoch with the encoder frozen, its top two
# layers trained, and (with --whole) all of it, back to back in one run so
# that the ratios share the machine's load.
#
# Usage: scripts/bench/train-epochs.sh [--whole] LABELGEN INIT LOGS LABELS OUT [EPOCHS]
#   LABELGEN: the labelgen binary; INIT: a model directory (e.g. a short
#   `pretrain --init` from MiniLM); LOGS, LABELS: turns and annotations.
#   BF16=1 also runs each mode with `--bf16` (mixed precision), after the
#   f32 ones; every ratio is against the f32 frozen epoch.
#
# Prints one line per mode: seconds per epoch (training and the dev
# evaluation), the other seconds (loading, tokenizing, the encoding cache of
# the frozen layers, calibration, saving), wall seconds, peak RSS, and the
# ratio of the epoch to the frozen one.
set -euo pipefail
whole=0
if [ "${1:-}" = --whole ]; then whole=1; shift; fi
labelgen="$1" init="$2" logs="$3" labels="$4" out="$5" epochs="${6:-1}"
mkdir -p "$out"
modes=("frozen:--freeze-encoder" "top2:--train-top-layers 2")
if [ "$whole" = 1 ]; then modes+=("whole:"); fi
if [ "${BF16:-0}" = 1 ]; then
    for entry in "${modes[@]}"; do modes+=("${entry%%:*}-bf16:${entry#*:} --bf16"); done
fi
echo "== $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $epochs epoch(s)"
for entry in "${modes[@]}"; do
    name="${entry%%:*}" flags="${entry#*:}"
    rm -rf "${out:?}/$name" "$out/$name.checkpoint"
    # shellcheck disable=SC2086 # flags are words
    /usr/bin/time -f '%e %M' -o "$out/$name.time" "$labelgen" train --init "$init" --logs "$logs" \
        --labels "$labels" --epochs "$epochs" --learning-rate 2e-3 $flags --out "$out/$name" \
        --quiet > "$out/$name.json"
done
python3 - "$out" "${modes[@]}" <<'PY'
import json, sys
out, modes = sys.argv[1], [m.split(":")[0] for m in sys.argv[2:]]
frozen = None
print(f"{'mode':<7} {'s/epoch':>8} {'other s':>8} {'wall s':>7} {'peak MB':>8} {'epoch vs frozen':>16}")
for name in modes:
    summary = json.load(open(f"{out}/{name}.json"))
    wall, rss = open(f"{out}/{name}.time").read().split()
    epochs = summary["epochs"]
    per_epoch = epochs[-1]["seconds"] / len(epochs)
    frozen = frozen or per_epoch
    # other: loading, tokenizing, the encoding cache, calibration, saving
    print(f"{name:<7} {per_epoch:>8.1f} {summary['seconds'] - epochs[-1]['seconds']:>8.1f} "
          f"{float(wall):>7.1f} {int(rss) / 1024:>8.0f} {per_epoch / frozen:>15.2f}x")
PY
