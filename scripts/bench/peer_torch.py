#!/usr/bin/env python3
"""The PyTorch peer of examples/bench_encoder.rs: the same encoder configs,
run by Hugging Face transformers' RobertaModel on PyTorch CPU, on the same
inputs and thread count, timed the same way. scripts/bench/encoder.sh runs
both and prints the ratios; it installs torch and transformers into a venv
under ~/.cache (never in CI).

Usage: peer_torch.py --threads N [--quick] [--bf16] [--json FILE] [--shape NAME]
                     [--train-only | --infer-only]

--shape: one config only (default-2x128, 4x256 or minilm-6x384); --train-only /
--infer-only: one side only (the other NaN), as bench_encoder's flags of the
same names, for quick rounds alternated with it.

--bf16: the training step's forward under torch.autocast("cpu",
dtype=torch.bfloat16), PyTorch's mixed precision (its matmuls in bf16 on
oneDNN), the peer of labelgen's `train --bf16`; inference stays f32.

The inputs are the bench's, by the same formulas (keep both in step):
- inference: TURNS turns whose lengths cycle through LENGTHS, token ids
  (7 + 31 i + 17 j) mod (vocab - 10) + 5, in batches of 64 in input order,
  each padded to its longest turn (what a tokenizer's padding=True gives);
- training: a batch of 64 x 32 real tokens, loss = mean(hidden^2), backward,
  AdamW (lr 1e-4, weight decay 0.01) step.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import RobertaConfig, RobertaModel

LENGTHS = [12, 18, 24, 30, 36, 48, 20, 28, 16, 40, 22, 34, 26, 44, 14, 32]
TURNS = 512
BATCH = 64
TRAIN_SHAPE = (64, 32)

CONFIGS = {
    # name: (layers, hidden, heads, intermediate, vocab)
    "default-2x128": (2, 128, 4, 512, 4000),
    "4x256": (4, 256, 4, 1024, 4000),
    "minilm-6x384": (6, 384, 12, 1536, 30522),
}


def token_ids(turn, length, vocab):
    return [(7 + 31 * turn + 17 * j) % (vocab - 10) + 5 for j in range(length)]


def timed(run, budget):
    """Median seconds of one call of `run`, after a warm-up call, over at
    least 3 calls and `budget` seconds."""
    run()
    times = []
    started = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < budget:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(budget):
    n = 1024
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    seconds = timed(lambda: torch.mm(a, b), budget)
    return 2 * n**3 / seconds / 1e9


def model_for(name):
    layers, hidden, heads, intermediate, vocab = CONFIGS[name]
    config = RobertaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=64,
        type_vocab_size=1,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return RobertaModel(config, add_pooling_layer=False), vocab


def inference_batches(vocab):
    batches = []
    for start in range(0, TURNS, BATCH):
        turns = range(start, min(start + BATCH, TURNS))
        lengths = [LENGTHS[t % len(LENGTHS)] for t in turns]
        width = max(lengths)
        ids = torch.ones(len(lengths), width, dtype=torch.long)
        mask = torch.zeros(len(lengths), width, dtype=torch.long)
        for row, (t, n) in enumerate(zip(turns, lengths)):
            ids[row, :n] = torch.tensor(token_ids(t, n, vocab))
            mask[row, :n] = 1
        batches.append((ids, mask))
    return batches


def bench_config(name, budget, bf16, train_only, infer_only):
    model, vocab = model_for(name)
    model.eval()
    batches = inference_batches(vocab)

    def infer():
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)

    infer_seconds = float("nan") if train_only else timed(infer, budget)
    model.train()
    rows, width = TRAIN_SHAPE
    ids = torch.tensor([token_ids(t, width, vocab) for t in range(rows)])
    mask = torch.ones(rows, width, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden.float().pow(2).mean().backward()
        optimizer.step()

    step_seconds = float("nan") if infer_only else timed(step, budget)
    return {
        "inference_turns_per_s": TURNS / infer_seconds,
        "train_tokens_per_s": rows * width / step_seconds,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--shape", choices=list(CONFIGS))
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument("--train-only", action="store_true")
    sides.add_argument("--infer-only", action="store_true")
    args = parser.parse_args()
    names = [args.shape] if args.shape else list(CONFIGS)
    torch.set_num_threads(args.threads)
    budget = 1.0 if args.quick else 4.0
    result = {
        "peer": f"torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "matmul_gflops": matmul_gflops(budget),
        "training_products": "bf16" if args.bf16 else "f32",
        "configs": {
            name: bench_config(name, budget, args.bf16, args.train_only, args.infer_only) for name in names
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
