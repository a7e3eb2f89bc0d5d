#!/usr/bin/env python3
"""Writes the hand-made hostile model.safetensors files of
tests/fuzz/corpus/model_weights (issue 17), each from the kept seed
ok-labelgen.safetensors with one lie in it, and the seed
ok-roberta-position-ids.safetensors. Run from the repository root:
    python3 tests/fuzz/hostile_weights.py
A safetensors file is an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets: [start, end]}} and the data."""

import json
import struct
from pathlib import Path

CORPUS = Path("tests/fuzz/corpus/model_weights")
WORDS = "roberta.embeddings.word_embeddings.weight"  # [360, 8], F32


def parse(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def pack(header, body, length=None):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def edit(header, body, change):
    """A copy of the header with `change` applied to it."""
    header = json.loads(json.dumps(header))
    change(header)
    return pack(header, body)


def ordered(header):
    """Tensor names by data offset."""
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def without_words(header, body):
    """The word embeddings removed, the tensors after them moved down."""
    start, end = header[WORDS]["data_offsets"]
    header = {k: dict(v) for k, v in header.items() if k != WORDS}
    for name in ordered(header):
        s, e = header[name]["data_offsets"]
        if s >= end:
            header[name]["data_offsets"] = [s - (end - start), e - (end - start)]
    return pack(header, body[:start] + body[end:])


def with_words_as(header, body, dtype, size):
    """The word embeddings re-typed to `dtype` of `size` bytes each (the
    data resized to fit, so only the type is wrong)."""
    start, end = header[WORDS]["data_offsets"]
    rows, columns = header[WORDS]["shape"]
    new = rows * columns * size
    header = json.loads(json.dumps(header))
    header[WORDS]["dtype"] = dtype
    header[WORDS]["data_offsets"] = [start, start + new]
    for name in ordered(header):
        s, e = header[name]["data_offsets"]
        if s >= end:
            header[name]["data_offsets"] = [s + new - (end - start), e + new - (end - start)]
    return pack(header, body[:start] + bytes(new) + body[end:])


def main():
    header, body = parse((CORPUS / "ok-labelgen.safetensors").read_bytes())
    first, second = ordered(header)[:2]
    whole = pack(header, body)

    def set_words(key, value):
        return lambda h: h[WORDS].__setitem__(key, value)

    def overlap(h):
        # The second tensor starts inside the first.
        s, e = h[second]["data_offsets"]
        h[second]["data_offsets"] = [s - 4, e - 4]

    def shift_all(h):
        for name in ordered(h):
            s, e = h[name]["data_offsets"]
            h[name]["data_offsets"] = [s + 4, e + 4]

    def with_word(value):
        # The first word embedding's first value replaced.
        start = header[WORDS]["data_offsets"][0]
        return pack(header, body[:start] + struct.pack("<f", value) + body[start + 4 :])

    hostile = {
        "empty": b"",
        "seven-bytes": whole[:7],
        "header-length-2e60": pack(header, body, length=1 << 60),
        "header-length-past-the-end": pack(header, body, length=len(whole)),
        "header-length-99mb": pack(header, body, length=99 << 20),
        "header-not-json": struct.pack("<Q", 16) + b"{not json at all" + body,
        "header-not-utf8": struct.pack("<Q", 4) + b"\xff\xfe{}" + body,
        "header-a-list": pack([1, 2, 3], body),
        "offsets-past-the-end": edit(header, body, set_words("data_offsets", [len(body) - 16, len(body) + 360 * 8 * 4 - 16])),
        "offsets-overlapping": edit(header, body, overlap),
        "offsets-reversed": edit(header, body, lambda h: h[first].__setitem__("data_offsets", h[first]["data_offsets"][::-1])),
        # Every tensor 4 bytes further on, the file 4 bytes longer.
        "offsets-with-a-gap": edit(header, b"\0" * 4 + body, shift_all),
        "trailing-bytes": pack(header, body + b"\0" * 64),
        "shape-overflows": edit(header, body, set_words("shape", [1 << 32, 1 << 32, 1 << 32])),
        "shape-disagrees-with-range": edit(header, body, set_words("shape", [360, 9])),
        "shape-negative": edit(header, body, set_words("shape", [-360, 8])),
        "dtype-unknown": edit(header, body, set_words("dtype", "Q7")),
        "dtype-i64": with_words_as(header, body, "I64", 8),
        "dtype-bool": with_words_as(header, body, "BOOL", 1),
        "dtype-u8": with_words_as(header, body, "U8", 1),
        "dtype-f8": with_words_as(header, body, "F8_E4M3", 1),
        "dtype-f8-e8m0": with_words_as(header, body, "F8_E8M0", 1),
        "weight-nan": with_word(float("nan")),
        "weight-infinite": with_word(float("-inf")),
        "missing-word-embeddings": without_words(header, body),
        "word-embeddings-transposed": edit(header, body, set_words("shape", [8, 360])),
    }
    for name, data in hostile.items():
        (CORPUS / f"hostile-{name}.safetensors").write_bytes(data)
    print(f"{len(hostile)} hostile files in {CORPUS}")
    # Not hostile: a Hugging Face checkpoint with an integer buffer beside
    # its weights, as older transformers saved them (never read as a weight).
    header, body = parse((CORPUS / "ok-roberta.safetensors").read_bytes())
    header["roberta.embeddings.position_ids"] = {
        "dtype": "I64",
        "shape": [1, 66],
        "data_offsets": [len(body), len(body) + 66 * 8],
    }
    ids = b"".join(struct.pack("<q", i) for i in range(66))
    (CORPUS / "ok-roberta-position-ids.safetensors").write_bytes(pack(header, body + ids))


if __name__ == "__main__":
    main()
