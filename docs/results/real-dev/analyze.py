#!/usr/bin/env python3
"""Reads an experiment's results.jsonl and prints, on the rows it holds (clean-dev accuracy alone
decides; the scored "test" columns are the config's test set — in real-dev, dev rows the selection
never sees):
  analyze.py curves RESULTS.jsonl           every defense's ACC / ASR / flip (%) at each knob value
  analyze.py rules RESULTS.jsonl [BUDGET..]  the point each knob rule picks under each budget
  analyze.py picks RESULTS.jsonl RULE BUDGET  one row per (dataset, attack): each defense's pick, the floor
  analyze.py score RESULTS.jsonl CAP [BUDGET..]  each knob rule over every (dataset, attack, seed), knobs <= CAP:
                                             mean ASR / flip of its picks, their mean accuracy drop on the
                                             scored rows, and how many picks drop more than budget + 1 there"""
import json, math, sys
from collections import defaultdict


def load(path):
    """(base rows by (dataset, attack, seed), defense rows by (dataset, attack, seed) -> defense -> rows)."""
    base, by = {}, defaultdict(lambda: defaultdict(list))
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        key = (r["dataset"], r["attack"], r["seed"])
        if r["defense"] == "none":
            base[key] = r
        else:
            by[key][r["defense"]].append(r)
    return base, by


def pct(r, k):
    v = r.get(k)
    return "–" if v is None or v < 0 else f"{100*v:.1f}"

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
    if rule == "tie":  # largest, then down while the next smaller knob has the same dev accuracy (a flat stretch of the dev curve: take its start)
        ok = [i for i, a in enumerate(acc) if a >= th]
        if not ok:
            return None
        i = ok[-1]
        while i > 0 and abs(acc[i - 1] - acc[i]) < 0.5 / n_dev:
            i -= 1
        return i
    if rule.startswith("cap"):  # largest within budget among knobs <= the cap (a grid that stops there)
        cap = float(rule[len("cap"):])
        ok = [i for i, a in enumerate(acc) if a >= th and points[i][0] <= cap + 1e-12]
        return ok[-1] if ok else None
    if rule.startswith("loose"):  # largest whose dev acc is not below the budget line by more than k standard errors
        k = float(rule[len("loose"):])
        se = math.sqrt(max(suspect * (1 - suspect), 1e-6) / n_dev)
        ok = [i for i, a in enumerate(acc) if a >= th - k * se]
        return ok[-1] if ok else None
    if rule.startswith("margin"):  # largest whose dev acc clears the budget by k standard errors
        k = float(rule[len("margin"):])
        se = math.sqrt(max(suspect * (1 - suspect), 1e-6) / n_dev)
        ok = [i for i, a in enumerate(acc) if a >= th + k * se]
        return ok[-1] if ok else None
    raise ValueError(rule)



def curves(path):
    base, by = load(path)
    for key in sorted(by):
        b = base.get(key)
        print(f"\n## {key[0]} / {key[1]} / seed {key[2]}\n")
        if b:
            print(f"suspect: ACC {pct(b, 'test_acc')}, ASR {pct(b, 'asr')}, flip {pct(b, 'flip')}; clean model: "
                  f"ACC {pct(b, 'clean_model_test_acc')}, ASR {pct(b, 'clean_model_asr')}, flip {pct(b, 'clean_model_flip')}\n")
        knobs = sorted({r["knob"] for d in by[key].values() for r in d})
        sus = next(iter(by[key].values()))[0]["suspect_dev_acc"]
        print("| defense | " + " | ".join(f"{k:g}" for k in knobs) + f" | clean-dev ACC (suspect {100*sus:.2f}) |")
        print("|---|" + "---|" * (len(knobs) + 1))
        for d, pts in by[key].items():
            at = {r["knob"]: r for r in pts}
            cells = ["" if k not in at else f"{pct(at[k], 'test_acc')} / {pct(at[k], 'asr')} / {pct(at[k], 'flip')}"
                     for k in knobs]
            dev = ", ".join(f"{100*at[k]['dev_acc']:.1f}" for k in knobs if k in at)
            print(f"| {d} | " + " | ".join(cells) + f" | {dev} |")


def rules(path, budgets):
    base, by = load(path)
    names = ["largest", "prefix", "isotonic", "margin0.5", "margin1", "tie", "cap0.5"]
    for b in budgets:
        print(f"\n## budget {b:g}: knob / ACC / ASR / flip per rule\n")
        print("| dataset | attack | seed | defense | " + " | ".join(names) + " |")
        print("|---|---|---|---|" + "---|" * len(names))
        for key in sorted(by):
            for d, pts in by[key].items():
                pts = sorted(pts, key=lambda r: r["knob"])
                knobbed = [r for r in pts if r["knob"] > 0] or pts
                cells = []
                for rule in names:
                    i = choose([(r["knob"], r["dev_acc"]) for r in knobbed], pts[0]["suspect_dev_acc"], b, rule, N_DEV)
                    r = knobbed[i] if i is not None else None
                    cells.append("none" if r is None else
                                 f"{r['knob']:g} / {pct(r, 'test_acc')} / {pct(r, 'asr')} / {pct(r, 'flip')}")
                print(f"| {key[0]} | {key[1]} | {key[2]} | {d} | " + " | ".join(cells) + " |")


def picks(path, rule, budget):
    base, by = load(path)
    defenses = []
    for key in sorted(by):
        for d in by[key]:
            if d not in defenses:
                defenses.append(d)
    print(f"\n## rule {rule}, budget {budget:g}: ACC / ASR / flip (knob) of each defense's pick\n")
    print("| dataset / attack / seed | suspect | clean model (floor) | " + " | ".join(defenses) + " |")
    print("|---|---|---|" + "---|" * len(defenses))
    for key in sorted(by):
        b = base.get(key, {})
        cells = []
        for d in defenses:
            pts = sorted(by[key].get(d, []), key=lambda r: r["knob"])
            if not pts:
                cells.append("")
                continue
            knobbed = [r for r in pts if r["knob"] > 0] or pts
            i = choose([(r["knob"], r["dev_acc"]) for r in knobbed], pts[0]["suspect_dev_acc"], budget, rule, N_DEV)
            r = knobbed[i] if i is not None else None
            cells.append("none in budget" if r is None else
                         f"{pct(r, 'test_acc')} / {pct(r, 'asr')} / {pct(r, 'flip')} ({r['knob']:g})")
        print(f"| {key[0]} / {key[1]} / {key[2]} | {pct(b, 'test_acc')} / {pct(b, 'asr')} / {pct(b, 'flip')} | "
              f"{pct(b, 'clean_model_test_acc')} / {pct(b, 'clean_model_asr')} / {pct(b, 'clean_model_flip')} | "
              + " | ".join(cells) + " |")


def score(path, cap, budgets):
    """Each rule's picks over every (dataset, attack, seed) and defense, knobs <= cap. The reference rules
    (ref-ft: budget from the fine-tune-only model's dev accuracy; ref-mean: from the mean of it and the
    suspect's) need that defense's row. 'oracle' reads the scored rows (not a rule: the best a rule could do)."""
    base, by = load(path)
    rules_ = ["largest", "loose0.5", "loose1", "isotonic", "ref-ft", "ref-mean", "oracle"]
    defenses = sorted({d for key in by for d in by[key] if d != "finetune"})
    for b in budgets:
        print(f"\n## budget {b:g}, knobs <= {cap:g}: mean ASR / mean flip / mean drop on the scored rows / "
              f"picks dropping more than {b + 1:g} there (of n)\n")
        print("| defense | " + " | ".join(rules_) + " |")
        print("|---|" + "---|" * len(rules_))
        for d in defenses:
            agg = {r: [] for r in rules_}
            for key in sorted(by):
                if d not in by[key] or key not in base:
                    continue
                pts = sorted([r for r in by[key][d] if 0 < r["knob"] <= cap + 1e-12], key=lambda r: r["knob"])
                if not pts:
                    continue
                ft = by[key].get("finetune", [None])[0]
                sus_dev = pts[0]["suspect_dev_acc"]
                sus_test = base[key]["test_acc"]
                for rule in rules_:
                    if rule == "oracle":
                        ok = [r for r in pts if 100 * (sus_test - r["test_acc"]) <= b]
                        pick = min(ok, key=lambda r: r["asr"]) if ok else None
                    else:
                        ref, name = sus_dev, rule
                        if rule.startswith("ref-"):
                            if ft is None:
                                continue
                            ref = ft["dev_acc"] if rule == "ref-ft" else (ft["dev_acc"] + sus_dev) / 2
                            name = "largest"
                        i = choose([(r["knob"], r["dev_acc"]) for r in pts], ref, b, name, N_DEV)
                        pick = pts[i] if i is not None else None
                    if pick is None:
                        pick = ft or {"asr": base[key]["asr"], "flip": base[key]["flip"], "test_acc": sus_test}
                    agg[rule].append((pick["asr"], pick["flip"], sus_test - pick["test_acc"]))
            cells = []
            for rule in rules_:
                v = agg[rule]
                if not v:
                    cells.append("")
                    continue
                m = lambda j: 100 * sum(x[j] for x in v) / len(v)
                over = sum(1 for x in v if 100 * x[2] > b + 1)
                cells.append(f"{m(0):.1f} / {m(1):.1f} / {m(2):.1f} / {over} (of {len(v)})")
            print(f"| {d} | " + " | ".join(cells) + " |")


N_DEV = 300  # clean-dev rows (the margin rules' standard error)

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("curves", "rules", "picks", "score"):
        sys.exit(__doc__)
    if sys.argv[1] == "curves":
        curves(sys.argv[2])
    elif sys.argv[1] == "score":
        score(sys.argv[2], float(sys.argv[3]), [float(x) for x in sys.argv[4:]] or [1, 3, 5])
    elif sys.argv[1] == "picks":
        picks(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        rules(sys.argv[2], [float(x) for x in sys.argv[3:]] or [1, 3, 5])
