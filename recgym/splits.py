"""Per-user chronological splits: leave-one-out and ratio.

A split cuts every user's sequence into three consecutive segments with two absolute positions:
``train = [offsets[u], train_end[u])``, ``valid = [train_end[u], valid_end[u])`` and
``test = [valid_end[u], offsets[u + 1])``. Because the segments are consecutive and disjoint,
validation and test can never overlap and no evaluation target leaks into an earlier segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recgym.arrays import expand_ranges, frozen_array
from recgym.data import SequenceDataset
from recgym.errors import DataError
from recgym.factors import ItemFactors, binned_factor

Stage = Literal["train", "valid", "test"]
STAGES: tuple[Stage, ...] = ("train", "valid", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """A chronological train/valid/test split of a :class:`SequenceDataset`.

    Attributes:
        dataset: the split dataset.
        train_end: ``(n_users,)`` absolute position where each user's training segment ends.
        valid_end: ``(n_users,)`` absolute position where each user's validation segment ends;
            the test segment runs to the end of the user's sequence.
        kind: how it was made, e.g. ``"leave_one_out"``.
    """

    dataset: SequenceDataset
    train_end: np.ndarray
    valid_end: np.ndarray
    kind: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_end", frozen_array(self.train_end, np.int64))
        object.__setattr__(self, "valid_end", frozen_array(self.valid_end, np.int64))
        self.validate()

    def validate(self) -> None:
        """Check the segments are ordered and disjoint for every user.

        Raises:
            DataError: a boundary array has the wrong shape, or for some user the segments
                overlap or run outside the user's sequence (validation would leak into test).
        """
        n = self.dataset.n_users
        for name, arr in (("train_end", self.train_end), ("valid_end", self.valid_end)):
            if arr.shape != (n,):
                raise DataError(f"{name} must have shape ({n},); got {arr.shape}")
        start, end = self.dataset.offsets[:-1], self.dataset.offsets[1:]
        bad = (start > self.train_end) | (self.train_end > self.valid_end) | (self.valid_end > end)
        if bad.any():
            u = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"split segments overlap or leave the sequence for {int(bad.sum())} user(s), "
                f"e.g. user {u}: need start {start[u]} <= train_end {self.train_end[u]} <= "
                f"valid_end {self.valid_end[u]} <= end {end[u]}; validation and test must not "
                "overlap"
            )

    # ----------------------------------------------------------------- segments
    def stage_bounds(self, stage: Stage) -> tuple[np.ndarray, np.ndarray]:
        """``(start, end)`` absolute positions of every user's ``stage`` segment."""
        offsets = self.dataset.offsets
        if stage == "train":
            return offsets[:-1], self.train_end
        if stage == "valid":
            return self.train_end, self.valid_end
        if stage == "test":
            return self.valid_end, offsets[1:]
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")

    def targets(self, stage: Stage) -> tuple[np.ndarray, np.ndarray]:
        """Every (user, absolute position) next-item target of a stage, user-major.

        For ``"valid"``/``"test"`` these are all items of the segment (one per user under
        leave-one-out); the history of a target is everything before it. For ``"train"``
        they are all training items except each user's first (which has no history).

        Returns:
            ``(users, positions)``, two int64 arrays of equal length.
        """
        start, end = self.stage_bounds(stage)
        if stage == "train":
            start = np.minimum(start + 1, end)
        counts = end - start
        users = np.repeat(np.arange(self.dataset.n_users, dtype=np.int64), counts)
        return users, expand_ranges(start, counts)

    def n_targets(self, stage: Stage) -> int:
        """Number of next-item targets in ``stage``."""
        start, end = self.stage_bounds(stage)
        if stage == "train":
            start = np.minimum(start + 1, end)
        return int((end - start).sum())

    def train_dataset(self) -> SequenceDataset:
        """The training segments as a dataset of their own (same users, items and factors)."""
        start, end = self.stage_bounds("train")
        counts = end - start
        idx = np.arange(counts.sum(), dtype=np.int64) - np.repeat(
            np.cumsum(counts) - counts, counts
        )
        idx += np.repeat(start, counts)
        ds = self.dataset
        return SequenceDataset(
            name=f"{ds.name}/train",
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            items=ds.items[idx],
            user_ids=ds.user_ids,
            item_ids=ds.item_ids,
            factors=ds.factors,
            timestamps=None if ds.timestamps is None else ds.timestamps[idx],
        )

    # ----------------------------------------------------------------- derived statistics
    def train_counts(self) -> np.ndarray:
        """``(n_items + 1,)`` interaction counts over training segments only (index 0 is 0)."""
        return self.train_dataset().item_counts()

    def factors(self, *, popularity_bins: int = 10) -> ItemFactors:
        """The dataset's factors plus ``"popularity"``: quantile bins of training counts.

        Popularity is computed from training interactions only, so nothing of the validation
        or test items leaks into a model that uses it.
        """
        counts = self.train_counts()[1:].astype(np.float64)
        return self.dataset.factors.with_factor(
            binned_factor("popularity", counts, popularity_bins)
        )

    def segment_sizes(self) -> dict[str, int]:
        """Number of interactions in each segment: ``{"train": .., "valid": .., "test": ..}``."""
        return {s: int(np.subtract(*self.stage_bounds(s)[::-1]).sum()) for s in STAGES}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.segment_sizes().items())
        return f"Split(kind={self.kind!r}, dataset={self.dataset.name!r}, {sizes})"


def leave_one_out(dataset: SequenceDataset, *, min_len: int = 3) -> Split:
    """Leave-one-out: last item = test, second last = validation, the rest = train.

    Users with fewer than ``min_len`` items (default 3) stay entirely in train.
    """
    if min_len < 3:
        raise ValueError(f"min_len must be >= 3 (one train, one valid, one test); got {min_len}")
    end = dataset.offsets[1:]
    held = dataset.lengths >= min_len
    train_end = np.where(held, end - 2, end)
    valid_end = np.where(held, end - 1, end)
    return Split(dataset=dataset, train_end=train_end, valid_end=valid_end, kind="leave_one_out")


def ratio_split(
    dataset: SequenceDataset,
    *,
    valid: float = 0.1,
    test: float = 0.1,
    rounding: Literal["half_up", "floor"] = "half_up",
) -> Split:
    """Chronological per-user ratio split: each user's last items are test, those before valid.

    A user with ``n`` items gets ``r(test * n)`` test items (the last ones) and the
    ``r(valid * n)`` before them as validation, where ``r`` rounds half up (default) or down
    (``rounding="floor"``); every user keeps at least one training item. ACVAE's 8:2 protocol
    (§4.4: "we split the interact sequence by 8:2 for training and testing", no validation;
    its code holds out the last ``int(0.2 * n)``) is
    ``ratio_split(ds, valid=0.0, test=0.2, rounding="floor")``, evaluated with
    :func:`recgym.holdout.evaluate_holdout`.

    Args:
        dataset: ``n_users`` time-ordered sequences.
        valid: validation fraction in ``[0, 1)``.
        test: test fraction in ``[0, 1)``; ``valid + test < 1``.
        rounding: ``"half_up"`` or ``"floor"``.

    Returns:
        A :class:`Split` of kind ``"ratio"`` with ``(n_users,)`` boundaries.
    """
    for name, value in (("valid", valid), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"{name} must be a float in [0, 1); got {type(value).__name__}")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {value}")
    if valid + test >= 1.0:
        raise ValueError(f"valid + test must be < 1; got {valid} + {test}")
    if rounding not in ("half_up", "floor"):
        raise ValueError(f"rounding must be 'half_up' or 'floor'; got {rounding!r}")
    n = dataset.lengths
    half = 0.5 if rounding == "half_up" else 0.0
    # a relative epsilon so that e.g. 0.2 * 5 = 1.0000000000000002 or 0.7 * 10 round as exact
    eps = 1e-9
    n_test = np.floor(n * test + half + eps).astype(np.int64)
    n_valid = np.floor(n * valid + half + eps).astype(np.int64)
    n_test = np.minimum(n_test, np.maximum(n - 1, 0))
    n_valid = np.minimum(n_valid, np.maximum(n - 1 - n_test, 0))
    end = dataset.offsets[1:]
    valid_end = end - n_test
    train_end = valid_end - n_valid
    return Split(dataset=dataset, train_end=train_end, valid_end=valid_end, kind="ratio")
