"""Batched sampling of evaluation candidates without replacement (uniform or weighted).

The sampled protocols (``uniform-100``, ``popularity-100``) rank each target among ``n``
negatives drawn without replacement from the items the user never interacted with.
:class:`CandidateSampler` draws them exactly (successive sampling, the law of Gumbel top-k) for a
whole batch at once, without a ``(B, n_items)`` random matrix in the common case.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recgym._checks import check_positive_int


class CandidateSampler:
    """Batched exact sampling without replacement of eligible columns, uniform or weighted.

    Draws follow successive sampling: each next column is drawn proportionally to its weight
    among the eligible columns not drawn yet (the law of Gumbel / exponential-race top-k). Two
    stages avoid a ``(B, C)`` random matrix in the common case:

    1. ``oversample * n`` i.i.d. draws per row from ``weights`` (with replacement); the first
       occurrences of eligible columns, in draw order, *are* the successive sample.
    2. Rows left with ``d < n`` columns continue the same process where they stopped: an
       exponential race (float64 keys ``log(U) / w``) over the eligible columns not drawn yet
       gives the remaining ``n - d`` in order. Successive sampling is Markov in the drawn set,
       so the result is exact whatever ``oversample``.

    Args:
        n_columns: number of columns ``C``.
        generator: the seeded generator; its device is where sampling runs.
        weights: ``(C,)`` non-negative weights, ``None`` for uniform. Zero-weight columns are
            never drawn. Integer weights (counts) are drawn exactly from a table with one entry
            per unit of weight when it has at most ``2**24`` entries.
        oversample: stage-1 draws per requested column.
    """

    def __init__(
        self,
        n_columns: int,
        *,
        generator: torch.Generator,
        weights: Tensor | None = None,
        oversample: int = 2,
    ) -> None:
        device = generator.device
        self.n_columns, self.generator, self.oversample = n_columns, generator, oversample
        check_positive_int("oversample", oversample)
        self.weights = None if weights is None else weights.to(device)
        if self.weights is not None and (
            self.weights.shape != (n_columns,)
            or not bool(((self.weights >= 0) & torch.isfinite(self.weights)).all())
        ):
            raise ValueError(
                f"weights must be a ({n_columns},) tensor of finite non-negative values; got "
                f"shape {tuple(self.weights.shape)}"
            )
        self.drawable = torch.ones(n_columns, dtype=torch.bool, device=device)
        self._table = self._cdf = None
        if self.weights is not None:
            self.drawable = self.weights > 0
            if not self.weights.is_floating_point() and int(self.weights.sum()) <= 2**24:
                self._table = torch.repeat_interleave(
                    torch.arange(n_columns, device=device), self.weights
                )
            else:
                self._cdf = torch.cumsum(self.weights.to(_key_dtype(device)), dim=0)

    def sample(self, eligible: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` distinct columns per row among ``eligible`` (``(B, C)`` bool).

        Returns:
            ``(negatives, valid)``, both ``(B, n)``: the columns in draw order and whether each
            slot holds one. A row with ``m < n`` drawable columns gets all ``m`` (its other
            slots hold ``0`` with ``valid`` False).
        """
        b, device = eligible.shape[0], eligible.device
        if eligible.shape[1] != self.n_columns or not 1 <= n <= self.n_columns:
            raise ValueError(
                f"need eligible of shape (B, {self.n_columns}) and 1 <= n <= {self.n_columns}; "
                f"got {tuple(eligible.shape)} and n={n}"
            )
        eligible = eligible & self.drawable
        draws = self._draws(b, self.oversample * n)
        keep = eligible.gather(1, draws) & _first_occurrences(draws)
        order = keep.cumsum(dim=1)  # (B, M) 1-based slot of each kept draw
        # Kept draws fill slots 0..n-1; every other draw lands in a discarded slot n.
        slot = torch.where(keep & (order <= n), order - 1, n)
        negatives = draws.new_zeros((b, n + 1)).scatter_(1, slot, draws)[:, :n]
        n_drawn = order[:, -1].clamp(max=n)
        valid = torch.arange(n, device=device) < n_drawn.unsqueeze(1)
        short = (n_drawn < n).nonzero().squeeze(1)
        if len(short):
            self._continue_by_race(eligible, negatives, valid, short, n_drawn[short])
        return negatives.masked_fill(~valid, 0), valid

    def _draws(self, b: int, m: int) -> Tensor:
        """``(b, m)`` i.i.d. columns, uniform or proportional to the weights."""
        device, g = self.generator.device, self.generator
        if self._table is not None:
            if len(self._table) == 0:  # no weight anywhere: every draw is rejected
                return torch.zeros((b, m), dtype=torch.int64, device=device)
            idx = torch.randint(0, len(self._table), (b, m), generator=g, device=device)
            return self._table[idx]
        if self._cdf is None:
            return torch.randint(0, self.n_columns, (b, m), generator=g, device=device)
        u = torch.rand((b, m), generator=g, dtype=self._cdf.dtype, device=device) * self._cdf[-1]
        # Column i is hit iff cdf[i - 1] <= u < cdf[i]: zero-weight columns are never hit.
        return torch.searchsorted(self._cdf, u, right=True).clamp_(max=self.n_columns - 1)

    def _continue_by_race(
        self, eligible: Tensor, negatives: Tensor, valid: Tensor, rows: Tensor, n_drawn: Tensor
    ) -> None:
        """Fill slots ``n_drawn..n-1`` of ``rows`` in place from the columns not drawn yet."""
        n, device = negatives.shape[1], eligible.device
        rest = eligible[rows]  # (R, C) copy
        sub = torch.arange(len(rows), device=device).unsqueeze(1).expand(-1, n)
        rest[sub[valid[rows]], negatives[rows][valid[rows]]] = False
        keys = torch.rand(
            rest.shape, generator=self.generator, dtype=_key_dtype(device), device=device
        )
        if self.weights is not None:
            keys = keys.log_().div_(self.weights)  # log(U) / w: the larger, the earlier drawn
        keys.masked_fill_(~rest, -torch.inf)
        k = n - int(n_drawn.min())
        top = keys.topk(k, dim=1, sorted=True).indices  # in draw order
        slot = n_drawn.unsqueeze(1) + torch.arange(k, device=device)
        fill = slot < n
        target_rows = rows.unsqueeze(1).expand(-1, k)[fill]
        negatives[target_rows, slot[fill]] = top[fill]
        valid[target_rows, slot[fill]] = rest.gather(1, top)[fill]


def _first_occurrences(draws: Tensor) -> Tensor:
    """``(B, M)`` bool: True where a draw's value does not occur earlier in its row."""
    values, order = draws.sort(dim=1, stable=True)  # stable: the earliest draw comes first
    new = torch.ones_like(values, dtype=torch.bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    return torch.empty_like(new).scatter_(1, order, new)


def csr_entries(items: Tensor, starts: Tensor, ends: Tensor) -> tuple[Tensor, Tensor]:
    """Every ``items[starts[b]:ends[b]]`` flattened, with its row ``b``, without a Python loop.

    Args:
        items: ``(nnz,)`` the CSR item array.
        starts: ``(B,)`` absolute start positions.
        ends: ``(B,)`` absolute end positions (exclusive), ``>= starts``.

    Returns:
        ``(rows, values)``, both ``(sum(ends - starts),)`` int64.
    """
    lengths = ends - starts
    total = int(lengths.sum())
    rows = torch.repeat_interleave(
        torch.arange(len(starts), device=items.device), lengths, output_size=total
    )
    # Position of entry j of row b = starts[b] + j = arange(total) + (starts[b] - first[b]).
    first = torch.cumsum(lengths, 0) - lengths
    shift = torch.repeat_interleave(starts - first, lengths, output_size=total)
    return rows, items[torch.arange(total, device=items.device) + shift]


# --------------------------------------------------------------------------- helpers
def _key_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS lacks float64
