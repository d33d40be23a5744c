"""Full-ranking evaluation sharded over ranks, equal to the single-process result to the digit.

The single-process :func:`recgym.evaluate` scores the targets of a stage in batches of
``batch_size`` rows. Here rank ``r`` of ``W`` scores batches ``r, r + W, r + 2W, ...`` — the very
same batches, so every score and every integer rank is bit-for-bit the one a single process
computes — and the ranks (int64, one per target) are gathered and put back in order. The
metrics are then computed by the same :func:`recgym.metrics.metrics_from_ranks` on the same
array: equal to the last digit. (All-reducing float sums of per-target metrics would be
correct only to rounding, as the summation order differs.)

Only the ``"full"`` protocol is sharded: the sampled protocols draw their negatives from one
generator stream across batches, which a rank cannot skip ahead in.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from agents.distributed.group import comm_device, get_rank, get_world_size, is_distributed
from recgym.evaluation import (  # the protocol's own pieces, so nothing is reimplemented
    EvaluationConfig,
    _check_scores,
    _FullRanker,
    _inference,
    _score_fn,
)
from recgym.metrics import metrics_from_ranks
from recgym.splits import Split


def sharded_full_ranks(
    recommender: object,
    split: Split,
    stage: str = "valid",
    *,
    max_len: int = 50,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``(N,)`` int64 full-ranking ranks of every target of ``stage``, in target order.

    Each rank scores its share of the batches; every rank returns the whole gathered array
    (in a single process: the plain ranks). Same arguments as :func:`recgym.evaluate`.
    """
    config = EvaluationConfig(stage=stage, protocols=("full",), ks=(10,), max_len=max_len,
                              batch_size=batch_size, device=device)  # fmt: skip
    split.validate()
    users, positions = split.targets(config.stage)
    dev, n = config.device, len(users)
    if n == 0:
        raise ValueError(f"stage {stage!r} of {split!r} has no targets to evaluate")
    rank, world = get_rank(), get_world_size()
    items, offsets = split.dataset.tensors(dev)
    ranker, score_fn = _FullRanker(items, offsets, split.dataset.n_items), _score_fn(recommender)
    users_t = torch.as_tensor(users, device=dev)
    positions_t = torch.as_tensor(positions, device=dev)
    starts = list(range(0, n, config.batch_size))
    mine: list[Tensor] = []
    with _inference(recommender):
        for start in starts[rank::world]:
            u = users_t[start : start + config.batch_size]
            p = positions_t[start : start + config.batch_size]
            scores = score_fn(split.dataset.windows(u, p, config.max_len, device=dev), u)
            _check_scores(scores, len(u), split.dataset.n_items, dev)
            mine.append(ranker(scores, u, p, items[p])[0])
    local = torch.cat(mine) if mine else torch.zeros(0, dtype=torch.int64, device=dev)
    return _gather_batches(local, starts, n, config.batch_size)


def _gather_batches(local: Tensor, starts: list[int], n: int, batch_size: int) -> Tensor:
    """Put each rank's batches (``starts[r::W]``) back in target order, on every rank."""
    if not is_distributed():
        return local
    world = get_world_size()
    sizes = [sum(min(batch_size, n - s) for s in starts[r::world]) for r in range(world)]
    padded = torch.full((max(sizes),), -1, dtype=torch.int64, device=comm_device())
    padded[: len(local)] = local.to(comm_device())
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = torch.empty(n, dtype=torch.int64)
    for r, part in enumerate(parts):
        cursor = 0
        for s in starts[r::world]:
            size = min(batch_size, n - s)
            out[s : s + size] = part[cursor : cursor + size].cpu()
            cursor += size
    return out.to(local.device)


def sharded_validation_metrics(
    model: object, split: Split, *, max_len: int, batch_size: int, device: torch.device | str
) -> dict[str, float]:
    """``{"eval/NDCG@10", "eval/HR@10"}`` of the validation stage under full ranking, sharded.

    Equal to :func:`agents.early_stopping.validation_metrics` of one process, to the digit.
    """
    ranks = sharded_full_ranks(model, split, "valid", max_len=max_len, batch_size=batch_size,
                               device=device)  # fmt: skip
    values = metrics_from_ranks(ranks.cpu(), (10,))
    return {"eval/NDCG@10": values["NDCG@10"], "eval/HR@10": values["HR@10"]}
