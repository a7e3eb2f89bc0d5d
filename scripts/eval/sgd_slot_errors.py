"""Where SGD slot F1 is lost, after an SGD run of scripts/eval-real.sh.

Usage: sgd_slot_errors.py REAL_OUT SGD_DIR [MODEL ...]

REAL_OUT is eval-real's output folder (it reads sgd/train/annotations,
sgd/dev/annotations-seen-intents, -seen-services and sgd/labels-MODEL;
MODEL defaults to A-minilm); SGD_DIR holds the raw release's train/ and dev/
(schema.json and dialogues_*.json). Needs pandas, pyarrow and scikit-learn.

Per model and gold subset (all dev turns with a seen intent; dev dialogues
whose services all occur in training), each predicted span is:
- right: same characters, same slot name;
- wrong name: same characters as a gold span, another slot name; and of
  those, a name of another SGD service that has the gold intent (SGD names
  the same thing differently per service: Banks_1's `amount` is Banks_2's
  `transfer_amount`; labelgen never gets the service as an input);
- no gold span at those characters (a missed or mis-bounded span).
It prints slot F1, the F1 of the spans alone (names ignored), and the F1 if
another service's name for the gold intent counted as right.

Then a probe of whether the text tells those services apart: TF-IDF +
logistic regression from each service frame's text (all its user and
system turns in the dialogue) to the service, trained on the training
sample's dialogues, judged on the dev dialogues, for frames whose intent
more than one service has (chance is about one in two). The schema files
are used only here, for analysis: no model reads them.

Prints one JSON object per line.
"""

import collections
import glob
import json
import sys

import pandas as pd


def read(folder):
    files = sorted(glob.glob(f"{folder}/**/*.parquet", recursive=True))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def schemas(sgd_dir):
    slots, intents = {}, {}
    for split in ["train", "dev"]:
        with open(f"{sgd_dir}/{split}/schema.json") as f:
            for service in json.load(f):
                name = service["service_name"]
                slots[name] = {s["name"] for s in service["slots"]}
                intents[name] = {i["name"] for i in service["intents"]}
    return slots, intents


def spans(cell):
    return {(s["start"], s["end"]): s["slot"] for s in (cell if cell is not None else [])}


def f1(tp, predicted, gold):
    p, r = tp / max(predicted, 1), tp / max(gold, 1)
    return round(2 * p * r / max(p + r, 1e-12), 3)


def slot_errors(gold, labels, slots, intents):
    merged = gold.merge(labels, on=["dialogue_id", "turn_index"], suffixes=("_gold", "_pred"))
    c = collections.Counter()
    for row in merged.itertuples():
        g, p = spans(row.slots_gold), spans(row.slots_pred)
        c["gold_spans"] += len(g)
        c["predicted_spans"] += len(p)
        c["gold_spans_missed"] += sum(k not in p for k in g)
        for where, name in p.items():
            if where not in g:
                c["no_gold_span_there"] += 1
            elif g[where] == name:
                c["right"] += 1
            else:
                c["wrong_name"] += 1
                other = [
                    s for s in slots
                    if row.intent_gold in intents[s] and name in slots[s] and g[where] not in slots[s]
                ]
                c["wrong_name_of_another_service_with_the_intent"] += bool(other)
    out = dict(c)
    out["slot_f1"] = f1(c["right"], c["predicted_spans"], c["gold_spans"])
    out["span_f1_names_ignored"] = f1(
        c["right"] + c["wrong_name"], c["predicted_spans"], c["gold_spans"]
    )
    out["f1_if_other_service_names_counted_right"] = f1(
        c["right"] + c["wrong_name_of_another_service_with_the_intent"],
        c["predicted_spans"],
        c["gold_spans"],
    )
    return out


def service_frames(sgd_dir, split, dialogue_ids, shared_intents):
    texts, services = [], []
    for path in sorted(glob.glob(f"{sgd_dir}/{split}/dialogues_*.json")):
        with open(path) as f:
            dialogues = json.load(f)
        for d in dialogues:
            if d["dialogue_id"] not in dialogue_ids:
                continue
            text, intent = collections.defaultdict(list), {}
            for turn in d["turns"]:
                for frame in turn["frames"]:
                    text[frame["service"]].append(turn["utterance"])
                    active = frame.get("state", {}).get("active_intent", "NONE")
                    if turn["speaker"] == "USER" and active != "NONE":
                        intent[frame["service"]] = active
            for service, name in sorted(intent.items()):
                if name in shared_intents:
                    texts.append(" ".join(text[service]))
                    services.append(service)
    return texts, services


def service_probe(out_dir, sgd_dir, intents):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    shared = {i for s in intents for i in intents[s] if sum(i in intents[t] for t in intents) > 1}
    train_ids = set(read(f"{out_dir}/sgd/train/turns").dialogue_id)
    dev_ids = set(read(f"{out_dir}/sgd/dev/turns").dialogue_id)
    x_train, y_train = service_frames(sgd_dir, "train", train_ids, shared)
    x_dev, y_dev = service_frames(sgd_dir, "dev", dev_ids, shared)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(vectorizer.fit_transform(x_train), y_train)
    predicted = model.predict(vectorizer.transform(x_dev))
    seen = set(y_train)
    right = [p == y for p, y in zip(predicted, y_dev) if y in seen]
    return {
        "probe": "service of a frame from its text (TF-IDF + logistic regression)",
        "intents_shared_by_services": len(shared),
        "train_frames": len(y_train),
        "dev_frames_of_seen_services": len(right),
        "service_accuracy": round(sum(right) / max(len(right), 1), 3),
    }


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir, sgd_dir = sys.argv[1], sys.argv[2]
    models = sys.argv[3:] or ["A-minilm"]
    slots, intents = schemas(sgd_dir)
    for subset in ["seen-intents", "seen-services"]:
        gold = read(f"{out_dir}/sgd/dev/annotations-{subset}")
        for model in models:
            labels = read(f"{out_dir}/sgd/labels-{model}")
            result = {"model": model, "gold": subset, **slot_errors(gold, labels, slots, intents)}
            print(json.dumps(result), flush=True)
    print(json.dumps(service_probe(out_dir, sgd_dir, intents)))


if __name__ == "__main__":
    main()
