#!/usr/bin/env python3
"""Why the batched Fisher sums squared per-example gradients in float32 before the float64
accumulator: times the two reductions over the examples of a (c, out, in) block of squared
per-example weight gradients (MiniLM shapes: 32 x 384 x 384 and 10 x 1536 x 384), on the venv's
torch, and prints each one's largest relative error against an exact float64 sum.

    .venv/bin/python bench/fisher-reduction.py --threads 2
"""
import argparse
import time

import torch


def ms(f, n=5):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {a.threads} threads")
    print(f"{'block':>16} {'sum(0, dtype=float64)':>24} {'sum(0) in float32':>20} {'ratio':>7}   max relative error f64 / f32")
    for c, out, inn in [(32, 384, 384), (10, 1536, 384)]:
        g = torch.randn(c, out, inn) * torch.rand(c, 1, 1) * 3  # examples of different gradient scale
        sq = g.square()
        acc = torch.zeros(out, inn, dtype=torch.float64)
        exact = g.double().square().sum(0)
        t64 = ms(lambda: acc.add_(sq.sum(0, dtype=torch.float64)))
        t32 = ms(lambda: acc.add_(sq.sum(0)))
        e64 = ((sq.sum(0, dtype=torch.float64) - exact).abs() / exact).max().item()
        e32 = ((sq.sum(0).double() - exact).abs() / exact).max().item()
        print(f"{f'{c}x{out}x{inn}':>16} {t64:>21.1f} ms {t32:>17.1f} ms {t64 / t32:>6.0f}x   {e64:.1e} / {e32:.1e}")


if __name__ == "__main__":
    main()
