"""Score a batch of left-padded windows in chunks of similar length, each only as wide as needed.

Evaluation gives every target a window of ``max_len`` items, but on sparse data most histories
are short (Amazon Beauty: a median of 4 items in windows of 50), so a sequential model spends
most of a validation ranking on padding columns. A recommender whose scores do not change when
all-padding columns are dropped from the left (``padding_invariant = True``: recgym's SASRec,
GRU and ACVAE policies, tested in ``tests/agents``) can be scored on the batch's rows sorted by
length, in chunks trimmed to their longest row; the scores are put back in the batch's order, so
every ranker (and its negative sampling) sees the same batch as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]

CHUNK_ROWS = 128
"""Rows per length-sorted chunk: small enough that a chunk's widths are alike, large enough
that each call's matmuls stay efficient."""

MIN_SAVING = 0.25
"""Chunking is used only when it skips at least this share of the window cells."""


def is_padding_invariant(recommender: object) -> bool:
    """Whether ``recommender`` declares that dropping left padding columns leaves its scores."""
    return getattr(recommender, "padding_invariant", False) is True


def chunk_plan(lengths: np.ndarray, max_len: int, rows: int = CHUNK_ROWS):
    """``(order, widths)``: row order by length and each chunk's width, or None when not worth it.

    Args:
        lengths: ``(B,)`` real history lengths (any non-negative ints; clipped to ``max_len``).
        max_len: the windows' width ``L``.
        rows: rows per chunk.

    Returns:
        ``None`` when chunking skips less than :data:`MIN_SAVING` of the ``B * L`` cells; else
        ``order`` ``(B,)`` (a stable argsort of the lengths) and ``widths``, one int per chunk of
        ``rows`` consecutive rows of ``order``, each ``>= 1``.
    """
    lengths = np.clip(np.asarray(lengths, dtype=np.int64), 1, max_len)
    order = np.argsort(lengths, kind="stable")
    # sorted ascending, so each chunk's width is its last row's length
    starts = range(0, len(order), rows)
    widths = [int(lengths[order[min(s + rows, len(order)) - 1]]) for s in starts]
    cells = sum(w * len(order[s : s + rows]) for w, s in zip(widths, starts, strict=True))
    if cells > (1.0 - MIN_SAVING) * len(order) * max_len:
        return None
    return order, widths


def score_by_length(
    score_fn: ScoreFn, history: Tensor, user: Tensor, lengths: np.ndarray, rows: int = CHUNK_ROWS
) -> Tensor:
    """``(B, n_items + 1)`` scores of ``(B, L)`` left-padded ``history``, computed per length chunk.

    Args:
        score_fn: ``f(history (b, w), user (b,)) -> (b, n_items + 1)``, padding-invariant.
        history: ``(B, L)`` int64 left-padded windows.
        user: ``(B,)`` int64 users.
        lengths: ``(B,)`` host-side real lengths of the windows (so no device read is needed).
        rows: rows per chunk.

    Returns:
        The scores in ``history``'s row order; equal to ``score_fn(history, user)`` up to float
        rounding (shorter attention and recurrence over the dropped padding).
    """
    if len(lengths) != history.shape[0]:
        raise ValueError(
            f"lengths has {len(lengths)} entries but history has {history.shape[0]} rows"
        )
    plan = chunk_plan(lengths, history.shape[1], rows) if history.shape[0] else None
    if plan is None:
        return score_fn(history, user)
    order, widths = plan
    index = torch.as_tensor(order, device=history.device)
    out = None
    for chunk, start in enumerate(range(0, len(order), rows)):
        rows_idx = index[start : start + rows]
        scores = score_fn(history[rows_idx, -widths[chunk] :], user[rows_idx])
        if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] != len(rows_idx):
            return scores  # wrong type or shape: the caller's check reports it
        if out is None:
            out = scores.new_empty((history.shape[0], scores.shape[1]))
        elif scores.shape[1] != out.shape[1] or scores.dtype != out.dtype:
            return scores
        out[rows_idx] = scores
    return out
