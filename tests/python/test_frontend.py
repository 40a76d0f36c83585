"""The Python front end (python/finepurify over the C++ library, built as build/python/finepurify/_core):
every function on the vendored small BERT, checked against the CLI binary and the real transformers,
typed results with to_dict(), progress callbacks, and library errors as FinepurifyError with the
CLI's kinds. One test purifies a model held by transformers in memory and checks its logits.
"""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import ASSETS, ROOT, fp, read_tsv, write_tsv

sys.path.insert(0, str(Path(os.environ.get("FINEPURIFY_PYTHON_BUILD", ROOT / "build" / "python"))))
finepurify = pytest.importorskip("finepurify", reason="build/python/finepurify not built (cmake --build build)")

PRE = ASSETS / "models" / "bert-mini-mlm"
ML = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("frontend")
    train = read_tsv(ASSETS / "data" / "sst2" / "train.tsv")
    test = read_tsv(ASSETS / "data" / "sst2" / "test.tsv", 300)
    return {
        "dir": d,
        "attacker": write_tsv(d / "attacker.tsv", train[:1200]),
        "clean": write_tsv(d / "clean.tsv", train[-400:-150]),
        "clean_dev": write_tsv(d / "clean_dev.tsv", train[-150:]),
        "test": write_tsv(d / "test.tsv", test),
    }


@pytest.fixture(scope="module")
def suspect(data):
    """A BadWord backdoor (trigger cf, target 1) planted by finepurify.attack."""
    lines = []
    r = finepurify.attack(PRE, data["attacker"], data["dir"] / "suspect", test=data["test"], target_label=1,
                          triggers=["cf"], epochs=3, max_length=ML, seed=5, progress=lines.append)
    assert lines and any("train" in l or "epoch" in l for l in lines), lines[:5]
    return r


def defense_options(data, suspect):
    return dict(clean_dev=data["clean_dev"], attack_test=suspect.out + "/triggered_test.tsv", target_label=1,
                attack_test_paired=True, test=suspect.out + "/clean_test.tsv", max_length=ML, epochs=1, seed=2)


def test_attack_plants_a_backdoor_and_evaluate_matches_the_cli(data, suspect):
    assert isinstance(suspect, finepurify.AttackResult)
    assert suspect.asr > 0.8, suspect
    assert 0.5 < suspect.clean_test_accuracy <= 1.0
    assert (Path(suspect.out) / "model.safetensors").is_file()
    json.dumps(suspect.to_dict())  # plain data
    ev = finepurify.evaluate(suspect.out, data["test"], max_length=ML, attack_test=suspect.out + "/triggered_test.tsv",
                             target_label=1)
    assert isinstance(ev, finepurify.EvalResult)
    assert ev.logits.shape == (300, 2) and ev.n == 300
    cli = json.loads(fp("eval", "--model", suspect.out, "--data", data["test"], "--max-length", ML, "--json",
                        "--attack-test", suspect.out + "/triggered_test.tsv", "--target-label", 1).stdout)
    assert ev.accuracy == pytest.approx(cli["accuracy"], abs=1e-12)
    assert ev.asr == pytest.approx(cli["asr"], abs=1e-12)
    # The attack's own figures are the same model on the same test set.
    assert suspect.clean_test_accuracy == pytest.approx(ev.accuracy, abs=1e-12)
    # The returned weights are the saved ones.
    from safetensors.torch import load_file
    saved = load_file(str(Path(suspect.out) / "model.safetensors"))
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(saved[name], suspect.state_dict[name])


def test_scan_names_the_trigger_and_writes_its_html_report(data, suspect):
    report = data["dir"] / "scan.json"
    s = finepurify.scan(PRE, suspect.out, data["clean"], report=report, max_length=ML, probe_tokens=20)
    assert isinstance(s, finepurify.ScanResult)
    assert "cf" in s.top_tokens[:10], s.top_tokens[:10]
    assert "cf" in s.flagged, s.probe[:5]
    assert json.loads(report.read_text())["top_tokens"][0]["token"] == s.top_tokens[0]
    html = report.with_suffix(".html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert json.loads(json.dumps(s.to_dict()))["probe"][0]["token"] == s.probe[0].token


def test_purify_removes_the_backdoor_and_saves_what_it_returns(data, suspect):
    out = data["dir"] / "purified"
    lines = []
    r = finepurify.purify(PRE, suspect.out, data["clean"], out=out, progress=lines.append, grid=[0.05, 0.3],
                          max_acc_drop=5, **defense_options(data, suspect))
    assert isinstance(r, finepurify.PurifyResult)
    assert r.method == "fine-purifying" and r.chosen_rho in (0.05, 0.3)
    assert [p.rho for p in r.points] == [0.05, 0.3]
    # The purify lowers the ASR by more than three binomial standard errors on the triggered rows (at
    # p = 0.5, the widest). A fixed 30-point fall held on one dropout draw only: on this barely trained
    # suspect (1,200 rows, clean dev 60%) a new dropout stream gave 100 -> 79.7% (flip 100 -> 45%).
    n_triggered = len((Path(suspect.out) / "triggered_test.tsv").read_text().splitlines()) - 1
    assert r.suspect.asr > 0.8 and r.purified.asr < r.suspect.asr - 3 * (0.25 / n_triggered) ** 0.5, r
    assert r.purified.flip_rate is not None and r.purified.flip_rate < r.suspect.flip_rate
    assert any("fisher" in l.lower() for l in lines), lines[:10]
    for f in ("model.safetensors", "config.json", "purify_report.json", "purify_report.html", "manifest.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "purify_report.json").read_text())["chosen_rho"] == r.chosen_rho
    from safetensors.torch import load_file
    saved = load_file(str(out / "model.safetensors"))
    assert set(r.state_dict) <= set(saved)
    for n, t in r.state_dict.items():
        assert torch.equal(saved[n], t), n
    d = r.to_dict()
    assert d["purified"]["asr"] == r.purified.asr and "state_dict" not in d
    json.dumps(d)
    # The same run through defend() with the method named.
    m = finepurify.defend("magnitude", PRE, suspect.out, data["clean"], reset_fraction=0.3, **defense_options(data, suspect))
    assert m.method == "magnitude" and m.chosen_rho == 0.3 and m.out is None


def test_purify_a_transformers_model_in_memory(data, suspect):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(suspect.out).eval()
    tok = AutoTokenizer.from_pretrained(suspect.out)
    rows = read_tsv(Path(suspect.out) / "triggered_test.tsv", 64)
    enc = tok([r["text"] for r in rows], truncation=True, max_length=ML, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).logits.clone()
    r = finepurify.purify(PRE, model, data["clean"], tokenizer=tok, reset_fraction=0.3, out=data["dir"] / "mem",
                          **defense_options(data, suspect))
    assert r.model is model
    model.eval()
    with torch.no_grad():
        after = model(**enc).logits
    assert not torch.allclose(before, after, atol=1e-3), "the model was not updated"
    # The in-memory model now computes what the saved purified folder computes in transformers.
    ref = AutoModelForSequenceClassification.from_pretrained(data["dir"] / "mem").eval()
    with torch.no_grad():
        expect = ref(**enc).logits
    assert torch.allclose(after, expect, atol=1e-5), (after - expect).abs().max()
    # ... and what the library measured: its ASR on the triggered rows.
    asr = (after.argmax(-1) == 1).float().mean().item()
    assert asr < 0.9 * (before.argmax(-1) == 1).float().mean().item() or r.purified.asr < 0.5


def test_finetune_and_option_names(data):
    assert "max_acc_drop" in finepurify.option_names("purify")
    assert "method" not in finepurify.option_names("purify") and "method" in finepurify.option_names("defend")
    r = finepurify.finetune(PRE, data["clean"], data["dir"] / "ft", dev=data["clean_dev"], epochs=1, max_length=ML, seed=1)
    assert isinstance(r, finepurify.FinetuneResult) and 0 <= r.dev_accuracy <= 1
    assert (data["dir"] / "ft" / "model.safetensors").is_file()
    with pytest.raises(finepurify.FinepurifyError) as e:  # an existing output is not overwritten
        finepurify.finetune(PRE, data["clean"], data["dir"] / "ft", epochs=1)
    assert e.value.kind == "invalid_argument" and "ft" in str(e.value)


def test_errors_carry_the_cli_kind_exit_code_and_the_name(data, tmp_path):
    with pytest.raises(finepurify.FinepurifyError) as e:
        finepurify.purify(PRE, PRE, data["clean"], max_acc_drops=3)
    assert e.value.kind == "invalid_argument" and e.value.exit_code == 2
    assert "max_acc_drops" in str(e.value) and "max_acc_drop" in str(e.value)  # names the typo and the known keys
    with pytest.raises(finepurify.FinepurifyError) as e:
        finepurify.purify(PRE, PRE, data["clean"], max_acc_drop=-1)
    assert "max_acc_drop" in str(e.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((PRE / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(finepurify.FinepurifyError) as e:
        finepurify.evaluate(bad, data["test"])
    assert e.value.kind.startswith("safetensors.") and "model.safetensors" in str(e.value)
    assert e.value.exit_code == fp("eval", "--model", bad, "--data", data["test"], check=False).returncode
    with pytest.raises(finepurify.FinepurifyError) as e:
        finepurify.scan(PRE, PRE, tmp_path / "missing.tsv")
    assert "missing.tsv" in str(e.value)
    with pytest.raises(TypeError):
        finepurify.scan(PRE, 42, data["clean"])


def test_a_raising_progress_callback_stops_the_run(data):
    class Stop(Exception):
        pass

    def progress(line):
        raise Stop(line)

    with pytest.raises(Stop):
        finepurify.finetune(PRE, data["clean"], data["dir"] / "stopped", epochs=1, max_length=ML, progress=progress)
    assert not (data["dir"] / "stopped").exists()
