"""Evaluation speed on Amazon Beauty: every user, every protocol, two stand-in models.

Goal: full-ranking evaluation of all 22,363 Beauty users (12,101 items) in under 10 s on 2 CPU
cores. Models: (a) the popularity recommender, (b) a mean-pooled random item-embedding
dot-product model (``d = 64``), (c) the zoo's SASRec (2 blocks, ``d = 64``, random weights),
scored on full-width windows and in length-sorted trimmed chunks (``recgym.length_chunks``,
what ``evaluate`` does for a padding-invariant model); their ranks agree.

Usage::

    python benchmarks/eval_speed.py --threads 2
    python benchmarks/eval_speed.py --data-dir ../shared/data --batch-size 2048 --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch import Tensor

from recgym import SequenceDataset, Split, leave_one_out
from recgym.evaluation import PROTOCOLS, evaluate
from recgym.recommenders import PopularityRecommender

DEFAULT_DATA = Path(
    os.environ.get("RECGYM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


class MeanPoolDot(torch.nn.Module):
    """Score = <mean of the history's item embeddings, item embedding>; padding embeds to 0."""

    def __init__(self, n_items: int, dim: int = 64, *, seed: int = 0, device: str = "cpu"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(n_items + 1, dim, generator=g) / dim**0.5
        table[0] = 0.0
        self.embedding = torch.nn.Parameter(table.to(device), requires_grad=False)

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, L) -> (B, n_items + 1)``."""
        length = (history > 0).sum(dim=1, keepdim=True).clamp(min=1)
        pooled = self.embedding[history].sum(dim=1) / length  # (B, d)
        return pooled @ self.embedding.T


def load_beauty(data_dir: Path) -> SequenceDataset:
    """Beauty via the S3-Rec loader when it exists, else parsed directly (same id scheme)."""
    try:
        from recgym.datasets.amazon import load_s3rec  # type: ignore[import-not-found]
    except ImportError:
        load_s3rec = None
    if load_s3rec is not None:
        return load_s3rec(data_dir / "s3rec-amazon", "Beauty")
    lines = (data_dir / "s3rec-amazon" / "Beauty.txt").read_text().split("\n")
    sequences = [[int(t) for t in line.split()[1:]] for line in lines if line.strip()]
    return SequenceDataset.from_sequences(sequences, name="beauty")


def time_protocols(model: object, split: Split, args: argparse.Namespace) -> list[tuple]:
    """``(protocol, seconds, users/s, HR@10)`` per protocol (best of ``--repeat`` runs).

    Each protocol is timed on its own (scoring included), then all three in one call, which
    scores every batch once and is how evaluation is normally run.
    """
    rows = []
    for protocols in [(p,) for p in PROTOCOLS] + [PROTOCOLS]:
        best, frame = float("inf"), None
        for _ in range(args.repeat):
            start = time.perf_counter()
            frame = evaluate(
                model,
                split,
                "test",
                protocols=protocols,
                ks=(10,),
                batch_size=args.batch_size,
                device=args.device,
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        n = int(frame["n_targets"].iloc[0])
        hr = float(frame.query("metric == 'HR'")["value"].iloc[0])
        name = protocols[0] if len(protocols) == 1 else "all three"
        rows.append((name, best, n / best, hr))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="report the best of N runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    dataset = load_beauty(args.data_dir)
    split = leave_one_out(dataset)
    print(f"loaded {dataset} in {time.perf_counter() - start:.2f} s")
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, device={args.device}, "
        f"batch_size={args.batch_size}, test targets={split.n_targets('test')}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    from agents.sasrec import SASRecConfig, SASRecPolicy

    config = SASRecConfig(max_len=50, dim=args.dim, n_blocks=2, n_heads=1)
    full_width = SASRecPolicy(config, n_items=dataset.n_items, seed=0, device=args.device)
    full_width.padding_invariant = False  # every window scored at max_len, as before chunking
    models = {
        "popularity": PopularityRecommender.fit(split, device=args.device),
        f"meanpool-d{args.dim}": MeanPoolDot(dataset.n_items, args.dim, device=args.device),
        "sasrec-width50": full_width,
        "sasrec-chunked": SASRecPolicy(config, n_items=dataset.n_items, seed=0, device=args.device),
    }
    print(f"\n{'model':<16}{'protocol':<16}{'seconds':>9}{'users/s':>11}{'HR@10':>9}")
    print("(HR@10 of 'all three' is the full-ranking one)")
    for name, model in models.items():
        for protocol, seconds, rate, hr in time_protocols(model, split, args):
            print(f"{name:<16}{protocol:<16}{seconds:>9.2f}{rate:>11.0f}{hr:>9.4f}")


if __name__ == "__main__":
    main()
