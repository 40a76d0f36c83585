"""Tokenization of 2,000 real rows (single texts and pairs, with and without truncation) equals the
Hugging Face tokenizers, token for token, for a BERT (WordPiece) and a RoBERTa (byte-level BPE)
vocabulary.

transformers 5 has no Python ("slow") tokenizers any more: `use_fast=False` returns the same
tokenizers-backed class. So the live stack is the reference for the default (fast) mode; for
`--tokenizer-compat slow` (the transformers 4.x Python tokenizers, checked exactly against the
4.33 goldens by the C++ parity tests) the live check is that it equals the live tokenizer on every
row except those where finepurify's own fast and slow modes differ (the documented corner cases,
e.g. odd-budget pair truncation), and that on those rows fast mode is the one equal to live."""
import json
import random
import shutil

import pytest

from conftest import ASSETS, fp, read_tsv, write_tsv

SINGLE = ["sst2", "agnews", "imdb"]
PAIR = ["qnli", "qqp"]
PER_DATASET = 400  # 5 datasets x 400 = 2,000 rows


@pytest.fixture(scope="session")
def real_rows(work, shared):
    rng = random.Random(11)
    files = {}
    for kind, names in (("single", SINGLE), ("pair", PAIR)):
        rows = []
        for name in names:
            data = read_tsv(shared / "data" / name / "train.tsv")
            rows += rng.sample(data, PER_DATASET)
        files[kind] = (rows, write_tsv(work / f"tok-{kind}.tsv", rows))
    assert sum(len(r) for r, _ in files.values()) == 2000
    return files


@pytest.fixture(scope="session")
def roberta_vocab(work, shared):
    """roberta-base's vocabulary (vocab.json + merges.txt) as a model folder."""
    out = work / "roberta-base-vocab"
    shutil.copytree(shared / "goldens" / "vocab" / "roberta-base", out)
    (out / "config.json").write_text(json.dumps({
        "model_type": "roberta", "architectures": ["RobertaForMaskedLM"], "vocab_size": 50265,
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2}))
    return out


def encode_hf(folder, rows, max_length, use_fast):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, use_fast=use_fast)
    out = []
    for r in rows:
        a = r.get("text", r.get("text_a"))
        b = r.get("text_b")
        e = tok(a, b, truncation="longest_first" if max_length else False, max_length=max_length or None,
                return_token_type_ids=True, return_attention_mask=True)
        out.append((e["input_ids"], e["token_type_ids"], e["attention_mask"]))
    return out


def encode_fp(folder, path, max_length, compat, work):
    out = work / f"tok-{path.stem}-{folder.name}-{max_length}-{compat}.jsonl"
    fp("--tokenizer-compat", compat, "tokenize", "--model", folder, "--data", path, "--max-length", max_length,
       "--output", out)
    return [(j["input_ids"], j["token_type_ids"], j["attention_mask"])
            for j in map(json.loads, out.read_text().splitlines())]


@pytest.mark.parametrize("vocab", ["bert", "roberta"])
@pytest.mark.parametrize("compat", ["fast", "slow"])
@pytest.mark.parametrize("kind", ["single", "pair"])
@pytest.mark.parametrize("max_length", [0, 64])
def test_tokens_equal_hugging_face(vocab, compat, kind, max_length, real_rows, request, work):
    folder = request.getfixturevalue("minilm" if vocab == "bert" else "roberta_vocab")
    rows, path = real_rows[kind]
    ours = encode_fp(folder, path, max_length, compat, work)
    theirs = encode_hf(folder, rows, max_length, use_fast=True)
    assert len(ours) == len(theirs)
    bad = [i for i, (o, t) in enumerate(zip(ours, theirs)) if o != t]
    if compat == "slow":
        fast = encode_fp(folder, path, max_length, "fast", work)
        documented = {i for i, (o, f) in enumerate(zip(ours, fast)) if o != f}
        assert all(fast[i] == theirs[i] for i in documented)
        bad = [i for i in bad if i not in documented]
    detail = ""
    if bad:
        i = bad[0]
        r = rows[i]
        detail = f"first: row {i} {r!r}\n ours   {ours[i][0]}\n theirs {theirs[i][0]}"
    assert not bad, f"{len(bad)} of {len(rows)} rows differ; {detail}"
    if max_length:
        assert max(len(o[0]) for o in ours) == max_length, "truncation was never exercised"


def test_vendored_rows_without_shared(minilm, work):
    """The same check on the vendored SST-2 rows (runs even without ../shared)."""
    rows = read_tsv(ASSETS / "data" / "sst2" / "test.tsv", 500)
    path = write_tsv(work / "tok-vendored.tsv", rows)
    assert encode_fp(minilm, path, 32, "fast", work) == encode_hf(minilm, rows, 32, use_fast=True)
