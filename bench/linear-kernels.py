#!/usr/bin/env python3
"""BERT's Linear products on the venv's torch through MKL (torch's Linear / mm) and through oneDNN
(mkldnn::_linear_pointwise, what finepurify's Linear layers call on the CPU), side by side: GFLOP/s
of the forward, the input gradient and the weight gradient per (out, in) shape, alternating the two
backends --passes times; then the batched Fisher's per-example weight products (sum_t g_t x_tᵀ for
each example, 64-deep) as MKL's bmm against one oneDNN call per example, and the squares summed.
The figures behind docs/perf.md's "Linear layers through oneDNN" section.

    .venv/bin/python bench/linear-kernels.py --threads 2
"""
import argparse
import time

import torch

import bert_shapes


def rate(fn, flops, reps):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return flops * reps / (time.perf_counter() - t0) / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bert_shapes.add_args(p)
    p.add_argument("--passes", type=int, default=3)
    a = p.parse_args()
    c = bert_shapes.setup(a)
    H, I = c["hidden_size"], c["intermediate_size"]
    B, T = a.batch_size, a.seq_len
    N = B * T
    pw = torch.ops.mkldnn._linear_pointwise
    dnn = lambda x, w, b=None: pw(x, w, b, "none", [], None)
    print(f"H {H}, I {I}, {N} tokens, {a.threads} threads, torch {torch.__version__}; GFLOP/s per pass (MKL | oneDNN)")
    for o, i in [(H, H), (I, H), (H, I)]:
        x, w, b, g = torch.randn(N, i), torch.randn(o, i) * 0.02, torch.zeros(o), torch.randn(N, o)
        fl = 2 * N * o * i
        rows = {"forward": [], "input gradient": [], "weight gradient": []}
        for _ in range(a.passes):
            rows["forward"].append((rate(lambda: torch.nn.functional.linear(x, w, b), fl, 20),
                                    rate(lambda: dnn(x, w, b), fl, 20)))
            rows["input gradient"].append((rate(lambda: torch.mm(g, w), fl, 20), rate(lambda: dnn(g, w.t()), fl, 20)))
            rows["weight gradient"].append((rate(lambda: torch.mm(g.t(), x), fl, 20),
                                            rate(lambda: dnn(g.t(), x.t()), fl, 20)))
        diff = (dnn(x, w, b) - torch.nn.functional.linear(x, w, b)).abs().max().item()
        for k, v in rows.items():
            print(f"{o:5d} x {i:<5d} {k:16s} " + "  ".join(f"{m:5.0f} | {d:5.0f}" for m, d in v)
                  + (f"   (forward max |diff| {diff:.1e})" if k == "forward" else ""))
    # the batched Fisher's per-example products on one layer's six Linears
    shapes = [(H, H)] * 4 + [(I, H), (H, I)]
    data = [(torch.randn(B, T, o), torch.randn(B, T, i)) for o, i in shapes]

    def per_example_mkl():
        for gy, x in data:
            chunk = max(1, min(32, (1 << 20) // (gy.shape[2] * x.shape[2])))  # as src/purify/fisher.cpp
            for s in range(0, B, chunk):
                torch.bmm(gy[s:s + chunk].transpose(1, 2), x[s:s + chunk])

    def per_example_dnn():
        for gy, x in data:
            for n in range(B):
                dnn(gy[n].t(), x[n].t())

    def with_squares():
        for gy, x in data:
            chunk = max(1, min(32, (1 << 20) // (gy.shape[2] * x.shape[2])))
            buf = torch.zeros(gy.shape[2], x.shape[2])
            for s in range(0, B, chunk):
                G = torch.bmm(gy[s:s + chunk].transpose(1, 2), x[s:s + chunk])
                buf.add_(G.square_().sum(0))

    fl = sum(2 * B * T * o * i for o, i in shapes)
    for _ in range(a.passes):
        m, d, s = (rate(f, fl, 3) for f in (per_example_mkl, per_example_dnn, with_squares))
        print(f"Fisher per-example products, one layer ({B} examples): MKL bmm {fl / m / 1e6:6.1f} ms ({m:.0f} GFLOP/s) | "
              f"oneDNN per example {fl / d / 1e6:6.1f} ms ({d:.0f}) | MKL bmm + squares summed {fl / s / 1e6:6.1f} ms")


if __name__ == "__main__":
    main()
