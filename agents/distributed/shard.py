"""Disjoint, seeded shards of users and of minibatches over the ranks of a process group.

Both follow ``torch.utils.data.DistributedSampler``: a permutation drawn from a seeded
generator (the same on every rank), then rank ``r`` of ``W`` takes entries ``r, r + W, ...``.
So the shards are disjoint, together they cover everything, and a given ``(seed, W)`` always
gives the same shards.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents.distributed.group import get_rank, get_world_size


def check_world_size(n_users: int, world_size: int | None = None, *, what: str = "users") -> None:
    """Raise unless every rank can get at least one of ``n_users``.

    Every rank computes the same check from the same numbers, so all of them raise together.

    Raises:
        ValueError: ``world_size > n_users``.
    """
    world_size = get_world_size() if world_size is None else world_size
    if world_size > n_users:
        raise ValueError(f"world size {world_size} is larger than the number of {what} "
                         f"({n_users}): every rank needs at least one; launch at most "
                         f"{n_users} processes (this is rank {get_rank()})")  # fmt: skip


def shard_users(
    users: Tensor, *, seed: int, rank: int | None = None, world_size: int | None = None
) -> Tensor:
    """Rank ``rank``'s disjoint share of ``users``, sorted.

    Args:
        users: ``(U,)`` int64 user indices (e.g. an env's ``eligible_users``).
        seed: seeds the permutation (the same on every rank).
        rank, world_size: default: this process's.

    Returns:
        ``(ceil((U - rank) / W),)`` int64 users on ``users.device``.

    Raises:
        ValueError: more ranks than users.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    check_world_size(len(users), world_size)
    order = torch.randperm(len(users), generator=torch.Generator().manual_seed(int(seed)))
    mine = order[rank::world_size].to(users.device)
    return users[mine].sort().values


def rank_slice(batch: Tensor, rank: int | None = None, world_size: int | None = None) -> Tensor:
    """Rank ``rank``'s rows ``rank, rank + W, ...`` of a global ``(B, ...)`` batch.

    Slicing each minibatch of one seeded global order this way is exactly
    ``DistributedSampler``'s split: rank ``r`` sees ``perm[r::W]``, in batches of ``B / W``.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    return batch[rank::world_size]
