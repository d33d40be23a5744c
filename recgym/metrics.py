"""Ranking metrics for next-item evaluation: pessimistic ranks, HR, NDCG and MRR.

A target's 0-based rank is the number of *other* candidates whose score is ``>=`` the target's
score (pessimistic tie-breaking): a model that scores everything equally gets the worst rank,
never a lucky one. Metrics are then plain functions of the ranks:

- ``HR@k   = 1[rank < k]``
- ``NDCG@k = 1[rank < k] / log2(rank + 2)`` (one relevant item, so the ideal DCG is 1)
- ``MRR@k  = 1[rank < k] / (rank + 1)`` and the untruncated ``MRR = 1 / (rank + 1)``

each averaged over all targets.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

METRIC_NAMES = ("HR", "NDCG", "MRR")
"""The metric families, in the order :func:`metrics_from_ranks` reports them."""


def pessimistic_rank(
    scores: Tensor, target_index: Tensor, candidate_mask: Tensor | None = None
) -> Tensor:
    """0-based rank of each row's target among its candidates, ties counted against it.

    Args:
        scores: ``(B, C)`` float scores of ``C`` candidate slots per row.
        target_index: ``(B,)`` int64 column of the target in each row.
        candidate_mask: ``(B, C)`` bool, ``True`` where a slot is a real candidate; ``None`` means
            every slot is. The target's slot must be a candidate.

    Returns:
        ``(B,)`` int64 ranks in ``[0, n_candidates - 1]``: the number of candidates other than
        the target whose score is ``>=`` the target's.

    Raises:
        TypeError: ``scores`` is not a floating tensor or the index/mask dtypes are wrong.
        ValueError: shapes disagree, an index is out of range, a target is not a candidate, or a
            candidate's score is NaN or infinite.
    """
    _check_rank_inputs(scores, target_index, candidate_mask)
    check_finite_candidates(scores, candidate_mask)
    return rank_unchecked(scores, target_index, candidate_mask)


def rank_unchecked(
    scores: Tensor, target_index: Tensor, candidate_mask: Tensor | None = None
) -> Tensor:
    """:func:`pessimistic_rank` without input checks, for callers that already validated."""
    at_least = at_least_target(scores, target_index)  # includes the target itself
    if candidate_mask is not None:
        at_least[:, : scores.shape[1]] &= candidate_mask
    return count_true(at_least) - 1


# Bools are counted as int64 words of 8 byte-lanes: summing 127 words leaves every lane
# <= 127, so no lane carries into the next and nothing overflows; the lanes are added last.
_WORDS = 127
_CHUNK = 8 * _WORDS


def at_least_target(scores: Tensor, target_index: Tensor) -> Tensor:
    """``scores >= target score`` per row, in a layout :func:`count_true` counts fast.

    Args:
        scores: ``(B, C)`` float scores.
        target_index: ``(B,)`` int64 target column per row.

    Returns:
        ``(B, C')`` bool with ``C' >= C``: columns ``< C`` hold the comparison, the padding
        columns ``>= C`` are False. Edit columns ``< C`` freely before counting.
    """
    b, c = scores.shape
    width = c if c < _CHUNK else -(-c // _CHUNK) * _CHUNK
    out = torch.empty((b, width), dtype=torch.bool, device=scores.device)
    out[:, c:] = False
    torch.ge(scores, scores.gather(1, target_index.unsqueeze(1)), out=out[:, :c])
    return out


def count_true(mask: Tensor) -> Tensor:
    """``(B, C)`` bool -> ``(B,)`` int64 number of True per row.

    ``mask.sum(dim=1)`` widens every bool to int64 and is slow on CPU. Contiguous masks whose
    width is a multiple of 1016 (as :func:`at_least_target` makes them) are summed as int64
    words, 8 bools at a time, with one carry-free reduction; others as bytes into int32.
    """
    b, c = mask.shape
    if c == 0 or c % _CHUNK or not mask.is_contiguous():
        return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()
    lanes = mask.view(torch.int64).view(b, c // _CHUNK, _WORDS).sum(dim=2)  # (B, chunks)
    total = torch.zeros_like(lanes)
    for shift in range(0, 64, 8):
        total += (lanes >> shift) & 0xFF
    return total.sum(dim=1)


def check_finite_candidates(scores: Tensor, candidate_mask: Tensor | None = None) -> None:
    """Raise ``ValueError`` if any candidate's score is NaN or infinite.

    Non-candidates (``candidate_mask`` False, e.g. the padding column or history items) may
    hold anything, including ``-inf``.
    """
    finite = torch.isfinite(scores)
    if bool(finite.all()):  # fast path: one pass when the model is well-behaved
        return
    bad = ~finite if candidate_mask is None else (~finite & candidate_mask)
    n_bad = int(bad.sum())
    if n_bad:
        row = int(bad.any(dim=1).nonzero()[0, 0])
        col = int(bad[row].nonzero()[0, 0])
        raise ValueError(
            f"recommender scores must be finite on every candidate; got {n_bad} NaN/inf "
            f"candidate score(s), e.g. row {row}, column {col} = {scores[row, col].item()}. "
            "Check the model for NaNs; mask items with -inf only where they are never candidates."
        )


def metrics_per_target(ranks: Tensor | np.ndarray, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """Per-target metric values, e.g. for significance tests or per-user analysis.

    Args:
        ranks: ``(N,)`` 0-based pessimistic ranks.
        ks: cut-offs, e.g. ``(1, 5, 10, 20)``.

    Returns:
        ``{"HR@k": (N,), ..., "NDCG@k": (N,), ..., "MRR@k": (N,), ..., "MRR": (N,)}`` float64
        arrays, ``k`` in increasing order.
    """
    r = _as_rank_array(ranks)
    ks = validate_ks(ks)
    out: dict[str, np.ndarray] = {}
    reciprocal = 1.0 / (r + 1.0)
    discount = 1.0 / np.log2(r + 2.0)
    for name, values in (("HR", np.ones_like(reciprocal)), ("NDCG", discount)):
        for k in ks:
            out[f"{name}@{k}"] = np.where(r < k, values, 0.0)
    for k in ks:
        out[f"MRR@{k}"] = np.where(r < k, reciprocal, 0.0)
    out["MRR"] = reciprocal
    return out


def metrics_from_ranks(ranks: Tensor | np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """Mean HR@k, NDCG@k, MRR@k and untruncated MRR over all targets.

    Args:
        ranks: ``(N,)`` 0-based pessimistic ranks, ``N >= 1``.
        ks: cut-offs, e.g. ``(1, 5, 10, 20)``.

    Returns:
        ``{"HR@1": .., ..., "NDCG@1": .., ..., "MRR@1": .., ..., "MRR": ..}`` (Python floats).

    Example:
        >>> metrics_from_ranks(np.array([0, 2]), ks=(1, 3))["NDCG@3"]  # (1 + 1/log2(4)) / 2
        0.75
    """
    if _as_rank_array(ranks).size == 0:
        raise ValueError("metrics need at least one rank; got an empty array")
    return {name: float(v.mean()) for name, v in metrics_per_target(ranks, ks).items()}


def split_metric_name(key: str) -> tuple[str, int | None]:
    """``"NDCG@10" -> ("NDCG", 10)``, ``"MRR" -> ("MRR", None)``."""
    name, _, k = key.partition("@")
    return name, (int(k) if k else None)


def validate_ks(ks: Iterable[int] | int) -> tuple[int, ...]:
    """Return the cut-offs sorted and de-duplicated, after checking they are positive ints."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (int(ks),)
    try:
        values = tuple(ks)
    except TypeError:
        raise TypeError(
            f"ks must be an int or a sequence of ints, e.g. (1, 5, 10); got {ks!r}"
        ) from None
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, (int, np.integer))]
    if bad or not values or any(k < 1 for k in values):
        raise ValueError(
            f"ks must be a non-empty sequence of integers >= 1, e.g. (1, 5, 10, 20); got {ks!r}"
        )
    return tuple(sorted({int(k) for k in values}))


def _as_rank_array(ranks: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(ranks, Tensor):
        ranks = ranks.detach().cpu().numpy()
    r = np.asarray(ranks)
    if r.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array of shape (N,); got shape {r.shape}")
    if r.size and (not np.issubdtype(r.dtype, np.integer) or r.min() < 0):
        raise ValueError(
            f"ranks must be non-negative integers (0 = best); got dtype {r.dtype}, min {r.min()}"
        )
    return r.astype(np.float64)


def _check_rank_inputs(scores: Tensor, target_index: Tensor, mask: Tensor | None) -> None:
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating-point tensor; got {_describe(scores)}")
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (B, C); got {tuple(scores.shape)}")
    b, c = scores.shape
    if not isinstance(target_index, Tensor) or target_index.dtype != torch.int64:
        raise TypeError(f"target_index must be an int64 tensor; got {_describe(target_index)}")
    if target_index.shape != (b,):
        raise ValueError(f"target_index must have shape ({b},); got {tuple(target_index.shape)}")
    if b and (int(target_index.min()) < 0 or int(target_index.max()) >= c):
        raise ValueError(
            f"target_index must lie in [0, {c - 1}]; got [{int(target_index.min())}, "
            f"{int(target_index.max())}]"
        )
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"candidate_mask must be a bool tensor; got {_describe(mask)}")
    if mask.shape != scores.shape:
        raise ValueError(
            f"candidate_mask must have the shape of scores {tuple(scores.shape)}; "
            f"got {tuple(mask.shape)}"
        )
    if b and not bool(mask.gather(1, target_index.unsqueeze(1)).all()):
        raise ValueError("every row's target must be a candidate (candidate_mask True there)")


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"Tensor(dtype={x.dtype}, shape={tuple(x.shape)})"
    return type(x).__name__
