"""Throughput of the multi-factor discriminator: one batched pass vs a Python loop over factors.

Scores random left-padded histories with MFGAN's discriminators (item id + 3 factors: a
categorical, a multi-valued and a binned one; ``L = 50``, ``d = 64`` by default) in eval mode
without gradients, and prints sequences/s of

* ``one_pass``: all ``m`` discriminators in one grouped pass (``factor_logits``), and
* ``loop``: the same weights, one discriminator at a time in a Python loop
  (``factor_logits(one_pass=False)``), and
* ``naive``: for reference, what one would write without ``rewards.attention``: ``m`` separate
  modules (``nn.Embedding`` + positions + ``nn.TransformerEncoderLayer`` + MLP head, with
  torch's fused fast path) each encoding every position, called in a loop,

for each batch size and device, with the ratios ``one_pass / loop`` and ``one_pass / naive``.

Usage::

    python benchmarks/reward_throughput.py                    # CPU (and CUDA when available)
    python benchmarks/reward_throughput.py --batch-sizes 256 4096 --repeats 5 --devices cpu
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from recgym.factors import ItemFactors, binned_factor, categorical_factor, multi_factor
from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator


def make_factors(n_items: int, seed: int) -> ItemFactors:
    """A catalogue with a categorical (20 values), a multi-valued (18, up to 3) and a binned
    (10 bins) factor, like ML-1M's category/genres/year."""
    rng = np.random.default_rng(seed)
    genres = [
        rng.choice(18, size=rng.integers(1, 4), replace=False).tolist() for _ in range(n_items)
    ]
    factors = ItemFactors(n_items=n_items)
    factors = factors.with_factor(categorical_factor("category", rng.integers(0, 20, n_items)))
    factors = factors.with_factor(multi_factor("genres", genres))
    return factors.with_factor(binned_factor("year", rng.normal(1990, 10, n_items), 10))


def make_histories(
    batch_size: int, max_len: int, n_items: int, device: torch.device, seed: int
) -> torch.Tensor:
    """``(B, max_len)`` left-padded histories with lengths uniform in ``1..max_len``."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items + 1, (batch_size, max_len), generator=generator)
    lengths = torch.randint(1, max_len + 1, (batch_size, 1), generator=generator)
    pad = torch.arange(max_len).unsqueeze(0) < max_len - lengths
    return items.masked_fill(pad, 0).to(device)


class NaiveFactorDiscriminator(nn.Module):
    """One factor's discriminator written the plain way (reference for the benchmark only)."""

    def __init__(self, table: torch.Tensor, n_values: int, dim: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("table", table)  # (n_items + 1, K) value ids
        self.embedding = nn.EmbeddingBag(n_values, dim, mode="mean", padding_idx=0)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.1)
        self.layer = nn.TransformerEncoderLayer(dim, 2, 4 * dim, 0.2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        b, length = history.shape
        values = self.table[history.reshape(-1)]
        x = self.embedding(values).view(b, length, -1) + self.position[:length].flip(0)
        x = self.layer(x, src_key_padding_mask=history == 0)
        return self.head(x[:, -1]).squeeze(-1)


def naive_discriminators(factors: ItemFactors, dim: int, max_len: int) -> list[nn.Module]:
    """Item id + one module per factor (item ids become a K = 1 "factor" of their own)."""
    ids = torch.arange(factors.n_items + 1).unsqueeze(1)
    tables = [(ids, factors.n_items + 1)] + [(f.as_tensor(), f.n_values) for f in factors.factors]
    return [NaiveFactorDiscriminator(t, n, dim, max_len).eval() for t, n in tables]


def best_times(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Best wall time of each function after a warm-up call, measured interleaved.

    Interleaving and taking the minimum keep the ratio honest on a shared, noisy machine: both
    variants see the same background load.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
        sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def run(args: argparse.Namespace) -> list[dict]:
    """Measure every (device, batch size); returns one row per measurement."""
    factors = make_factors(args.n_items, args.seed)
    config = MultiFactorConfig(dim=args.dim, max_len=args.max_len)
    rows = []
    for name in args.devices:
        device = torch.device(name)
        model = MultiFactorDiscriminator(config, factors, device=device, seed=args.seed).eval()
        naive = [d.to(device) for d in naive_discriminators(factors, args.dim, args.max_len)]
        for batch_size in args.batch_sizes:
            history = make_histories(batch_size, args.max_len, args.n_items, device, args.seed)
            fns = {
                "one_pass": lambda h=history, m=model: m.factor_logits(h),
                "loop": lambda h=history, m=model: m.factor_logits(h, one_pass=False),
                "naive": lambda h=history, ds=naive: torch.stack([d(h) for d in ds], 1),
            }
            with torch.no_grad():
                best = best_times(fns, device, args.repeats)
            rows.append(
                {
                    "device": name,
                    "B": batch_size,
                    "m": model.n_discriminators,
                    "one_pass": batch_size / best["one_pass"],
                    "loop": batch_size / best["loop"],
                    "naive": batch_size / best["naive"],
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    """Print sequences/s per configuration and the one-pass / loop and one-pass / naive ratios."""
    header = (
        f"{'device':<8}{'B':>6}{'m':>3}{'one_pass seq/s':>16}{'loop seq/s':>12}"
        f"{'naive seq/s':>13}{'vs loop':>9}{'vs naive':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['device']:<8}{r['B']:>6}{r['m']:>3}{r['one_pass']:>16,.0f}{r['loop']:>12,.0f}"
            f"{r['naive']:>13,.0f}{r['one_pass'] / r['loop']:>8.2f}x"
            f"{r['one_pass'] / r['naive']:>9.2f}x"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda)")
    parser.add_argument("--n-items", type=int, default=3706)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the naive reference modules initialise from the global RNG
    print(
        f"MFGAN discriminators: item id + 3 factors, L={args.max_len}, d={args.dim}, "
        f"n_items={args.n_items}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print_table(run(args))


if __name__ == "__main__":
    main()
