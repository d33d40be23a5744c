"""recgym's embedded default dataset: sequences sampled from a documented ground-truth user model.

:func:`make_synthetic` draws item attributes and latent user traits with a seeded
``numpy.random.Generator``, then samples every user's sequence step by step from
:class:`~recgym.user_model.SyntheticUserModel` with a seeded ``torch.Generator``. The user model
is returned with the data and stays an exact oracle: ``log_prob`` is the true next-item
distribution. The equations and defaults are in ``docs/synthetic.md``.

Factors: ``genre``, ``price`` and (through ``popularity`` added by a split) popularity drive
behaviour; ``tags`` and ``year`` are pure *distractors*, drawn independently of everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from recgym.data import SequenceDataset
from recgym.device import resolve_device
from recgym.factors import ItemFactor, ItemFactors, binned_factor
from recgym.user_model import SyntheticUserModel

_THETA_FLOOR = 1e-8  # Dirichlet draws can underflow to 0; log 0 would forbid a genre outright
_BASE_PRICE = 20.0
_YEARS = (1970, 2024)
_MAX_TAGS = 3


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Sizes and weights of the synthetic generative model (see ``docs/synthetic.md``).

    Attributes:
        n_users: number of users.
        n_items: number of items (ids ``1..n_items``).
        n_genres: number of genres ``G`` (``<= n_items``; every genre gets items).
        n_tags: size of the distractor tag vocabulary (1-3 tags per item).
        min_seq_len: shortest sequence, ``>= 1``.
        max_seq_len: longest sequence, ``<= n_items`` (items never repeat).
        genre_weight: ``a``, weight of the user's genre preference ``log theta_u[g_i]``.
        dirichlet_concentration: ``alpha`` of ``theta_u ~ Dirichlet(alpha 1_G)``; small = picky.
        zipf_exponent: ``s``: popularity ``q_i = -s log rank_i`` (Zipf-like long tail).
        popularity_weight: mean of the popularity bias ``gamma_u`` (log-normal).
        popularity_spread: log-scale standard deviation of ``gamma_u``.
        price_weight: mean of the price sensitivity ``beta_u ~ price_weight * Exp(1)``.
        price_sigma: log-normal sigma of prices within a genre.
        price_genre_spread: standard deviation of the genres' mean log prices.
        transition_weight: ``b``, weight of the genre-transition term ``log T[g_l, g_i]``.
        genre_stay: probability mass of ``T`` on staying in the same genre.
        genre_next: mass of ``T`` on the genre's fixed successor ``pi(g)`` (a random cycle).
        sequel_fraction: probability that an item has a sequel (a same-genre successor).
        sequel_weight: ``c``, logit bonus of the sequel of the newest item.
        n_bins: quantile bins of the ``price`` and ``year`` factors.
    """

    n_users: int = 2000
    n_items: int = 500
    n_genres: int = 12
    n_tags: int = 20
    min_seq_len: int = 10
    max_seq_len: int = 50
    genre_weight: float = 1.0
    dirichlet_concentration: float = 0.3
    zipf_exponent: float = 1.0
    popularity_weight: float = 1.0
    popularity_spread: float = 0.5
    price_weight: float = 1.0
    price_sigma: float = 0.5
    price_genre_spread: float = 0.5
    transition_weight: float = 1.0
    genre_stay: float = 0.5
    genre_next: float = 0.3
    sequel_fraction: float = 0.3
    sequel_weight: float = 3.0
    n_bins: int = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"SyntheticConfig.{f.name} must be an int; got {value!r}")
            if f.type == "float" and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(
                    f"SyntheticConfig.{f.name} must be a finite number >= 0; got {value!r}"
                )
        positive = ("n_users", "n_items", "n_genres", "n_tags", "min_seq_len", "n_bins")
        for name in (*positive, "dirichlet_concentration"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SyntheticConfig.{name} must be > 0; got {getattr(self, name)}")
        if self.n_genres > self.n_items:
            raise ValueError(
                f"n_genres={self.n_genres} exceeds n_items={self.n_items}; every genre needs an "
                "item: lower n_genres or raise n_items"
            )
        if not self.min_seq_len <= self.max_seq_len <= self.n_items:
            raise ValueError(
                "need min_seq_len <= max_seq_len <= n_items (items never repeat); got "
                f"{self.min_seq_len}, {self.max_seq_len}, n_items={self.n_items}"
            )
        if self.genre_stay + self.genre_next >= 1.0:
            raise ValueError(
                f"genre_stay + genre_next must be < 1 so every genre transition stays possible; "
                f"got {self.genre_stay} + {self.genre_next}"
            )
        if self.sequel_fraction > 1.0:
            raise ValueError(f"sequel_fraction must lie in [0, 1]; got {self.sequel_fraction}")


@dataclass(frozen=True)
class SyntheticData:
    """A generated dataset together with the exact user model that generated it.

    Attributes:
        dataset: the sequences (name ``"synthetic"``; raw ids equal the indices, so item id ``i``
            of the dataset is item ``i`` of ``user_model`` and user index ``u`` is user ``u``).
        user_model: the ground-truth oracle.
        config: the configuration it was generated from.
    """

    dataset: SequenceDataset
    user_model: SyntheticUserModel
    config: SyntheticConfig


def make_synthetic(
    config: SyntheticConfig | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> SyntheticData:
    """Generate the synthetic dataset and its oracle.

    Args:
        config: sizes and weights; ``None`` = the defaults.
        seed: seeds both the ``numpy`` parameter draw and the ``torch`` sequence sampler. The same
            seed (on the same device type) gives identical data.
        device: where the user model lives and sequences are sampled.

    Returns:
        :class:`SyntheticData`; timestamps are step indices ``0..len - 1`` within each sequence.
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig or None; got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    items = _sample_items(config, rng)
    model = SyntheticUserModel(
        **_sample_users(config, rng),
        genre=np.concatenate([[0], items["genre"]]),
        popularity=np.concatenate([[0.0], items["popularity"]]),
        price_z=np.concatenate([[0.0], _standardise(np.log(items["price"]))]),
        sequel=items["sequel"],
        transition=_transition_matrix(config, rng),
        genre_weight=config.genre_weight,
        transition_weight=config.transition_weight,
        sequel_weight=config.sequel_weight,
        device=dev,
    )
    lengths = rng.integers(config.min_seq_len, config.max_seq_len + 1, size=config.n_users)
    generator = torch.Generator(device=dev).manual_seed(int(seed))
    sequences = _sample_sequences(model, config.max_seq_len, generator)
    dataset = _build_dataset(config, items, sequences, lengths)
    return SyntheticData(dataset=dataset, user_model=model, config=config)


# ---------------------------------------------------------------------- parameter draws
def _sample_items(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Item attributes, 0-based over items (index ``k`` is item id ``k + 1``)."""
    n, g = config.n_items, config.n_genres
    genre = rng.permutation(np.arange(n) % g)  # balanced, every genre non-empty
    rank = rng.permutation(n) + 1
    genre_log_price = math.log(_BASE_PRICE) + config.price_genre_spread * rng.standard_normal(g)
    log_price = genre_log_price[genre] + config.price_sigma * rng.standard_normal(n)
    n_tags = rng.integers(1, min(_MAX_TAGS, config.n_tags) + 1, size=n)
    tag_choice = np.argsort(rng.random((n, config.n_tags)), axis=1)[:, :_MAX_TAGS] + 1
    tags = np.where(np.arange(tag_choice.shape[1]) < n_tags[:, None], tag_choice, 0)
    return {
        "genre": genre,
        "popularity": -config.zipf_exponent * np.log(rank),
        "price": np.round(np.exp(log_price), 2),
        "year": rng.integers(_YEARS[0], _YEARS[1] + 1, size=n),
        "tags": tags,
        "sequel": _sequels(genre, config.sequel_fraction, rng),
    }


def _sequels(genre: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``(n_items + 1,)`` sequel id of each item (0 = none): chains within a genre.

    Items are shuffled within their genre; each item's candidate sequel is the next one in that
    order, kept with probability ``fraction``. Sequels are therefore unique and acyclic.
    """
    order = np.lexsort((rng.random(len(genre)), genre))
    same_genre = genre[order[:-1]] == genre[order[1:]]
    keep = same_genre & (rng.random(len(genre) - 1) < fraction)
    sequel = np.zeros(len(genre) + 1, dtype=np.int64)
    sequel[order[:-1][keep] + 1] = order[1:][keep] + 1
    return sequel


def _sample_users(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    u, g = config.n_users, config.n_genres
    theta = rng.dirichlet(np.full(g, config.dirichlet_concentration), size=u)
    theta = np.maximum(theta, _THETA_FLOOR)
    theta /= theta.sum(axis=1, keepdims=True)
    spread = config.popularity_spread
    gamma = config.popularity_weight * np.exp(spread * rng.standard_normal(u) - spread**2 / 2)
    beta = config.price_weight * rng.exponential(1.0, size=u)
    return {"theta": theta, "gamma": gamma, "beta": beta}


def _transition_matrix(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``T = stay I + next P_pi + (1 - stay - next) / G``, ``pi`` one random cycle of genres."""
    g = config.n_genres
    cycle = rng.permutation(g)
    successor = np.empty(g, dtype=np.int64)
    successor[cycle] = np.roll(cycle, -1)  # a single cycle: pi(g) != g whenever G > 1
    rest = 1.0 - config.genre_stay - config.genre_next
    transition = np.full((g, g), rest / g)
    transition[np.arange(g), np.arange(g)] += config.genre_stay
    transition[np.arange(g), successor] += config.genre_next
    return transition


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


# ---------------------------------------------------------------------- sequences and dataset
def _sample_sequences(
    model: SyntheticUserModel, n_steps: int, generator: torch.Generator
) -> np.ndarray:
    """``(n_users, n_steps)`` sequences of every user, sampled from empty histories."""
    users = torch.arange(model.n_users, device=model.device)
    return model.generate(users, n_steps, generator).cpu().numpy()


def _build_dataset(
    config: SyntheticConfig,
    items: dict[str, np.ndarray],
    sequences: np.ndarray,
    lengths: np.ndarray,
) -> SequenceDataset:
    keep = np.arange(sequences.shape[1]) < lengths[:, None]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    steps = np.broadcast_to(np.arange(sequences.shape[1]), sequences.shape)
    return SequenceDataset(
        name="synthetic",
        offsets=offsets,
        items=sequences[keep],
        user_ids=np.arange(config.n_users),
        item_ids=np.array([None, *range(1, config.n_items + 1)], dtype=object),
        factors=_factors(config, items),
        timestamps=steps[keep].astype(np.int64),
    )


def _factors(config: SyntheticConfig, items: dict[str, np.ndarray]) -> ItemFactors:
    pad = np.zeros((1, 1), dtype=np.int64)
    genre = ItemFactor(
        name="genre",
        kind="categorical",
        values=np.concatenate([pad, items["genre"][:, None] + 1]),
        vocab=("<unk>", *(f"genre_{k:02d}" for k in range(config.n_genres))),
    )
    tags = items["tags"]
    tag_factor = ItemFactor(
        name="tags",
        kind="multi",
        values=np.concatenate([np.zeros((1, tags.shape[1]), dtype=np.int64), tags]),
        vocab=("<unk>", *(f"tag_{k:02d}" for k in range(config.n_tags))),
    )
    return ItemFactors(
        n_items=config.n_items,
        factors=(
            genre,
            tag_factor,
            binned_factor("price", items["price"], config.n_bins),
            binned_factor("year", items["year"], config.n_bins),
        ),
    )
