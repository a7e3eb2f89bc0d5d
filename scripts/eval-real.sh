#!/usr/bin/env bash
# The evaluation on real data: SGD intent, slots, goal
# boundaries and goal success on the dev split for three models (MiniLM
# encoder with dialogue context, the same without context, a small encoder
# pretrained from scratch) beside a TF-IDF + logistic regression peer; and
# USS dialogue success and turn defects against majority and unanimous gold
# next to human leave-one-out. Prints the wall time of every step (also in
# OUT/timings.tsv). Sizes are environment variables (defaults fit an hour on
# 2 cores): SGD_TRAIN (default 0: every dialogue in sgd/train, 24 minutes
# for the 5,050 of ../shared/data; the full release's 16,142 would not fit
# the hour, so sample there, e.g. SGD_TRAIN=5000), SGD_DEV (default 400)
# (dialogues sampled by a stable hash; 0 = all),
# MINILM_STEPS, SCRATCH_EPOCHS, TRAIN_EPOCHS, LEARNING_RATE (train), MAX_TOKENS,
# USS_DIALOGUES (0 = all), USS_TEST_PERCENT, USS_POLICIES (the
# `train --annotator-policy` values to train a USS model with, each judged
# apart; default "majority soft all"); REPORT_ON=validation to choose settings
# on held-out SGD train dialogues instead of the reported dev split;
# PARTS="sgd uss" (default both; the USS models start from the MiniLM
# pretrained on SGD text, so that part always runs); USS_BALANCE=1 (default)
# fits the USS models' decisions on their dev split for macro-F1
# (`train --balance-decisions`: a failed dialogue or a defect turn is rare,
# and accuracy alone would never predict one), 0 for plain argmax;
# USS_TOP_LAYERS="0 2" trains each USS policy's model twice, with the encoder
# frozen (0, the default) and with its top 2 layers trained (named POLICY-top2)
# at ENCODER_LEARNING_RATE (default 1e-4; the heads keep LEARNING_RATE).
# SGD_TOP_LAYERS="2" adds SGD model A-minilm-top2: model A with MiniLM's top 2
# layers trained (any list of layer counts; default none), for SGD_TOP_EPOCHS
# epochs (default TRAIN_EPOCHS), judged beside the others as minilm-top2.
# FULL=1 is the best-model setting (up to 2 hours on 2 cores): as the
# defaults, plus model A with all 6 of MiniLM's layers trained for 6 epochs
# (A-minilm-top6; its embeddings stay fixed; SGD_TOP_LAYERS and
# SGD_TOP_EPOCHS still override it). Until 2026-12-08 it trained the top 2
# layers for 12 epochs; all six reached a lower in-distribution dev loss
# in 6 (BENCHMARKS.md, "the whole encoder fine-tuned on SGD").
# BF16=1 trains the top-k models (SGD_TOP_LAYERS, USS_TOP_LAYERS) with
# `train --bf16` (mixed precision on CPUs with AVX-512 BF16: about 1.4x faster
# epochs, scores as f32 within the intervals; f32 elsewhere); default 0.
# CURVE=1 (the default with FULL=1, else 0) trains SGD model A and the top-k
# models with `train --keep-epochs` and judges every epoch's model on the SGD
# dev split too: OUT/eval-curve-MODEL/report.json, and a table per model in
# summary.md (the in-distribution dev loss and intent accuracy train saw,
# beside SGD dev intent accuracy, slot F1 and boundary F1), about 40 s an epoch
# on 2 cores for 400 dev dialogues.
# SPLICE_GOALS (default 0.5) is `train --splice-goals` for the SGD models
# with dialogue context (A, C and the top-k models): half as many training
# windows again, each a goal of one dialogue followed by a goal of another
# (SGD dev pairs services its training split never pairs; BENCHMARKS.md,
# "goal splicing"); 0 trains without. The USS models never splice (their
# dialogues hold one goal, and the raters' soft targets are read by dialogue).
# Data: LABELGEN_DATA names a folder (absolute, or relative to the repository
# root) holding sgd/train/ and sgd/dev/ (the
# Schema-Guided Dialogue release, raw JSON with schema.json per split) and
# uss/SGD.txt (User Satisfaction Simulation); without them the script says
# SKIPPED and exits 0. Python 3 is needed for the helpers in scripts/eval/
# (pyarrow, pandas, scikit-learn; installed with pip by the first step).
# Usage: scripts/eval-real.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/real}"
data="${LABELGEN_DATA:-../shared/data}"
if [ ! -d "$data/sgd/train" ] || [ ! -d "$data/sgd/dev" ] || [ ! -f "$data/uss/SGD.txt" ]; then
    echo "eval-real: SKIPPED: no SGD/USS data in ${LABELGEN_DATA:-LABELGEN_DATA (unset)}: set LABELGEN_DATA to a folder with sgd/{train,dev}/ and uss/SGD.txt" >&2
    exit 0
fi
sgd_train="${SGD_TRAIN:-0}"
sgd_dev="${SGD_DEV:-400}"
# REPORT_ON=dev (default) judges on SGD dev, the reported set. Choose
# settings with REPORT_ON=validation instead: the "dev" dialogues are then
# SGD_DEV train dialogues the training sample does not hold (the next ones
# by the same stable hash), so dev stays unused by any choice.
report_on="${REPORT_ON:-dev}"
case "$report_on" in
    dev) dev_full=dev-full; dev_skip=0; dev_split=dev ;;
    validation)
        if [ "$sgd_train" = 0 ] || [ "$sgd_dev" = 0 ]; then
            echo "eval-real: REPORT_ON=validation needs SGD_TRAIN and SGD_DEV above 0, e.g. SGD_TRAIN=3000 (validation = the next SGD_DEV train dialogues by hash, so they must be left out of training)" >&2
            exit 2
        fi
        dev_full=train-full; dev_skip="$sgd_train"; dev_split=train ;;
    *) echo "eval-real: REPORT_ON must be dev or validation, not $report_on" >&2; exit 2 ;;
esac
minilm_steps="${MINILM_STEPS:-10}"
scratch_epochs="${SCRATCH_EPOCHS:-1}"
train_epochs="${TRAIN_EPOCHS:-10}"
full_top_layers="" full_top_epochs="$train_epochs"
case "${FULL:-0}" in
    0) ;;
    1) full_top_layers=6 full_top_epochs=6 ;;
    *) echo "eval-real: FULL must be 0 or 1, not $FULL" >&2; exit 2 ;;
esac
curve="${CURVE:-${FULL:-0}}"
keep_epochs=()
case "$curve" in
    0) ;;
    1) keep_epochs=(--keep-epochs) ;;
    *) echo "eval-real: CURVE must be 0 or 1, not $CURVE" >&2; exit 2 ;;
esac
sgd_top_epochs="${SGD_TOP_EPOCHS:-$full_top_epochs}"
max_tokens="${MAX_TOKENS:-48}"
uss_test="${USS_TEST_PERCENT:-30}"
uss_dialogues="${USS_DIALOGUES:-0}"
uss_policies="${USS_POLICIES:-majority soft all}"
uss_top_layers="${USS_TOP_LAYERS:-0}"
encoder_learning_rate="${ENCODER_LEARNING_RATE:-1e-4}"
sgd_top_layers="${SGD_TOP_LAYERS-$full_top_layers}"
splice=(--splice-goals "${SPLICE_GOALS:-0.5}")
bf16=()
if [ "${BF16:-0}" = 1 ]; then bf16=(--bf16); fi
parts=" ${PARTS:-sgd uss} "
uss_balance=()
if [ "${USS_BALANCE:-1}" = 1 ]; then uss_balance=(--balance-decisions); fi
learning_rate="${LEARNING_RATE:-2e-3}"
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

step "python packages" python3 -m pip install --quiet --disable-pip-version-check scikit-learn pandas pyarrow
if [ ! -f "$minilm/model.safetensors" ]; then step "fetch MiniLM" scripts/fetch-minilm.sh "$minilm"; fi
if [ -n "${LABELGEN_BIN:-}" ]; then
    labelgen="$LABELGEN_BIN"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
    step "build" cargo build --release --quiet
    mkdir -p "$out/bin"
    cp "$CARGO_TARGET_DIR/release/labelgen" "$out/bin/labelgen" # the shared target may be rebuilt meanwhile
    labelgen="$out/bin/labelgen"
fi
lg() { "$labelgen" "$@"; }
q=(--force --quiet)

# ---------------------------------------------------------------- SGD
s="$out/sgd"
step "import sgd train+dev" bash -c "'$labelgen' import sgd '$data/sgd/train' --out '$s/train-full' --force --quiet > '$s.import-train.json' \
    && '$labelgen' import sgd '$data/sgd/dev' --out '$s/dev-full' --force --quiet > '$s.import-dev.json'"
sample() { # sample FULL OUT N [SKIP]: N dialogues by a stable hash (after the first SKIP), or all of them
    if [ "$3" = 0 ]; then rm -rf "$2"; cp -r "$1" "$2"; else python3 scripts/eval/real_prep.py subset "$1" "$2" "$3" "${4:-0}"; fi
}
step "sample SGD ($sgd_train train, $sgd_dev $report_on dialogues)" bash -c "$(declare -f sample); sample '$s/train-full' '$s/train' $sgd_train && sample '$s/$dev_full' '$s/dev' $sgd_dev $dev_skip"
# Intents are judged only where the gold intent occurs in the training split:
# a filtered copy of the dev annotations (intent null elsewhere, so eval
# counts those turns as without gold).
python3 scripts/eval/real_prep.py filter-intents "$s/train/annotations" "$s/dev/annotations" "$s/dev/annotations-seen-intents" \
    | tee "$s/intent-filter.json"
step "synth (contrastive copies of the SGD train sample)" lg synth --logs "$s/train/turns" --out "$s/train-synth" --seed 1 --force --quiet > "$s/synth.json"

m="$out/models"
mkdir -p "$m"
# train --init takes a labelgen model directory: a short pretrain from MiniLM
# makes one (and warms the dialogue Transformer on swapped responses).
# --lookahead 1: each turn attends to earlier turns and the next one; with
# all turns, later goals' turns leaked into a turn's intent (BENCHMARKS.md).
step "pretrain from MiniLM ($minilm_steps steps)" lg pretrain --init "$minilm" --data "$s/train-synth" --out "$m/minilm-pre" \
    --max-steps "$minilm_steps" --batch-size 8 --learning-rate 1e-4 --max-tokens "$max_tokens" --lookahead 1 --quiet > "$m/minilm-pre.json"
if [[ "$parts" == *" sgd "* ]]; then
    common=(--logs "$s/train/turns" --labels "$s/train/annotations" --epochs "$train_epochs" --learning-rate "$learning_rate" --quiet)
    step "train A: MiniLM, frozen, with context" lg train --init "$m/minilm-pre" "${common[@]}" --freeze-encoder "${splice[@]}" "${keep_epochs[@]}" \
        --out "$m/A-minilm" > "$m/A-minilm.json"
    step "train B: MiniLM, frozen, contextless" lg train --init "$m/minilm-pre" "${common[@]}" --freeze-encoder --contextless utterance --out "$m/B-contextless" > "$m/B-contextless.json"
    step "pretrain C from scratch ($scratch_epochs epochs)" lg pretrain --data "$s/train-synth" --out "$m/scratch-pre" \
        --epochs "$scratch_epochs" --max-tokens "$max_tokens" --lookahead 1 --quiet > "$m/scratch-pre.json"
    step "train C: scratch encoder, frozen, with context" lg train --init "$m/scratch-pre" "${common[@]}" --freeze-encoder "${splice[@]}" --out "$m/C-scratch" > "$m/C-scratch.json"
    sgd_models=(minilm=A-minilm contextless=B-contextless scratch=C-scratch)
    for top in $sgd_top_layers; do
        step "train A-minilm-top$top: MiniLM, top $top layers trained ($sgd_top_epochs epochs)" lg train --init "$m/minilm-pre" \
            --logs "$s/train/turns" --labels "$s/train/annotations" --epochs "$sgd_top_epochs" --learning-rate "$learning_rate" --quiet \
            --train-top-layers "$top" --encoder-learning-rate "$encoder_learning_rate" "${splice[@]}" "${keep_epochs[@]}" "${bf16[@]}" \
            --out "$m/A-minilm-top$top" > "$m/A-minilm-top$top.json"
        sgd_models+=("minilm-top$top=A-minilm-top$top")
    done
    curve_of() { # curve_of MODEL: label SGD dev with each epoch's model, judge them together
        local model="$1" dir epoch_preds=()
        for dir in "$m/$model/epochs"/epoch-*; do
            lg label --model "$dir" --logs "$s/dev/turns" --out "$s/curve-$model/$(basename "$dir")" "${q[@]}" > /dev/null
            epoch_preds+=(--pred "$(basename "$dir")=$s/curve-$model/$(basename "$dir")")
        done
        lg eval --gold "$s/dev/annotations-seen-intents" --gold-annotators sgd --baseline-annotator none "${epoch_preds[@]}" \
            --turns "$s/dev/turns" --out "$out/eval-curve-$model" --force > "$out/eval-curve-$model.json"
    }
    if [ "$curve" = 1 ]; then
        # The curve on real held-out dialogues beside the in-distribution dev split's.
        for model in A-minilm $(for top in $sgd_top_layers; do echo "A-minilm-top$top"; done); do
            step "curve: every epoch of $model on SGD dev" curve_of "$model"
        done
    fi
    sgd_preds=()
    for entry in "${sgd_models[@]}"; do
        model="${entry#*=}"
        step "label SGD dev with $model" lg label --model "$m/$model" --logs "$s/dev/turns" --out "$s/labels-$model" "${q[@]}" > "$s/label-$model.json"
        sgd_preds+=(--pred "${entry%%=*}=$s/labels-$model")
    done
    step "peer: TF-IDF + logistic regression" python3 scripts/eval/peer_intent.py "$s/train" "$s/dev/turns" "$s/labels-peer"
    sgd_preds+=(--pred "peer=$s/labels-peer")
    step "eval SGD dev" lg eval --gold "$s/dev/annotations-seen-intents" --gold-annotators sgd --baseline-annotator none \
        "${sgd_preds[@]}" --turns "$s/dev/turns" --out "$out/eval-sgd" --force > "$out/eval-sgd.json"
    # The same, apart for dev dialogues whose services all occur in the training
    # sample and for those with a service training never saw (SGD's zero-shot
    # services: their intents and slots have names the model has not learnt).
    python3 scripts/eval/real_prep.py split-services "$data/sgd" "$s/train/annotations" "$s/dev/annotations-seen-intents" \
        "$s/dev/annotations-seen-services" "$s/dev/annotations-unseen-services" "$dev_split" | tee "$s/service-split.json"
    for part in seen unseen; do
        step "eval SGD dev, $part services" lg eval --gold "$s/dev/annotations-$part-services" --gold-annotators sgd \
            --baseline-annotator none "${sgd_preds[@]}" --turns "$s/dev/turns" \
            --out "$out/eval-sgd-$part-services" --force > "$out/eval-sgd-$part-services.json"
    done
fi

# ---------------------------------------------------------------- USS
if [[ "$parts" == *" uss "* ]]; then
    u="$out/uss"
    step "import uss" lg import uss "$data/uss/SGD.txt" --out "$u/all" --force --quiet > "$u.import.json"
    # Dialogues split by a stable hash. The USS models learn from every rater
    # of the train part (a1..aN) under each `train --annotator-policy` of
    # USS_POLICIES: the per-field majority, the raters' distribution (soft),
    # one row per rater weighted by its agreement (all).
    if [ "$uss_dialogues" != 0 ]; then python3 scripts/eval/real_prep.py subset "$u/all" "$u/sample" "$uss_dialogues"; else rm -rf "$u/sample"; cp -r "$u/all" "$u/sample"; fi
    python3 scripts/eval/real_prep.py split-uss "$u/sample" "$u" "$uss_test" | tee "$u/split.json"
    raters="$(python3 scripts/eval/real_prep.py annotators "$u/train/annotations")"
    uss_preds=()
    for top in $uss_top_layers; do
        for policy in $uss_policies; do
            name="$policy" encoder=(--freeze-encoder) how="frozen"
            if [ "$top" != 0 ]; then
                name="$policy-top$top" how="top $top layers trained"
                encoder=(--train-top-layers "$top" --encoder-learning-rate "$encoder_learning_rate" "${bf16[@]}")
            fi
            step "train U-$name: MiniLM, $how, on USS ratings of $raters ($policy)" lg train --init "$m/minilm-pre" --logs "$u/train/turns" \
                --labels "$u/train/annotations" --annotators "$raters" --annotator-policy "$policy" --epochs "$train_epochs" \
                --learning-rate "$learning_rate" "${encoder[@]}" "${uss_balance[@]}" --quiet --out "$m/U-$name" > "$m/U-$name.json"
            step "label USS test with U-$name" lg label --model "$m/U-$name" --logs "$u/test/turns" --out "$u/labels-$name" "${q[@]}" \
                > "$u/label-$name.json"
            uss_preds+=(--pred "$name=$u/labels-$name")
        done
    done
    for policy in majority unanimous; do
        step "eval USS test ($policy gold of a1,a2,a3)" lg eval --gold "$u/test/annotations" --gold-annotators a1,a2,a3 \
            --gold-policy "$policy" --baseline-annotator none "${uss_preds[@]}" --turns "$u/test/turns" \
            --out "$out/eval-uss-$policy" --force > "$out/eval-uss-$policy.json"
    done
fi

echo "== total: $((SECONDS - t_start)) s"
printf 'total\t%s\n' "$((SECONDS - t_start))" >> "$timings"
python3 scripts/eval/real_summary.py "$out" "$data" | tee "$out/summary.md"
