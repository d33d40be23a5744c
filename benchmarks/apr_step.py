"""Milliseconds per APR training step: whole-table perturbations vs the batch's distinct rows.

APR (``agents.apr``) perturbs the user and item embeddings by a fast-gradient ``Δ_adv`` that is
non-zero only on the rows of the batch. ``whole``: ``Δ`` held as ``(n_users, D)`` and
``(n_items + 1, D)`` tables (the textbook form, ``adversarial_loss`` over the tables, O(catalogue)
per step); ``rows``: :func:`agents.apr.batch_apr_loss`, ``Δ`` held on the ``(U, D)`` and
``(I, D)`` distinct rows of the batch (O(batch)), what :class:`agents.apr.APRTrainer` uses. Both
compute the same objective (``tests/agents/test_apr.py``). A step = loss, backward.

Usage::

    python benchmarks/apr_step.py                         # Amazon Sports' sizes, d = 64
    python benchmarks/apr_step.py --users 943 --items 1682 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from agents.apr import batch_apr_loss
from agents.mf import BPRMFRecommender
from agents.perturbation import PerturbationConfig, adversarial_loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=35_598, help="n_users (Amazon Sports)")
    p.add_argument("--items", type=int, default=18_357, help="n_items (Amazon Sports)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def whole_table_loss(model, users, positives, negatives, config):
    def loss_at(delta):
        return model.bpr_loss(users, positives, negatives, delta=delta)

    tables = (model.user_embedding.weight, model.item_embedding.weight)
    return adversarial_loss(loss_at, tables, config, padding_idx=(None, 0))


def rows_loss(model, users, positives, negatives, config):
    return batch_apr_loss(model, users, positives, negatives, config)[0]


def time_steps(model, loss: Callable, args: argparse.Namespace, seed: int) -> float:
    """Mean milliseconds of ``args.steps`` steps (loss + backward) on random triples."""
    g = torch.Generator().manual_seed(seed)
    config = PerturbationConfig(eps=0.5, lam=1.0)
    batches = [
        [torch.randint(lo, hi, (args.batch_size,), generator=g).to(args.device)
         for lo, hi in ((0, args.users), (1, args.items + 1), (1, args.items + 1))]
        for _ in range(args.steps)
    ]  # fmt: skip
    loss(model, *batches[0], config).total.backward()  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for users, positives, negatives in batches:
        model.zero_grad(set_to_none=True)
        loss(model, users, positives, negatives, config).total.backward()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - tic) / args.steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = BPRMFRecommender(n_users=args.users, n_items=args.items, dim=args.dim, seed=0)
    model = model.to(args.device)
    print("| n_users | n_items | batch | whole-table ms/step | rows ms/step | speed-up |")
    print("|---|---|---|---|---|---|")
    for repeat in range(2):  # interleaved, so that load on a shared machine hits both
        whole = time_steps(model, whole_table_loss, args, seed=repeat)
        rows = time_steps(model, rows_loss, args, seed=repeat)
        print(f"| {args.users} | {args.items} | {args.batch_size} | {whole:.1f} | {rows:.1f} | "
              f"{whole / rows:.1f}× |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
