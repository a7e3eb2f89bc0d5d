#!/usr/bin/env bash
# The pretraining ablation on real SGD text (issue 16), after an SGD run of
# scripts/eval-real.sh into REAL_OUT: MiniLM pretrained on the same SGD
# train copies for STEPS (default 200) steps instead of eval-real's 10, its
# swapped-response AUC on synth copies of the SGD dev dialogues measured
# every EVAL_EVERY (default 50) steps, then model A trained from it exactly
# as eval-real trains A (frozen, TRAIN_EPOCHS, default 10) and judged on SGD
# dev beside eval-real's A (all, seen and unseen services). The 10-step
# model's AUC is measured by a second 10-step pretraining with --eval-data.
# MAX_TOKENS, LEARNING_RATE and TRAIN_EPOCHS mean what they mean in
# eval-real (same defaults): pass the values that run had.
# TOP_LAYERS=k (default 0, the encoder frozen) measures the ablation at
# equal fine-tuning instead: MiniLM's top k layers trained at
# ENCODER_LEARNING_RATE (default 1e-4) on both arms, so model A is trained
# from the 10-step model too (A-pre10-topk) rather than taken from
# eval-real. BF16=1 pretrains and trains with --bf16 (both arms alike when
# TOP_LAYERS is set; otherwise the 10-step arm stays eval-real's model).
# Usage: LABELGEN_BIN=BIN scripts/eval/pretrain_ablation.sh REAL_OUT [OUT]
set -euo pipefail
real="${1:?usage: pretrain_ablation.sh REAL_OUT [OUT]}"
out="${2:-$real/ablation}"
lg="${LABELGEN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}/release/labelgen}"
minilm="${LABELGEN_MINILM:-$HOME/.cache/labelgen/minilm}"
steps="${STEPS:-200}"
max_tokens="${MAX_TOKENS:-48}"
s="$real/sgd"
top_layers="${TOP_LAYERS:-0}"
tune=(--freeze-encoder) suffix=""
if [ "$top_layers" != 0 ]; then
    tune=(--train-top-layers "$top_layers" --encoder-learning-rate "${ENCODER_LEARNING_RATE:-1e-4}") suffix="-top$top_layers"
fi
bf16=()
if [ "${BF16:-0}" = 1 ]; then bf16=(--bf16); fi
mkdir -p "$out"
"$lg" synth --logs "$s/dev/turns" --out "$out/dev-synth" --seed 2 --force --quiet > "$out/dev-synth.json"
pre() { # pre STEPS EVAL_EVERY: eval-real's MiniLM pretraining, with held-out AUC
    "$lg" pretrain --init "$minilm" --data "$s/train-synth" --eval-data "$out/dev-synth" --out "$out/pre$1" \
        --max-steps "$1" --batch-size 8 --learning-rate 1e-4 --max-tokens "$max_tokens" --lookahead 1 --eval-every "$2" \
        "${bf16[@]}" --quiet > "$out/pre$1.json"
}
train_a() { # train_a STEPS: model A from the STEPS-step model, and its labels of SGD dev
    "$lg" train --init "$out/pre$1" --logs "$s/train/turns" --labels "$s/train/annotations" \
        --epochs "${TRAIN_EPOCHS:-10}" --learning-rate "${LEARNING_RATE:-2e-3}" "${tune[@]}" "${bf16[@]}" \
        --quiet --out "$out/A-pre$1$suffix" > "$out/A-pre$1$suffix.json"
    "$lg" label --model "$out/A-pre$1$suffix" --logs "$s/dev/turns" --out "$out/labels-A-pre$1$suffix" \
        --force --quiet > "$out/label-pre$1$suffix.json"
}
pre 10 10
pre "$steps" "${EVAL_EVERY:-50}"
baseline="$s/labels-A-minilm"
if [ "$top_layers" != 0 ]; then train_a 10; baseline="$out/labels-A-pre10$suffix"; fi
train_a "$steps"
for part in seen-intents seen-services unseen-services; do
    "$lg" eval --gold "$s/dev/annotations-$part" --gold-annotators sgd --baseline-annotator none \
        --pred "minilm-pre10$suffix=$baseline" --pred "minilm-pre$steps$suffix=$out/labels-A-pre$steps$suffix" \
        --turns "$s/dev/turns" --out "$out/eval-$part" --force > "$out/eval-$part.json"
done
python3 - "$out" "$steps" <<'PY'
import json, sys
out, steps = sys.argv[1], sys.argv[2]
for n in ("10", steps):
    print(f"pretrain {n} steps: held-out swap AUC {json.load(open(f'{out}/pre{n}.json'))['eval_auc']:.3f}")
for part in ("seen-intents", "seen-services", "unseen-services"):
    for name, h in json.load(open(f"{out}/eval-{part}.json"))["headline"].items():
        if name.startswith("minilm"):
            print(f"{part:16} {name:14} intent {h['intent']['accuracy']:.3f} slots {h['slots']['f1']:.3f} "
                  f"boundary {h['goal_segmentation']['boundary_f1']:.3f}")
PY
