#!/usr/bin/env python3
"""Figures of a simulated dataset that `labelgen eval` does not print
(pyarrow only).

  sim_figures.py DIR     DIR holds turns/ and annotations/ as written by
                         `labelgen simulate`; prints JSON

Per turn-level task (intent, failure_point, slots):
  without_unanimous_gold  share of turns where a1, a2, a3 do not all agree
  unanimous_gold_wrong    share of the unanimous items whose gold differs
                          from the simulator's truth (the annotators erred
                          together)
  single_vs_unanimous     the single annotator's accuracy on unanimous items
  single_vs_truth         the single annotator's accuracy on every turn
and copy_the_runtime_intent: the accuracy of the runtime's own nlu_intent
against the unanimous intent gold, on the same items as the single
annotator's intent figure (false wakes have gold NotDeviceDirected, which the
runtime never outputs).
"""
import json
import sys

import pyarrow.parquet as pq

GOLD = ("a1", "a2", "a3")
TASKS = ("intent", "failure_point", "slots")


def label(row, task):
    if task == "slots":
        spans = row["slots"] or []
        return tuple(sorted((s["slot"], s["start"], s["end"]) for s in spans))
    return row[task]


def main(directory):
    turns = pq.read_table(f"{directory}/turns").to_pylist()
    annotations = pq.read_table(f"{directory}/annotations").to_pylist()
    by_turn = {}
    for row in annotations:
        key = (row["dialogue_id"], row["turn_index"])
        by_turn.setdefault(key, {})[row["annotator_id"]] = row
    runtime = {(t["dialogue_id"], t["turn_index"]): t["nlu_intent"] for t in turns}
    out = {"turns": len(turns)}
    for task in TASKS:
        unanimous = wrong_gold = single_right = single_truth = 0
        for rows in by_turn.values():
            truth = label(rows["truth"], task)
            single = label(rows["single"], task)
            single_truth += single == truth
            gold = {label(rows[a], task) for a in GOLD}
            if len(gold) != 1:
                continue
            (gold,) = gold
            unanimous += 1
            wrong_gold += gold != truth
            single_right += single == gold
        n = len(by_turn)
        out[task] = {
            "without_unanimous_gold": round(1 - unanimous / n, 4),
            "unanimous_gold_wrong": round(wrong_gold / max(unanimous, 1), 4),
            "single_vs_unanimous": round(single_right / max(unanimous, 1), 4),
            "single_vs_truth": round(single_truth / n, 4),
        }
    items = right = 0
    for key, rows in by_turn.items():
        gold = {rows[a]["intent"] for a in GOLD}
        if len(gold) == 1:
            items += 1
            right += runtime[key] == gold.pop()
    out["copy_the_runtime_intent"] = {
        "items": items,
        "accuracy": round(right / max(items, 1), 4),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
