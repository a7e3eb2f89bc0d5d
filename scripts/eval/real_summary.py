#!/usr/bin/env python3
"""Markdown tables of scripts/eval-real.sh's results: OUT/eval-sgd and
OUT/eval-uss-{majority,unanimous} report.json, OUT/timings.tsv, and the USS
ranking check (ROC AUC of the model's scores against the gold, from OUT/uss),
and where model A's SGD intents and slots go wrong (with DATA, the folder of
sgd/{train,dev}/schema.json: which confusions are another service's name).
Usage: real_summary.py OUT [DATA]"""
import bisect
import glob
import json
import os
import random
import sys
from collections import defaultdict

import pyarrow.parquet as pq


def fmt(m):
    if m is None or m.get("value") is None:
        return "n/a"
    lo, hi = (m.get("ci95") or [None, None])
    if lo is None or hi is None or lo != lo:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def metric(system, task, name):
    t = system["tasks"].get(task)
    return t and t["metrics"].get(name)


def per_class_f1(system, task, cls):
    t = system["tasks"].get(task) or {}
    c = (t.get("per_class") or {}).get(cls)
    return "n/a" if c is None else f"{c['f1']:.3f}"


def sgd_tables(out):
    """SGD dev: every system, then by whether the services occur in training."""
    sgd = json.load(open(f"{out}/eval-sgd/report.json"))
    items = sgd["gold"]["items"]
    print("### SGD dev (gold: the corpus's own annotation)\n")
    print(f"Gold items: intent {items['intent']['with_gold']} turns "
          f"({items['intent']['without_gold']} without gold: intent unseen in training), "
          f"slots {items['slots']['with_gold']} turns, goal segmentation {items['goal_segmentation']['with_gold']} dialogues, "
          f"goal success {items['goal_success']['with_gold']} goals.\n")
    print("| system | intent accuracy | slot F1 | goal boundary F1 | goal success accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for s in sgd["systems"]:
        cells = [fmt(metric(s, "intent", "accuracy")), fmt(metric(s, "slots", "f1")),
                 fmt(metric(s, "goal_segmentation", "boundary_f1")), fmt(metric(s, "goal_success", "accuracy"))]
        if s["name"] == "peer":
            cells[1:] = ["(intent only)"] * 3
        print(f"| {s['name']} | " + " | ".join(cells) + " |")
    split = json.load(open(f"{out}/sgd/service-split.json"))
    print(f"\nBy service: {split['seen_service_dialogues']} dev dialogues use only services of the training sample; "
          f"{split['unseen_service_dialogues']} use one it lacks ({', '.join(split['unseen_services'])}).\n")
    print("| system | services | intent accuracy | slot F1 | goal boundary F1 |")
    print("| --- | --- | --- | --- | --- |")
    parts = {part: json.load(open(f"{out}/eval-sgd-{part}-services/report.json")) for part in ["seen", "unseen"]}
    for name in [s["name"] for s in sgd["systems"]]:
        for part, report in parts.items():
            s = next(x for x in report["systems"] if x["name"] == name)
            cells = [fmt(metric(s, "intent", "accuracy")), fmt(metric(s, "slots", "f1")),
                     fmt(metric(s, "goal_segmentation", "boundary_f1"))]
            if name == "peer":
                cells[1:] = ["(intent only)"] * 2
            print(f"| {name} | {part} | " + " | ".join(cells) + " |")


def curve_tables(out):
    """CURVE=1: each epoch's model of an SGD model, on the in-distribution dev
    split train held out and on SGD dev."""
    for path in sorted(glob.glob(f"{out}/eval-curve-*/report.json")):
        model = os.path.basename(os.path.dirname(path))[len("eval-curve-"):]
        report = json.load(open(path))
        best = json.load(open(f"{out}/models/{model}.json")).get("best_epoch")
        print(f"\n### {model}, epoch by epoch (the final model is epoch {best}, the lowest in-distribution dev loss)\n")
        print("| epoch | in-distribution dev loss | in-distribution intent accuracy "
              "| SGD dev intent accuracy | SGD dev slot F1 | SGD dev goal boundary F1 |")
        print("| ---: | ---: | ---: | --- | --- | --- |")
        # eval also judges the logs' own runtime intents ("runtime"): not an epoch.
        epochs = [x for x in report["systems"] if x["name"].startswith("epoch-")]
        for system in sorted(epochs, key=lambda x: x["name"]):
            epoch = system["name"]
            dev = json.load(open(f"{out}/models/{model}/epochs/{epoch}/training.json"))["dev"]
            cells = [f"{dev['dev_loss']:.4f}", f"{dev['dev_accuracy'].get('intent', float('nan')):.3f}",
                     fmt(metric(system, "intent", "accuracy")), fmt(metric(system, "slots", "f1")),
                     fmt(metric(system, "goal_segmentation", "boundary_f1"))]
            print(f"| {int(epoch[len('epoch-'):])} | " + " | ".join(cells) + " |")


def uss_tables(out):
    """USS test part: dialogue success and turn defects per model, per gold policy."""
    for policy in ["majority", "unanimous"]:
        r = json.load(open(f"{out}/eval-uss-{policy}/report.json"))
        items = r["gold"]["items"]
        print(f"\n### USS test part, {policy} gold of a1, a2, a3\n")
        print(f"Gold items: {items['goal_success']['with_gold']} dialogues "
              f"({items['goal_success']['without_gold']} without gold), "
              f"{items['failure_point']['with_gold']} turns ({items['failure_point']['without_gold']} without gold).\n")
        print("| system | dialogue success accuracy | dialogue failure F1 | turn defect accuracy | turn `defect` F1 |")
        print("| --- | --- | --- | --- | --- |")
        for s in r["systems"]:
            print(f"| {s['name']} | {fmt(metric(s, 'goal_success', 'accuracy'))} | {fmt(metric(s, 'goal_success', 'failure_f1'))} "
                  f"| {fmt(metric(s, 'failure_point', 'accuracy'))} | {per_class_f1(s, 'failure_point', 'defect')} |")


def auc(pairs):
    """P(a random positive scores above a random negative), ties half; None without both."""
    pos = sorted(x for x, y in pairs if y)
    neg = sorted(x for x, y in pairs if not y)
    if not pos or not neg:
        return None
    wins = sum(bisect.bisect_left(neg, x) + 0.5 * (bisect.bisect_right(neg, x) - bisect.bisect_left(neg, x)) for x in pos)
    return wins / (len(pos) * len(neg))


def f1(items):
    """F1 of the positive class from (score, flagged, gold) items; None without positives."""
    tp = sum(1 for _, f, y in items if f and y)
    positives = sum(1 for _, f, _ in items if f) + sum(1 for *_, y in items if y)
    return None if positives == 0 else 2 * tp / positives


def f1_with_precision_recall(by_dialogue):
    """F1 with its interval, then precision and recall over all items."""
    items = [p for ps in by_dialogue.values() for p in ps]
    tp = sum(1 for _, f, y in items if f and y)
    flagged = sum(1 for _, f, _ in items if f)
    actual = sum(1 for *_, y in items if y)
    precision = f"{tp / flagged:.3f}" if flagged else "n/a"
    recall = f"{tp / actual:.3f}" if actual else "n/a"
    return f"{with_interval(f1, by_dialogue)} (P {precision}, R {recall})"


def with_interval(statistic, by_dialogue, resamples=1000, seed=7):
    """statistic over all (score, flagged, gold) items, and a 95% bootstrap
    interval with dialogues resampled."""
    ids = sorted(by_dialogue)
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        v = statistic([p for d in (rng.choice(ids) for _ in ids) for p in by_dialogue[d]])
        if v is not None:
            values.append(v)
    values.sort()
    point = statistic([p for d in ids for p in by_dialogue[d]])
    if point is None or not values:
        return "n/a"
    return f"{point:.3f} [{values[int(0.025 * len(values))]:.3f}, {values[int(0.975 * len(values)) - 1]:.3f}]"


def auc_of(items):
    return auc([(score, y) for score, _, y in items])


def uss_ranking(out):
    """Does each USS model (one per `train --annotator-policy`, OUT/uss/labels-POLICY)
    rank USS failures above successes? Scores: P(dialogue failed) and P(system
    turn is a defect), from the label's decision and its confidence (both heads
    are binary on USS); gold: strict majority or unanimity of a1-a3."""
    gold = pq.read_table(f"{out}/uss/test/annotations").to_pylist()
    votes_d, votes_t = defaultdict(list), defaultdict(list)
    for a in gold:
        if a["annotator_id"] not in ("a1", "a2", "a3"):
            continue
        if a["goal_success"] is not None:
            votes_d[a["dialogue_id"]].append(not a["goal_success"])
        if a["failure_point"] is not None:
            votes_t[(a["dialogue_id"], a["turn_index"])].append(a["failure_point"] != "correct")
    print("\n### USS: does the model rank failures first?\n")
    print("ROC AUC of each model's P(failed dialogue) and P(defect turn) against the gold "
          "(0.5: no better than chance), and the F1 of its decisions (failed, defect), each with a "
          "95% bootstrap interval over dialogues, then the decisions' precision P and recall R. The model is named by the `train "
          "--annotator-policy` it learnt the raters' labels with.\n")
    print("| model | gold | failed dialogues | dialogue failure AUC | dialogue failure F1 "
          "| defect turns | turn defect AUC | turn defect F1 |")
    print("| --- | --- | ---: | --- | --- | ---: | --- | --- |")
    for path in sorted(glob.glob(f"{out}/uss/labels-*")):
        uss_model_ranking(path.rsplit("labels-", 1)[1], pq.read_table(path).to_pylist(), votes_d, votes_t)


def uss_model_ranking(model, labels, votes_d, votes_t):
    failed, defect = {}, {}  # (score, flagged) per dialogue, per turn
    for r in labels:
        s = r["goal_success_prob"]
        failed[r["dialogue_id"]] = (1 - s if r["goal_success"] else s, not r["goal_success"])
        f = r["failure_point_prob"]
        is_defect = r["failure_point"] != "correct"
        defect[(r["dialogue_id"], r["turn_index"])] = (f if is_defect else 1 - f, is_defect)
    for policy in ["majority", "unanimous"]:
        def decided(votes):
            yes = sum(votes)
            if policy == "unanimous":
                return None if 0 < yes < len(votes) else yes == len(votes)
            return None if 2 * yes == len(votes) else 2 * yes > len(votes)
        dialogues, turns = defaultdict(list), defaultdict(list)
        for d, v in votes_d.items():
            if decided(v) is not None and d in failed:
                dialogues[d].append((*failed[d], decided(v)))
        for k, v in votes_t.items():
            if decided(v) is not None and k in defect:
                turns[k[0]].append((*defect[k], decided(v)))
        n_failed = sum(y for ps in dialogues.values() for *_, y in ps)
        n_defect = sum(y for ps in turns.values() for *_, y in ps)
        print(f"| {model} | {policy} | {n_failed} of {len(dialogues)} | {with_interval(auc_of, dialogues)} "
              f"| {f1_with_precision_recall(dialogues)} | {n_defect} of {sum(map(len, turns.values()))} "
              f"| {with_interval(auc_of, turns)} | {f1_with_precision_recall(turns)} |")


def sgd_errors(out, data):
    """Model A's intent confusions and slot misses on SGD dev, by cause."""
    service_of = defaultdict(set)  # intent or slot name -> the services that use it
    if data:
        for path in glob.glob(f"{data}/sgd/*/schema.json"):
            for svc in json.load(open(path)):
                for name in {i["name"] for i in svc["intents"]} | {x["name"] for x in svc["slots"]}:
                    service_of[name].add(svc["service_name"])

    def synonym(gold, pred):
        """Both names belong to services of one domain, never to one service."""
        if service_of[gold] & service_of[pred]:
            return False
        return any(s.split("_")[0] == t.split("_")[0] for s in service_of[gold] for t in service_of[pred])

    def read(path):
        return pq.read_table(path).to_pylist()

    pred = {(r["dialogue_id"], r["turn_index"]): r for r in read(f"{out}/sgd/labels-A-minilm")}
    confusions, judged = defaultdict(int), 0
    for g in read(f"{out}/sgd/dev/annotations-seen-intents"):
        p = pred.get((g["dialogue_id"], g["turn_index"]))
        if g["intent"] is None or p is None:
            continue
        judged += 1
        if p["intent"] != g["intent"]:
            confusions[(g["intent"], p["intent"])] += 1
    wrong = sum(confusions.values())
    print("\n### SGD dev: where model A goes wrong\n")
    if data:
        by_name = sum(n for (g, p), n in confusions.items() if p and synonym(g, p))
        print(f"Intent: {wrong} of {judged} judged turns wrong; {by_name} of them predict another service's "
              "name for the same kind of request (both intents occur only in different services of one domain, "
              "e.g. Music_1's PlaySong and Music_2's PlayMedia).\n")
    print("| gold intent | predicted | turns |\n| --- | --- | ---: |")
    for (g, p), n in sorted(confusions.items(), key=lambda x: -x[1])[:10]:
        print(f"| {g} | {p} | {n} |")
    seen_types = {x["slot"] for r in read(f"{out}/sgd/train/annotations") for x in (r["slots"] or [])}
    causes = defaultdict(int)
    for g in read(f"{out}/sgd/dev/annotations"):
        p = pred.get((g["dialogue_id"], g["turn_index"]))
        spans = [(x["start"], x["end"], x["slot"]) for x in ((p or {}).get("slots") or [])]
        for x in g["slots"] or []:
            start, end, slot = x["start"], x["end"], x["slot"]
            if (start, end, slot) in spans:
                causes["right"] += 1
            elif slot not in seen_types:
                causes["a type the training sample never has"] += 1
            elif any((a, b) == (start, end) for a, b, _ in spans):
                other = next(t for a, b, t in spans if (a, b) == (start, end))
                key = "right span, another service's name for the type" if data and synonym(slot, other) \
                    else "right span, another type"
                causes[key] += 1
            elif any(a < end and start < b for a, b, _ in spans):
                causes["overlaps a predicted span with other bounds"] += 1
            else:
                causes["missed"] += 1
    print(f"\nSlots: the {sum(causes.values())} gold spans of SGD dev, by what model A made of them.\n")
    print("| gold span | spans |\n| --- | ---: |")
    for cause, n in sorted(causes.items(), key=lambda x: -x[1]):
        print(f"| {cause} | {n} |")


out = sys.argv[1]
# eval-real.sh PARTS may leave out either part.
has_sgd, has_uss = os.path.exists(f"{out}/eval-sgd/report.json"), os.path.exists(f"{out}/eval-uss-majority/report.json")
if has_sgd:
    sgd_tables(out)
    curve_tables(out)
if has_uss:
    uss_tables(out)
    uss_ranking(out)
if has_sgd:
    sgd_errors(out, sys.argv[2] if len(sys.argv) > 2 else None)
print("\n### Wall times (s)\n\n| step | seconds |\n| --- | ---: |")
for line in open(f"{out}/timings.tsv"):
    name, seconds = line.rstrip("\n").split("\t")
    print(f"| {name} | {seconds} |")
