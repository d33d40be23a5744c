"""Model selection shared by every trainer: validation ranking and best-weights bookkeeping.

``MLETrainer``, ``BPRTrainer``/``APRTrainer``, ``ACVAETrainer`` and ``AdversarialTrainer`` all
select on validation NDCG@10 under full ranking; they use these pieces so that "best" means
the same thing everywhere.

Selection and stopping are separate: the weights kept are always those of the raw best
validation NDCG@10, while *when to stop* may be decided on a smoothed curve and only after a
minimum number of epochs (:class:`BestWeights`' ``min_epochs`` and ``smoothing``; the configs'
``min_epochs`` / ``stop_smoothing``, checked by :func:`check_stopping`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from recgym._checks import check_int
from recgym.evaluation import evaluate
from recgym.splits import Split


def validation_metrics(
    model: Any,
    split: Split,
    *,
    max_len: int,
    batch_size: int,
    device: torch.device | str,
    stage: str = "valid",
) -> dict[str, float]:
    """``{"eval/NDCG@10": .., "eval/HR@10": ..}``: validation stage (or ``stage``), full ranking.

    ``model`` is any ``recgym.types.Recommender``; it is scored in eval mode without gradients
    (``recgym.evaluate`` handles that through ``model.score``).
    """
    frame = evaluate(
        model, split, stage, protocols=("full",), ks=(10,), max_len=max_len,
        batch_size=batch_size, device=device,
    )  # fmt: skip
    values = frame.set_index(["metric", "k"])["value"]
    return {"eval/NDCG@10": float(values[("NDCG", 10)]), "eval/HR@10": float(values[("HR", 10)])}


Monitor = Callable[[Any], Mapping[str, float]]
"""Called with the model at every validation; its ``{name: value}`` go into the trainer's
history next to ``eval/*`` and are never used for selection or stopping."""


def test_monitor(
    split: Split, *, max_len: int, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> Monitor:
    """A :data:`Monitor` of test full-ranking NDCG@10 / HR@10 (``monitor/test_NDCG@10``, ..).

    For measuring, never for choosing: the official MFGAN code reports the best of its test
    evaluations during training; the maximum of this column over a run minus the test score
    of the validation-selected weights is how much that practice inflates a result.
    """

    def monitor(model: Any) -> dict[str, float]:
        metrics = validation_metrics(
            model, split, max_len=max_len, batch_size=batch_size, device=device, stage="test"
        )
        return {key.replace("eval/", "monitor/test_"): value for key, value in metrics.items()}

    return monitor


def best_of_monitor(history: pd.DataFrame, column: str = "monitor/test_NDCG@10") -> float:
    """The largest value ``column`` took over a run (NaN when it was never recorded)."""
    values = history[column].dropna() if column in history else pd.Series(dtype=float)
    return float(values.max()) if len(values) else float("nan")


def monitor_info(history: pd.DataFrame) -> dict[str, float]:
    """What a trainer's history says through :func:`test_monitor` (``{}`` without it): the best
    test NDCG@10 over its evaluations and the last one (the weights training ended with, not
    the selected ones; with a fine-tuned system kept at its start, the last evaluation shows
    where the updates themselves led)."""
    column = "monitor/test_NDCG@10"
    if column not in history or history[column].isna().all():
        return {}
    return {
        "test_ndcg10_best_of_evals": best_of_monitor(history, column),
        "test_ndcg10_last_eval": float(history[column].dropna().iloc[-1]),
        "valid_ndcg10_last_eval": float(history["eval/NDCG@10"].dropna().iloc[-1]),
    }


@dataclass(frozen=True)
class TrainingResult:
    """What an early-stopped trainer's ``fit`` measured.

    Attributes:
        history: one row per epoch (the trainer's ``fit`` lists its columns); validation
            ``eval/NDCG@10`` and ``eval/HR@10`` are NaN on epochs not evaluated.
        best_epoch: the evaluated epoch with the best validation NDCG@10 (its weights are the
            model's at the end); 0 if nothing was evaluated, or if the starting weights
            (``evaluate_start``) stayed best.
        best_metrics: ``{"eval/NDCG@10": .., "eval/HR@10": ..}`` of that epoch.
        stopped_early: whether patience ran out before the last epoch.
    """

    history: pd.DataFrame
    best_epoch: int
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False


def check_stopping(config: Any) -> None:
    """Raise a ``ValueError`` unless ``config.min_epochs`` is an int >= 0 and
    ``config.stop_smoothing`` an int >= 1 (the fields :meth:`BestWeights.for_config` reads)."""
    check_int(config, "min_epochs", 0)
    check_int(config, "stop_smoothing", 1)


class BestWeights:
    """The best validation NDCG@10 seen, its epoch, metrics and a copy of the weights; and the
    stopping rule.

    **Selection** is always on the raw values: the weights kept are those of the evaluation
    with the highest validation NDCG@10, from the first evaluation on. **Stopping** is decided
    on the trailing mean of the last ``smoothing`` values (fewer at the start): :meth:`update`
    says stop once ``patience`` evaluations at epochs ``>= min_epochs`` have passed since that
    mean last reached a new high. With the defaults (``min_epochs=0, smoothing=1``) this is
    the plain rule "stop after ``patience`` evaluations without a better NDCG@10".

    Why a trailing mean of ``k`` values rather than an exponential moving average: ``k`` is
    counted in evaluations like ``patience``, ``k = 1`` is exactly the raw rule, a single noisy
    dip or spike moves the mean by ``1/k`` and is forgotten after ``k`` evaluations (an EMA
    never forgets it entirely, and its factor has no unit a user can reason with), and the
    state to resume is just the last ``k`` values. The cost: a sustained decline is seen about
    ``(k - 1) / 2`` evaluations later than by the raw rule.

    Args:
        patience: evaluations without a new high of the (smoothed) NDCG@10 before stopping.
        min_epochs: evaluations at earlier epochs never use up patience, so :meth:`update`
            cannot say stop before epoch ``min_epochs + (patience - 1) * eval_every``; the
            best weights are still tracked from the start. For a warm-up + decay schedule
            whose high-learning-rate phase gives noisy, early bests.
        smoothing: the ``k`` of the trailing mean (``1`` = the raw values).
    """

    def __init__(self, *, patience: int, min_epochs: int = 0, smoothing: int = 1) -> None:
        self.patience, self.min_epochs, self.smoothing = patience, min_epochs, smoothing
        self.stale, self.score, self.epoch = 0, -math.inf, 0
        self.metrics: dict[str, float] = {}
        self.state: dict[str, Tensor] | None = None
        self.recent: list[float] = []  # the last `smoothing` validation NDCG@10 values
        self.smoothed_best = -math.inf

    @classmethod
    def for_config(cls, config: Any) -> BestWeights:
        """From a trainer config's ``patience`` and, when it has them, ``min_epochs`` and
        ``stop_smoothing`` (otherwise the plain rule)."""
        return cls(
            patience=config.patience, min_epochs=getattr(config, "min_epochs", 0),
            smoothing=getattr(config, "stop_smoothing", 1),
        )  # fmt: skip

    def update(self, row: dict, model: nn.Module, path: Path | None = None) -> bool:
        """Record an evaluated ``row`` (``epoch``, ``eval/...``); True when patience ran out.

        On a new raw best the weights are copied (and written with ``model.save(path)`` when
        a path is given).
        """
        value = row["eval/NDCG@10"]
        if value > self.score:
            self.score, self.epoch = value, row["epoch"]
            self.metrics = {k: float(v) for k, v in row.items() if k.startswith("eval/")}
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if path is not None:
                model.save(path)
        return self._out_of_patience(float(value), int(row["epoch"]))

    def _out_of_patience(self, value: float, epoch: int) -> bool:
        self.recent = [*self.recent, value][-self.smoothing :]
        smoothed = sum(self.recent) / len(self.recent)
        if smoothed > self.smoothed_best:
            self.smoothed_best, self.stale = smoothed, 0
        elif epoch >= self.min_epochs:
            self.stale += 1
        return self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping and best weights (``weights_only``-loadable), for resuming a run."""
        return {"stale": self.stale, "score": self.score, "epoch": self.epoch,
                "metrics": dict(self.metrics), "state": self.state,
                "recent": list(self.recent), "smoothed_best": self.smoothed_best}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (one written before smoothing existed, too: it was raw)."""
        self.stale, self.score = int(state["stale"]), float(state["score"])
        self.epoch, self.metrics = int(state["epoch"]), dict(state["metrics"])
        self.state = state["state"]
        self.recent = [float(v) for v in state.get("recent", [])]
        self.smoothed_best = float(state.get("smoothed_best", self.score))

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into ``model`` (no-op if nothing was evaluated)."""
        if self.state is not None:
            model.load_state_dict(self.state)
