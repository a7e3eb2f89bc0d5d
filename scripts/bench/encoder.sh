#!/usr/bin/env bash
# labelgen's turn encoder against Hugging Face transformers' RobertaModel on
# PyTorch CPU, side by side in one run on the same threads and inputs:
# f32 matmul GFLOP/s (n = 1024), inference turns/s on a mix of turn lengths
# and a training step with AdamW (tokens/s), for labelgen's default encoder,
# 4 x 256 and MiniLM's 6 x 384; prints the labelgen/PyTorch ratios.
#
# Usage: scripts/bench/encoder.sh [--quick] [THREADS]
# PRECISION=int16 runs labelgen's inference in int16 dense layers (`label
# --precision int16`); PyTorch and both training steps stay f32.
# BF16=1 runs labelgen's training step with its products in bf16 (`train
# --bf16`, AVX-512 BF16) and PyTorch's under torch.autocast(bfloat16);
# both inferences stay as PRECISION says (PyTorch's f32).
#
# PyTorch and transformers are pip-installed into a venv under
# ~/.cache/labelgen-bench (about 6 GB: PyPI's torch wheel brings its CUDA
# libraries along); never run this in CI. LABELGEN_BENCH_VENV overrides it.
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=()
if [ "${1:-}" = --quick ]; then quick=(--quick); shift; fi
threads="${1:-$(nproc)}"
venv="${LABELGEN_BENCH_VENV:-$HOME/.cache/labelgen-bench/venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, transformers' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
cargo build --release --example bench_encoder --quiet
echo "== $(date -u +%FT%TZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $threads threads"
bf16=()
if [ "${BF16:-0}" = 1 ]; then bf16=(--bf16); fi
"${CARGO_TARGET_DIR:-target}/release/examples/bench_encoder" "${quick[@]}" "${bf16[@]}" --precision "${PRECISION:-f32}" \
    --json "$out/labelgen.json"
"$venv/bin/python" scripts/bench/peer_torch.py --threads "$threads" "${quick[@]}" "${bf16[@]}" --json "$out/torch.json" > /dev/null
"$venv/bin/python" - "$out/labelgen.json" "$out/torch.json" <<'EOF'
import json, sys
ours, peer = (json.load(open(p)) for p in sys.argv[1:3])
print(f"\n{peer['peer']}, {peer['threads']} threads: f32 matmul n=1024 {peer['matmul_gflops']:.1f} GFLOP/s "
      f"(labelgen/PyTorch {ours['matmul_gflops'] / peer['matmul_gflops']:.2f}x)")
print(f"labelgen's inference in {ours.get('inference_precision', 'f32')}, PyTorch's in f32; "
      f"training products: labelgen {ours.get('training_products', 'f32')}, "
      f"PyTorch {peer.get('training_products', 'f32')}")
print(f"{'config':<14} {'torch turns/s':>14} {'ratio':>7} {'torch tokens/s':>15} {'ratio':>7}")
for name, p in peer["configs"].items():
    o = ours["configs"][name]
    print(f"{name:<14} {p['inference_turns_per_s']:>14.1f} "
          f"{o['inference_turns_per_s'] / p['inference_turns_per_s']:>6.2f}x "
          f"{p['train_tokens_per_s']:>15.1f} {o['train_tokens_per_s'] / p['train_tokens_per_s']:>6.2f}x")
EOF
