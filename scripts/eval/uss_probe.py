#!/usr/bin/env python3
"""Where is the USS defect signal? Linear probes, 10-fold by dialogue, on
the items labelgen's failure_point judges: a system response (turn k: user
line k and the system lines after it) is a defect when the most common of
the ratings on user line k + 1 is 2 or less (ties to the lower rating).
Prints ROC AUC and the best F1 over thresholds (an optimistic, oracle
threshold: a ceiling, not a result) per input:

  tfidf SGD_TXT            TF-IDF (1-2 grams) + logistic regression on the
                           turn itself, on the user's reaction (line k + 1),
                           and on both (scikit-learn)
  minilm SGD_TXT MINILM    the same with MiniLM's mean-pooled token states of
                           the turn (utterance and response as a pair, 48
                           tokens, as labelgen encodes it), frozen (torch,
                           transformers)

Used to find why labelgen's USS model ranked defects near chance
(BENCHMARKS.md, "USS: the failure point reads the next turn").
"""
import collections
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score


def dialogues(path):
    sessions, current = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if current:
                sessions.append(current)
            current = []
            continue
        current.append(line.split("\t"))
    if current:
        sessions.append(current)
    return sessions


def dissatisfied(field):
    ratings = [int(x) for x in field.split(",")]
    counts = collections.Counter(ratings)
    most = max(counts.values())
    return int(min(r for r in counts if counts[r] == most) <= 2)


def turns_and_items(path):
    """turns: (user, system) per turn; items: (dialogue, turn k, turn k + 1, defect)."""
    turns, items = [], []
    for d, lines in enumerate(dialogues(path)):
        users = [i for i, p in enumerate(lines) if p[0] == "USER" and p[1] != "OVERALL"]
        first = len(turns)
        for k, i in enumerate(users):
            end = users[k + 1] if k + 1 < len(users) else len(lines)
            turns.append((lines[i][1], " ".join(p[1] for p in lines[i + 1:end] if p[0] == "SYSTEM")))
        for k in range(1, len(users)):
            items.append((d, first + k - 1, first + k, dissatisfied(lines[users[k]][3])))
    return turns, items


def probe(name, features, y, folds):
    """features(train_mask) -> (X_train, X_test) per fold."""
    scores = np.zeros(len(y))
    for f in range(10):
        train = folds != f
        x_train, x_test = features(train)
        model = LogisticRegression(C=1, class_weight="balanced", max_iter=3000).fit(x_train, y[train])
        scores[~train] = model.predict_proba(x_test)[:, 1]
    best = max(f1_score(y, scores > t) for t in np.quantile(scores, np.linspace(0.5, 0.995, 80)))
    print(f"{name}: AUC {roc_auc_score(y, scores):.3f}, best-threshold F1 {best:.3f}")


def main():
    kind, path = sys.argv[1], sys.argv[2]
    turns, items = turns_and_items(path)
    y = np.array([it[3] for it in items])
    folds = np.array([it[0] for it in items]) % 10
    print(f"{len(items)} items, {y.mean():.3f} defects")
    own = [it[1] for it in items]
    reaction = [it[2] for it in items]
    if kind == "tfidf":
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        text = [f"{u} || {s}" for u, s in turns]
        user = [u for u, _ in turns]

        def tfidf(sources):
            def features(train):
                parts = []
                for texts, index in sources:
                    v = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
                    rows = [texts[i] for i in index]
                    v.fit([r for r, t in zip(rows, train) if t])
                    parts.append(v.transform(rows))
                x = hstack(parts).tocsr()
                return x[train], x[~train]
            return features

        probe("turn k (utterance || response)", tfidf([(text, own)]), y, folds)
        probe("reaction (user line k + 1)", tfidf([(user, reaction)]), y, folds)
        probe("both", tfidf([(text, own), (user, reaction)]), y, folds)
    elif kind == "minilm":
        import torch
        from transformers import BertModel, PreTrainedTokenizerFast
        torch.set_num_threads(2)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{sys.argv[3]}/tokenizer.json", pad_token="[PAD]")
        model = BertModel.from_pretrained(sys.argv[3]).eval()
        states = np.zeros((len(turns), model.config.hidden_size), np.float32)
        with torch.no_grad():
            for b in range(0, len(turns), 128):
                chunk = turns[b:b + 128]
                enc = tokenizer([u for u, _ in chunk], [s for _, s in chunk], truncation=True, max_length=48,
                                padding=True, return_tensors="pt")
                mask = enc["attention_mask"].unsqueeze(-1).float()
                states[b:b + len(chunk)] = ((model(**enc).last_hidden_state * mask).sum(1) / mask.sum(1)).numpy()
        for name, x in [("turn k", states[own]), ("turn k + 1", states[reaction]),
                        ("both", np.hstack([states[own], states[reaction]]))]:
            probe(name, lambda train, x=x: (x[train], x[~train]), y, folds)
    else:
        sys.exit(f"uss_probe: tfidf or minilm, not {kind}")


if __name__ == "__main__":
    main()
