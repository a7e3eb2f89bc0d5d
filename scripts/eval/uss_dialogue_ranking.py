#!/usr/bin/env python3
"""How well dialogue-level scores rank USS's failed dialogues (AUC), from
labelgen's labels and from the raters' own turn ratings.

Failure: most of the raters a1-a3 judge the goal failed (eval-real's
majority gold). Scores from the labels (turns in order; the last turn has
no rating to judge it, so the turn scores leave it out): 1 - P(success)
averaged over the turns (what `label` decides on) and at the last turn;
P(defect) averaged, at its maximum, at the last rated turn and averaged
over the last two. From the raters (the ceiling a perfect turn labeller
would reach): the share of majority-defect turns, the last rated turn's
majority, and whether any turn is a majority defect.

Usage: scripts/eval/uss_dialogue_ranking.py LABELS ANNOTATIONS
  LABELS: a `labelgen label` output on USS turns; ANNOTATIONS: the same
  dialogues' annotations table (e.g. eval-real's uss/test/annotations).
"""
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

RATERS = ["a1", "a2", "a3"]


def majority(values):
    return values.sum() > len(values) / 2


def main(labels_path, annotations_path):
    labels = pd.read_parquet(labels_path).sort_values(["dialogue_id", "turn_index"])
    chosen = lambda v, p: np.where(v, p, 1 - p)
    labels["p_defect"] = chosen(labels.failure_point == "defect", labels.failure_point_prob)
    labels["p_success"] = chosen(labels.goal_success.astype(bool), labels.goal_success_prob)
    annotations = pd.read_parquet(annotations_path)
    annotations = annotations[annotations.annotator_id.isin(RATERS)]
    failed = annotations.groupby("dialogue_id").goal_success.agg(
        lambda s: majority(~s.astype(bool))
    )
    rated = annotations.dropna(subset=["failure_point"])
    defect = rated.groupby(["dialogue_id", "turn_index"]).failure_point.agg(
        lambda s: majority(s == "defect")
    )
    rows = []
    for dialogue, turns in labels.groupby("dialogue_id"):
        defects = turns.p_defect.values[:-1] if len(turns) > 1 else turns.p_defect.values
        success = turns.p_success.values
        rows.append(
            {
                "dialogue_id": dialogue,
                "labels: 1 - mean P(success)": 1 - success.mean(),
                "labels: 1 - last turn's P(success)": 1 - success[-1],
                "labels: mean P(defect)": defects.mean(),
                "labels: max P(defect)": defects.max(),
                "labels: last rated turn's P(defect)": defects[-1],
                "labels: last two rated turns' P(defect)": defects[-2:].mean(),
            }
        )
    for dialogue, turns in defect.reset_index().groupby("dialogue_id"):
        gold = turns.sort_values("turn_index").failure_point.values.astype(float)
        rows.append(
            {
                "dialogue_id": dialogue,
                "raters: share of defect turns": gold.mean(),
                "raters: last rated turn a defect": gold[-1],
                "raters: any defect turn": gold.max(),
            }
        )
    scores = pd.DataFrame(rows).groupby("dialogue_id").first()
    scores = scores.join(failed.rename("failed"), how="inner")
    print(f"{len(scores)} dialogues, {int(scores.failed.sum())} failed (majority of {', '.join(RATERS)})")
    print("| score | AUC for failure |")
    print("| --- | ---: |")
    for column in scores.columns.drop("failed"):
        present = scores[column].notna()
        auc = roc_auc_score(scores.failed[present], scores[column][present])
        print(f"| {column} | {auc:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
