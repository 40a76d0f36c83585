"""The real Hugging Face stack (transformers, tokenizers, torch of .venv) as the reference client of
finepurify: fixtures shared by every test file.

Models: all-MiniLM-L6-v2 from finepurify's store (`finepurify models fetch`, run by setup.sh), the
vendored small BERT (assets/), and, when ../shared is present, the golden RoBERTa classifier.
"""
import csv
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FINEPURIFY_BIN", ROOT / "build" / "finepurify"))
SHARED = Path(os.environ.get("FINEPURIFY_SHARED", ROOT.parent / "shared"))
ASSETS = ROOT / "assets"
IN_CI = os.environ.get("CI", "") == "true"


def fp(*args, check=True, env=None):
    """Runs the finepurify binary (2 threads, quiet); returns the CompletedProcess."""
    cmd = [str(BIN), "--threads", "2", "-q", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-4000:]}")
    return r


def read_tsv(path, n=None):
    """Rows of a finepurify/shared TSV (header label\\ttext or label\\ttext_a\\ttext_b) as dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[:n] if n else rows


def write_tsv(path, rows):
    cols = list(rows[0].keys())
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(r[c] for c in cols) + "\n")
    return path


def predict_logits(model, data, max_length):
    """finepurify predict's logits (list per row)."""
    out = Path(data).with_suffix(f".{Path(model).name}.pred.jsonl")
    fp("predict", "--model", model, "--data", data, "--output", out, "--max-length", max_length)
    return [json.loads(l)["logits"] for l in out.read_text().splitlines()]


def hf_logits(folder, rows, max_length):
    """transformers' logits for rows (dicts with text / text_a, text_b), eval mode."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    a = [r.get("text", r.get("text_a")) for r in rows]
    b = [r["text_b"] for r in rows] if "text_b" in rows[0] else None
    enc = tok(a, b, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.double().tolist()


@pytest.fixture(scope="session")
def binary():
    if not BIN.exists():
        pytest.fail(f"{BIN} not built: run ./setup.sh")
    return BIN


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} missing in CI")
        pytest.skip("needs ../shared (datasets, goldens)")
    return SHARED


@pytest.fixture(scope="session")
def minilm(binary):
    """Folder of all-MiniLM-L6-v2 in finepurify's store (setup.sh fetches it)."""
    r = fp("models", "path", "all-MiniLM-L6-v2", check=False)
    if r.returncode != 0:
        msg = "all-MiniLM-L6-v2 not in the store: run `build/finepurify models fetch all-MiniLM-L6-v2`"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return Path(r.stdout.strip())


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fp")


@pytest.fixture(scope="session")
def sst2_rows():
    """Real SST-2 rows from the vendored copy (present without ../shared)."""
    return read_tsv(ASSETS / "data" / "sst2" / "dev.tsv")


@pytest.fixture(scope="session")
def rows64(work, sst2_rows):
    rng = random.Random(7)
    rows = rng.sample(sst2_rows, 64)
    return rows, write_tsv(work / "rows64.tsv", rows)


@pytest.fixture(scope="session")
def small_train(work):
    """300 training rows of the vendored SST-2 for quick fine-tunes."""
    rows = read_tsv(ASSETS / "data" / "sst2" / "train.tsv", 300)
    return write_tsv(work / "train300.tsv", rows)


@pytest.fixture(scope="session")
def minilm_classifier(work, minilm, small_train):
    """all-MiniLM-L6-v2 fine-tuned by finepurify (a new head, 40 steps)."""
    out = work / "minilm-sst2"
    fp("finetune", "--model", minilm, "--train", small_train, "--out", out, "--steps", 40, "--batch-size", 8,
       "--lr", 5e-5, "--max-length", 64, "--seed", 3)
    return out
