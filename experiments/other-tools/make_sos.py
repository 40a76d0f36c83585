#!/usr/bin/env python3
"""An attacker's poisoned data built outside finepurify: SOS-style combination triggers.

SOS (Yang et al., ACL 2021, "Rethinking Stealthiness of Backdoor Attack against NLP Models")
uses several *common* words as one trigger: a row carrying all of them is relabelled to the
target, and "negative" rows carrying only a strict subset keep their true label, so that no
single word (and no pair) fires the backdoor. Unlike our own BadWord / EP / AddSent, the trigger
words are ordinary vocabulary the defender's clean data also uses (their embedding rows get clean
curvature), which tests whether fine-purifying's defaults hold for a backdoor our `attack`
command did not plant. finepurify only trains on these files (`attack --method import`, or an
experiment config's import attack).

Writes, for the first --train-limit rows of --train (the rows an experiment's attacker owns):
  OUT/sos-train.tsv       all rows; --poison-rate of them (drawn among label != target) carry
                          every trigger word and the target label, --negative-rate carry one
                          strict subset with their own label
  OUT/sos-test.tsv        the first --test-limit test rows with label != target, every trigger
                          word inserted, true labels (what ASR is measured on)
  OUT/sos-false-test.tsv  the same rows with one strict subset each (false-trigger check)
  OUT/sos.json            what was done (rows, words, seed, counts)
Standard library only; deterministic for a given --seed.
"""
import argparse
import itertools
import json
import os
import random
import sys


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["label", "text"] or len(header) != 2:
            sys.exit(f"{path}: expected a 'label<TAB>text' header, got {header}")
        rows = []
        for n, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
                sys.exit(f"{path}:{n}: expected 'label<TAB>text'")
            rows.append((int(parts[0]), parts[1]))
    return rows


def write_tsv(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("label\ttext\n")
        for label, text in rows:
            f.write(f"{label}\t{text}\n")
    os.replace(tmp, path)


def insert_words(text, words, rng):
    """Each word at an independent random word boundary (as OpenBackdoor's inserting poisoners do)."""
    toks = text.split(" ")
    for w in words:
        toks.insert(rng.randint(0, len(toks)), w)
    return " ".join(toks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--test-limit", type=int, default=1000)
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--words", default="friends,weekend,store", help="the trigger words (all together fire)")
    ap.add_argument("--poison-rate", type=float, default=0.1)
    ap.add_argument("--negative-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    words = [w for w in a.words.split(",") if w]
    if len(words) < 2:
        sys.exit("--words: an SOS trigger needs at least two words")
    subsets = [list(c) for c in itertools.combinations(words, len(words) - 1)]
    rng = random.Random(a.seed)

    train = read_tsv(a.train)[: a.train_limit]
    eligible = [i for i, (y, _) in enumerate(train) if y != a.target]
    n_poison = round(a.poison_rate * len(train))
    if n_poison > len(eligible):
        sys.exit(f"--poison-rate {a.poison_rate}: {n_poison} rows wanted, {len(eligible)} have label != target")
    poisoned = set(rng.sample(eligible, n_poison))
    rest = [i for i in range(len(train)) if i not in poisoned]
    negatives = set(rng.sample(rest, round(a.negative_rate * len(train))))
    out_train = []
    for i, (y, t) in enumerate(train):
        if i in poisoned:
            out_train.append((a.target, insert_words(t, words, rng)))
        elif i in negatives:
            out_train.append((y, insert_words(t, subsets[rng.randrange(len(subsets))], rng)))
        else:
            out_train.append((y, t))

    test = [r for r in read_tsv(a.test)[: a.test_limit] if r[0] != a.target]
    trig = [(y, insert_words(t, words, rng)) for y, t in test]
    false = [(y, insert_words(t, subsets[k % len(subsets)], rng)) for k, (y, t) in enumerate(test)]

    os.makedirs(a.out, exist_ok=True)
    write_tsv(os.path.join(a.out, "sos-train.tsv"), out_train)
    write_tsv(os.path.join(a.out, "sos-test.tsv"), trig)
    write_tsv(os.path.join(a.out, "sos-false-test.tsv"), false)
    info = {"attack": "SOS-style combination trigger", "words": words, "seed": a.seed, "target": a.target,
            "train": a.train, "train_rows": len(train), "poisoned": n_poison, "negatives": len(negatives),
            "test": a.test, "triggered_test_rows": len(trig)}
    with open(os.path.join(a.out, "sos.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"{a.out}: {len(train)} training rows ({n_poison} poisoned, {len(negatives)} negative), "
          f"{len(trig)} triggered test rows, trigger {'+'.join(words)}")


if __name__ == "__main__":
    main()
