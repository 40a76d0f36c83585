#!/usr/bin/env python3
"""The matrix products alone of a BERT inference and training step, timed on the venv's torch: the
ceiling any implementation that does the same work reaches on this machine and thread count.

A training step of a BERT encoder is almost all matrix products (per layer: query, key, value,
attention output, the two FFN Linears, and the two attention products per head; backward: the input
and the weight gradient of each). This times exactly those products, with the real shapes of a
model's config.json, batch B x T tokens, nothing else (no GELU, LayerNorm, softmax, dropout, AdamW,
embeddings), and prints the examples/s a step would reach if that were all it did. Compared with
the ex/s compare-hf.py measures, it says how much of a side's time is already the unavoidable
products, and so the largest speed-up left to anything that does the same arithmetic.

It times the Linear products twice: through torch's Linear (addmm, MKL's sgemm: what transformers
runs) and through oneDNN's mkldnn::_linear_pointwise in the same torch (what finepurify's Linear
layers run on the CPU; its weight gradient stays torch.mm). On AMD CPUs MKL runs its AVX2 code and
oneDNN AVX-512, so the two ceilings differ.

    .venv/bin/python bench/gemm-ceiling.py --threads 2 --batch-size 32 --seq-len 64
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

import bert_shapes


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bert_shapes.add_args(p)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    c = bert_shapes.setup(a)
    H, I, L, heads = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"]
    B, T = a.batch_size, a.seq_len
    N, d = B * T, H // heads
    x, xi = torch.randn(N, H), torch.randn(N, I)
    W = {(o, i): torch.randn(o, i) * 0.02 for (o, i) in [(H, H), (I, H), (H, I)]}
    bias = {o: torch.zeros(o) for o in (H, I)}
    q, k, v = (torch.randn(B, heads, T, d) for _ in range(3))
    probs = torch.softmax(torch.randn(B, heads, T, T), -1)
    linears = [(H, H, x)] * 4 + [(I, H, x), (H, I, xi)]  # (out, in, input) per layer

    onednn = hasattr(torch.ops, "mkldnn") and hasattr(torch.ops.mkldnn, "_linear_pointwise")

    def products(lin, grad_in):
        def forward():
            for _ in range(L):
                for o, i, inp in linears:
                    lin(inp, W[(o, i)], bias[o])
                torch.matmul(q, k.transpose(-1, -2))
                torch.matmul(probs, v)

        def backward():
            for _ in range(L):
                for o, i, inp in linears:
                    grad_in(grads[o], W[(o, i)])  # input gradient [N, in]
                    torch.mm(grads[o].t(), inp)  # weight gradient [out, in]
                torch.matmul(dprobs, k)  # dq
                torch.matmul(dprobs.transpose(-1, -2), q)  # dk
                torch.matmul(probs.transpose(-1, -2), q)  # dv
                torch.matmul(q, v.transpose(-1, -2))  # dprobs
        return forward, backward

    grads = {o: torch.randn(N, o) for o in (H, I)}
    dprobs = torch.randn(B, heads, T, T)
    sides = [("torch Linear (MKL)", products(torch.nn.functional.linear, torch.mm))]
    if onednn:
        pw = torch.ops.mkldnn._linear_pointwise
        sides.append(("oneDNN Linear", products(lambda x, w, b: pw(x, w, b, "none", [], None),
                                                lambda g, w: pw(g, w.t(), None, "none", [], None))))

    def timed(fn):
        fn()
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    flops_fwd = L * (2 * N * (4 * H * H + 2 * H * I) + 4 * B * heads * T * T * d)
    print(f"{c.get('_name_or_path', Path(a.model).name)}: H {H}, I {I}, {L} layers, batch {B} x {T}, {a.threads} threads, "
          f"torch {torch.__version__}, median of {a.repeats}")
    for name, (forward, backward) in sides:
        tf = timed(forward)
        tt = timed(lambda: (forward(), backward()))
        print(f"{name + ':':20s} matrix products of inference:       {1e3 * tf:7.1f} ms  "
              f"{flops_fwd / tf / 1e9:6.1f} GFLOP/s  ceiling {B / tf:6.1f} ex/s")
        print(f"{name + ':':20s} matrix products of a training step: {1e3 * tt:7.1f} ms  "
              f"{3 * flops_fwd / tt / 1e9:6.1f} GFLOP/s  ceiling {B / tt:6.1f} ex/s")


if __name__ == "__main__":
    main()
