"""Dataset filters of the papers' preprocessing, applied to a built :class:`SequenceDataset`.

:func:`filter_rare_items` is SAO's (Manotumruksa & Yilmaz, SIGIR 2020, §3.1): "remove items with
less than 10 interactions", one pass, users not filtered. ``iterate=True`` with ``min_user_len``
gives a recursive k-core instead (the same as ``SequenceDataset.from_interactions(k_core=...)``
on an interaction table).
"""

from __future__ import annotations

import numpy as np

from recgym._checks import is_int
from recgym.data import SequenceDataset
from recgym.errors import DataError
from recgym.factors import ItemFactor, ItemFactors


def filter_rare_items(
    dataset: SequenceDataset,
    min_count: int = 10,
    *,
    min_user_len: int = 1,
    iterate: bool = False,
) -> SequenceDataset:
    """Drop every interaction with an item that has fewer than ``min_count`` interactions.

    Surviving items keep their relative order and are re-indexed ``1..m``; each user's
    remaining items keep their time order; users left with fewer than ``min_user_len`` items
    (by default only users left with none) are dropped. Factors and timestamps follow.

    Args:
        dataset: ``n_users`` sequences over ``n_items`` items.
        min_count: the item threshold (SAO: 10), counted over the whole dataset.
        min_user_len: the user threshold applied after the item filter (SAO: none, so 1).
        iterate: repeat both filters until nothing changes (a recursive k-core); SAO's text
            describes one pass.

    Returns:
        A new dataset with ``n_users' <= n_users`` users and ``m <= n_items`` items; its
        ``item_ids`` / ``user_ids`` are the surviving raw ids, so results map back.

    Raises:
        TypeError: a threshold is not an int, or ``iterate`` not a bool.
        ValueError: a threshold is below 1.
        DataError: no interaction survives.
    """
    for name, value in (("min_count", min_count), ("min_user_len", min_user_len)):
        if not is_int(value):
            raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")
    if not isinstance(iterate, bool):
        raise TypeError(f"iterate must be a bool; got {type(iterate).__name__}")
    current = dataset
    while True:
        filtered = _one_pass(current, int(min_count), int(min_user_len))
        unchanged = filtered.n_interactions == current.n_interactions
        if filtered.n_users == current.n_users and unchanged:
            return filtered
        current = filtered
        if not iterate:
            return current


def _one_pass(dataset: SequenceDataset, min_count: int, min_user_len: int) -> SequenceDataset:
    counts = dataset.item_counts()  # (n_items + 1,), index 0 unused
    keep_item = counts >= min_count
    keep_item[0] = False
    keep = keep_item[dataset.items]  # (n_interactions,)
    user_of = np.repeat(np.arange(dataset.n_users), dataset.lengths)
    new_len = np.bincount(user_of[keep], minlength=dataset.n_users)
    keep_user = new_len >= min_user_len
    keep &= keep_user[user_of]
    if not keep.any():
        raise DataError(
            f"no interaction of {dataset.name!r} survives min_count={min_count}, "
            f"min_user_len={min_user_len} (most frequent item: {int(counts.max())} interactions)"
        )
    items = dataset.items[keep]
    kept_items = np.flatnonzero(np.bincount(items, minlength=dataset.n_items + 1))  # sorted
    remap = np.zeros(dataset.n_items + 1, dtype=np.int64)
    remap[kept_items] = np.arange(1, len(kept_items) + 1)
    lengths = new_len[keep_user]
    rows = np.concatenate([[0], kept_items])
    return SequenceDataset(
        name=dataset.name,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=remap[items],
        user_ids=dataset.user_ids[keep_user],
        item_ids=dataset.item_ids[rows],
        factors=_select_items(dataset.factors, rows),
        timestamps=None if dataset.timestamps is None else dataset.timestamps[keep],
    )


def _select_items(factors: ItemFactors, rows: np.ndarray) -> ItemFactors:
    """The factor tables restricted to ``rows`` (``rows[0] == 0``, the padding row)."""
    kept = tuple(
        ItemFactor(name=f.name, kind=f.kind, values=f.values[rows], vocab=f.vocab, edges=f.edges)
        for f in factors.factors
    )
    return ItemFactors(n_items=len(rows) - 1, factors=kept)
