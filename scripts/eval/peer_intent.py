#!/usr/bin/env python3
"""Peer baseline for intent: TF-IDF (word 1-2-grams and char 2-5-grams) +
logistic regression, trained on the train split's gold intents, given the
context labelgen's model sees: the current user utterance, the previous
system response and the previous user turn (each vectorised apart).
Writes its dev predictions as a labels table (schemas/labels.json; labels
other than intent are null) for `labelgen eval --pred peer=OUT`.

Usage: peer_intent.py TRAIN_DIR DEV_TURNS OUT_LABELS
(TRAIN_DIR holds turns/ and annotations/ with one annotator.)
"""
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def with_context(turns):
    turns = turns.sort_values(["dialogue_id", "turn_index"]).reset_index(drop=True)
    previous = turns.groupby("dialogue_id").shift(1)
    turns["prev_system"] = previous["system_response"].fillna("")
    turns["prev_user"] = previous["user_utterance"].fillna("")
    return turns


def main(train_dir, dev_turns, out):
    started = time.time()
    train = with_context(pd.read_parquet(f"{train_dir}/turns"))
    ann = pd.read_parquet(f"{train_dir}/annotations", columns=["dialogue_id", "turn_index", "intent"])
    train = train.merge(ann, on=["dialogue_id", "turn_index"]).dropna(subset=["intent"])
    dev = with_context(pd.read_parquet(dev_turns))
    fields = ["user_utterance", "prev_system", "prev_user"]
    vectorisers = {f: TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2) for f in fields}
    vectorisers["chars"] = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    def features(frame, fit):
        parts = []
        for name, v in vectorisers.items():
            text = frame["user_utterance" if name == "chars" else name]
            parts.append(v.fit_transform(text) if fit else v.transform(text))
        return hstack(parts).tocsr()
    x = features(train, True)
    model = LogisticRegression(C=10.0, max_iter=2000)
    model.fit(x, train["intent"])
    p = model.predict_proba(features(dev, False))
    best = p.argmax(axis=1)
    n = len(dev)
    null_f = pa.nulls(n, pa.float32())
    span = pa.struct([("slot", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                      ("text", pa.string()), ("probability", pa.float32())])
    table = pa.table({
        "dialogue_id": pa.array(dev["dialogue_id"], pa.string()),
        "turn_index": pa.array(dev["turn_index"].astype(np.int32), pa.int32()),
        "goal_id": pa.nulls(n, pa.int32()),
        "goal_boundary_prob": null_f,
        "goal_success": pa.nulls(n, pa.bool_()),
        "goal_success_prob": null_f,
        "intent": pa.array(model.classes_[best], pa.string()),
        "intent_prob": pa.array(p.max(axis=1).astype(np.float32), pa.float32()),
        "slots": pa.nulls(n, pa.list_(pa.field("item", span, nullable=False))),
        "slots_prob": null_f,
        "failure_point": pa.nulls(n, pa.string()),
        "failure_point_prob": null_f,
        "model_id": pa.array(["peer-tfidf-logreg"] * n, pa.string()),
        "run_id": pa.array(["peer"] * n, pa.string()),
    })
    os.makedirs(out, exist_ok=True)
    pq.write_table(table, f"{out}/part-0.parquet", compression="zstd")
    print(json.dumps({"peer": "tfidf+logreg", "train_turns": len(train), "dev_turns": n,
                      "classes": len(model.classes_), "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
