#!/usr/bin/env python3
"""The satisfaction protocol of the USS paper (Sun et al., SIGIR 2021;
github.com/sunnweiwei/user-satisfaction-simulation, baselines/train_sat.py)
for scripts/eval/uss_paper.sh (pyarrow only).

The paper's items: every USER line of the file in order, the OVERALL line
included; label = the most common of the item's ratings (a tie goes to the
lowest rating, as numpy's argmax over the counts does), dissatisfied when
it is 2 or less; input = the dialogue before the USER line, i.e. up to the
system turn being judged. 10 folds over the items in file order: fold f
tests items [f * n // 10, (f + 1) * n // 10) with n // 10 computed first
(the last n % 10 items are never tested, as in the paper).

How labelgen answers an item (the turns table pairs each USER line with the
SYSTEM line(s) after it, turn k = the k-th USER line of the dialogue):
  - USER line k >= 1 judges turn k - 1's response: dissatisfied when
    labelgen's failure_point of turn k - 1 is not `correct`; score
    P(not correct).
  - OVERALL judges the whole dialogue: dissatisfied when labelgen's
    goal_success (the dialogue's last turn) is false; score P(failed).
  - USER line 0 judges no response yet: always satisfied, score 0 (the
    paper's models see an empty input there too).

Training for a test fold uses the dialogues with no item in the fold (a
dialogue cut by a fold boundary is left out of training: the paper's split
by items lets its first part train; ours does not), so no test rating
trains the model.

  prepare SGD_TXT IMPORTED OUT DIALOGUES FOLDS TEST_FOLDS
      items of the first DIALOGUES dialogues (0: all) as OUT/items.json and,
      for each of the first TEST_FOLDS folds, OUT/fold-F/{train,test}/
      {turns,annotations} from IMPORTED (`labelgen import uss` of the file)
  score OUT NAME [RESAMPLES]
      the items of the tested folds against OUT/fold-F/labels-NAME: F1 of the
      dissatisfied class (and the paper's formula 2PR / max(P + R, 1)),
      precision, recall, ROC AUC, with 95% bootstrap intervals over
      dialogues; JSON to stdout
  table OUT NAME...
      a Markdown table of OUT/score-NAME.json beside the published figures
"""
import bisect
import json
import os
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DISSATISFIED_MAX_RATING = 2
# Table 4 of the paper, SGD, satisfaction F1 (their code keeps each metric's
# best epoch over the test folds and computes F1 as 2PR / max(P + R, 1)).
PUBLISHED = {"HiGRU": 0.086, "BERT": 0.048}


def paper_items(path, dialogues):
    """(dialogue index, kind, USER line index k, dissatisfied) per USER line."""
    sessions, current = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.strip() == "":
            if current:
                sessions.append(current)
            current = []
        else:
            current.append(line)
    if current:
        sessions.append(current)
    if dialogues:
        sessions = sessions[:dialogues]
    items = []
    for d, session in enumerate(sessions):
        k = 0
        for number, line in enumerate(session):
            fields = line.split("\t")
            if fields[0].strip() != "USER":
                continue
            if len(fields) < 4:
                sys.exit(f"{path}: dialogue {d}, line {number + 1} of the session: a USER line needs 4 fields")
            ratings = [int(r) for r in fields[3].split(",")]
            counts = [ratings.count(r) for r in range(1, 6)]
            most_common = counts.index(max(counts)) + 1  # the lowest rating of a tie
            dissatisfied = most_common <= DISSATISFIED_MAX_RATING
            if fields[1].strip() == "OVERALL":
                items.append({"dialogue": d, "kind": "overall", "k": k, "y": dissatisfied})
            else:
                items.append({"dialogue": d, "kind": "first" if k == 0 else "turn", "k": k,
                              "y": dissatisfied, "text": fields[1].strip()})
                k += 1
    return sessions, items


def fold_of(index, n, folds):
    size = n // folds
    if size == 0:
        sys.exit(f"{n} items cannot make {folds} folds: use more dialogues")
    fold = index // size
    return fold if fold < folds else None


def write(table, path):
    os.makedirs(path, exist_ok=True)
    pq.write_table(table, f"{path}/part-0.parquet", compression="zstd")


def keep(table, ids):
    return table.filter(pc.is_in(table["dialogue_id"], value_set=pa.array(sorted(ids), pa.string())))


def check_turns(turns, items, dialogue_id):
    """The imported turns must be the USER lines, in order: else the items
    would be answered from the wrong turns."""
    texts = {}
    for row in turns.select(["dialogue_id", "turn_index", "user_utterance"]).to_pylist():
        texts[(row["dialogue_id"], row["turn_index"])] = row["user_utterance"].strip()
    for item in items:
        if item["kind"] == "overall":
            continue
        key = (dialogue_id(item["dialogue"]), item["k"])
        if texts.get(key) != item["text"]:
            sys.exit(f"dialogue {key[0]}, turn_index {key[1]}: the imported turn ({texts.get(key)!r}) "
                     f"is not USER line {item['k']} of the session ({item['text']!r})")


def prepare(sgd_txt, imported, out, dialogues, folds, test_folds):
    dialogues, folds, test_folds = int(dialogues), int(folds), int(test_folds)
    stem = Path(sgd_txt).stem
    dialogue_id = lambda d: f"uss-{stem}-{d:05d}"
    sessions, items = paper_items(sgd_txt, dialogues)
    turns, ann = pq.read_table(f"{imported}/turns"), pq.read_table(f"{imported}/annotations")
    ids = {dialogue_id(d) for d in range(len(sessions))}
    turns, ann = keep(turns, ids), keep(ann, ids)
    check_turns(turns, items, dialogue_id)
    for i, item in enumerate(items):
        item["fold"] = fold_of(i, len(items), folds)
        item["dialogue_id"] = dialogue_id(item.pop("dialogue"))
        item.pop("text", None)
    os.makedirs(out, exist_ok=True)
    json.dump({"folds": folds, "test_folds": test_folds, "dialogues": len(sessions), "items": items},
              open(f"{out}/items.json", "w"))
    summary = {"dialogues": len(sessions), "items": len(items),
               "dissatisfied": sum(i["y"] for i in items), "folds": []}
    for f in range(test_folds):
        test = {i["dialogue_id"] for i in items if i["fold"] == f}
        train = ids - test
        for part, chosen in [("train", train), ("test", test)]:
            write(keep(turns, chosen), f"{out}/fold-{f}/{part}/turns")
            write(keep(ann, chosen), f"{out}/fold-{f}/{part}/annotations")
        summary["folds"].append({"fold": f, "test_items": sum(i["fold"] == f for i in items),
                                 "test_dialogues": len(test), "train_dialogues": len(train)})
    print(json.dumps(summary))


def predictions(out, name, fold):
    """(dissatisfied?, score) per item key of a fold's test labels."""
    answers = {}
    for row in pq.read_table(f"{out}/fold-{fold}/labels-{name}").to_pylist():
        d, t = row["dialogue_id"], row["turn_index"]
        f, p = row["failure_point"], row["failure_point_prob"]
        if f is not None and p is not None:
            answers[(d, "turn", t + 1)] = (f != "correct", p if f != "correct" else 1 - p)
        s, q = row["goal_success"], row["goal_success_prob"]
        if s is not None and q is not None:
            # The last turn's goal is the dialogue's (USS: one goal per dialogue).
            answers[(d, "overall")] = (not s, 1 - q if s else q)
    return answers


def auc(pairs):
    pos = sorted(x for x, y in pairs if y)
    neg = sorted(x for x, y in pairs if not y)
    if not pos or not neg:
        return None
    wins = sum(bisect.bisect_left(neg, x) + 0.5 * (bisect.bisect_right(neg, x) - bisect.bisect_left(neg, x))
               for x in pos)
    return wins / (len(pos) * len(neg))


def scores(pairs):
    """pairs: (predicted, score, gold) -> metrics of the dissatisfied class."""
    tp = sum(p and y for p, _, y in pairs)
    predicted = sum(p for p, _, _ in pairs)
    actual = sum(y for _, _, y in pairs)
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    return {
        "f1": 2 * tp / (predicted + actual) if predicted + actual else 0.0,
        "paper_f1": 2 * precision * recall / max(precision + recall, 1.0),
        "precision": precision,
        "recall": recall,
        "auc": auc([(s, y) for _, s, y in pairs]),
    }


def score(out, name, resamples=1000):
    meta = json.load(open(f"{out}/items.json"))
    by_dialogue, kinds = {}, {}
    for f in range(meta["test_folds"]):
        answers = predictions(out, name, f)
        for item in (i for i in meta["items"] if i["fold"] == f):
            d = item["dialogue_id"]
            if item["kind"] == "first":
                answer = (False, 0.0)
            elif item["kind"] == "overall":
                answer = answers.get((d, "overall"))
            else:
                answer = answers.get((d, "turn", item["k"]))
            if answer is None:
                sys.exit(f"{out}/fold-{f}/labels-{name}: no label for dialogue {d}, {item['kind']} item {item['k']}")
            by_dialogue.setdefault(d, []).append((answer[0], answer[1], item["y"]))
            kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    ids = sorted(by_dialogue)
    everything = [p for d in ids for p in by_dialogue[d]]
    point = scores(everything)
    rng = random.Random(16)
    samples = [scores([p for d in (rng.choice(ids) for _ in ids) for p in by_dialogue[d]])
               for _ in range(int(resamples))]
    result = {"name": name, "items": len(everything), "dialogues": len(ids),
              "dissatisfied": sum(y for _, _, y in everything), "kinds": kinds,
              "predicted_dissatisfied": sum(p for p, _, _ in everything)}
    for metric, value in point.items():
        values = sorted(s[metric] for s in samples if s[metric] is not None)
        interval = [values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]] if values else None
        result[metric] = {"value": value, "ci95": interval}
    # The constant answer "dissatisfied" for every item, for scale.
    share = result["dissatisfied"] / max(result["items"], 1)
    result["all_dissatisfied_f1"] = 2 * share / (1 + share)
    print(json.dumps(result))


def fmt(m):
    if m is None or m["value"] is None:
        return "n/a"
    if not m.get("ci95"):
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"


def table(out, *names):
    meta = json.load(open(f"{out}/items.json"))
    rows = [json.load(open(f"{out}/score-{n}.json")) for n in names]
    first = rows[0]
    print(f"{meta['dialogues']} dialogues, {len(meta['items'])} items ({meta['folds']} folds in file order); "
          f"tested folds 0-{meta['test_folds'] - 1}: {first['items']} items of {first['dialogues']} dialogues, "
          f"{first['dissatisfied']} dissatisfied.\n")
    print("| system | input | dissatisfied F1 | F1, paper's formula | precision | recall | AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| labelgen ({r['name']}) | {describe(r['name'])} | {fmt(r['f1'])} | {fmt(r['paper_f1'])} "
              f"| {fmt(r['precision'])} | {fmt(r['recall'])} | {fmt(r['auc'])} |")
    print(f"| every item dissatisfied (constant) | none | {first['all_dissatisfied_f1']:.3f} | "
          f"{first['all_dissatisfied_f1']:.3f} | | 1 | 0.5 |")
    for system, f1 in PUBLISHED.items():
        print(f"| {system} (published, best epoch per metric on the test folds) | dialogue up to the judged turn "
              f"| | {f1:.3f} | | | |")


def describe(name):
    if name.startswith("lookahead0"):
        return "dialogue up to the judged system turn (`--lookahead 0`), as the paper's models"
    if name.startswith("hindsight"):
        return "the whole dialogue (default lookahead: all turns; the user's reaction included)"
    return name


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"prepare": prepare, "score": score, "table": table}[command](*args)
