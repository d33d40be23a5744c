"""The policy interface: a next-item model over histories with a tied item-embedding output.

A :class:`SequencePolicy` encodes a ``(B, L)`` left-padded history into per-position states
``(B, L, D)`` (causally: position ``t`` sees items ``<= t``) and scores every item by a dot
product with the **tied** item-embedding table. On top of that the base class provides the
categorical distribution (padding — and optionally already-seen items — masked), ``act``,
``log_prob``, ``entropy``, the ``recgym`` recommender ``score`` interface, and save/load.

Embedding perturbations (APR / SAO, Eq. 9 of the SAO paper) are supported by an optional
``delta`` added to the item-embedding table wherever it is used: at the input lookup and at the
output dot product.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from recgym._checks import is_int
from recgym._torch_io import atomic_torch_save, evaluating, load_module, module_payload
from recgym.rollout import mask_scores
from recgym.types import SessionState


class SequencePolicy(nn.Module, ABC):
    """Base class of next-item policies (SASRec, GRU4Rec).

    Subclasses own ``self.item_embedding`` (``nn.Embedding(n_items + 1, D, padding_idx=0)``),
    keep a frozen config in ``self.config`` (class attribute ``config_class``) and implement
    :meth:`encode`.

    Attributes:
        n_items: catalogue size; items are ``1..n_items``, ``0`` is padding.
        max_len: the history window the model was built for.
    """

    config_class: type | None = None

    padding_invariant: bool = False
    """Whether dropping all-padding columns from a history's left changes no score; when it is
    True the evaluator scores short windows trimmed (``recgym.length_chunks``). Subclasses that
    set it test it (``tests/agents/test_policies.py``)."""

    def __init__(self, *, n_items: int, max_len: int) -> None:
        super().__init__()
        if not isinstance(n_items, int) or n_items < 1:
            raise ValueError(f"n_items must be a positive int; got {n_items!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int; got {max_len!r}")
        self.n_items = n_items
        self.max_len = max_len

    # ------------------------------------------------------------------ to implement
    item_embedding: nn.Embedding

    @abstractmethod
    def encode(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Per-position states of a history.

        Args:
            history: ``(B, L)`` int64 left-padded item ids, ``L <= max_len``.
            delta: optional ``(n_items + 1, D)`` perturbation added to the item-embedding table
                at the input lookup (adversarial training); ``None`` = no perturbation.

        Returns:
            ``(B, L, D)`` causal states: position ``t`` depends only on items at ``<= t``.
        """

    # ------------------------------------------------------------------ scores
    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return self.item_embedding.weight.device

    def item_table(self, delta: Tensor | None = None) -> Tensor:
        """``(n_items + 1, D)`` item embeddings (perturbed by ``delta`` when given)."""
        table = self.item_embedding.weight
        return table if delta is None else table + delta

    def forward(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Next-item logits at the newest position, ``(B, L) -> (B, n_items + 1)`` (unmasked)."""
        self.check_history(history)
        states = self.encode(history, delta=delta)[:, -1]  # (B, D)
        return states @ self.item_table(delta).T

    def all_logits(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Logits at every position, ``(B, L) -> (B, L, n_items + 1)`` (for all-position MLE)."""
        self.check_history(history)
        return self.encode(history, delta=delta) @ self.item_table(delta).T

    def masked_logits(self, history: Tensor, *, exclude_seen: bool = False) -> Tensor:
        """:meth:`forward` with padding (and optionally the history's items) set to ``-inf``.

        The masking rule is :func:`recgym.rollout.mask_scores`: a window holding every item
        keeps them all, so a fully seen history still has a valid action.
        """
        return mask_scores(self(history), history, exclude_seen=exclude_seen)

    def distribution(self, history: Tensor, *, exclude_seen: bool = False) -> Categorical:
        """The policy ``pi(. | history)`` over ids ``0..n_items`` (padding has probability 0)."""
        return Categorical(logits=self.masked_logits(history, exclude_seen=exclude_seen))

    def act(
        self,
        state: SessionState | Tensor,
        generator: torch.Generator | None = None,
        *,
        greedy: bool = False,
        exclude_seen: bool = False,
    ) -> Tensor:
        """Pick one item per row, ``(B,)`` int64 in ``1..n_items`` (no gradient).

        Accepts a ``SessionState`` (so it is a ``recgym.rollout.Policy``) or a ``(B, L)`` history.
        """
        history = state.history if isinstance(state, SessionState) else state
        with torch.no_grad():
            logits = self.masked_logits(history, exclude_seen=exclude_seen)
            if greedy:
                return logits.argmax(dim=1)
            probs = torch.softmax(logits, dim=1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    def log_prob(self, history: Tensor, action: Tensor, *, exclude_seen: bool = False) -> Tensor:
        """``(B,)`` log pi(action | history), differentiable."""
        return self.distribution(history, exclude_seen=exclude_seen).log_prob(action)

    def entropy(self, history: Tensor, *, exclude_seen: bool = False) -> Tensor:
        """``(B,)`` entropy of pi(. | history), differentiable."""
        return self.distribution(history, exclude_seen=exclude_seen).entropy()

    @torch.no_grad()
    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``recgym.types.Recommender`` scores ``(B, n_items + 1)`` (eval mode, no gradient)."""
        with evaluating(self):
            return self(history[:, -self.max_len :])

    # ------------------------------------------------------------------ checks
    def check_history(self, history: Tensor) -> None:
        """Raise a clear error for histories of the wrong dtype, shape, device or id range."""
        if not isinstance(history, Tensor) or history.dtype != torch.int64 or history.dim() != 2:
            got = f"{type(history).__name__} {getattr(history, 'dtype', '')}"
            raise ValueError(
                f"history must be a (B, L) int64 tensor; got {got} of shape "
                f"{tuple(getattr(history, 'shape', ()))}"
            )
        if history.shape[1] > self.max_len:
            raise ValueError(
                f"history has L={history.shape[1]} > max_len={self.max_len}; pass "
                f"history[:, -{self.max_len}:]"
            )
        if history.device != self.device:
            raise ValueError(f"history is on {history.device} but the policy is on {self.device}")
        if history.numel() and (int(history.min()) < 0 or int(history.max()) > self.n_items):
            raise ValueError(
                f"item ids must lie in [0, {self.n_items}] (0 = padding); "
                f"got [{int(history.min())}, {int(history.max())}]"
            )

    # ------------------------------------------------------------------ persistence
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments besides ``config`` needed to rebuild the model."""
        return {"n_items": self.n_items}

    def save(self, path: str | os.PathLike) -> Path:
        """Write config and weights atomically."""
        payload = module_payload(self)
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu") -> SequencePolicy:
        """Rebuild a policy saved by :meth:`save` (``weights_only=True``) on ``device``.

        Raises:
            FileNotFoundError: no file at ``path``.
            RecGymError: the file is unreadable, holds another class, or its weights do not fit.
        """
        return load_module(cls, path, device=device)


def seeded_init(seed: int | None) -> AbstractContextManager[None]:
    """Context of a model's weight initialisation: the global torch RNG forked and seeded.

    ``None`` draws from the global RNG as any ``torch.nn`` module does; an int gives the same
    weights every time and leaves the caller's RNG stream untouched.

    Raises:
        ValueError: ``seed`` is neither ``None`` nor an int ``>= 0``.
    """
    if seed is None:
        return nullcontext()
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be None or an int >= 0; got {seed!r}")
    from agents.checkpoint import forked_global_rng

    return forked_global_rng(int(seed))
