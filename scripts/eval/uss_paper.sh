#!/usr/bin/env bash
# The USS paper's satisfaction protocol (Sun et al., SIGIR 2021) on USS
# SGD.txt, for labelgen: per USER line, dissatisfied when the most common
# rating is 2 or less; 10-fold cross-validation over the items in file
# order; F1 of the dissatisfied class with a 95% interval (bootstrap over
# dialogues); see uss_paper.py for how labelgen's turns answer the items.
# Two labelgen models per test fold, from one pretraining on that fold's
# training dialogues: `--lookahead 0` (input = the dialogue up to the system
# turn being judged, the paper's input) and labelgen's default hindsight
# (all turns, the user's reaction included). No test-fold selection: a fixed
# number of epochs with early stopping on labelgen's dev split, which is
# part of the training folds; --balance-decisions fits the decision on that
# dev split too. Published SGD F1: HiGRU 0.086, BERT 0.048 (best epoch per
# metric chosen on the test folds, F1 as 2PR / max(P + R, 1)).
#
# Sizes (environment; defaults: the full protocol): FOLDS (10), TEST_FOLDS
# (folds actually tested, each trained on the others; 10), DIALOGUES (the
# first N dialogues of the file; 0 = all 1,000), EPOCHS (train epochs, 10),
# MINILM_STEPS (pretraining steps from MiniLM per fold, 10), POLICY
# (`train --annotator-policy`, majority), LEARNING_RATE (2e-3), MAX_TOKENS
# (48), VARIANTS (the labelgen models per fold, "lookahead0 hindsight"; the
# published comparison needs only lookahead0), TOP_LAYERS (MiniLM's top layers
# fine-tuned, `train --train-top-layers`; 0 = the encoder frozen, the
# default) at ENCODER_LEARNING_RATE (1e-4). A small run: DIALOGUES=300
# TEST_FOLDS=2 EPOCHS=4.
# Data: LABELGEN_DATA (folder with uss/SGD.txt; default ../shared/data);
# without it the script says SKIPPED and exits 0. MiniLM from
# LABELGEN_MINILM (default ~/.cache/labelgen/minilm, fetched if missing).
# LABELGEN_BIN: a labelgen binary (default: cargo build --release).
# Usage: scripts/eval/uss_paper.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-out/uss-paper}"
data="${LABELGEN_DATA:-../shared/data}"
if [ ! -f "$data/uss/SGD.txt" ]; then
    echo "uss_paper: SKIPPED: no uss/SGD.txt in ${LABELGEN_DATA:-LABELGEN_DATA (unset)}" >&2
    exit 0
fi
folds="${FOLDS:-10}"
test_folds="${TEST_FOLDS:-$folds}"
dialogues="${DIALOGUES:-0}"
epochs="${EPOCHS:-10}"
minilm_steps="${MINILM_STEPS:-10}"
policy="${POLICY:-majority}"
learning_rate="${LEARNING_RATE:-2e-3}"
max_tokens="${MAX_TOKENS:-48}"
variants="${VARIANTS:-lookahead0 hindsight}"
top_layers="${TOP_LAYERS:-0}"
encoder=(--freeze-encoder)
if [ "$top_layers" != 0 ]; then
    encoder=(--train-top-layers "$top_layers" --encoder-learning-rate "${ENCODER_LEARNING_RATE:-1e-4}")
fi
for v in $variants; do
    case "$v" in lookahead0 | hindsight) ;; *) echo "uss_paper: VARIANTS takes lookahead0 and hindsight, not $v" >&2; exit 2 ;; esac
done
minilm="${LABELGEN_MINILM:-$HOME/.cache/labelgen/minilm}"
mkdir -p "$out"
timings="$out/timings.tsv"
: > "$timings"
step() { # step NAME COMMAND...: runs it, prints and records its wall time
    local name="$1"; shift
    local t0=$SECONDS
    echo "== $name" >&2
    "$@"
    echo "   $name: $((SECONDS - t0)) s" >&2
    printf '%s\t%s\n' "$name" "$((SECONDS - t0))" >> "$timings"
}
t_start=$SECONDS
python3 -c 'import pyarrow' 2>/dev/null || step "python packages" python3 -m pip install --quiet --disable-pip-version-check pyarrow
if [ ! -f "$minilm/model.safetensors" ]; then step "fetch MiniLM" scripts/fetch-minilm.sh "$minilm"; fi
if [ -n "${LABELGEN_BIN:-}" ]; then
    labelgen="$LABELGEN_BIN"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
    step "build" cargo build --release --quiet
    mkdir -p "$out/bin"
    cp "$CARGO_TARGET_DIR/release/labelgen" "$out/bin/labelgen"
    labelgen="$out/bin/labelgen"
fi
lg() { "$labelgen" "$@"; }
helper=scripts/eval/uss_paper.py

step "import uss" bash -c "'$labelgen' import uss '$data/uss/SGD.txt' --out '$out/all' --force --quiet > '$out/import.json'"
python3 "$helper" prepare "$data/uss/SGD.txt" "$out/all" "$out" "$dialogues" "$folds" "$test_folds" | tee "$out/prepare.json"
for ((f = 0; f < test_folds; f++)); do
    d="$out/fold-$f"
    # The rater positions of this fold's training dialogues (a6, a7 only where 6, 7 raters rated).
    raters="$(python3 scripts/eval/real_prep.py annotators "$d/train/annotations")"
    step "fold $f: synth + pretrain from MiniLM ($minilm_steps steps)" bash -c "'$labelgen' synth --logs '$d/train/turns' \
        --out '$d/synth' --seed 1 --force --quiet > '$d/synth.json' && '$labelgen' pretrain --init '$minilm' --data '$d/synth' \
        --out '$d/pre' --max-steps $minilm_steps --batch-size 8 --learning-rate 1e-4 --max-tokens $max_tokens --seed $f \
        --quiet > '$d/pre.json'"
    for variant in $variants; do
        lookahead=()
        if [ "$variant" = lookahead0 ]; then lookahead=(--lookahead 0); fi
        step "fold $f: train $variant ($policy of $raters, $epochs epochs, top layers $top_layers)" lg train --init "$d/pre" --logs "$d/train/turns" \
            --labels "$d/train/annotations" --annotators "$raters" --annotator-policy "$policy" "${lookahead[@]}" \
            --epochs "$epochs" --learning-rate "$learning_rate" "${encoder[@]}" --balance-decisions --seed "$f" --quiet \
            --out "$d/model-$variant" > "$d/train-$variant.json"
        step "fold $f: label $variant" lg label --model "$d/model-$variant" --logs "$d/test/turns" --out "$d/labels-$variant-$policy" \
            --force --quiet > "$d/label-$variant.json"
    done
done
names=()
for variant in $variants; do
    names+=("$variant-$policy")
    python3 "$helper" score "$out" "$variant-$policy" > "$out/score-$variant-$policy.json"
done
echo "== total: $((SECONDS - t_start)) s"
printf 'total\t%s\n' "$((SECONDS - t_start))" >> "$timings"
python3 "$helper" table "$out" "${names[@]}" | tee "$out/summary.md"
