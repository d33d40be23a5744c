"""Multi-target hold-out evaluation: all of a user's held-out items scored from one state.

ACVAE's protocol (Xie et al., WWW 2021, §4.4): "For each user, we split the interact sequence by
8:2 for training and testing respectively. After training, the users' training sets are used as
test input and the output of last item will be taken as prediction." Build the split with
``ratio_split(dataset, valid=0.0, test=0.2, rounding="floor")`` (the official code's
``int(0.2 * n)`` test items per user); then every test item of a user is a relevant item ``L``
of *one* ranking, made from the window that ends where the stage begins. This differs from
:func:`recgym.evaluate`, which ranks each held-out item separately, from its own history.

Candidates are all items except padding and the items the user interacted with before the stage
(the input); a held-out item stays a candidate even when it also occurs in the input. Ties are
pessimistic: a held-out item ranks below every non-relevant candidate with an equal score.
With 0-based positions ``p_1 <= p_2 <= ...`` of the distinct relevant items in that list:

- ``Recall@k = #{j : p_j < k} / |L|`` (the paper's Recall, the official code's "HR")
- ``NDCG@k = sum_{p_j < k} 1 / log2(p_j + 2) / sum_{i < min(|L|, k)} 1 / log2(i + 2)``
- ``MRR@k = 1 / (p_1 + 1)`` if ``p_1 < k`` else 0 (the first hit)

each averaged over the users with at least one held-out item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recgym._checks import check_positive_int
from recgym.candidates import csr_entries
from recgym.device import resolve_device
from recgym.errors import DataError
from recgym.evaluation import _check_scores, _inference, _score_fn
from recgym.metrics import check_finite_candidates, validate_ks
from recgym.splits import STAGES, Split

HOLDOUT_METRICS = ("Recall", "NDCG", "MRR")


@dataclass(frozen=True)
class HoldoutRanks:
    """Positions of every user's relevant items in its one ranking (see the module docstring).

    Attributes:
        users: ``(U,)`` evaluated users (those with at least one held-out item).
        offsets: ``(U + 1,)`` CSR offsets into ``positions``.
        positions: ``(T,)`` int64 0-based positions, ascending within each user.
    """

    users: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray

    def per_user(self, ks: Sequence[int] = (5, 10, 20)) -> dict[str, np.ndarray]:
        """``{"Recall@5": (U,), "NDCG@5": (U,), "MRR@5": (U,), ...}`` float64 per user."""
        ks = validate_ks(ks)
        n_rel = np.diff(self.offsets)
        owner = np.repeat(np.arange(len(self.users)), n_rel)
        p = self.positions
        gain = 1.0 / np.log2(p + 2.0)
        first = p[self.offsets[:-1]]
        ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(max(ks)) + 2.0))])
        out: dict[str, np.ndarray] = {}
        for k in ks:
            hit = p < k
            u = len(self.users)
            out[f"Recall@{k}"] = np.bincount(owner, weights=hit, minlength=u) / n_rel
            dcg = np.bincount(owner, weights=np.where(hit, gain, 0.0), minlength=u)
            out[f"NDCG@{k}"] = dcg / ideal[np.minimum(n_rel, k)]
            out[f"MRR@{k}"] = np.where(first < k, 1.0 / (first + 1.0), 0.0)
        return out

    def to_frame(self, ks: Sequence[int] = (5, 10, 20)) -> pd.DataFrame:
        """Tidy means: columns ``metric``, ``k``, ``value``, ``n_users``."""
        rows = []
        for key, values in self.per_user(ks).items():
            metric, k = key.split("@")
            rows.append((metric, int(k), float(values.mean()), len(self.users)))
        return pd.DataFrame(rows, columns=["metric", "k", "value", "n_users"])


def evaluate_holdout(
    recommender: object,
    split: Split,
    stage: str = "test",
    *,
    ks: Sequence[int] = (5, 10, 20),
    max_len: int = 50,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Recall, NDCG and MRR @``ks`` of all held-out items ranked together (ACVAE's protocol).

    Args:
        recommender: ``.score(history (B, L), user (B,)) -> (B, n_items + 1)`` or such a callable.
        split: e.g. ``ratio_split(ds, valid=0.0, test=0.2, rounding="floor")``.
        stage: ``"test"`` (input: train + valid segments) or ``"valid"`` (input: train).
        ks: cut-offs (ACVAE's Table 2: 5, 10, 20).
        max_len: input window length (ACVAE's code keeps the last ``seq_len`` items).
        batch_size: users per batch; memory is ``O(batch_size * n_items)``.
        device: where scoring and ranking run.

    Returns:
        A frame with one row per (metric, k); ``attrs`` hold the settings.

    Raises:
        DataError: no user has a held-out item in ``stage``.
        ValueError / TypeError: bad settings or bad scores (as :func:`recgym.evaluate`).
    """
    ranks = holdout_ranks(
        recommender, split, stage, max_len=max_len, batch_size=batch_size, device=device
    )
    frame = ranks.to_frame(validate_ks(ks))
    frame.attrs.update(
        stage=stage, ks=list(validate_ks(ks)), max_len=max_len, split_kind=split.kind,
        dataset=split.dataset.name, protocol="holdout-full",
    )  # fmt: skip
    return frame


def holdout_ranks(
    recommender: object,
    split: Split,
    stage: str = "test",
    *,
    max_len: int = 50,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> HoldoutRanks:
    """Per-user positions of the held-out items (same arguments as :func:`evaluate_holdout`)."""
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    if stage not in STAGES[1:]:
        raise ValueError(f"stage must be 'valid' or 'test'; got {stage!r}")
    check_positive_int("max_len", max_len)
    check_positive_int("batch_size", batch_size)
    split.validate()
    dev = resolve_device(device)
    start, end = split.stage_bounds(stage)
    users = np.flatnonzero(end > start)
    if not len(users):
        raise DataError(f"stage {stage!r} of {split!r} holds no item to evaluate")
    score_fn = _score_fn(recommender)
    items, offsets = split.dataset.tensors(dev)
    n_items = split.dataset.n_items
    chunks = []
    with _inference(recommender):
        for b in range(0, len(users), batch_size):
            u = torch.as_tensor(users[b : b + batch_size], device=dev)
            s = torch.as_tensor(start[users[b : b + batch_size]], device=dev)
            e = torch.as_tensor(end[users[b : b + batch_size]], device=dev)
            scores = score_fn(split.dataset.windows(u, s, max_len, device=dev), u)
            _check_scores(scores, len(u), n_items, dev)
            chunks.append(_positions(scores, items, offsets[u], s, e))
    counts = np.concatenate([c[0] for c in chunks])
    return HoldoutRanks(
        users=users,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        positions=np.concatenate([c[1] for c in chunks]),
    )


def _positions(
    scores: Tensor, items: Tensor, first: Tensor, start: Tensor, end: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_relevant (B,), positions (T,))`` for one batch; positions ascending per row."""
    b, c = scores.shape
    rows_in, seen = csr_entries(items, first, start)
    rows_rel, rel = csr_entries(items, start, end)
    relevant = torch.zeros((b, c), dtype=torch.bool, device=scores.device)
    relevant[rows_rel, rel] = True
    candidate = torch.ones_like(relevant)
    candidate[:, 0] = False
    candidate[rows_in, seen] = False
    candidate |= relevant
    check_finite_candidates(scores, candidate)
    others = scores.masked_fill(~(candidate & ~relevant), -torch.inf).sort(dim=1).values
    n_rel = relevant.sum(dim=1)  # distinct relevant items per row
    width = int(n_rel.max())
    # relevant scores per row in descending order, padded with +inf (never counted); the
    # pessimistic count of other candidates scoring >= each is C - (first index >= s)
    valid = torch.arange(width, device=scores.device) < n_rel.unsqueeze(1)
    desc = scores.masked_fill(~relevant, -torch.inf).sort(dim=1, descending=True).values
    rel_scores = torch.where(valid, desc[:, :width], torch.inf).contiguous()
    above = c - torch.searchsorted(others, rel_scores.contiguous(), side="left")
    # j-th best relevant item (descending score) sits after `above` others and j relevant ones
    pos = above + torch.arange(width, device=scores.device)
    return n_rel.cpu().numpy(), pos[valid].cpu().numpy().astype(np.int64)
