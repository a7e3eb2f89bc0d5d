#!/usr/bin/env bash
# The main job on the embedded default data: simulate logs with 3-annotator
# gold (training dialogues, and held-out ones from another seed), validate
# them, build contrastive data, pretrain the model (held-out swapped-response
# AUC), train the supervised heads on the single-pass annotator's labels
# and the logs' feedback, and the contextless baseline, label the held-out
# logs, and judge the labels against the unanimous gold beside the
# single-pass annotator and human leave-one-out.
# Usage: scripts/demo.sh [OUT_DIR] [DIALOGUES] [PRETRAIN_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/demo}"
dialogues="${2:-5000}"
epochs="${3:-6}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
cargo build --release
labelgen="$CARGO_TARGET_DIR/release/labelgen"
mkdir -p "$out"
echo "== simulate: $dialogues training dialogues (seed 1), $((dialogues / 5)) held-out (seed 2)"
"$labelgen" simulate --dialogues "$dialogues" --seed 1 --out "$out/train" --force --quiet > "$out/train.simulate.json"
"$labelgen" simulate --dialogues "$((dialogues / 5))" --seed 2 --out "$out/dev" --force --quiet > "$out/dev.simulate.json"
echo "== validate"
"$labelgen" validate "$out/train/turns" --table turns
"$labelgen" validate "$out/train/annotations" --table annotations --turns "$out/train/turns"
echo "== synth: contrastive copies"
"$labelgen" synth --logs "$out/train/turns" --out "$out/train-synth" --seed 1 --force --quiet > "$out/train-synth.json"
"$labelgen" synth --logs "$out/dev/turns" --out "$out/dev-synth" --seed 2 --force --quiet > "$out/dev-synth.json"
echo "== pretrain: $epochs epochs (about 70 seconds an epoch at 5,000 dialogues on 2 cores)"
"$labelgen" pretrain --data "$out/train-synth" --eval-data "$out/dev-synth" --out "$out/pretrained" --epochs "$epochs" --eval-every 100 > "$out/pretrain.json"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("held-out swapped-response AUC %.3f after %d steps, %.0f s" % (s["eval_auc"], s["steps"], s["seconds"]))' "$out/pretrain.json" || true
echo "== train: supervised heads on the single-pass annotator's labels"
"$labelgen" train --init "$out/pretrained" --logs "$out/train/turns" --labels "$out/train/annotations" --out "$out/labeler" > "$out/train.json"
echo "== train the contextless baselines: the same encoder, each turn alone: its utterance (an NLU model's view), or utterance and response"
"$labelgen" train --init "$out/pretrained" --logs "$out/train/turns" --labels "$out/train/annotations" --out "$out/contextless" --contextless utterance > "$out/train-contextless.json"
"$labelgen" train --init "$out/pretrained" --logs "$out/train/turns" --labels "$out/train/annotations" --out "$out/contextless-turn" --contextless turn > "$out/train-contextless-turn.json"
echo "== label the held-out logs"
"$labelgen" label --model "$out/labeler" --logs "$out/dev/turns" --out "$out/dev-labels" --force > "$out/label.json"
"$labelgen" label --model "$out/contextless" --logs "$out/dev/turns" --out "$out/dev-labels-contextless" --force --quiet > "$out/label-contextless.json"
"$labelgen" label --model "$out/contextless-turn" --logs "$out/dev/turns" --out "$out/dev-labels-contextless-turn" --force --quiet > "$out/label-contextless-turn.json"
"$labelgen" validate "$out/dev-labels" --table labels --turns "$out/dev/turns"
echo "== eval: model, contextless baseline and single-pass annotator against unanimous 3-annotator gold"
"$labelgen" eval --gold "$out/dev/annotations" --pred "model=$out/dev-labels" --pred "contextless=$out/dev-labels-contextless" \
    --pred "contextless_turn=$out/dev-labels-contextless-turn" --turns "$out/dev/turns" --out "$out/eval" --force > "$out/eval.json"
echo "report: $out/eval/report.md (plots in $out/eval/plots, review list in $out/eval/review)"
