"""Read-only numpy arrays for the immutable data types (datasets, factors, splits)."""

from __future__ import annotations

import numpy as np


def frozen_array(array: object, dtype: np.dtype | type | None = None) -> np.ndarray:
    """A contiguous, read-only copy-or-view of ``array`` (optionally cast to ``dtype``).

    >>> a = frozen_array([1, 2, 3], np.int64)
    >>> a.flags.writeable
    False
    """
    out = np.ascontiguousarray(np.asarray(array, dtype=dtype))
    out.flags.writeable = False
    return out


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` for every ``(s, c)`` pair, vectorised (no Python loop).

    >>> expand_ranges(np.array([10, 0]), np.array([2, 3])).tolist()
    [10, 11, 0, 1, 2]
    """
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(counts.sum(), dtype=np.int64) - offsets + np.repeat(starts, counts)
