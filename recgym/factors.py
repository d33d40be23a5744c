"""Item factors: per-item categorical, multi-valued and binned numeric attributes.

A factor maps every item id ``0..n_items`` to up to ``K`` value ids, stored as a dense
``(n_items + 1, K)`` int64 table where ``0`` means padding/unknown. Single-valued factors have
``K = 1``. Numeric attributes (year, price, popularity) become quantile bins ``1..n_bins``.
Multi-factor discriminators embed every factor of every item of a sequence from these tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from recgym.arrays import frozen_array

FactorKind = Literal["categorical", "multi", "binned"]
_KINDS = ("categorical", "multi", "binned")


@dataclass(frozen=True, eq=False)
class ItemFactor:
    """One item factor.

    Attributes:
        name: factor name, e.g. ``"genre"``.
        kind: ``"categorical"`` (one value), ``"multi"`` (several values) or ``"binned"``
            (a numeric attribute cut into quantile bins).
        values: ``(n_items + 1, K)`` int64 value ids in ``0..n_values - 1``; ``0`` = unknown or
            padding. Row ``0`` (the padding item) is all zeros.
        vocab: labels of the value ids; ``vocab[0]`` is ``"<unk>"``. For binned factors the
            labels are the bin intervals.
        edges: bin edges for binned factors (``n_bins + 1`` floats), else ``None``.
    """

    name: str
    kind: FactorKind
    values: np.ndarray
    vocab: tuple[str, ...]
    edges: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"factor kind must be one of {_KINDS}; got {self.kind!r}")
        values = np.asarray(self.values)
        if values.ndim != 2 or values.dtype.kind not in "iu":
            raise ValueError(
                f"factor {self.name!r}: values must be a 2-D integer array (n_items + 1, K); "
                f"got shape {values.shape}, dtype {values.dtype}"
            )
        if values.size and (values.min() < 0 or values.max() >= len(self.vocab)):
            raise ValueError(
                f"factor {self.name!r}: value ids must lie in [0, {len(self.vocab) - 1}]; "
                f"got [{values.min()}, {values.max()}]"
            )
        if values.shape[0] and values[0].any():
            raise ValueError(f"factor {self.name!r}: row 0 (the padding item) must be all zeros")
        if self.kind != "multi" and values.shape[1] != 1:
            raise ValueError(f"factor {self.name!r} of kind {self.kind!r} must have K = 1")
        object.__setattr__(self, "values", frozen_array(values.astype(np.int64, copy=False)))

    @property
    def n_items(self) -> int:
        """Number of real items (the table has one more row, for padding)."""
        return self.values.shape[0] - 1

    @property
    def n_values(self) -> int:
        """Vocabulary size including the ``0`` (unknown) id: the embedding table's size."""
        return len(self.vocab)

    @property
    def width(self) -> int:
        """``K``: the most values one item has."""
        return self.values.shape[1]

    @property
    def codes(self) -> np.ndarray:
        """``(n_items + 1,)`` value ids of a single-valued factor."""
        if self.width != 1:
            raise ValueError(f"factor {self.name!r} is multi-valued (K={self.width}); use .values")
        return self.values[:, 0]

    def as_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``(n_items + 1, K)`` value table as an int64 tensor on ``device``."""
        return torch.tensor(self.values, dtype=torch.int64, device=device)

    def labels(self, items: Sequence[int] | np.ndarray) -> list[str]:
        """Human-readable value labels of ``items`` (multi values joined by ``|``)."""
        rows = self.values[np.asarray(items, dtype=np.int64)]
        return ["|".join(self.vocab[v] for v in row if v) or self.vocab[0] for row in rows]


@dataclass(frozen=True, eq=False)
class ItemFactors(Mapping[str, ItemFactor]):
    """An ordered, immutable table of item factors over the same ``n_items`` items."""

    n_items: int
    factors: tuple[ItemFactor, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [f.name for f in self.factors]
        if len(set(names)) != len(names):
            raise ValueError(f"factor names must be unique; got {names}")
        for f in self.factors:
            if f.n_items != self.n_items:
                raise ValueError(
                    f"factor {f.name!r} covers {f.n_items} items; expected {self.n_items}"
                )

    def __getitem__(self, name: str) -> ItemFactor:
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(f"no item factor {name!r}; available: {list(self.names)}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.factors)

    @property
    def names(self) -> tuple[str, ...]:
        """Factor names in order."""
        return tuple(f.name for f in self.factors)

    def with_factor(self, factor: ItemFactor) -> ItemFactors:
        """Return a copy with ``factor`` added (replacing one of the same name)."""
        kept = tuple(f for f in self.factors if f.name != factor.name)
        return ItemFactors(n_items=self.n_items, factors=kept + (factor,))

    def without(self, *names: str) -> ItemFactors:
        """Return a copy without the named factors (e.g. for factor-removal studies)."""
        for name in names:
            self[name]  # raises KeyError for unknown names
        kept = tuple(f for f in self.factors if f.name not in names)
        return ItemFactors(n_items=self.n_items, factors=kept)

    def select(self, names: Iterable[str]) -> ItemFactors:
        """Return a copy with only the named factors, in the given order."""
        return ItemFactors(n_items=self.n_items, factors=tuple(self[n] for n in names))

    def describe(self) -> str:
        """One line per factor: name, kind, vocabulary size, width."""
        return "\n".join(
            f"{f.name}: {f.kind}, {f.n_values - 1} values, K={f.width}" for f in self.factors
        )


def categorical_factor(name: str, values: Sequence | np.ndarray) -> ItemFactor:
    """Build a single-valued factor from one raw value per item.

    Args:
        name: factor name.
        values: ``n_items`` raw values aligned with item ids ``1..n_items``; ``None``/NaN/empty
            string means unknown (id 0).
    """
    raw = list(values)
    known = sorted({str(v) for v in raw if not _missing(v)})
    index = {v: i + 1 for i, v in enumerate(known)}
    codes = np.zeros((len(raw) + 1, 1), dtype=np.int64)
    codes[1:, 0] = [0 if _missing(v) else index[str(v)] for v in raw]
    return ItemFactor(name=name, kind="categorical", values=codes, vocab=("<unk>", *known))


def multi_factor(name: str, values: Sequence[Iterable] | np.ndarray) -> ItemFactor:
    """Build a multi-valued factor (genres, attributes) from one iterable of raw values per item.

    Duplicates within an item are dropped; the width ``K`` is the largest value count.
    """
    rows = [[] if _missing(v) else list(dict.fromkeys(str(x) for x in v)) for v in values]
    known = sorted({x for row in rows for x in row})
    index = {v: i + 1 for i, v in enumerate(known)}
    width = max((len(r) for r in rows), default=1) or 1
    table = np.zeros((len(rows) + 1, width), dtype=np.int64)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((index[x] for r in rows for x in r), dtype=np.int64, count=lengths.sum())
    row_ids = np.repeat(np.arange(1, len(rows) + 1), lengths)
    col_ids = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    table[row_ids, col_ids] = flat
    return ItemFactor(name=name, kind="multi", values=table, vocab=("<unk>", *known))


def binned_factor(name: str, values: Sequence[float] | np.ndarray, n_bins: int = 10) -> ItemFactor:
    """Discretise a numeric attribute into (at most) ``n_bins`` quantile bins.

    Bins are ``1..n_bins``, right-closed (``[lo, e1], (e1, e2], ...``), fewer when quantiles
    coincide (e.g. many equal prices); NaN is ``0``.

    Args:
        name: factor name.
        values: ``n_items`` numbers aligned with item ids ``1..n_items``.
        n_bins: number of quantile bins, ``>= 1``.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int; got {n_bins!r}")
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    codes = np.zeros((len(x) + 1, 1), dtype=np.int64)
    if not finite.any():
        return ItemFactor(name=name, kind="binned", values=codes, vocab=("<unk>",), edges=None)
    lo, hi = float(x[finite].min()), float(x[finite].max())
    # Right-closed bins [lo, e1], (e1, e2], ..., (ek, hi]: a point mass (e.g. the many items
    # with zero training interactions) gets a bin of its own instead of merging upwards.
    inner = np.quantile(x[finite], np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf")
    inner = np.unique(inner[1:-1])
    inner = inner[inner < hi]
    edges = np.concatenate([[lo], inner, [hi]])
    codes[1:, 0] = np.where(finite, np.searchsorted(inner, x, side="left") + 1, 0)
    vocab = ("<unk>",) + tuple(
        f"{'[' if i == 0 else '('}{a:.4g}, {b:.4g}]"
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    )
    return ItemFactor(name=name, kind="binned", values=codes, vocab=vocab, edges=edges)


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def factors_to_payload(factors: ItemFactors) -> dict[str, Any]:
    """Plain lists and tensors that :func:`factors_from_payload` turns back into the table."""
    return {
        "n_items": factors.n_items,
        "names": list(factors.names),
        "kinds": [f.kind for f in factors.factors],
        "vocab": [list(f.vocab) for f in factors.factors],
        "values": [torch.as_tensor(np.array(f.values)) for f in factors.factors],
    }


def factors_from_payload(payload: Mapping[str, Any]) -> ItemFactors:
    """Rebuild an :class:`ItemFactors` saved by :func:`factors_to_payload`."""
    if not isinstance(payload, Mapping) or "n_items" not in payload:
        raise TypeError(
            "factors must be a recgym.ItemFactors (e.g. split.factors()) or a saved factor "
            f"payload; got {type(payload).__name__}"
        )
    keys = ("names", "kinds", "vocab", "values")
    factors = tuple(
        ItemFactor(name=n, kind=k, values=np.asarray(v), vocab=tuple(labels))
        for n, k, labels, v in zip(*(payload[key] for key in keys), strict=True)
    )
    return ItemFactors(n_items=int(payload["n_items"]), factors=factors)
