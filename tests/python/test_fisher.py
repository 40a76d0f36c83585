"""finepurify's per-example diagonal Fisher on all-MiniLM-L6-v2 equals a plain torch loop over
transformers' model (one example at a time, eval mode, squared gradients averaged): relative
error per tensor <= 1e-5, for the batched path (one padded batch of 16: per-example gradients
formed from the recorded activations) and for the per-example reference loop (--batch-size 1)."""
import pytest

from conftest import fp, read_tsv, write_tsv

N = 16


@pytest.mark.parametrize("batch", [16, 1])
def test_fisher_matches_torch_loop(minilm_classifier, work, sst2_rows, batch):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = sst2_rows[100:100 + N]
    data = write_tsv(work / "fisher16.tsv", rows)
    out = work / f"fisher16-b{batch}.safetensors"
    fp("fisher", "--model", minilm_classifier, "--data", data, "--max-length", 64, "--batch-size", batch,
       "--output", out)
    ours = load_file(out)

    tok = AutoTokenizer.from_pretrained(minilm_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_classifier).eval()
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in model.named_parameters()}
    for r in rows:
        enc = tok(r["text"], truncation=True, max_length=64, return_tensors="pt")
        model.zero_grad()
        model(**enc, labels=torch.tensor([int(r["label"])])).loss.backward()
        for n, p in model.named_parameters():
            acc[n] += p.grad.detach().double() ** 2  # float32 gradients, float64 sums (as finepurify)
    ref = {n: v / N for n, v in acc.items()}

    assert set(ours) == set(ref), f"names differ: {set(ours) ^ set(ref)}"
    # The attention key bias has an exactly zero gradient in exact arithmetic (softmax ignores a
    # constant added to every score), so both sides hold only rounding noise there: such tensors
    # are checked against the scale of the whole Fisher instead.
    scale = max(r.abs().max().item() for r in ref.values())
    worst = (0.0, "")
    for n, r in ref.items():
        o = ours[n].double()
        assert o.shape == r.shape, n
        if r.abs().max().item() <= 1e-9 * scale:
            assert (o - r).abs().max().item() <= 1e-9 * scale, n
            continue
        rel = (o - r).norm().item() / r.norm().item()
        worst = max(worst, (rel, n))
    print(f"worst relative error {worst[0]:.3g} ({worst[1]})")
    assert worst[0] <= 1e-5, f"worst tensor {worst[1]}: relative error {worst[0]:.3g}"
