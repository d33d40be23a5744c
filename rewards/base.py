"""The reward-model interface: a learned sequence scorer that plugs into any recgym environment.

A :class:`RewardModel` is a ``torch.nn.Module`` that scores (padded) item sequences. It satisfies
``recgym.types.RewardFn``: called with the environment's state and the recommended items, it
appends the items and returns the reward of the newest item of each history. Training happens
through :meth:`RewardModel.update` on batches of real vs generated sequences.

How a discriminator's output becomes a reward is explicit (:class:`RewardForm`):

=================  =========================  ==============================================
form               reward                     note
=================  =========================  ==============================================
``"log_d"``        ``log D``                  ≤ 0; GAIL's "generator maximises log D"
``"neg_log_1m_d"`` ``-log(1 - D)``            ≥ 0; the non-saturating GAN/AIRL form
``"d"``            ``D``                      in (0, 1); SeqGAN / MFGAN Eq. 9–10
``"logit"``        ``log D - log(1 - D)``     the raw logit (AIRL's reward)
``"neg_energy"``   ``-E``                     energy-based models (EB-SeqGAN)
=================  =========================  ==============================================
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recgym._torch_io import (
    atomic_torch_save,
    evaluating,
    load_module,
    module_payload,
    optimizer_step,
)
from recgym.types import RewardOutput, SessionState, append_items

RewardForm = Literal["log_d", "neg_log_1m_d", "d", "logit", "neg_energy"]
REWARD_FORMS: tuple[str, ...] = ("log_d", "neg_log_1m_d", "d", "logit", "neg_energy")


def logits_to_reward(logits: Tensor, form: RewardForm) -> Tensor:
    """Turn discriminator logits ``(..., )`` (``D = sigmoid(logits)``) into rewards.

    For ``"neg_energy"`` the input is an energy ``E`` and the reward is ``-E``. The log forms are
    computed with ``logsigmoid`` so they stay finite for large logits.
    """
    if form == "log_d":
        return F.logsigmoid(logits)
    if form == "neg_log_1m_d":
        return -F.logsigmoid(-logits)
    if form == "d":
        return torch.sigmoid(logits)
    if form == "logit":
        return logits
    if form == "neg_energy":
        return -logits
    raise ValueError(f"reward form must be one of {REWARD_FORMS}; got {form!r}")


class RewardModel(nn.Module, ABC):
    """Base class of learned reward models over item sequences.

    Subclasses implement :meth:`forward` (sequence logits or energies) and :meth:`loss`; the
    base class provides the ``RewardFn`` call, no-grad rewards, the update step with its own
    optimiser, and save/load. Subclasses keep their frozen config dataclass in ``self.config``
    and must be constructible as ``cls(config, **init_kwargs)`` with ``init_kwargs`` returned by
    :meth:`init_kwargs` (tensors such as factor tables are saved with the weights).

    Attributes:
        reward_form: how :meth:`forward`'s output becomes a reward (see module docstring).
        n_items: catalogue size; valid item ids are ``1..n_items``.
    """

    reward_form: RewardForm = "d"

    def __init__(self, *, n_items: int) -> None:
        super().__init__()
        if not isinstance(n_items, int) or n_items < 1:
            raise ValueError(f"n_items must be a positive int; got {n_items!r}")
        self.n_items = n_items
        self._optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def forward(self, history: Tensor) -> Tensor:
        """Score sequences.

        Args:
            history: ``(B, L)`` int64 left-padded item sequences; the newest item is last.

        Returns:
            ``(B,)`` logits (``D = sigmoid``) or energies, per :attr:`reward_form`.
        """

    @abstractmethod
    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """Discriminator loss on real vs generated sequences, both ``(B, L)``; a scalar."""

    # ------------------------------------------------------------------ optional hooks
    def breakdown(self, history: Tensor) -> dict[str, Tensor]:
        """Per-part rewards of the newest item, name -> ``(B,)``; empty when there are no parts."""
        return {}

    def init_kwargs(self) -> dict[str, Any]:
        """Extra constructor arguments (besides ``config``) needed to rebuild the model."""
        return {"n_items": self.n_items}

    # ------------------------------------------------------------------ rewards
    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def check_history(self, history: Tensor) -> None:
        """Raise a clear error for histories of the wrong dtype, shape, device or id range."""
        if not isinstance(history, Tensor):
            raise TypeError(f"history must be a torch.Tensor; got {type(history).__name__}")
        if history.dtype != torch.int64 or history.dim() != 2:
            raise ValueError(
                f"history must be a (B, L) int64 tensor; got shape {tuple(history.shape)}, "
                f"dtype {history.dtype}"
            )
        if history.device != self.device:
            raise ValueError(
                f"history is on {history.device} but the reward model is on {self.device}; "
                "move one of them"
            )
        if history.numel() and (int(history.min()) < 0 or int(history.max()) > self.n_items):
            raise ValueError(
                f"item ids must lie in [0, {self.n_items}] (0 = padding); "
                f"got [{int(history.min())}, {int(history.max())}]"
            )

    @torch.no_grad()
    def reward(self, history: Tensor) -> Tensor:
        """No-grad reward of the newest item of each history, ``(B, L) -> (B,)``, in eval mode."""
        self.check_history(history)
        with evaluating(self):
            return logits_to_reward(self(history), self.reward_form)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Called by an environment as a RewardFn(state, action): append, then score.
        if args and isinstance(args[0], SessionState):
            return self.reward_fn(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    @torch.no_grad()
    def reward_fn(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The ``RewardFn`` call: reward of ``action`` appended to ``state.history``."""
        history, _ = append_items(state.history, state.length, action)
        with evaluating(self):
            reward = self.reward(history)
            parts = self.breakdown(history)
        return RewardOutput(reward, parts)

    # ------------------------------------------------------------------ training
    def configure_optimizer(
        self,
        optimizer_cls: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
        **kwargs: Any,
    ) -> torch.optim.Optimizer:
        """Create (or replace) the optimiser used by :meth:`update`; defaults to Adam(lr=1e-3)."""
        kwargs.setdefault("lr", 1e-3)
        self._optimizer = optimizer_cls(self.parameters(), **kwargs)
        return self._optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of :meth:`update` (created with defaults on first use)."""
        if self._optimizer is None:
            self.configure_optimizer()
        return self._optimizer  # type: ignore[return-value]

    def update(self, real: Tensor, fake: Tensor, *, max_grad_norm: float | None = 5.0) -> dict:
        """One optimiser step on real vs generated sequences; returns float metrics.

        Returns:
            ``{"disc/loss", "disc/accuracy", "disc/auc", "disc/real_score", "disc/fake_score"}``.
        """
        self.check_history(real)
        self.check_history(fake)
        if len(real) == 0 or len(fake) == 0:
            raise ValueError(
                f"{type(self).__name__}.update needs at least one real and one fake sequence; "
                f"got shapes {tuple(real.shape)} and {tuple(fake.shape)}"
            )
        self.train()
        loss = self.loss(real, fake)
        optimizer_step(loss, self.optimizer, self.parameters(), max_grad_norm=max_grad_norm,
                       what=f"{type(self).__name__}.loss")  # fmt: skip
        metrics = self.evaluate(real, fake)
        metrics["disc/loss"] = float(loss.detach())
        return metrics

    @torch.no_grad()
    def evaluate(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        """Accuracy (threshold at the midpoint of rewards' sign), AUC and mean rewards."""
        with evaluating(self):
            r_real = logits_to_reward(self(real), self.reward_form).float()
            r_fake = logits_to_reward(self(fake), self.reward_form).float()
        return {
            "disc/accuracy": separation_accuracy(r_real, r_fake, self.reward_form),
            "disc/auc": auc(r_real, r_fake),
            "disc/real_score": float(r_real.mean()),
            "disc/fake_score": float(r_fake.mean()),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write config, constructor arguments and weights atomically to ``path``."""
        payload = module_payload(self)
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu") -> RewardModel:
        """Rebuild a model saved by :meth:`save` (``weights_only=True``) on ``device``.

        Raises:
            FileNotFoundError: no file at ``path``.
            RecGymError: the file is unreadable, holds another model class or mismatched weights.
        """
        return load_module(cls, path, device=device)


# ---------------------------------------------------------------------- helpers
def auc(pos: Tensor, neg: Tensor) -> float:
    """ROC AUC of scores ``pos`` (label 1) vs ``neg`` (label 0), ties counted as 1/2.

    >>> auc(torch.tensor([0.9, 0.5]), torch.tensor([0.5, 0.1]))
    0.875
    """
    scores = torch.cat([pos.flatten(), neg.flatten()]).double()
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    # Average ranks handle ties exactly (Mann-Whitney U).
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
    uniq, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=scores.dtype, device=scores.device).index_add_(
        0, inverse, ranks
    )
    counts = torch.bincount(inverse, minlength=len(uniq)).to(scores.dtype)
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = pos.numel(), neg.numel()
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def separation_accuracy(r_real: Tensor, r_fake: Tensor, form: RewardForm) -> float:
    """Fraction classified right: D > 1/2 for real (threshold in reward space), else fake."""
    threshold = {"log_d": -0.6931471805599453, "neg_log_1m_d": 0.6931471805599453, "d": 0.5}
    t = threshold.get(form, 0.0)
    if form == "neg_energy":  # no calibrated threshold: use the midpoint of the two means
        t = float((r_real.mean() + r_fake.mean()) / 2)
    correct = (r_real > t).sum() + (r_fake <= t).sum()
    return float(correct) / max(1, r_real.numel() + r_fake.numel())
