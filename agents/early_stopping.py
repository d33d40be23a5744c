"""Model selection shared by every trainer: validation ranking and best-weights bookkeeping.

``MLETrainer``, ``BPRTrainer``/``APRTrainer``, ``ACVAETrainer`` and ``AdversarialTrainer`` all
select on validation NDCG@10 under full ranking; they use these two pieces so that "best" means
the same thing everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from recgym.evaluation import evaluate
from recgym.splits import Split


def validation_metrics(
    model: Any, split: Split, *, max_len: int, batch_size: int, device: torch.device | str
) -> dict[str, float]:
    """``{"eval/NDCG@10": .., "eval/HR@10": ..}``: validation stage, full ranking.

    ``model`` is any ``recgym.types.Recommender``; it is scored in eval mode without gradients
    (``recgym.evaluate`` handles that through ``model.score``).
    """
    frame = evaluate(
        model, split, "valid", protocols=("full",), ks=(10,), max_len=max_len,
        batch_size=batch_size, device=device,
    )  # fmt: skip
    values = frame.set_index(["metric", "k"])["value"]
    return {"eval/NDCG@10": float(values[("NDCG", 10)]), "eval/HR@10": float(values[("HR", 10)])}


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


class BestWeights:
    """The best validation NDCG@10 seen, its epoch, metrics and a copy of the weights.

    Args:
        patience: evaluations without improvement after which :meth:`update` says stop.
    """

    def __init__(self, *, patience: int) -> None:
        self.patience, self.stale = patience, 0
        self.score, self.epoch = -math.inf, 0
        self.metrics: dict[str, float] = {}
        self.state: dict[str, Tensor] | None = None

    def update(self, row: dict, model: nn.Module, path: Path | None = None) -> bool:
        """Record an evaluated ``row`` (``epoch``, ``eval/...``); True when patience ran out.

        On improvement the weights are copied (and written with ``model.save(path)`` when a
        path is given).
        """
        if row["eval/NDCG@10"] > self.score:
            self.score, self.epoch, self.stale = row["eval/NDCG@10"], row["epoch"], 0
            self.metrics = {k: float(v) for k, v in row.items() if k.startswith("eval/")}
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if path is not None:
                model.save(path)
            return False
        self.stale += 1
        return self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping and best weights (``weights_only``-loadable), for resuming a run."""
        return {"stale": self.stale, "score": self.score, "epoch": self.epoch,
                "metrics": dict(self.metrics), "state": self.state}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.stale, self.score = int(state["stale"]), float(state["score"])
        self.epoch, self.metrics = int(state["epoch"]), dict(state["metrics"])
        self.state = state["state"]

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into ``model`` (no-op if nothing was evaluated)."""
        if self.state is not None:
            model.load_state_dict(self.state)
