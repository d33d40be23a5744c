"""Milliseconds per MF-BPR and APR training step: the textbook dense form vs recgym's.

A step = loss, backward, Adagrad update, on random ``(user, positive, negative)`` triples.

* BPR, ``dense``: ``weight[users]`` indexing gives dense ``(n_users, D)`` and ``(n_items + 1,
  D)`` gradients, and Adagrad updates every row of both tables. ``recgym``:
  ``BPRMFRecommender.rows`` gives sparse gradients and Adagrad touches only the batch's rows
  (the same update, ``tests/agents/baselines/test_mf.py``).
* APR, ``dense``: the fast-gradient ``Δ_adv`` held as whole tables (``adversarial_loss`` over
  the tables) on top of dense gradients. ``recgym``:
  :func:`agents.baselines.apr.batch_apr_loss`, ``Δ``
  on the batch's distinct rows, sparse gradients (the same objective,
  ``tests/agents/baselines/test_apr.py``).

Usage::

    python benchmarks/mf_step.py --threads 1                  # Amazon Sports' sizes, d = 64
    python benchmarks/mf_step.py --users 943 --items 1682 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from agents.baselines.apr import batch_apr_loss
from agents.baselines.mf import BPRMFRecommender
from agents.perturbation import PerturbationConfig, adversarial_loss

ADVERSARY = PerturbationConfig(eps=0.5, lam=1.0)


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


def dense_bpr(model, users, positives, negatives, delta=None):
    """``model.bpr_loss`` with dense gradients (plain indexing), optionally perturbed."""
    p, q = model.user_embedding.weight, model.item_embedding.weight
    if delta is not None:
        p, q = p + delta[0], q + delta[1]
    margin = (p[users] * (q[positives] - q[negatives])).sum(-1)
    return F.softplus(-margin).sum()


def dense_apr(model, users, positives, negatives):
    def loss_at(delta):
        return dense_bpr(model, users, positives, negatives, delta)

    tables = (model.user_embedding.weight, model.item_embedding.weight)
    return adversarial_loss(loss_at, tables, ADVERSARY, padding_idx=(None, 0)).total


STEPS: dict[str, dict[str, Callable]] = {
    "BPR": {"dense": dense_bpr, "recgym": lambda m, *t: m.bpr_loss(*t)},
    "APR": {"dense": dense_apr, "recgym": lambda m, *t: batch_apr_loss(m, *t, ADVERSARY)[0].total},
}


def time_steps(loss: Callable, args: argparse.Namespace, seed: int) -> float:
    """Mean milliseconds of ``args.steps`` Adagrad steps on random triples."""
    model = BPRMFRecommender(n_users=args.users, n_items=args.items, dim=args.dim, seed=0)
    model = model.to(args.device)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05, initial_accumulator_value=0.1)
    g = torch.Generator().manual_seed(seed)
    batches = [
        [torch.randint(lo, hi, (args.batch_size,), generator=g).to(args.device)
         for lo, hi in ((0, args.users), (1, args.items + 1), (1, args.items + 1))]
        for _ in range(args.steps + 1)
    ]  # fmt: skip
    for i, triples in enumerate(batches):
        if i == 1:  # the first step warms up
            _synchronize(args.device)
            tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(model, *triples).backward()
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            optimizer.step()
    _synchronize(args.device)
    return 1e3 * (time.perf_counter() - tic) / args.steps


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| step | n_users | n_items | batch | dense ms | recgym ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, forms in STEPS.items():
        for repeat in range(2):  # interleaved, so that load on a shared machine hits both
            dense = time_steps(forms["dense"], args, seed=repeat)
            ours = time_steps(forms["recgym"], args, seed=repeat)
            print(f"| {name} | {args.users} | {args.items} | {args.batch_size} | {dense:.1f} | "
                  f"{ours:.1f} | {dense / ours:.1f}× |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
