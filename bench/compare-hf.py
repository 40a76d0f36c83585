#!/usr/bin/env python3
"""finepurify next to transformers on the same torch (the project's .venv), the same model, the same
batches and threads, in one invocation: `finepurify bench` and the equivalent transformers loop
(eval-mode inference under no_grad; a training step = forward, cross-entropy, backward, AdamW step;
the per-example Fisher: finepurify's batched one against the naive transformers loop, one forward and
backward per example, squared gradients summed in float64), then the ratio.

Inputs: random token ids (B x --seq-len, no padding; the default), or with --data the first
B x --steps rows of a labelled TSV, tokenized by each side's own tokenizer (equal token for token) in
consecutive batches of B rows padded to each batch's longest (--padding longest) or to --seq-len
(--padding max). --preset bert-base times a random bert-base-shaped model instead of --model.
--repeats R alternates the two sides R times and reports each side's median (the two sides of one
repeat run back to back, so a machine that speeds up or slows down moves both).

    .venv/bin/python bench/compare-hf.py --model all-MiniLM-L6-v2 --threads 2 --repeats 3
    .venv/bin/python bench/compare-hf.py --data ../shared/data/sst2/dev.tsv --padding longest --seq-len 128
"""
import argparse
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def finepurify_bench(a, folder):
    cmd = [a.binary, "--threads", str(a.threads), "--device", a.device, "-q", "bench", "--batch-size", str(a.batch_size), "--seq-len",
           str(a.seq_len), "--steps", str(a.steps)]
    cmd += ["--preset", a.preset] if a.preset else ["--model", folder]
    if a.data:
        cmd += ["--data", a.data] + (["--pad-to-max"] if a.padding == "max" else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr}")
    out = out.stdout

    def grab(pattern):
        return float(re.search(pattern, out).group(1))

    return {"inference": grab(r"inference: ([\d.]+) examples/s"), "fine-tuning": grab(r"fine-tuning: ([\d.]+) examples/s"),
            "Fisher": grab(r"per-example Fisher, batched \(\d+\): ([\d.]+) examples/s"),
            "rss": grab(r"peak resident memory: ([\d.]+) GiB")}, out


def read_rows(path, n):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = []
        for line in f:
            parts = line.rstrip("\n").split("\t")
            rows.append((int(parts[header.index("label")]), parts[1], parts[2] if len(parts) > 2 else None))
            if len(rows) == n:
                break
    return rows


class Transformers:
    """The transformers side: the model, its batches, and the three timed loops."""

    def __init__(self, a, folder):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

        self.torch, self.a = torch, a
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        if a.preset:
            self.model = BertForSequenceClassification(BertConfig(num_labels=2))
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        self.attn = getattr(self.model.config, "_attn_implementation", "?")
        B, T = a.batch_size, a.seq_len
        if a.data:
            tok = AutoTokenizer.from_pretrained(folder)
            rows = read_rows(a.data, B * a.steps)

            def encode(chunk, padding):
                pair = [r[2] for r in chunk] if chunk[0][2] is not None else None
                e = tok([r[1] for r in chunk], pair, truncation=True, max_length=T, padding=padding, return_tensors="pt")
                types = e.get("token_type_ids", torch.zeros_like(e["input_ids"]))
                return e["input_ids"], e["attention_mask"], types, torch.tensor([r[0] % 2 for r in chunk])

            padding = "max_length" if a.padding == "max" else "longest"
            self.batches = [encode(rows[s:s + B], padding) for s in range(0, len(rows) - B + 1, B)]
            self.singles = [encode([r], "longest") for r in rows[:B]]
        else:
            vocab = self.model.config.vocab_size
            ids = torch.randint(5, vocab, (B, T))
            ones, zeros = torch.ones(B, T, dtype=torch.long), torch.zeros(B, T, dtype=torch.long)
            labels = torch.randint(0, 2, (B,))
            self.batches = [(ids, ones, zeros, labels)]
            self.singles = [(ids[i:i + 1], ones[i:i + 1], zeros[i:i + 1], labels[i:i + 1]) for i in range(B)]
        dev = torch.device(a.device)
        self.model.to(dev)
        self.batches = [tuple(t.to(dev) for t in b) for b in self.batches]
        self.singles = [tuple(t.to(dev) for t in b) for b in self.singles]
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-5)

    def forward(self, b):
        ids, mask, types, _ = b
        return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    def sync(self):  # CUDA runs asynchronously: a timer read without it measures the launches only
        if self.a.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def timed(self, fn):
        steps = self.a.steps
        fn(self.batches[0])  # warm-up
        self.sync()
        t0 = time.perf_counter()
        for i in range(steps):
            fn(self.batches[i % len(self.batches)])
        self.sync()
        return self.a.batch_size * steps / (time.perf_counter() - t0)

    def infer(self, b):
        self.model.eval()
        with self.torch.no_grad():
            self.forward(b)

    def train(self, b):
        self.model.train()
        self.opt.zero_grad()
        self.torch.nn.functional.cross_entropy(self.forward(b), b[3]).backward()
        self.opt.step()

    def fisher(self):  # the path a user would write: one example at a time, squared .grad summed
        torch = self.torch
        self.model.eval()
        acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in self.model.named_parameters()}
        for b in self.singles:
            self.model.zero_grad()
            torch.nn.functional.cross_entropy(self.forward(b), b[3]).backward()
            for n, p in self.model.named_parameters():
                if p.grad is not None:
                    acc[n] += p.grad.double() ** 2

    def run(self):
        r = {"inference": self.timed(self.infer), "fine-tuning": self.timed(self.train)}
        self.fisher()  # warm-up
        self.sync()
        t0 = time.perf_counter()
        self.fisher()
        self.sync()
        r["Fisher"] = len(self.singles) / (time.perf_counter() - t0)
        r["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576  # KiB -> GiB
        return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="model folder or finepurify model name")
    ap.add_argument("--preset", choices=["bert-base"], help="a random model of this shape instead of --model")
    ap.add_argument("--binary", default=str(ROOT / "build" / "finepurify"))
    ap.add_argument("--data", help="labelled TSV: time its first rows instead of random ids")
    ap.add_argument("--padding", choices=["longest", "max"], default="longest", help="with --data")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64, help="tokens per example (with --data: the max length)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N], both sides")
    a = ap.parse_args()
    if a.preset and a.data:
        sys.exit("--data needs a model with a tokenizer (--model), not --preset")
    folder = None if a.preset else subprocess.run([a.binary, "-q", "models", "path", a.model], capture_output=True,
                                                  text=True, check=True).stdout.strip()
    import torch
    import transformers

    hf = Transformers(a, folder)
    ours, theirs = [], []
    for _ in range(a.repeats):
        ours.append(finepurify_bench(a, folder)[0])
        theirs.append(hf.run())
    med = {k: statistics.median(r[k] for r in ours) for k in ours[0]}
    hmed = {k: statistics.median(r[k] for r in theirs) for k in theirs[0]}
    what = f"random bert-base shape" if a.preset else f"{a.model} ({folder})"
    inputs = (f"the first {a.batch_size * a.steps} rows of {a.data}, max length {a.seq_len}, padding {a.padding}"
              if a.data else f"random ids {a.batch_size} x {a.seq_len}, no padding")
    print(f"model {what}; {inputs}; batch {a.batch_size}, {a.threads} threads, {a.steps} timed steps, median of "
          f"{a.repeats}; device {a.device}; torch {torch.__version__}, transformers {transformers.__version__} (attention: {hf.attn})")
    print(f"{'':14}{'finepurify':>12}{'transformers':>14}{'ratio':>8}")
    for k in ("inference", "fine-tuning", "Fisher"):
        note = (f"   (batched vs the per-example loop; ours is {med['Fisher'] / med['fine-tuning']:.2f}x our fine-tuning)"
                if k == "Fisher" else "")
        print(f"{k:14}{med[k]:>9.1f} ex/s{hmed[k]:>11.1f} ex/s{med[k] / hmed[k]:>7.2f}x{note}")
    if a.repeats > 1:
        # The two sides of one repeat run back to back: their ratio moves less with this machine's
        # drift than either side's median, so the median of the per-repeat ratios is printed too.
        for k in ("inference", "fine-tuning", "Fisher"):
            ratios = [o[k] / t[k] for o, t in zip(ours, theirs)]
            print(f"  {k} per repeat: finepurify {', '.join(f'{r[k]:.1f}' for r in ours)}; "
                  f"transformers {', '.join(f'{r[k]:.1f}' for r in theirs)}; ratios "
                  f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}x)")
    print(f"{'peak RSS':14}{med['rss']:>8.2f} GiB{hmed['rss']:>10.2f} GiB   (finepurify: its bench process; "
          f"transformers: this Python process, both loops)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
