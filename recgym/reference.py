"""Reference reward functions: the logged-item hit and a known user model's likelihood.

Both satisfy :class:`recgym.types.RewardFn`; learned discriminators live in ``rewards``.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from recgym.types import SessionState


class HitReward:
    """1 when the recommended item is the user's logged next item, else 0.

    Where the logged sequence has no next item (``state.target == 0``) nothing hits, since
    actions are never the padding id 0.

    Returns:
        ``(B,)`` float32 rewards in ``{0, 1}``.
    """

    def __call__(self, state: SessionState, action: Tensor) -> Tensor:
        """Reward ``(B,)`` actions against ``state.target``."""
        return (action == state.target).to(torch.float32)

    def __repr__(self) -> str:
        return "HitReward()"


@runtime_checkable
class LogProbOracle(Protocol):
    """A known user model: the log-probability of every next item given the history.

    The synthetic user model (``recgym.synthetic``) implements it.
    """

    def log_prob(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, L)`` histories and ``(B,)`` users -> ``(B, n_items + 1)`` log-probabilities."""
        ...


class OracleReward:
    """The user model's (log-)probability of the recommended item: a ground-truth reward.

    Impossible items (e.g. the synthetic user never repeats an item) have ``log p = -inf``, but
    environment rewards must be finite, so ``log p`` is clamped from below at ``log_floor``.

    Args:
        oracle: any object with ``log_prob(history (B, L), user (B,)) -> (B, n_items + 1)``.
        log: reward ``max(log p(action | history), log_floor)`` (default) or ``p``.
        log_floor: the finite lower bound of log rewards (``< 0``).

    Raises:
        TypeError: ``oracle`` has no ``log_prob`` method.
        ValueError: ``log_floor`` is not a finite negative number.
    """

    def __init__(
        self, oracle: LogProbOracle, *, log: bool = True, log_floor: float = -30.0
    ) -> None:
        if not callable(getattr(oracle, "log_prob", None)):
            raise TypeError(
                f"oracle must have a log_prob(history, user) method; got {type(oracle).__name__}"
            )
        if not (isinstance(log_floor, (int, float)) and math.isfinite(log_floor) and log_floor < 0):
            raise ValueError(f"log_floor must be a finite number < 0; got {log_floor!r}")
        self.oracle = oracle
        self.log = bool(log)
        self.log_floor = float(log_floor)

    def __call__(self, state: SessionState, action: Tensor) -> Tensor:
        """Reward ``(B,)`` actions with their ``(B,)`` float (log-)probability."""
        log_prob = self.oracle.log_prob(state.history, state.user)  # (B, n_items + 1)
        chosen = log_prob.gather(1, action.unsqueeze(1)).squeeze(1)  # (B,)
        return chosen.clamp(min=self.log_floor) if self.log else chosen.exp()

    def __repr__(self) -> str:
        name = type(self.oracle).__name__
        return f"OracleReward({name}, log={self.log}, log_floor={self.log_floor})"
