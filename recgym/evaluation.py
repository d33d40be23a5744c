"""Leave-one-out next-item evaluation of any recommender over every target of a split stage.

Each target ``(user, position)`` of ``split.targets(stage)`` is ranked by the recommender given
the left-padded window of the ``max_len`` items before it. Protocols:

- ``"full"``: the target against *all* items ``1..n_items`` except those the user interacted
  with before the target (their whole history, not only the window). The target itself is
  always a candidate, even when it was consumed earlier.
- ``"uniform-<n>"`` (e.g. ``"uniform-100"``): the target plus ``n`` negatives drawn uniformly
  without replacement from the items the user *never* interacted with (any segment).
- ``"popularity-<n>"``: the same, drawn proportionally to training popularity
  (``split.train_counts()``); items without training interactions are never drawn.

When a user has fewer than ``n`` eligible negatives, all of them are used (the target then has
fewer candidates; ``df.attrs["short_targets"]`` counts such targets). Ties are pessimistic
(:func:`recgym.metrics.pessimistic_rank`). Negatives are drawn batched on ``device`` from one
seeded ``torch.Generator`` per protocol (derived from ``seed`` and the protocol name), so a
result is reproducible for a fixed ``(seed, batch_size, device)``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recgym._checks import check_positive_int
from recgym.candidates import CandidateSampler, csr_entries
from recgym.device import resolve_device
from recgym.errors import DataError
from recgym.length_chunks import is_padding_invariant, score_by_length
from recgym.metrics import (
    at_least_target,
    check_finite_candidates,
    count_true,
    metrics_from_ranks,
    rank_unchecked,
    split_metric_name,
    validate_ks,
)
from recgym.splits import STAGES, Split

PROTOCOLS = ("full", "uniform-100", "popularity-100")
"""The default protocols; ``uniform-<n>`` and ``popularity-<n>`` accept any ``n >= 1``."""

_SAMPLED = re.compile(r"^(uniform|popularity)-([1-9][0-9]*)$")
ScoreFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """Validated evaluation settings (stored in ``df.attrs`` of :func:`evaluate`).

    Attributes:
        stage: ``"valid"`` or ``"test"`` (``"train"`` is allowed for diagnostics).
        protocols: protocol names, de-duplicated, e.g. ``("full", "uniform-100")``.
        ks: metric cut-offs, sorted, e.g. ``(1, 5, 10, 20)``.
        max_len: length ``L`` of the history window given to the recommender.
        batch_size: targets scored at once; memory is ``O(batch_size * n_items)``.
        device: where windows, scores and sampling live.
        seed: seed of the negative sampling.
    """

    stage: str = "test"
    protocols: tuple[str, ...] = PROTOCOLS
    ks: tuple[int, ...] = (1, 5, 10, 20)
    max_len: int = 50
    batch_size: int = 1024
    device: torch.device = torch.device("cpu")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {self.stage!r}")
        protocols = (self.protocols,) if isinstance(self.protocols, str) else self.protocols
        if not isinstance(protocols, (tuple, list)):
            raise TypeError(f"protocols must be a str or a sequence of str; got {protocols!r}")
        protocols = tuple(dict.fromkeys(protocols))
        if not protocols:
            raise ValueError(f"protocols must not be empty; valid: {_VALID_HELP}")
        for name in protocols:
            parse_protocol(name)
        object.__setattr__(self, "protocols", protocols)
        object.__setattr__(self, "ks", validate_ks(self.ks))
        for name in ("max_len", "batch_size"):
            value = getattr(self, name)
            check_positive_int(name, value)
            object.__setattr__(self, name, int(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed must be an int; got {type(self.seed).__name__}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "device", resolve_device(self.device))

    def as_attrs(self) -> dict:
        """The settings as plain values for ``DataFrame.attrs``."""
        out = asdict(self)
        out.update(device=str(self.device), protocols=list(self.protocols), ks=list(self.ks))
        return out


_VALID_HELP = "'full', 'uniform-<n>' or 'popularity-<n>' with n >= 1, e.g. " + ", ".join(
    repr(p) for p in PROTOCOLS
)


def parse_protocol(name: str) -> tuple[str, int | None]:
    """``"full" -> ("full", None)``, ``"uniform-100" -> ("uniform", 100)``.

    Raises:
        ValueError: an unknown protocol; the message lists the valid ones.
    """
    if name == "full":
        return "full", None
    match = _SAMPLED.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown evaluation protocol {name!r}; valid: {_VALID_HELP}")
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class TargetRanks:
    """Per-target results of :func:`evaluate_ranks`, aligned with ``split.targets(stage)``.

    Attributes:
        users: ``(N,)`` user index of each target.
        positions: ``(N,)`` absolute position of each target.
        ranks: protocol -> ``(N,)`` int64 0-based pessimistic ranks.
        n_candidates: protocol -> ``(N,)`` int64 number of candidates (target included).
        config: the settings used.
    """

    users: np.ndarray
    positions: np.ndarray
    ranks: dict[str, np.ndarray]
    n_candidates: dict[str, np.ndarray]
    config: EvaluationConfig

    @property
    def n_targets(self) -> int:
        """Number of evaluated targets N."""
        return len(self.users)

    def to_frame(self, ks: Sequence[int] | None = None) -> pd.DataFrame:
        """Tidy metrics: one row per (protocol, metric, k); columns as in :func:`evaluate`."""
        ks = self.config.ks if ks is None else validate_ks(ks)
        rows = []
        for protocol, ranks in self.ranks.items():
            for key, value in metrics_from_ranks(ranks, ks).items():
                metric, k = split_metric_name(key)
                rows.append((protocol, metric, pd.NA if k is None else k, value, len(ranks)))
        frame = pd.DataFrame(rows, columns=["protocol", "metric", "k", "value", "n_targets"])
        frame["k"] = frame["k"].astype("Int64")
        return frame


def evaluate(
    recommender: object,
    split: Split,
    stage: str = "test",
    *,
    protocols: Sequence[str] | str = PROTOCOLS,
    ks: Sequence[int] = (1, 5, 10, 20),
    max_len: int = 50,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> pd.DataFrame:
    """Evaluate a recommender on every target of ``split``'s ``stage``.

    Args:
        recommender: a :class:`recgym.types.Recommender` (``.score(history, user)``) or a plain
            callable ``f(history (B, L), user (B,)) -> (B, n_items + 1)``.
        split: the split; it is re-validated, so a split whose segments overlap is refused.
        stage: ``"test"`` or ``"valid"`` (or ``"train"``).
        protocols: see the module docstring.
        ks: cut-offs of HR@k, NDCG@k and MRR@k.
        max_len: history window length given to the recommender.
        batch_size: targets per batch.
        device: where everything runs.
        seed: negative-sampling seed.

    Returns:
        A tidy frame with one row per (protocol, metric, k): columns ``protocol``, ``metric``
        (``"HR"``, ``"NDCG"``, ``"MRR"``), ``k`` (``Int64``; ``<NA>`` for untruncated MRR),
        ``value`` and ``n_targets``. ``df.attrs`` holds the settings, the split and the number
        of targets per protocol that had fewer sampled negatives than asked (``short_targets``).

    Raises:
        DataError: the split is inconsistent or the stage has no targets.
        ValueError or TypeError: bad settings, or scores of the wrong shape/dtype/device or with
            NaN/inf on a candidate.
    """
    result = evaluate_ranks(
        recommender,
        split,
        stage,
        protocols=protocols,
        ks=ks,
        max_len=max_len,
        batch_size=batch_size,
        device=device,
        seed=seed,
    )
    frame = result.to_frame()
    frame.attrs.update(result.config.as_attrs())
    frame.attrs.update(
        split_kind=split.kind,
        dataset=split.dataset.name,
        n_items=split.dataset.n_items,
        recommender=type(recommender).__name__,
        short_targets={p: _count_short(p, c) for p, c in result.n_candidates.items()},
    )
    return frame


def evaluate_ranks(
    recommender: object,
    split: Split,
    stage: str = "test",
    *,
    protocols: Sequence[str] | str = PROTOCOLS,
    ks: Sequence[int] = (1, 5, 10, 20),
    max_len: int = 50,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> TargetRanks:
    """Per-target ranks under each protocol (same arguments as :func:`evaluate`).

    Useful for significance tests and per-user analysis; ``.to_frame()`` gives the metrics.
    """
    config = EvaluationConfig(
        stage=stage,
        protocols=protocols,
        ks=ks,
        max_len=max_len,
        batch_size=batch_size,
        device=device,
        seed=seed,
    )
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    split.validate()
    score_fn = _score_fn(recommender)
    users, positions = split.targets(config.stage)
    if len(users) == 0:
        raise DataError(f"stage {config.stage!r} of {split!r} has no targets to evaluate")
    rankers = {p: _make_ranker(p, split, config) for p in config.protocols}
    ranks: dict[str, list[Tensor]] = {p: [] for p in rankers}
    counts: dict[str, list[Tensor]] = {p: [] for p in rankers}
    dev = config.device
    items, _ = split.dataset.tensors(dev)
    users_t = torch.as_tensor(users, device=dev)
    positions_t = torch.as_tensor(positions, device=dev)
    # host-side history lengths: short windows are scored trimmed (recgym.length_chunks)
    lengths = None
    if is_padding_invariant(recommender):
        lengths = positions - split.dataset.offsets[users]
    with _inference(recommender):
        for start in range(0, len(users), config.batch_size):
            u = users_t[start : start + config.batch_size]
            p = positions_t[start : start + config.batch_size]
            history = split.dataset.windows(u, p, config.max_len, device=dev)
            if lengths is None:
                scores = score_fn(history, u)
            else:
                stop = start + len(u)
                scores = score_by_length(score_fn, history, u, lengths[start:stop])
            _check_scores(scores, len(u), split.dataset.n_items, dev)
            for name, ranker in rankers.items():
                r, c = ranker(scores, u, p, items[p])
                ranks[name].append(r)
                counts[name].append(c)
    return TargetRanks(
        users=users,
        positions=positions,
        ranks={p: torch.cat(v).cpu().numpy() for p, v in ranks.items()},
        n_candidates={p: torch.cat(v).cpu().numpy() for p, v in counts.items()},
        config=config,
    )


# --------------------------------------------------------------------------- protocols
Ranker = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _make_ranker(protocol: str, split: Split, config: EvaluationConfig) -> Ranker:
    kind, n_negatives = parse_protocol(protocol)
    items, offsets = split.dataset.tensors(config.device)
    n_items = split.dataset.n_items
    if kind == "full":
        return _FullRanker(items, offsets, n_items)
    # Popularity = training interaction counts, kept as integers so draws are exact.
    weights = None
    if kind == "popularity":
        weights = torch.as_tensor(split.train_counts(), device=config.device)
    # One generator per protocol, so evaluating a subset of protocols changes no result.
    state = np.random.SeedSequence([config.seed, zlib.crc32(protocol.encode())]).generate_state(1)
    generator = torch.Generator(device=config.device).manual_seed(int(state[0]))
    sampler = CandidateSampler(n_items + 1, generator=generator, weights=weights)
    return _SampledRanker(items, offsets, min(n_negatives, n_items), sampler)


class _FullRanker:
    """All items except the user's earlier ones; the target always stays a candidate."""

    def __init__(self, items: Tensor, offsets: Tensor, n_items: int) -> None:
        self.items, self.offsets, self.n_items = items, offsets, n_items

    def __call__(self, scores: Tensor, users: Tensor, positions: Tensor, targets: Tensor):
        b, device = len(users), scores.device
        rows, seen = csr_entries(self.items, self.offsets[users], positions)
        arange = torch.arange(b, device=device)
        # One cheap pass proves every score finite; only otherwise build the candidate mask.
        if not bool(torch.isfinite(scores[:, 1:].sum())):  # column 0 is often -inf
            mask = torch.ones((b, self.n_items + 1), dtype=torch.bool, device=device)
            mask[:, 0] = False
            mask[rows, seen] = False
            mask[arange, targets] = True
            check_finite_candidates(scores, mask)
        # Count ">= target" over all columns, then clear the non-candidates in that bool matrix
        # itself: no (B, n_items) mask and no masked copy of the scores.
        at_least = at_least_target(scores, targets)
        at_least[:, 0] = False
        at_least[rows, seen] = False
        at_least[arange, targets] = True
        return count_true(at_least) - 1, self._n_candidates(b, rows, seen, targets)

    def _n_candidates(self, b: int, rows: Tensor, seen: Tensor, targets: Tensor) -> Tensor:
        """``n_items`` minus the distinct earlier items other than the target, per row."""
        excluded = seen != targets[rows]
        pairs = torch.unique(rows[excluded] * (self.n_items + 1) + seen[excluded])
        n_excluded = torch.bincount(pairs // (self.n_items + 1), minlength=b)
        return self.n_items - n_excluded


class _SampledRanker:
    """The target plus ``n_negatives`` never-interacted items drawn without replacement."""

    def __init__(
        self, items: Tensor, offsets: Tensor, n_negatives: int, sampler: CandidateSampler
    ) -> None:
        self.items, self.offsets = items, offsets
        self.n_negatives, self.sampler = n_negatives, sampler

    def __call__(self, scores: Tensor, users: Tensor, positions: Tensor, targets: Tensor):
        b = len(users)
        eligible = self.sampler.drawable.expand(b, -1).clone()
        eligible[:, 0] = False  # padding
        rows, seen = csr_entries(self.items, self.offsets[users], self.offsets[users + 1])
        eligible[rows, seen] = False
        negatives, valid = self.sampler.sample(eligible, self.n_negatives)
        candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # (B, 1 + n)
        mask = torch.cat([valid.new_ones((b, 1)), valid], dim=1)
        candidate_scores = scores.gather(1, candidates)
        check_finite_candidates(candidate_scores, mask)
        target_index = torch.zeros(b, dtype=torch.int64, device=scores.device)
        return rank_unchecked(candidate_scores, target_index, mask), count_true(mask)


def _count_short(protocol: str, n_candidates: np.ndarray) -> int:
    _, n = parse_protocol(protocol)
    return 0 if n is None else int((n_candidates < n + 1).sum())


def _score_fn(recommender: object) -> ScoreFn:
    score = getattr(recommender, "score", None)
    if callable(score):
        return score
    if callable(recommender):
        return recommender  # type: ignore[return-value]
    raise TypeError(
        "recommender must have a .score(history, user) method (recgym.types.Recommender) or "
        f"be a callable f(history, user); got {type(recommender).__name__}"
    )


def _check_scores(scores: object, b: int, n_items: int, device: torch.device) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(
            f"recommender must return a torch.Tensor of shape ({b}, {n_items + 1}); "
            f"got {type(scores).__name__}"
        )
    if not scores.is_floating_point():
        raise TypeError(f"recommender scores must be floating point; got dtype {scores.dtype}")
    if tuple(scores.shape) != (b, n_items + 1):
        raise ValueError(
            f"recommender scores must have shape (B, n_items + 1) = ({b}, {n_items + 1}) "
            f"(column 0 = padding); got {tuple(scores.shape)}"
        )
    same = scores.device.type == device.type and (
        device.index is None or scores.device.index == device.index
    )
    if not same:
        raise ValueError(
            f"recommender scores are on {scores.device} but evaluation runs on {device}; "
            "pass the model's device as device=..."
        )


@contextmanager
def _inference(recommender: object) -> Iterator[None]:
    """``torch.no_grad()`` plus eval mode for an ``nn.Module`` (each submodule's mode restored)."""
    module = recommender if isinstance(recommender, torch.nn.Module) else None
    owner = getattr(recommender, "__self__", None)  # a bound method such as model.score
    if module is None and isinstance(owner, torch.nn.Module):
        module = owner
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    if module is not None:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
