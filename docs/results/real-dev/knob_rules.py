#!/usr/bin/env python3
"""Compares knob rules on an experiment's results.jsonl (clean-dev accuracy only decides; the
scored "test" columns are whatever the config's test set is — in real-dev, SST-2 dev rows the
selection never sees). Usage: knob_rules.py RESULTS.jsonl [BUDGET ...]"""
import json, math, sys
from collections import defaultdict


def isotonic_decreasing(y):
    """Pool-adjacent-violators fit of a non-increasing sequence (equal weights)."""
    blocks = []  # [sum, count]
    for v in y:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out = []
    for s, c in blocks:
        out += [s / c] * c
    return out


def choose(points, suspect, budget, rule, n_dev):
    """points: (knob, dev_acc) sorted by knob. Returns the index chosen or None."""
    th = suspect - budget / 100.0 - 1e-12
    acc = [p[1] for p in points]
    if rule == "largest":
        ok = [i for i, a in enumerate(acc) if a >= th]
        return ok[-1] if ok else None
    if rule == "prefix":
        last = None
        for i, a in enumerate(acc):
            if a < th:
                break
            last = i
        return last
    if rule == "isotonic":
        fit = isotonic_decreasing(acc)
        ok = [i for i, a in enumerate(fit) if a >= th]
        return ok[-1] if ok else None
    if rule.startswith("margin"):  # largest whose dev acc clears the budget by k standard errors
        k = float(rule[len("margin"):])
        se = math.sqrt(max(suspect * (1 - suspect), 1e-6) / n_dev)
        ok = [i for i, a in enumerate(acc) if a >= th + k * se]
        return ok[-1] if ok else None
    raise ValueError(rule)


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    budgets = [float(b) for b in sys.argv[2:]] or [1, 3, 5]
    n_dev = 300
    units = defaultdict(list)
    base = {}
    for r in rows:
        key = (r["dataset"], r["attack"], r["seed"])
        if r["defense"] == "none":
            base[key] = r
        else:
            units[key + (r["defense"],)].append(r)
    rules = ["largest", "prefix", "isotonic", "margin0.5", "margin1"]
    for b in budgets:
        print(f"\n## budget {b:g}: knob / test ACC / ASR / flip per rule\n")
        print("| dataset | attack | seed | defense | " + " | ".join(rules) + " |")
        print("|---|---|---|---|" + "---|" * len(rules))
        for key in sorted(units):
            pts = sorted(units[key], key=lambda r: r["knob"])
            knobbed = [r for r in pts if r["knob"] > 0] or pts
            sus = pts[0]["suspect_dev_acc"]
            cells = []
            for rule in rules:
                i = choose([(r["knob"], r["dev_acc"]) for r in knobbed], sus, b, rule, n_dev)
                if i is None:
                    cells.append("none")
                    continue
                r = knobbed[i]
                flip = r.get("flip", -1)
                cells.append(f"{r['knob']:g} / {100*r['test_acc']:.1f} / {100*r['asr']:.1f}"
                             + (f" / {100*flip:.1f}" if flip is not None and flip >= 0 else ""))
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
