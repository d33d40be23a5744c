"""Reference recommenders: the baselines every learned model must beat.

Each satisfies :class:`recgym.types.Recommender`: ``score(history (B, L), user (B,))`` returns
``(B, n_items + 1)`` float scores (column ``0`` is padding and ignored by the evaluation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from recgym._checks import check_positive_int
from recgym.device import resolve_device
from recgym.splits import Split


def _check_batch(history: Tensor, user: Tensor) -> int:
    if not isinstance(history, Tensor) or history.ndim != 2:
        raise ValueError(f"history must be a (B, L) tensor; got {type(history).__name__}")
    b = history.shape[0]
    if not isinstance(user, Tensor) or user.shape != (b,):
        got = tuple(user.shape) if isinstance(user, Tensor) else type(user).__name__
        raise ValueError(f"user must be a ({b},) tensor; got {got}")
    return b


class PopularityRecommender:
    """Scores every item by its number of training interactions, whatever the history.

    Args:
        counts: ``(n_items + 1,)`` non-negative interaction counts (index 0 = padding).
        device: where scores are produced.
    """

    def __init__(self, counts: np.ndarray | Tensor, *, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        counts = torch.as_tensor(counts, device=self.device)
        if counts.ndim != 1 or counts.numel() < 2:
            raise ValueError(
                f"counts must be a 1-D array of n_items + 1 >= 2 entries; got {tuple(counts.shape)}"
            )
        if bool((counts < 0).any()) or not bool(torch.isfinite(counts.float()).all()):
            raise ValueError("counts must be finite and non-negative")
        self.counts = counts.to(torch.float32)

    @classmethod
    def fit(cls, split: Split, *, device: torch.device | str = "cpu") -> PopularityRecommender:
        """Count the training interactions of ``split`` only (no validation/test leakage)."""
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        return cls(split.train_counts(), device=device)

    @property
    def n_items(self) -> int:
        """Number of real items."""
        return self.counts.numel() - 1

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, n_items + 1)`` training counts, the same for every row (a broadcast view)."""
        b = _check_batch(history, user)
        return self.counts.unsqueeze(0).expand(b, -1)

    def __repr__(self) -> str:
        return f"PopularityRecommender(n_items={self.n_items}, device={str(self.device)!r})"


class RandomRecommender:
    """Independent uniform random scores for every (row, item): the chance-level baseline.

    Under full ranking its expected HR@k is about ``k / n_candidates``. Scores come from a
    private seeded generator, so two recommenders with the same seed score identically when
    called with the same batch sizes in the same order.

    Args:
        n_items: number of real items.
        seed: seed of the private generator.
        device: where scores are produced.
    """

    def __init__(self, n_items: int, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        check_positive_int("n_items", n_items)
        self.n_items = int(n_items)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)

    @classmethod
    def fit(
        cls, split: Split, *, seed: int = 0, device: torch.device | str = "cpu"
    ) -> RandomRecommender:
        """A random recommender over the items of ``split``'s dataset."""
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        return cls(split.dataset.n_items, seed=seed, device=device)

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, n_items + 1)`` float32 scores uniform in ``[0, 1)``."""
        b = _check_batch(history, user)
        return torch.rand(b, self.n_items + 1, generator=self.generator, device=self.device)

    def __repr__(self) -> str:
        return f"RandomRecommender(n_items={self.n_items}, seed={self.seed})"
