#!/usr/bin/env python3
"""finepurify next to transformers on the same torch (the project's .venv), the same model, batch
shape and threads, in one invocation: `finepurify bench --model M` and the equivalent transformers
loop (eval-mode inference under no_grad; a training step = forward, cross-entropy, backward, AdamW
step; the per-example Fisher: finepurify's batched one against the naive transformers loop, one
forward and backward per example, squared gradients summed), then the ratio. Run with the venv's Python:

    .venv/bin/python bench/compare-hf.py --model all-MiniLM-L6-v2 --threads 2
"""
import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def finepurify_bench(binary, model, batch, seq, steps, threads):
    out = subprocess.run([binary, "--threads", str(threads), "-q", "bench", "--model", model, "--batch-size", str(batch),
                          "--seq-len", str(seq), "--steps", str(steps)], capture_output=True, text=True, check=True).stdout
    inf = float(re.search(r"inference: ([\d.]+) examples/s", out).group(1))
    tr = float(re.search(r"fine-tuning: ([\d.]+) examples/s", out).group(1))
    fisher = float(re.search(r"per-example Fisher, batched \(\d+\): ([\d.]+) examples/s", out).group(1))
    return inf, tr, fisher, out


def transformers_bench(folder, batch, seq, steps, threads):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    types = torch.zeros(batch, seq, dtype=torch.long)
    labels = torch.randint(0, 2, (batch,))

    def timed(fn):
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - t0) / steps

    def infer():
        model.eval()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, token_type_ids=types)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train():
        model.train()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, labels)
        loss.backward()
        opt.step()

    def fisher():  # the path a user would write: one example at a time, squared .grad summed
        model.eval()
        acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in model.named_parameters()}
        for i in range(batch):
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1], token_type_ids=types[i:i + 1]).logits,
                labels[i:i + 1])
            loss.backward()
            for n, p in model.named_parameters():
                acc[n] += p.grad.double() ** 2

    t_inf = timed(infer)
    t_tr = timed(train)
    fisher()  # warm-up
    t0 = time.perf_counter()
    fisher()
    t_fi = time.perf_counter() - t0
    return batch / t_inf, batch / t_tr, batch / t_fi, torch.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="model folder or finepurify model name")
    ap.add_argument("--binary", default=str(ROOT / "build" / "finepurify"))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    folder = subprocess.run([a.binary, "-q", "models", "path", a.model], capture_output=True, text=True,
                            check=True).stdout.strip()
    import transformers
    fi, ft, ff, raw = finepurify_bench(a.binary, folder, a.batch_size, a.seq_len, a.steps, a.threads)
    hi, ht, hf, tv = transformers_bench(folder, a.batch_size, a.seq_len, a.steps, a.threads)
    print(f"model {a.model} ({folder}), batch {a.batch_size} x {a.seq_len} tokens, {a.threads} threads, {a.steps} "
          f"timed steps each; torch {tv}, transformers {transformers.__version__}")
    print(f"{'':14}{'finepurify':>12}{'transformers':>14}{'ratio':>8}")
    print(f"{'inference':14}{fi:>9.1f} ex/s{hi:>11.1f} ex/s{fi / hi:>7.2f}x")
    print(f"{'fine-tuning':14}{ft:>9.1f} ex/s{ht:>11.1f} ex/s{ft / ht:>7.2f}x")
    print(f"{'Fisher':14}{ff:>9.1f} ex/s{hf:>11.1f} ex/s{ff / hf:>7.2f}x   (batched vs the per-example loop; "
          f"ours is {ff / ft:.2f}x our fine-tuning)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
