"""The pieces a trainer needs to take data-parallel steps: shard losses, synced steps, states.

Under DDP every rank computes a loss on its shard and ``backward`` averages the gradients
over the ``W`` ranks. A trainer's loss is a *mean over target positions*; with shards of
unequal size the average of the ranks' means is not the global mean, so each rank returns
``W * sum_r / M`` (``sum_r`` its positions' summed loss, ``M`` the global batch's positions):
the averaged gradient is then exactly the gradient of the single-process batch loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from agents.distributed.group import all_reduce_sum, gather_objects, get_rank, get_world_size
from recgym._torch_io import optimizer_step
from recgym.errors import RecGymError


def scaled_shard_loss(
    policy: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    negatives: Tensor | None,
    n_global: int,
    *,
    loss_fn: Callable[..., Tensor],
    loss: str,
) -> Tensor:
    """``W * (rank's summed position loss) / n_global`` of a shard of windows.

    Args:
        policy: the (unwrapped) policy.
        inputs, targets: ``(b, L)`` this rank's windows (``b`` may be 0).
        negatives: ``(b, L)`` BCE negatives or ``None``.
        n_global: target positions of the whole global batch (``>= 1``).
        loss_fn: :func:`agents.mle.sequence_loss` (a mean over this shard's positions).
        loss: ``"ce"`` or ``"bce"``.

    A shard without targets returns ``0 * sum(parameters)``: every parameter still takes
    part in the graph, so DDP's all-reduce finds all of them and no rank waits.
    """
    n_local = int((targets > 0).sum())
    if n_local == 0:
        return sum(p.sum() for p in policy.parameters()) * 0.0
    mean = loss_fn(policy, inputs, targets, loss=loss, negatives=negatives)
    return mean * (n_local * get_world_size() / n_global)


def synced_step(
    ddp: nn.Module,
    args: tuple,
    optimizer: torch.optim.Optimizer,
    parameters: Any,
    *,
    max_grad_norm: float | None,
    what: str,
    hint: str,
) -> float:
    """One DDP step: forward ``ddp(*args)``, check the **global** loss, backward, clip, step.

    The loss is all-reduced first, so a non-finite loss on any rank raises on every rank
    (none is left waiting in the gradient all-reduce). Returns the global loss, the mean of
    the ranks' returned losses.
    """
    local = ddp(*args)
    total = float(all_reduce_sum(local.detach().reshape(1).double())[0]) / get_world_size()
    if not math.isfinite(total):
        raise RecGymError(f"{what} became non-finite ({total}) on some rank; {hint}")
    optimizer_step(local, optimizer, parameters, max_grad_norm=max_grad_norm, what=what,
                   hint=hint)  # fmt: skip
    return total


def gather_rank_states(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``state`` (RNG states and the like), in rank order, on every rank."""
    return [dict(s) for s in gather_objects(dict(state))]


def own_rank_state(states: list[Any], *, path: str) -> dict[str, Any]:
    """This rank's entry of a gathered list saved in a checkpoint.

    Raises:
        ValueError: the checkpoint was written by another number of ranks.
    """
    world = get_world_size()
    if len(states) != world:
        raise ValueError(f"{path!r} was written by {len(states)} rank(s); resume it with the same "
                         f"world size ({len(states)}), not {world}")  # fmt: skip
    return dict(states[get_rank()])
