#!/usr/bin/env python3
"""The weak-label text rules of train (src/data/feedback.rs) on real text:
how often each fires on SGD and USS user turns, and how often it is right by
the corpus's own signals. Python 3 standard library only.

  weak_rules_real.py FEEDBACK_RS DATA_DIR      prints JSON

FEEDBACK_RS is src/data/feedback.rs: the rule lists (CORRECTION_LEADS,
STOP_PHRASES) are read from it, so the figures are those of the code; the
matching logic is the same few lines as there (checked below on the Rust unit
test's examples). DATA_DIR holds sgd/{train,dev}/dialogues_*.json (the
Schema-Guided Dialogue corpus) and/or uss/SGD.txt (User Satisfaction
Simulation ratings of SGD dialogues); a corpus that is absent is reported as
skipped.

The rules, as train applies them to consecutive user turns k, k+1:
  rephrase          turn k+1 repeats or corrects turn k (a correction lead,
                    or word-set Jaccard >= 0.5): votes "turn k was a defect"
  - by_lead, by_overlap   the same, split by which test fired
  stop_cancel       turn k+1 is a stop phrase (and turn k is not): votes
                    "turn k was a defect"
  rephrase_same_goal    where rephrase fires: votes "turn k+1 continues turn
                    k's goal"

Signals (what each rule is scored against):
  USS defect        the ratings of user turn k+1 (which rate the system's
                    response to turn k) average <= 2 on the 1..5 scale;
                    `defect_any_rater` is the looser "some rater gave <= 2"
  USS same goal     turn k+1's action is not INFORM_INTENT (no new request)
  SGD correction    turn k+1 rejects or corrects: NEGATE right after a
                    system CONFIRM, a REQUEST_ALTS act, or a slot value it
                    informs replaces a different one already in the
                    dialogue state (a NEGATE answering "anything else?" is
                    not a correction). SGD's system never errs
                    (its turns are generated from the correct state), so this
                    is the user-correction signal, not a system defect.
  SGD same goal     turn k+1 keeps turn k's active intent and service and
                    has no INFORM_INTENT act

For each rule: fires, coverage (fires / user turns with a next user turn),
precision (share of firings where the signal holds), the signal's base rate
over all those turns, and lift (precision / base rate).
"""
import glob
import json
import os
import re
import sys


def rust_list(source, name):
    match = re.search(name + r"\s*:\s*\[&str;\s*\d+\]\s*=\s*\[(.*?)\];", source, re.S)
    if not match:
        sys.exit(f"cannot find {name} in the feedback source")
    return re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1))


class Rules:
    """src/data/feedback.rs, line for line."""

    def __init__(self, source):
        self.leads = rust_list(source, "CORRECTION_LEADS")
        self.stops = rust_list(source, "STOP_PHRASES")

    @staticmethod
    def words(text):
        out, word = [], []
        for c in text:
            if c.isalnum() or c == "'":
                word.append(c)
            elif word:
                out.append("".join(word).lower())
                word = []
        if word:
            out.append("".join(word).lower())
        return out

    def by_lead(self, next_text):
        lower = next_text.strip().lower()
        return any(
            lower.startswith(lead) and len(lower.encode()) > len(lead.encode()) + 1
            for lead in self.leads
        )

    def by_overlap(self, previous, next_text):
        a, b = self.words(previous), self.words(next_text)
        if len(a) < 2 or len(b) < 2:
            return False
        a, b = set(a), set(b)
        return len(a & b) / len(a | b) >= 0.5

    def is_rephrase(self, previous, next_text):
        return self.by_lead(next_text) or self.by_overlap(previous, next_text)

    def is_stop(self, text):
        return " ".join(self.words(text)) in self.stops

    def self_check(self):
        # The Rust unit test's examples (feedback.rs).
        assert self.is_rephrase("play purple haze", "play purple haze please")
        assert self.is_rephrase("call anna", "no i said hannah")
        assert not self.is_rephrase("play purple haze", "what's the weather")
        assert not self.is_rephrase("yes", "yes")
        assert self.is_stop("Never mind.")
        assert not self.is_stop("stop the timer in the kitchen")


class Score:
    """Fires and hits of each rule, and the signals' base rates."""

    RULES = ("rephrase", "rephrase.by_lead", "rephrase.by_overlap", "stop_cancel",
             "rephrase_same_goal")

    def __init__(self):
        self.pairs = 0
        self.base = {}
        self.rules = {rule: {"fires": 0, "hits": {}} for rule in self.RULES}

    def signal(self, name, value):
        hit, seen = self.base.get(name, (0, 0))
        self.base[name] = (hit + bool(value), seen + 1)

    def fire(self, rule, signals):
        entry = self.rules.setdefault(rule, {"fires": 0, "hits": {}})
        entry["fires"] += 1
        for name, value in signals.items():
            entry["hits"][name] = entry["hits"].get(name, 0) + bool(value)

    def report(self):
        out = {"user_turn_pairs": self.pairs, "rules": {}}
        base = {n: h / s for n, (h, s) in self.base.items() if s}
        out["signal_base_rate"] = {n: round(v, 4) for n, v in base.items()}
        for rule, entry in sorted(self.rules.items()):
            fires = entry["fires"]
            row = {"fires": fires, "coverage": round(fires / max(self.pairs, 1), 5)}
            if not fires:
                row["precision"] = None
            for name, hits in entry["hits"].items():
                precision = hits / fires
                row[f"precision_{name}"] = round(precision, 4)
                if base.get(name):
                    row[f"lift_{name}"] = round(precision / base[name], 2)
            out["rules"][rule] = row
        return out


def score_pair(score, rules, previous, following, defect_signals, goal_signal):
    score.pairs += 1
    for name, value in defect_signals.items():
        score.signal(name, value)
    score.signal("same_goal", goal_signal)
    lead = rules.by_lead(following)
    overlap = rules.by_overlap(previous, following)
    if lead or overlap:
        score.fire("rephrase", defect_signals)
        score.fire("rephrase_same_goal", {"same_goal": goal_signal})
    if lead:
        score.fire("rephrase.by_lead", defect_signals)
    if overlap:
        score.fire("rephrase.by_overlap", defect_signals)
    if rules.is_stop(following) and not rules.is_stop(previous):
        score.fire("stop_cancel", defect_signals)


def uss_sessions(path):
    session = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                if session:
                    yield session
                session = []
                continue
            if fields[0] == "USER" and len(fields) > 1 and fields[1] != "OVERALL":
                ratings = [int(r) for r in fields[3].split(",")] if len(fields) > 3 and fields[3] else []
                session.append((fields[1], fields[2] if len(fields) > 2 else "", ratings))
    if session:
        yield session


def uss(rules, path):
    score = Score()
    for session in uss_sessions(path):
        for (text, _, _), (following, action, ratings) in zip(session, session[1:]):
            if not ratings:
                continue
            mean = sum(ratings) / len(ratings)
            defect = {"defect": mean <= 2, "defect_any_rater": min(ratings) <= 2}
            score_pair(score, rules, text, following, defect, action != "INFORM_INTENT")
    return score.report()


def sgd_user_turns(dialogue):
    """Per user turn: utterance, its acts, the acts of the system turn before
    it, the slot values it informs, its active intents, the state after it."""
    out, system_acts = [], set()
    for turn in dialogue["turns"]:
        acts = {a["act"] for frame in turn["frames"] for a in frame["actions"]}
        if turn["speaker"] != "USER":
            system_acts = acts
            continue
        informed, intents, state = {}, set(), {}
        for frame in turn["frames"]:
            for action in frame["actions"]:
                if action["act"] == "INFORM" and action["slot"]:
                    key = (frame["service"], action["slot"])
                    informed[key] = action["values"] + action["canonical_values"]
            active = frame.get("state", {}).get("active_intent", "NONE")
            intents.add((frame["service"], active))
            for slot, values in frame.get("state", {}).get("slot_values", {}).items():
                state[(frame["service"], slot)] = values
        out.append((turn["utterance"], acts, system_acts, informed, intents, state))
    return out


def sgd_correction(previous, following):
    """The user rejects the system's confirmation, asks for alternatives, or
    replaces a slot value already in the state."""
    _, _, _, _, _, state = previous
    _, acts, system_acts, informed, _, _ = following
    rejected = "NEGATE" in acts and "CONFIRM" in system_acts
    replaced = any(
        state.get(key) and values and not any(v in state[key] for v in values)
        for key, values in informed.items()
    )
    return rejected or "REQUEST_ALTS" in acts or replaced


def sgd(rules, files):
    score = Score()
    for path in files:
        with open(path, encoding="utf-8") as f:
            dialogues = json.load(f)
        for dialogue in dialogues:
            turns = sgd_user_turns(dialogue)
            for previous, following in zip(turns, turns[1:]):
                same_goal = bool(previous[4] & following[4]) and "INFORM_INTENT" not in following[1]
                signals = {"correction": sgd_correction(previous, following)}
                score_pair(score, rules, previous[0], following[0], signals, same_goal)
    return score.report()


def main(feedback_rs, data_dir):
    with open(feedback_rs, encoding="utf-8") as f:
        rules = Rules(f.read())
    rules.self_check()
    out = {"correction_leads": rules.leads, "stop_phrases": rules.stops}
    uss_file = os.path.join(data_dir, "uss", "SGD.txt")
    out["uss_sgd"] = uss(rules, uss_file) if os.path.exists(uss_file) else "SKIPPED: no uss/SGD.txt"
    for split in ("train", "dev"):
        files = sorted(glob.glob(os.path.join(data_dir, "sgd", split, "dialogues_*.json")))
        out[f"sgd_{split}"] = sgd(rules, files) if files else f"SKIPPED: no sgd/{split}"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
