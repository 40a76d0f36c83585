"""The reverse direction: classifiers fine-tuned and saved by transformers (single and sharded
safetensors) are read by finepurify with transformers' logits (within 1e-4)."""
import json

import pytest

from conftest import fp, hf_logits, predict_logits

TOL = 1e-4


@pytest.fixture(scope="session")
def hf_trained(work, minilm, sst2_rows):
    """all-MiniLM-L6-v2 with a new 2-class head, 12 AdamW steps in transformers, saved twice."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm)
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    rows = sst2_rows[:96]
    for i in range(0, len(rows), 8):
        batch = rows[i:i + 8]
        enc = tok([r["text"] for r in batch], truncation=True, max_length=64, padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([int(r["label"]) for r in batch])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    single, sharded = work / "hf-single", work / "hf-sharded"
    for out, shard in ((single, "10GB"), (sharded, "20MB")):
        model.save_pretrained(out, safe_serialization=True, max_shard_size=shard)
        tok.save_pretrained(out)
    assert (sharded / "model.safetensors.index.json").exists(), "transformers did not shard"
    assert len(json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]) > 0
    return single, sharded


@pytest.mark.parametrize("which", [0, 1], ids=["single", "sharded"])
def test_finepurify_reads_transformers_classifier(hf_trained, which, rows64):
    folder = hf_trained[which]
    rows, path = rows64
    ours = predict_logits(folder, path, 64)
    theirs = hf_logits(folder, rows, 64)
    worst = max(abs(a - b) for ra, rb in zip(ours, theirs) for a, b in zip(ra, rb))
    assert worst < TOL, f"max |logit difference| {worst:.3g}"


def test_sharded_and_single_agree_bitwise(hf_trained, rows64):
    _, path = rows64
    assert predict_logits(hf_trained[0], path, 64) == predict_logits(hf_trained[1], path, 64)


def test_eval_accepts_transformers_folder(hf_trained, rows64):
    _, path = rows64
    r = fp("eval", "--model", hf_trained[1], "--data", path, "--max-length", 64, "--json")
    assert 0.0 <= json.loads(r.stdout)["accuracy"] <= 1.0
