"""Negative (generated) sequences for training discriminators, and the real ones they oppose.

A :class:`NegativeSampler` turns a batch of real left-padded sequences into negatives of the
same shape. Before any generator exists, :class:`ReplaceLastSampler` corrupts the newest item;
during adversarial training :class:`PolicySampler` and :class:`ContinuationSampler` let an agent
supply the generated items. :func:`real_sequences` builds the real side from a split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recgym.splits import STAGES, Split, Stage

SamplerMode = Literal["uniform", "popularity"]


@runtime_checkable
class NegativeSampler(Protocol):
    """Anything that makes negatives from real sequences.

    Args:
        real: ``(B, L)`` int64 left-padded real sequences.
        generator: the ``torch.Generator`` (on ``real.device``) of every random draw.

    Returns:
        ``(B, L)`` int64 left-padded negative sequences on ``real.device``.
    """

    def sample(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, L)`` negatives made from ``(B, L)`` real sequences."""
        ...


def _check_real(real: Tensor, n_items: int | None = None) -> None:
    if not isinstance(real, Tensor) or real.dtype != torch.int64 or real.dim() != 2:
        got = (
            f"shape {tuple(real.shape)}, dtype {real.dtype}"
            if isinstance(real, Tensor)
            else type(real).__name__
        )
        raise ValueError(f"real must be a (B, L) int64 tensor; got {got}")
    if real.shape[1] == 0:
        raise ValueError("real sequences must have at least one column (L >= 1)")
    if n_items is not None and real.numel() and int(real.max()) > n_items:
        raise ValueError(f"real item ids must lie in [0, {n_items}]; got max {int(real.max())}")


def _check_items(items: object, shape: tuple[int, ...], source: str) -> Tensor:
    if not isinstance(items, Tensor) or tuple(items.shape) != shape or items.dtype != torch.int64:
        got = (
            f"shape {tuple(items.shape)}, dtype {items.dtype}"
            if isinstance(items, Tensor)
            else type(items).__name__
        )
        raise ValueError(f"{source} must return an int64 tensor of shape {shape}; got {got}")
    if items.numel() and int(items.min()) < 1:
        raise ValueError(f"{source} returned item id {int(items.min())}; ids are >= 1 (0 = pad)")
    return items


class ReplaceLastSampler:
    """Replace the newest item of each sequence with a random *different* item.

    ``"uniform"`` draws uniformly from the other ``n_items - 1`` items; ``"popularity"`` draws
    in proportion to ``counts`` (training popularity) with the real item's mass removed, so
    items with zero count are never drawn. Both draw exactly from that conditional law with one
    integer inverse-CDF lookup per row (no rejection loop). An all-padding row gets any item.

    Args:
        n_items: catalogue size (``>= 2``).
        mode: ``"uniform"`` or ``"popularity"``.
        counts: ``(n_items + 1,)`` non-negative integer counts (index 0 ignored), required for
            ``"popularity"``, e.g. ``split.train_counts()``; at least two items must be positive.
    """

    def __init__(
        self,
        n_items: int,
        mode: SamplerMode = "uniform",
        counts: np.ndarray | Tensor | None = None,
    ) -> None:
        if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 2:
            raise ValueError(f"n_items must be an int >= 2 (one item to replace); got {n_items!r}")
        if mode not in ("uniform", "popularity"):
            raise ValueError(f"mode must be 'uniform' or 'popularity'; got {mode!r}")
        if mode == "uniform":
            if counts is not None:
                raise ValueError("counts are only used with mode='popularity'")
            weights = torch.ones(n_items + 1, dtype=torch.int64)
        else:
            weights = _check_counts(counts, n_items)
        weights[0] = 0
        self.n_items, self.mode = n_items, mode
        self._weights = weights  # (n_items + 1,) int64
        self._cache: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def sample(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, L)`` copy of ``real`` whose last column holds the replacement items."""
        _check_real(real, self.n_items)
        fake = real.clone()
        fake[:, -1] = self.draw(real[:, -1], generator)
        return fake

    def draw(self, exclude: Tensor, generator: torch.Generator) -> Tensor:
        """``(B,)`` items drawn from the sampler's law without the items ``exclude`` ``(B,)``."""
        weights, cdf = self._tables(exclude.device)
        excluded = weights[exclude]  # (B,) mass removed (0 for padding)
        start = cdf[exclude] - excluded  # where the excluded item's interval begins
        left = cdf[-1] - excluded  # remaining mass, > 0 as two items are positive
        u = torch.rand(
            exclude.shape, generator=generator, device=exclude.device, dtype=torch.float64
        )
        point = torch.minimum((u * left).long(), left - 1)  # integer in [0, left)
        point = torch.where(point >= start, point + excluded, point)  # skip the excluded interval
        return torch.searchsorted(cdf, point, right=True)  # first item whose cdf exceeds point

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._cache:
            weights = self._weights.to(device)
            self._cache[device] = (weights, torch.cumsum(weights, 0))
        return self._cache[device]

    def __repr__(self) -> str:
        return f"ReplaceLastSampler(n_items={self.n_items}, mode={self.mode!r})"


def _check_counts(counts: np.ndarray | Tensor | None, n_items: int) -> Tensor:
    if counts is None:
        raise ValueError("mode='popularity' needs counts, e.g. split.train_counts()")
    array = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts)
    if array.shape != (n_items + 1,):
        raise ValueError(f"counts must have shape ({n_items + 1},); got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) and not np.all(array == np.round(array)):
        raise ValueError("counts must be integer interaction counts")
    if np.any(array < 0):
        raise ValueError("counts must be non-negative")
    if int(np.count_nonzero(array[1:])) < 2:
        raise ValueError("counts must be positive for at least two items to replace an item")
    return torch.as_tensor(array.astype(np.int64))


class PolicySampler:
    """Replace the newest item with the item a policy recommends for the rest of the sequence.

    Args:
        policy_fn: ``history_prefix (B, L) -> (B,)`` int64 items; the prefix is the real
            sequence without its newest item, left-padded back to ``L`` columns. It draws with
            its own randomness (e.g. an agent's sampling); the generator is not passed on.
    """

    def __init__(self, policy_fn: Callable[[Tensor], Tensor]) -> None:
        if not callable(policy_fn):
            raise TypeError(f"policy_fn must be callable; got {policy_fn!r}")
        self.policy_fn = policy_fn

    def sample(self, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``(B, L)``: ``real`` with its last column replaced by the policy's items."""
        _check_real(real)
        prefix = F.pad(real[:, :-1], (1, 0))
        with torch.no_grad():
            items = _check_items(self.policy_fn(prefix), (real.shape[0],), "policy_fn")
        return torch.cat([real[:, :-1], items.unsqueeze(1)], dim=1)

    def __repr__(self) -> str:
        return f"PolicySampler({self.policy_fn!r})"


class ContinuationSampler:
    """Keep a real prefix and replace the last ``n_steps`` items with a generated continuation.

    Rows with at most ``n_steps`` real items get an unconditional continuation (their prefix
    is empty); build real sequences with ``min_len > n_steps`` to avoid it.

    Args:
        generate_fn: ``(prefix (B, L), n_steps, generator) -> (B, n_steps)`` int64 items, the
            oldest first; ``prefix`` is the real sequence without its last ``n_steps`` items,
            left-padded back to ``L`` columns.
        n_steps: generated items per sequence (``>= 1`` and ``<= L``).
    """

    def __init__(
        self, generate_fn: Callable[[Tensor, int, torch.Generator], Tensor], n_steps: int
    ) -> None:
        if not callable(generate_fn):
            raise TypeError(f"generate_fn must be callable; got {generate_fn!r}")
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"n_steps must be an int >= 1; got {n_steps!r}")
        self.generate_fn, self.n_steps = generate_fn, n_steps

    def sample(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, L)``: the first ``L - n_steps`` columns of ``real``, then the continuation."""
        _check_real(real)
        b, length = real.shape
        k = self.n_steps
        if k > length:
            raise ValueError(f"n_steps={k} exceeds the sequence length L={length}")
        kept = real[:, : length - k]
        with torch.no_grad():
            cont = self.generate_fn(F.pad(kept, (k, 0)), k, generator)
        cont = _check_items(cont, (b, k), "generate_fn")
        return torch.cat([kept, cont], dim=1)

    def __repr__(self) -> str:
        return f"ContinuationSampler({self.generate_fn!r}, n_steps={self.n_steps})"


def real_sequences(
    split: Split,
    max_len: int,
    *,
    stage: Stage = "train",
    min_len: int = 2,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Every real sequence ending at an item of a stage, as left-padded windows.

    Row ``i`` is the user's sequence up to and including one item of the ``stage`` segment (for
    ``"valid"``/``"test"`` the history before it includes the earlier segments), cut to its
    newest ``max_len`` items. Only sequences of at least ``min_len`` items are kept, so the
    default drops each user's first item (it has no history to judge it by). Rows are
    user-major and chronological.

    Returns:
        ``(N, max_len)`` int64 tensor on ``device``.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    for name, value in (("max_len", max_len), ("min_len", min_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    start, end = split.stage_bounds(stage)
    # Item at absolute position p closes a sequence of p - offsets[u] + 1 items.
    start = np.minimum(np.maximum(start, split.dataset.offsets[:-1] + min_len - 1), end)
    counts = end - start
    users = np.repeat(np.arange(split.dataset.n_users, dtype=np.int64), counts)
    positions = np.arange(counts.sum(), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    positions += np.repeat(start, counts)
    return split.dataset.windows(users, positions + 1, max_len, device=device)
