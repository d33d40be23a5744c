"""The synthetic dataset and its exact oracle (recgym.synthetic, recgym.user_model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import user_model
from recgym.data import SequenceDataset
from recgym.synthetic import SyntheticConfig, SyntheticData, make_synthetic
from recgym.types import Recommender, append_items
from recgym.user_model import SyntheticUserModel

SMALL = SyntheticConfig(
    n_users=400, n_items=60, n_genres=5, n_tags=6, min_seq_len=5, max_seq_len=15, n_bins=4
)


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return make_synthetic(SMALL, seed=3)


@pytest.fixture(scope="module")
def oracle(data) -> SyntheticUserModel:
    return data.user_model


def _prefixes(ds: SequenceDataset, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (history window, user, next item) of the dataset."""
    users = np.repeat(np.arange(ds.n_users), ds.lengths)
    ends = np.arange(ds.n_interactions)
    window = ds.windows(users, ends, max_len)
    return window, torch.as_tensor(users), torch.tensor(ds.items)


# ---------------------------------------------------------------------- the dataset
def test_dataset_shape_ids_factors_and_timestamps(data):
    ds, cfg = data.dataset, data.config
    assert isinstance(ds, SequenceDataset) and ds.name == "synthetic"
    assert ds.n_users == cfg.n_users and ds.n_items == cfg.n_items
    assert list(ds.item_ids[1:]) == list(range(1, cfg.n_items + 1))
    assert np.all((ds.lengths >= cfg.min_seq_len) & (ds.lengths <= cfg.max_seq_len))
    assert ds.items.dtype == np.int64 and ds.items.min() >= 1 and ds.items.max() <= cfg.n_items
    starts = np.repeat(ds.offsets[:-1], ds.lengths)
    np.testing.assert_array_equal(ds.timestamps, np.arange(ds.n_interactions) - starts)
    assert [(f.name, f.kind) for f in ds.factors.factors] == [
        ("genre", "categorical"),
        ("tags", "multi"),
        ("price", "binned"),
        ("year", "binned"),
    ]
    genre_codes = ds.factors["genre"].codes[1:] - 1
    np.testing.assert_array_equal(genre_codes, data.user_model.genre[1:].numpy())
    tag_counts = (ds.factors["tags"].values[1:] > 0).sum(1)
    assert tag_counts.min() >= 1 and tag_counts.max() <= 3


def test_no_item_repeats_within_a_sequence(data):
    ds = data.dataset
    users = np.repeat(np.arange(ds.n_users), ds.lengths)
    pairs = users * (ds.n_items + 1) + ds.items
    assert len(np.unique(pairs)) == len(pairs)


def test_same_seed_same_data_other_seed_differs():
    a, b, c = (make_synthetic(SMALL, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.dataset.items, b.dataset.items)
    np.testing.assert_array_equal(a.dataset.offsets, b.dataset.offsets)
    assert torch.equal(a.user_model.theta, b.user_model.theta)
    assert not np.array_equal(a.dataset.offsets, c.dataset.offsets)
    assert not torch.equal(a.user_model.theta, c.user_model.theta)


def test_popularity_is_long_tailed():
    counts = np.sort(make_synthetic(SyntheticConfig(n_users=500)).dataset.item_counts()[1:])[::-1]
    assert counts[:50].sum() > 0.25 * counts.sum()  # top 10% of items: over a quarter of events
    assert counts[0] > 20 * max(1, counts[-1])


# ---------------------------------------------------------------------- the oracle
def test_log_prob_is_normalised_and_masks_padding_and_seen(oracle):
    history = torch.tensor([[0, 0, 0], [0, 4, 9], [1, 2, 3]])
    user = torch.tensor([0, 5, 399])
    logp = oracle.log_prob(history, user)
    assert logp.shape == (3, SMALL.n_items + 1) and logp.dtype == torch.float32
    torch.testing.assert_close(logp.logsumexp(dim=1), torch.zeros(3), atol=1e-5, rtol=0)
    assert torch.isneginf(logp[:, 0]).all()
    assert torch.isneginf(logp[1, [4, 9]]).all() and torch.isneginf(logp[2, [1, 2, 3]]).all()
    assert torch.isfinite(logp[0, 1:]).all()
    assert torch.equal(oracle.score(history, user), logp)
    assert isinstance(oracle, Recommender)


def test_empty_history_drops_the_sequential_terms(oracle):
    user = torch.arange(10)
    empty = torch.zeros(10, 4, dtype=torch.int64)
    static = oracle.with_weights(transition_weight=0.0, sequel_weight=0.0)
    torch.testing.assert_close(oracle.log_prob(empty, user), static.log_prob(empty, user))


def test_sequel_of_the_newest_item_gets_the_bonus(oracle):
    has_sequel = torch.nonzero(oracle.sequel).squeeze(1)
    item = has_sequel[:5]
    history, user = item.unsqueeze(1), torch.zeros(5, dtype=torch.int64)
    with_bonus = oracle.log_prob(history, user)
    without = oracle.with_weights(sequel_weight=0.0).log_prob(history, user)
    sequel = oracle.sequel[item].unsqueeze(1)
    gain = (with_bonus.gather(1, sequel) - without.gather(1, sequel)).squeeze(1)
    assert (gain > 0).all() and (gain < oracle.sequel_weight).all()


def _total_variation(samples: torch.Tensor, probs: torch.Tensor) -> float:
    freq = torch.bincount(samples, minlength=probs.numel()).double() / samples.numel()
    return 0.5 * float((freq - probs.double()).abs().sum())


def test_sample_next_and_generate_match_log_prob(oracle):
    n = 40_000
    history = torch.tensor([[0, 7, 12]]).expand(n, -1).contiguous()
    user = torch.full((n,), 11)
    probs = oracle.log_prob(history[:1], user[:1]).exp()[0]
    g = torch.Generator().manual_seed(0)
    drawn = oracle.sample_next(history, user, g)
    first = oracle.generate(user, 1, g, history=history)[:, 0]
    # E[TV] <= sum_i sqrt(p_i / n) / 2 ~ 0.02 here; 0.035 leaves a wide margin.
    assert _total_variation(drawn, probs) < 0.035
    assert _total_variation(first, probs) < 0.035
    assert not torch.isin(drawn, torch.tensor([0, 7, 12])).any()


def test_sampler_only_draws_the_remaining_items_at_both_ends(oracle):
    g = torch.Generator().manual_seed(4)
    for left in (1, SMALL.n_items):  # the first and the last column of the CDF
        history = torch.tensor([[i for i in range(1, SMALL.n_items + 1) if i != left]])
        drawn = oracle.sample_next(history.expand(500, -1), torch.zeros(500, dtype=torch.int64), g)
        assert (drawn == left).all()


def test_generate_in_several_chunks(oracle, monkeypatch):
    monkeypatch.setattr(user_model, "_CHUNK_ELEMENTS", 7 * (SMALL.n_items + 1))
    out = oracle.generate(torch.arange(30), 12, torch.Generator().manual_seed(5))
    assert out.shape == (30, 12) and out.min() >= 1
    assert all(len(set(row.tolist())) == 12 for row in out)


def test_dataset_is_drawn_from_the_oracle(data, oracle):
    # If x_t ~ p(.|h_t), then log p(x_t) + H(p(.|h_t)) has mean zero: a sharp consistency check.
    history, user, target = _prefixes(data.dataset, SMALL.max_seq_len)
    logp = oracle.log_prob(history, user)
    entropy = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(1)
    terms = (logp.gather(1, target.unsqueeze(1)).squeeze(1) + entropy).double()
    se = float(terms.std()) / math.sqrt(len(terms))
    assert abs(float(terms.mean())) < 4 * se


def test_oracle_beats_popularity_and_the_static_model_on_held_out_items(data, oracle):
    ds = data.dataset
    last = ds.offsets[1:] - 1
    users = np.arange(ds.n_users)
    history = ds.windows(users, last, SMALL.max_seq_len)
    target = torch.tensor(ds.items[last]).unsqueeze(1)
    user = torch.as_tensor(users)
    train = np.ones(ds.n_items + 1)  # add-one smoothed train counts
    np.add.at(train, np.delete(ds.items, last), 1)
    pop = torch.as_tensor(np.log(train), dtype=torch.float32).expand(ds.n_users, -1).clone()
    pop[:, 0] = -math.inf
    pop.scatter_(1, history, -math.inf)  # popularity that also knows "no repeats"
    pop_ll = pop.log_softmax(1).gather(1, target).mean()
    oracle_ll = oracle.log_prob(history, user).gather(1, target).mean()
    static = oracle.with_weights(transition_weight=0.0, sequel_weight=0.0)
    static_ll = static.log_prob(history, user).gather(1, target).mean()
    assert oracle_ll > static_ll + 0.3  # the sequential structure is real
    assert static_ll > pop_ll + 0.3


def test_continuation_log_prob_equals_stepwise_log_prob(oracle):
    g = torch.Generator().manual_seed(1)
    user = torch.tensor([0, 1, 2, 3])
    history = torch.tensor([[0, 0, 5], [0, 0, 0], [8, 9, 10], [0, 2, 3]])
    continuation = oracle.generate(user, 6, g, history=history)
    got = oracle.continuation_log_prob(history, continuation, user)
    window = torch.cat([torch.zeros(4, 6, dtype=torch.int64), history], dim=1)
    length = (window != 0).sum(1)
    expected = []
    for t in range(6):
        step = continuation[:, t]
        expected.append(oracle.log_prob(window, user).gather(1, step.unsqueeze(1)).squeeze(1))
        window, length = append_items(window, length, step)
    torch.testing.assert_close(got, torch.stack(expected, dim=1))
    assert torch.isfinite(got).all() and got.shape == (4, 6)


def test_continuation_repeats_score_minus_inf(oracle):
    history, user = torch.tensor([[0, 3]]), torch.tensor([0])
    got = oracle.continuation_log_prob(history, torch.tensor([[4, 3, 4, 5]]), user)
    assert torch.isfinite(got[0, [0, 3]]).all() and torch.isneginf(got[0, [1, 2]]).all()
    empty = oracle.continuation_log_prob(history, torch.zeros(1, 0, dtype=torch.int64), user)
    assert empty.shape == (1, 0)


def test_generate_never_repeats_and_respects_the_history(oracle):
    g = torch.Generator().manual_seed(2)
    history = torch.arange(1, 41).unsqueeze(0).expand(3, -1).contiguous()
    out = oracle.generate(torch.tensor([0, 1, 2]), 20, g, history=history)
    assert out.shape == (3, 20) and out.min() > 40  # only items 41..60 are left
    assert all(len(set(row.tolist())) == 20 for row in out)
    with pytest.raises(ValueError, match="cannot draw n_steps=21"):
        oracle.generate(torch.tensor([0]), 21, g, history=history[:1])


def test_to_returns_a_copy(oracle):
    copy = oracle.to("cpu")
    assert copy is not oracle and copy.device == torch.device("cpu")
    assert copy.n_users == oracle.n_users and copy.n_items == oracle.n_items


@pytest.mark.gpu
def test_cuda_matches_cpu(oracle):
    cuda = oracle.to("cuda")
    history, user = torch.tensor([[0, 4, 9]]), torch.tensor([2])
    got = cuda.log_prob(history.cuda(), user.cuda()).cpu()
    torch.testing.assert_close(got, oracle.log_prob(history, user))
    small = make_synthetic(SMALL, seed=1, device="cuda")
    assert small.dataset.n_interactions == make_synthetic(SMALL, seed=1).dataset.n_interactions


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_users": 0}, ValueError, "n_users must be > 0"),
        ({"n_items": 2.5}, TypeError, "n_items must be an int"),
        ({"n_genres": 100, "n_items": 50, "max_seq_len": 20}, ValueError, "every genre"),
        ({"min_seq_len": 20, "max_seq_len": 10}, ValueError, "min_seq_len <= max_seq_len"),
        ({"n_items": 30}, ValueError, "max_seq_len <= n_items"),
        ({"genre_stay": 0.7, "genre_next": 0.3}, ValueError, "genre_stay \\+ genre_next"),
        ({"sequel_weight": -1.0}, ValueError, "sequel_weight must be a finite number"),
        ({"zipf_exponent": math.nan}, ValueError, "zipf_exponent"),
        ({"dirichlet_concentration": 0.0}, ValueError, "dirichlet_concentration must be > 0"),
        ({"sequel_fraction": 1.5}, ValueError, "sequel_fraction"),
    ],
)
def test_config_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticConfig(**kwargs)


def test_make_synthetic_rejects_bad_arguments():
    with pytest.raises(TypeError, match="SyntheticConfig"):
        make_synthetic({"n_users": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        make_synthetic(SMALL, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be >= 0"):
        make_synthetic(SMALL, seed=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            make_synthetic(SMALL, device="cuda")


@pytest.mark.parametrize(
    ("history", "user", "match"),
    [
        (torch.tensor([[0, 1]]), torch.tensor([400]), "user indices must lie in \\[0, 399\\]"),
        (torch.tensor([[0, 1]]), torch.tensor([-1]), "user indices"),
        (torch.tensor([[0, 61]]), torch.tensor([0]), "history item ids must lie in \\[0, n_items"),
        (torch.tensor([[0, 1]], dtype=torch.int32), torch.tensor([0]), "int64"),
        (torch.tensor([0, 1]), torch.tensor([0]), "\\(B, L\\) int64"),
        (torch.tensor([[0, 1]]), torch.tensor([0.0]), "user must be a \\(B,\\) int64"),
        (torch.tensor([[0, 1]]), torch.tensor([0, 1]), "1 rows but user has 2"),
        (torch.tensor([[2, 0]]), torch.tensor([0]), "left-padded"),
        (torch.arange(1, 61).unsqueeze(0), torch.tensor([0]), "contains all n_items"),
    ],
)
def test_log_prob_rejects_bad_input(oracle, history, user, match):
    with pytest.raises(ValueError, match=match):
        oracle.log_prob(history, user)


def test_sampling_and_continuation_reject_bad_input(oracle):
    history, user = torch.tensor([[0, 1]]), torch.tensor([0])
    with pytest.raises(TypeError, match="torch.Generator"):
        oracle.sample_next(history, user, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_steps must be a non-negative int"):
        oracle.generate(user, -1, torch.Generator())
    with pytest.raises(ValueError, match="continuation item ids must lie in \\[1"):
        oracle.continuation_log_prob(history, torch.tensor([[0]]), user)


def test_user_model_constructor_validates(oracle):
    parts = {
        name: getattr(oracle, name)
        for name in ("genre", "popularity", "price_z", "sequel", "theta", "transition")
    }
    parts |= {"gamma": oracle.gamma, "beta": oracle.beta}
    with pytest.raises(ValueError, match="gamma must have shape"):
        SyntheticUserModel(**{**parts, "gamma": oracle.gamma[:-1]})
    with pytest.raises(ValueError, match="theta rows must be strictly positive"):
        SyntheticUserModel(**{**parts, "theta": oracle.theta * 2})
    bad_sequel = oracle.sequel.clone()
    bad_sequel[1] = 1
    with pytest.raises(ValueError, match="sequel ids"):
        SyntheticUserModel(**{**parts, "sequel": bad_sequel})


# ---------------------------------------------------------------------- properties
@settings(max_examples=20, deadline=None)
@given(
    n_items=st.integers(2, 25),
    n_genres=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    length=st.integers(0, 6),
)
def test_log_prob_is_a_distribution_over_unseen_items(n_items, n_genres, seed, length):
    cfg = SyntheticConfig(
        n_users=3,
        n_items=n_items,
        n_genres=min(n_genres, n_items),
        n_tags=2,
        min_seq_len=1,
        max_seq_len=min(3, n_items),
    )
    oracle = make_synthetic(cfg, seed=seed).user_model
    g = torch.Generator().manual_seed(seed)
    length = min(length, n_items - 1)
    user = torch.arange(3)
    items = oracle.generate(user, length, g)
    history = torch.cat([torch.zeros(3, 2, dtype=torch.int64), items], dim=1)
    logp = oracle.log_prob(history, user)
    torch.testing.assert_close(logp.logsumexp(1), torch.zeros(3), atol=1e-5, rtol=0)
    seen = torch.zeros_like(logp, dtype=torch.bool).scatter_(1, history, True)
    assert torch.isneginf(logp[seen]).all() and torch.isfinite(logp[~seen]).all()
