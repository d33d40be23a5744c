"""The immutable sequence dataset: every user's items in time order, stored compactly.

Users are indexed ``0..n_users - 1`` and items ``1..n_items`` (``0`` is padding). All sequences
live in one item array sliced by CSR offsets: user ``u`` owns ``items[offsets[u]:offsets[u+1]]``.
Positions into that array ("absolute positions") are how splits and the environment address a
point in a user's sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from recgym.arrays import frozen_array
from recgym.data_checks import Duplicates, check_id_column, check_time_column, drop_duplicates
from recgym.errors import DataError
from recgym.factors import (
    FactorKind,
    ItemFactors,
    binned_factor,
    categorical_factor,
    multi_factor,
)


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Users' item sequences in CSR form plus raw-id maps and an item-factor table.

    Attributes:
        name: a short name, e.g. ``"ml-100k"``.
        offsets: ``(n_users + 1,)`` int64 CSR offsets into ``items``.
        items: ``(n_interactions,)`` int64 item ids in ``1..n_items``, each user's in time order.
        user_ids: ``(n_users,)`` raw user ids, in index order.
        item_ids: ``(n_items + 1,)`` raw item ids; ``item_ids[0]`` is ``None`` (padding).
        factors: the static item factors (popularity is added per split, from training data).
        timestamps: ``(n_interactions,)`` timestamps aligned with ``items``, or ``None``.
    """

    name: str
    offsets: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    factors: ItemFactors = field(default=None)  # type: ignore[assignment]
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        n_items = len(self.item_ids) - 1
        if offsets.ndim != 1 or len(offsets) != len(self.user_ids) + 1:
            raise DataError(
                f"offsets must have n_users + 1 = {len(self.user_ids) + 1} entries; "
                f"got shape {offsets.shape}"
            )
        if offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0):
            raise DataError(
                f"offsets must start at 0, be non-decreasing and end at len(items)={len(items)}; "
                f"got start {offsets[0]}, end {offsets[-1]}"
            )
        if len(items) and (items.min() < 1 or items.max() > n_items):
            raise DataError(
                f"item ids must lie in [1, n_items={n_items}] (0 is padding); "
                f"got [{items.min()}, {items.max()}]"
            )
        if self.timestamps is not None and len(self.timestamps) != len(items):
            raise DataError(
                f"timestamps must align with items ({len(items)}); got {len(self.timestamps)}"
            )
        factors = self.factors if self.factors is not None else ItemFactors(n_items=n_items)
        if factors.n_items != n_items:
            raise DataError(f"factor table covers {factors.n_items} items; expected {n_items}")
        object.__setattr__(self, "offsets", frozen_array(offsets))
        object.__setattr__(self, "items", frozen_array(items))
        object.__setattr__(self, "user_ids", frozen_array(np.asarray(self.user_ids)))
        object.__setattr__(self, "item_ids", frozen_array(np.asarray(self.item_ids, dtype=object)))
        object.__setattr__(self, "factors", factors)
        if self.timestamps is not None:
            object.__setattr__(self, "timestamps", frozen_array(np.asarray(self.timestamps)))

    # ----------------------------------------------------------------- sizes and lookups
    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of real items (ids ``1..n_items``)."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        """Total number of (user, item) events."""
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """``(n_users,)`` sequence length of every user."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """The item ids of ``user`` (an index) in time order."""
        if not 0 <= int(user) < self.n_users:
            raise IndexError(f"user index must be in [0, {self.n_users - 1}]; got {user}")
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def user_index(self, raw_id: object) -> int:
        """The index of a raw user id."""
        return _lookup(self._user_map, raw_id, "user")

    def item_index(self, raw_id: object) -> int:
        """The item id (``1..n_items``) of a raw item id."""
        return _lookup(self._item_map, raw_id, "item")

    @property
    def _user_map(self) -> dict:
        cached = self.__dict__.get("_user_map_cache")
        if cached is None:
            cached = {u: i for i, u in enumerate(self.user_ids.tolist())}
            object.__setattr__(self, "_user_map_cache", cached)
        return cached

    @property
    def _item_map(self) -> dict:
        cached = self.__dict__.get("_item_map_cache")
        if cached is None:
            cached = {it: i for i, it in enumerate(self.item_ids.tolist()) if i > 0}
            object.__setattr__(self, "_item_map_cache", cached)
        return cached

    def item_counts(self) -> np.ndarray:
        """``(n_items + 1,)`` interaction counts over the whole dataset (index 0 is 0)."""
        return np.bincount(self.items, minlength=self.n_items + 1)

    def stats(self) -> dict[str, float]:
        """Summary counts: users, items, interactions, sequence-length range, density."""
        lengths = self.lengths
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "min_len": int(lengths.min()) if len(lengths) else 0,
            "max_len": int(lengths.max()) if len(lengths) else 0,
            "mean_len": float(lengths.mean()) if len(lengths) else 0.0,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
        }

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"SequenceDataset(name={self.name!r}, users={s['users']}, items={s['items']}, "
            f"interactions={s['interactions']}, factors={list(self.factors.names)})"
        )

    # ----------------------------------------------------------------- batched windows
    def windows(
        self,
        users: np.ndarray | torch.Tensor,
        ends: np.ndarray | torch.Tensor,
        max_len: int,
        *,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Left-padded history windows ending just before absolute positions ``ends``.

        Row ``b`` holds the last ``max_len`` items of ``items[offsets[users[b]]:ends[b]]``.

        Args:
            users: ``(B,)`` user indices.
            ends: ``(B,)`` absolute positions (exclusive) in ``offsets[u]..offsets[u+1]``.
            max_len: window length ``L``.
            device: where the result goes.

        Returns:
            ``(B, L)`` int64 tensor, ``0``-padded on the left.
        """
        items, offsets = self.tensors(device)
        return gather_windows(items, offsets, users, ends, max_len)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(items, offsets)`` as int64 tensors on ``device``, copied once and cached."""
        device = torch.device(device)
        cache = self.__dict__.setdefault("_tensor_cache", {})
        if device not in cache:
            cache[device] = (
                torch.tensor(self.items, dtype=torch.int64, device=device),
                torch.tensor(self.offsets, dtype=torch.int64, device=device),
            )
        return cache[device]

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_interactions(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        time_col: str | None = "timestamp",
        item_frame: pd.DataFrame | None = None,
        factor_kinds: Mapping[str, FactorKind] | None = None,
        n_bins: int = 10,
        k_core: int | tuple[int, int] | None = None,
        name: str = "dataset",
        duplicates: Duplicates = "warn",
    ) -> SequenceDataset:
        """Build a dataset from a long interaction table.

        Rows are ordered by ``time_col`` within each user; equal timestamps keep their input
        order (stable sort). Items are re-indexed ``1..n_items`` and users ``0..n_users - 1``,
        both in sorted raw-id order.

        Args:
            frame: one row per interaction.
            user_col: column of raw user ids.
            item_col: column of raw item ids.
            time_col: column to order by, or ``None`` to keep the input order.
            item_frame: optional item attributes, indexed by raw item id, one column per factor.
                Columns of lists/tuples become multi-valued factors, numeric columns quantile-
                binned factors, other columns categorical factors (override with
                ``factor_kinds``). Items missing from it get "unknown" (0).
            factor_kinds: explicit kind per ``item_frame`` column.
            n_bins: quantile bins for numeric factors.
            k_core: iterative k-core filter: ``k`` for users and items, or ``(k_user, k_item)``.
            name: dataset name.
            duplicates: rows repeating an earlier row's user, item *and* time (a log written
                twice; left in, a validation and a test target could be the same event):
                ``"warn"`` drops them and warns with their count, ``"drop"`` drops them
                quietly, ``"keep"`` keeps them, ``"error"`` raises. Without ``time_col`` only
                the user and item are compared, and repeated items stay (``"keep"`` is then
                the only sensible choice for repeat-consumption logs).

        Raises:
            DataError: a named column is missing; ids missing or of mixed types (``42`` and
                ``"42"``); a time column that is not numeric or datetime, or has missing
                values; duplicates under ``duplicates="error"``; nothing left after filtering.
        """
        needed = [user_col, item_col] + ([time_col] if time_col else [])
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(
                f"interaction frame lacks column(s) {missing}; it has {list(frame.columns)}"
            )
        df = frame[needed].reset_index(drop=True)
        for col in (user_col, item_col):
            check_id_column(df[col], col)
        if time_col:
            check_time_column(df[time_col], time_col)
        df = drop_duplicates(df, duplicates)
        if k_core is not None:
            df = k_core_filter(df, user_col=user_col, item_col=item_col, k=k_core)
        if df.empty:
            raise DataError("no interactions left (after k-core filtering, if any)")
        sort_cols = [user_col] + ([time_col] if time_col else [])
        df = df.sort_values(sort_cols, kind="stable").reset_index(drop=True)
        user_codes, user_ids = pd.factorize(df[user_col], sort=True)
        item_codes, item_raw = _factorize_items(df[item_col])
        offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(user_codes, minlength=len(user_ids)), out=offsets[1:])
        item_ids = np.empty(len(item_raw) + 1, dtype=object)
        item_ids[0] = None
        item_ids[1:] = np.asarray(item_raw, dtype=object)
        factors = ItemFactors(n_items=len(item_raw))
        if item_frame is not None:
            factors = factors_from_frame(item_frame, item_ids, factor_kinds or {}, n_bins)
        timestamps = df[time_col].to_numpy() if time_col else None
        return cls(
            name=name,
            offsets=offsets,
            items=item_codes.astype(np.int64) + 1,
            user_ids=np.asarray(user_ids),
            item_ids=item_ids,
            factors=factors,
            timestamps=timestamps,
        )

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]],
        *,
        n_items: int | None = None,
        factors: ItemFactors | None = None,
        name: str = "sequences",
    ) -> SequenceDataset:
        """Build a dataset from sequences that already use item ids ``1..n_items``.

        User ``u`` is ``sequences[u]``; raw ids equal the indices. Handy for tests and for
        generated data.
        """
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
            if len(sequences)
            else np.zeros(0, dtype=np.int64)
        )
        if n_items is None:
            n_items = int(items.max()) if len(items) else 0
        item_ids = np.array([None, *range(1, n_items + 1)], dtype=object)
        return cls(
            name=name,
            offsets=offsets,
            items=items,
            user_ids=np.arange(len(sequences)),
            item_ids=item_ids,
            factors=factors,
        )


def gather_windows(
    items: torch.Tensor,
    offsets: torch.Tensor,
    users: np.ndarray | torch.Tensor,
    ends: np.ndarray | torch.Tensor,
    max_len: int,
) -> torch.Tensor:
    """Batched CSR window gather (see :meth:`SequenceDataset.windows`); runs on ``items.device``.

    Returns:
        ``(B, max_len)`` int64, left-padded with ``0``.
    """
    device = items.device
    users, ends = (_index_tensor(x, device) for x in (users, ends))
    idx = ends.unsqueeze(1) - max_len + torch.arange(max_len, device=device)  # (B, L)
    valid = idx >= offsets[users].unsqueeze(1)
    if items.numel() == 0:
        return torch.zeros(idx.shape, dtype=torch.int64, device=device)
    gathered = items[idx.clamp(min=0, max=items.numel() - 1)]
    return torch.where(valid, gathered, torch.zeros_like(gathered))


def _index_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.int64)
    # A copy: dataset arrays are read-only, which torch cannot wrap without a warning.
    return torch.tensor(np.asarray(x, dtype=np.int64), device=device)


def k_core_filter(
    frame: pd.DataFrame, *, user_col: str, item_col: str, k: int | tuple[int, int]
) -> pd.DataFrame:
    """Iteratively drop users and items with fewer than ``k`` interactions until none remain.

    Args:
        k: the same threshold for users and items, or ``(k_user, k_item)``.
    """
    k_user, k_item = (k, k) if isinstance(k, int) else k
    if k_user < 1 or k_item < 1:
        raise ValueError(f"k-core thresholds must be >= 1; got k_user={k_user}, k_item={k_item}")
    df = frame
    while True:
        user_n = df.groupby(user_col)[item_col].transform("size")
        item_n = df.groupby(item_col)[user_col].transform("size")
        keep = (user_n >= k_user) & (item_n >= k_item)
        if keep.all():
            return df
        df = df[keep]


def factors_from_frame(
    item_frame: pd.DataFrame,
    item_ids: np.ndarray,
    factor_kinds: Mapping[str, FactorKind],
    n_bins: int,
) -> ItemFactors:
    """Align an item-attribute frame (indexed by raw item id) with ``item_ids[1:]`` as factors."""
    unknown = set(factor_kinds) - set(item_frame.columns)
    if unknown:
        raise DataError(
            f"factor_kinds names {sorted(unknown)} not in item_frame columns "
            f"{list(item_frame.columns)}"
        )
    if not item_frame.index.is_unique:
        raise DataError("item_frame index (raw item ids) must be unique")
    aligned = item_frame.reindex(pd.Index(item_ids[1:], dtype=object))
    factors = ItemFactors(n_items=len(item_ids) - 1)
    for column in item_frame.columns:
        series = aligned[column]
        kind = factor_kinds.get(column) or _infer_kind(item_frame[column])
        if kind == "multi":
            factor = multi_factor(column, series.tolist())
        elif kind == "binned":
            factor = binned_factor(column, pd.to_numeric(series, errors="coerce"), n_bins)
        elif kind == "categorical":
            factor = categorical_factor(column, series.tolist())
        else:
            raise ValueError(f"unknown factor kind {kind!r} for column {column!r}")
        factors = factors.with_factor(factor)
    return factors


def _factorize_items(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    # Sorted raw ids make the mapping independent of user order (ML item 1 stays item 1).
    try:
        return pd.factorize(column, sort=True)
    except TypeError:  # mixed, unorderable raw ids
        return pd.factorize(column, sort=False)


def _infer_kind(series: pd.Series) -> FactorKind:
    non_null = series.dropna()
    if len(non_null) and isinstance(non_null.iloc[0], (list, tuple, set, np.ndarray)):
        return "multi"
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "binned"
    return "categorical"


def _lookup(mapping: dict, raw_id: object, what: str) -> int:
    if raw_id in mapping:
        return mapping[raw_id]
    # Raw ids read from text are often ints where the caller passes strings or vice versa.
    for candidate in (str(raw_id), _as_int(raw_id)):
        if candidate is not None and candidate in mapping:
            return mapping[candidate]
    raise KeyError(f"unknown raw {what} id {raw_id!r} ({len(mapping)} known {what}s)")


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
