"""What the product benchmarks (gemm-ceiling.py, linear-kernels.py) share: the options naming a model
(its config.json gives the shapes), the thread count and the batch of B x T tokens, and the setup
they imply (torch's threads set, its seed fixed)."""
import json
from pathlib import Path

import torch


def add_args(p):
    p.add_argument("--model", default=str(Path.home() / ".cache/finepurify/models/all-MiniLM-L6-v2"),
                   help="a folder with config.json (default: all-MiniLM-L6-v2 in the model store)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)


def setup(a):
    """Sets torch's threads and seed from the parsed options; returns the model's config.json."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return json.loads((Path(a.model) / "config.json").read_text())
