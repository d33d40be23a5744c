"""Learning-rate schedules of :class:`agents.mle.MLETrainer`, as pure functions of progress.

The factor depends only on how many epochs have passed (fractional, per step), so a resumed
run sets exactly the learning rate the uninterrupted one did, with no scheduler state to save.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, progress: float, *, warmup: float, horizon: float) -> float:
    """Multiplier of the base learning rate of the step that ends at ``progress`` epochs.

    Args:
        schedule: ``"constant"`` (1 after warm-up) or ``"cosine"`` (1 after warm-up, then a
            half cosine down to 0 at ``horizon`` epochs; 0 from there on).
        progress: epochs done once this step is taken, fractional
            (``epoch - 1 + (step + 1) / steps``, so the first step has ``1 / steps``).
        warmup: epochs of linear warm-up, factor ``progress / warmup`` (``0`` = none).
        horizon: the cosine's length in epochs (``> warmup``).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    if warmup > 0 and progress < warmup:
        return progress / warmup
    if schedule == "constant":
        return 1.0
    span = max(horizon - warmup, 1e-12)
    done = min(max(progress - warmup, 0.0) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * done))
