"""Every kind of folder finepurify writes loads with transformers' Auto classes unchanged (no
missing, unexpected or mismatched key) and gives finepurify predict's logits (within 1e-4)."""
import json

import pytest

from conftest import ASSETS, fp, hf_logits, predict_logits, read_tsv, write_tsv

TOL = 1e-4
BERT_MINI = ASSETS / "models" / "bert-mini-mlm"


@pytest.fixture(scope="session")
def attack_folder(work, small_train):
    """A BadWord backdoor planted by `finepurify attack` into the vendored small BERT."""
    out = work / "attack-badword"
    test = write_tsv(work / "test100.tsv", read_tsv(ASSETS / "data" / "sst2" / "test.tsv", 100))
    fp("attack", "--method", "badword", "--pretrained", BERT_MINI, "--train", small_train, "--test", test,
       "--target-label", 1, "--poison-rate", 0.2, "--epochs", 1, "--lr", 1e-4, "--max-length", 48, "--seed", 1,
       "--out", out)
    return out


@pytest.fixture(scope="session")
def clean_set(work):
    return write_tsv(work / "clean120.tsv", read_tsv(ASSETS / "data" / "sst2" / "train.tsv", 1120)[1000:])


def purify_args(attack_folder, clean_set, out):
    return ["--pretrained", BERT_MINI, "--suspect", attack_folder, "--clean", clean_set, "--reset-fraction", 0.05,
            "--epochs", 1, "--max-length", 48, "--probe-tokens", 0, "--out", out]


@pytest.fixture(scope="session")
def purify_folder(work, attack_folder, clean_set):
    out = work / "purified"
    fp("purify", *purify_args(attack_folder, clean_set, out))
    return out


@pytest.fixture(scope="session")
def defend_folder(work, attack_folder, clean_set):
    out = work / "defended-magnitude"
    fp("defend", "--method", "magnitude", *purify_args(attack_folder, clean_set, out))
    return out


@pytest.fixture(scope="session")
def roberta_folder(work, shared, small_train):
    """The golden tiny RoBERTa classifier fine-tuned further by finepurify (BPE tokenizer files)."""
    out = work / "roberta-ft"
    fp("finetune", "--model", shared / "goldens" / "models" / "roberta-h32-2cls", "--train", small_train,
       "--out", out, "--steps", 10, "--batch-size", 8, "--max-length", 64, "--seed", 2)
    return out


KINDS = ["minilm_classifier", "attack_folder", "purify_folder", "defend_folder", "roberta_folder"]


@pytest.mark.parametrize("kind", KINDS)
def test_transformers_loads_folder_unchanged(kind, request, rows64):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = request.getfixturevalue(kind)
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert not info.get("error_msgs"), info
    AutoTokenizer.from_pretrained(folder)
    rows, path = rows64
    ours = predict_logits(folder, path, 64)
    theirs = hf_logits(folder, rows, 64)
    assert len(ours) == len(theirs) == 64
    worst = max(abs(a - b) for ra, rb in zip(ours, theirs) for a, b in zip(ra, rb))
    assert worst < TOL, f"{kind}: max |logit difference| {worst:.3g}"


def test_purify_report_and_manifest_written(purify_folder):
    report = json.loads((purify_folder / "purify_report.json").read_text())
    assert report and (purify_folder / "manifest.json").exists()
