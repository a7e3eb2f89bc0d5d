#!/usr/bin/env bash
# A tiny labelgen model and logs for smoke tests, in under a minute on 2
# cores: DIR/sim/turns (DIALOGUES simulated dialogues) and DIR/model
# (pretrained 1 epoch, trained 1 epoch, small sizes). Not a useful model.
# Usage: scripts/slurm/tiny-data.sh DIR [DIALOGUES]     (LABELGEN_BIN as in smoke.sh)
set -euo pipefail
dir="$1"
dialogues="${2:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
labelgen="${LABELGEN_BIN:-$CARGO_TARGET_DIR/release/labelgen}"
"$labelgen" simulate --dialogues "$dialogues" --seed 7 --out "$dir/sim" --force --quiet > /dev/null
"$labelgen" synth --logs "$dir/sim/turns" --out "$dir/synth" --seed 7 --force --quiet > /dev/null
"$labelgen" pretrain --data "$dir/synth" --out "$dir/pretrained" --epochs 1 --hidden-size 32 --layers 1 \
    --dialogue-layers 1 --vocab-size 500 --quiet > /dev/null
"$labelgen" train --init "$dir/pretrained" --logs "$dir/sim/turns" --labels "$dir/sim/annotations" \
    --out "$dir/model" --epochs 1 --quiet > /dev/null
