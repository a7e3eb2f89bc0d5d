#!/usr/bin/env python3
"""Markdown tables of scripts/eval-real.sh's results: OUT/eval-sgd and
OUT/eval-uss-{majority,unanimous} report.json, and OUT/timings.tsv.
Usage: real_summary.py OUT"""
import json
import sys


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


out = sys.argv[1]
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
print("\n### Wall times (s)\n\n| step | seconds |\n| --- | ---: |")
for line in open(f"{out}/timings.tsv"):
    name, seconds = line.rstrip("\n").split("\t")
    print(f"| {name} | {seconds} |")
