#!/usr/bin/env python3
"""Data preparation for scripts/eval-real.sh (pyarrow only; types are kept as
labelgen wrote them).

  subset IN OUT N [SKIP]     the N dialogues of IN/{turns,annotations} with the
                             lowest md5(dialogue_id) (a stable sample), to OUT;
                             SKIP passes over the first SKIP of that order (a
                             validation part disjoint from `subset IN X SKIP`)
  filter-intents TRAIN_ANN DEV_ANN OUT_ANN
                             DEV_ANN with intent set to null where the gold
                             intent never occurs in TRAIN_ANN (eval then counts
                             those turns as without gold); counts as JSON
  split-services SGD_DIR TRAIN_ANN DEV_ANN OUT_SEEN OUT_UNSEEN [DEV_SPLIT]
                             DEV_ANN (dialogues of SGD's DEV_SPLIT, default dev)
                             split by dialogue: OUT_SEEN holds the
                             dialogues whose services (from SGD_DIR/{train,dev}
                             JSON; the imported tables carry none) all occur in
                             TRAIN_ANN's dialogues, OUT_UNSEEN the others
                             (SGD's zero-shot services); counts as JSON
  split-uss IN OUT TEST_PERCENT
                             USS dialogues split by md5(dialogue_id) % 100 <
                             TEST_PERCENT into OUT/test and OUT/train (the
                             raters' rows as imported: `train
                             --annotator-policy` combines them)
  annotators ANN             the annotator ids of ANN, comma-separated, a1 < a2
                             < ... < a10 (for `train --annotators`)
"""
import hashlib
import json
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def h(dialogue_id):
    return int(hashlib.md5(dialogue_id.encode()).hexdigest(), 16)


def read(path):
    return pq.read_table(path)


def write(table, path):
    import os
    os.makedirs(path, exist_ok=True)
    pq.write_table(table, f"{path}/part-0.parquet", compression="zstd")


def keep(table, ids):
    return table.filter(pc.is_in(table["dialogue_id"], value_set=pa.array(sorted(ids))))


def subset(src, out, n, skip=0):
    turns, ann = read(f"{src}/turns"), read(f"{src}/annotations")
    ordered = sorted(set(turns["dialogue_id"].to_pylist()), key=h)
    ids = ordered[int(skip): int(skip) + int(n)]
    if len(ids) < int(n):
        sys.exit(f"subset: {src} has {len(ordered)} dialogues; {n} after the first {skip} asked for")
    write(keep(turns, ids), f"{out}/turns")
    write(keep(ann, ids), f"{out}/annotations")
    print(json.dumps({"subset": out, "dialogues": len(ids), "turns": keep(turns, ids).num_rows}))


def filter_intents(train_ann, dev_ann, out):
    known = set(x for x in read(train_ann)["intent"].to_pylist() if x is not None)
    dev = read(dev_ann)
    intents = dev["intent"].to_pylist()
    unseen = Counter(i for i in intents if i is not None and i not in known)
    filtered = [i if i in known else None for i in intents]
    column = dev.schema.get_field_index("intent")
    dev = dev.set_column(column, dev.schema.field(column), pa.array(filtered, pa.string()))
    write(dev, out)
    print(json.dumps({
        "dev_items_with_intent": sum(i is not None for i in intents),
        "excluded_unseen_intent": sum(unseen.values()),
        "unseen_intents": dict(unseen.most_common()),
        "train_intents": len(known),
    }))


def sgd_services(split_dir):
    import glob
    services = {}
    for path in sorted(glob.glob(f"{split_dir}/dialogues_*.json")):
        for dialogue in json.load(open(path)):
            services[dialogue["dialogue_id"]] = dialogue["services"]
    return services


def split_services(sgd_dir, train_ann, dev_ann, out_seen, out_unseen, dev_split="dev"):
    train_services = sgd_services(f"{sgd_dir}/train")
    dev_services = sgd_services(f"{sgd_dir}/{dev_split}")
    known = {s for d in set(read(train_ann)["dialogue_id"].to_pylist()) for s in train_services[d]}
    dev = read(dev_ann)
    ids = set(dev["dialogue_id"].to_pylist())
    seen = {d for d in ids if all(s in known for s in dev_services[d])}
    write(keep(dev, seen), out_seen)
    write(keep(dev, ids - seen), out_unseen)
    unseen_services = sorted({s for d in ids - seen for s in dev_services[d] if s not in known})
    print(json.dumps({"dev_dialogues": len(ids), "seen_service_dialogues": len(seen),
                      "unseen_service_dialogues": len(ids - seen), "unseen_services": unseen_services}))


def split_uss(src, out, percent):
    turns, ann = read(f"{src}/turns"), read(f"{src}/annotations")
    ids = set(turns["dialogue_id"].to_pylist())
    test = {d for d in ids if h(d) % 100 < int(percent)}
    train = ids - test
    write(keep(turns, test), f"{out}/test/turns")
    write(keep(ann, test), f"{out}/test/annotations")
    write(keep(turns, train), f"{out}/train/turns")
    write(keep(ann, train), f"{out}/train/annotations")
    print(json.dumps({"train_dialogues": len(train), "test_dialogues": len(test),
                      "test_turns": keep(turns, test).num_rows}))


def annotators(ann):
    import re
    ids = set(read(ann)["annotator_id"].to_pylist())
    natural = lambda a: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", a)]
    print(",".join(sorted(ids, key=natural)))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"subset": subset, "filter-intents": filter_intents, "split-services": split_services,
     "split-uss": split_uss, "annotators": annotators}[command](*args)
