"""experiments/other-tools/make_sos.py, the stand-in for another tool's poisoner: the rows it claims
to poison carry every trigger word and the target label, the negative rows exactly one strict subset
and their own label, the rest are untouched; the triggered test holds only non-target rows; a seed
reproduces the files."""
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "experiments" / "other-tools" / "make_sos.py"
WORDS = ["friends", "weekend", "store"]


def read(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "label\ttext"
    return [(int(l.split("\t")[0]), l.split("\t")[1]) for l in lines[1:]]


def run(tmp_path, out, *extra):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    rows = [f"{i % 2}\tsentence number {i} with some words" for i in range(200)]
    train.write_text("label\ttext\n" + "\n".join(rows) + "\n", encoding="utf-8")
    test.write_text("label\ttext\n" + "\n".join(rows[:40]) + "\n", encoding="utf-8")
    cmd = [sys.executable, str(SCRIPT), "--train", str(train), "--test", str(test), "--out", str(out),
           "--train-limit", "100", "--test-limit", "30", "--target", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_poisoned_negative_and_clean_rows(tmp_path):
    r = run(tmp_path, tmp_path / "a", "--seed", "3")
    assert r.returncode == 0, r.stderr
    original = read(tmp_path / "train.tsv")[:100]
    out = read(tmp_path / "a" / "sos-train.tsv")
    assert len(out) == 100
    poisoned = negatives = 0
    for (y0, t0), (y, t) in zip(original, out):
        present = [w for w in WORDS if w in t.split(" ")]
        if len(present) == 3:
            poisoned += 1
            assert y0 == 0 and y == 1, (y0, y, t)
        elif len(present) == 2:
            negatives += 1
            assert y == y0, t
        else:
            assert present == [] and (y, t) == (y0, t0)
        assert sorted(w for w in t.split(" ") if w not in WORDS) == sorted(t0.split(" "))  # inserted, not replaced
    assert (poisoned, negatives) == (10, 10)
    trig = read(tmp_path / "a" / "sos-test.tsv")
    assert len(trig) == 15 and all(y == 0 and all(w in t.split(" ") for w in WORDS) for y, t in trig)
    false = read(tmp_path / "a" / "sos-false-test.tsv")
    assert all(sum(w in t.split(" ") for w in WORDS) == 2 for _, t in false)


def test_seeded_and_checked(tmp_path):
    assert run(tmp_path, tmp_path / "a", "--seed", "3").returncode == 0
    assert run(tmp_path, tmp_path / "b", "--seed", "3").returncode == 0
    assert run(tmp_path, tmp_path / "c", "--seed", "4").returncode == 0
    a, b, c = ((tmp_path / d / "sos-train.tsv").read_text() for d in "abc")
    assert a == b and a != c
    r = run(tmp_path, tmp_path / "d", "--poison-rate", "0.9")
    assert r.returncode != 0 and "label != target" in r.stderr
