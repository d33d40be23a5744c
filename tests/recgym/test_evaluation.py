"""Leave-one-out evaluation: protocols, candidate sets, sampling law, reproducibility, checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import require_data

from recgym import DataError, SequenceDataset, Split, leave_one_out, ratio_split
from recgym.candidates import CandidateSampler, csr_entries
from recgym.evaluation import PROTOCOLS, evaluate, evaluate_ranks, parse_protocol
from recgym.metrics import pessimistic_rank
from recgym.recommenders import PopularityRecommender, RandomRecommender


def _random_split(n_users=120, n_items=300, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=n_users)
    sequences = [rng.integers(1, n_items + 1, size=n).tolist() for n in lengths]
    return leave_one_out(SequenceDataset.from_sequences(sequences, n_items=n_items))


class Oracle:
    """Scores the true target of each (user, stage) highest; knows the split."""

    def __init__(self, split: Split, stage: str = "test"):
        users, positions = split.targets(stage)
        self.target = dict(
            zip(users.tolist(), split.dataset.items[positions].tolist(), strict=True)
        )
        self.n_items = split.dataset.n_items

    def score(self, history, user):
        scores = torch.zeros(len(user), self.n_items + 1)
        scores[torch.arange(len(user)), torch.tensor([self.target[int(u)] for u in user])] = 1.0
        return scores


def _constant(n_items):
    return lambda history, user: torch.zeros(len(user), n_items + 1)


# ----------------------------------------------------------------------------- protocols
def test_oracle_hits_at_one_under_every_protocol():
    split = _random_split()
    df = evaluate(Oracle(split), split, ks=(1, 10))
    assert set(df["protocol"]) == set(PROTOCOLS)
    assert (df["value"] == 1.0).all()


def test_constant_recommender_gets_the_worst_rank(tiny_split):
    res = evaluate_ranks(_constant(7), tiny_split)
    for protocol in PROTOCOLS:
        assert (res.ranks[protocol] == res.n_candidates[protocol] - 1).all()
    # User 3 = [7, 1, 3, 5, 2]: target 2 after {7, 1, 3, 5} -> 7 - 4 = 3 full candidates;
    # never-interacted items {4, 6} -> target + 2 sampled negatives (fewer than 100: all used).
    row = int(np.flatnonzero(res.users == 3)[0])
    assert res.n_candidates["full"][row] == 3
    assert res.n_candidates["uniform-100"][row] == 3
    assert res.ranks["full"][row] == 2


def test_full_ranking_excludes_whole_history_but_not_the_target():
    # User 0 = [3, 2, 1, 3]: test target 3 was consumed before; window (max_len=1) is [1] only.
    ds = SequenceDataset.from_sequences([[3, 2, 1, 3], [4, 5, 6]], n_items=6)
    split = leave_one_out(ds)
    fixed = torch.tensor([0.0, 9.0, 8.0, 5.0, 1.0, 1.0, 1.0])  # history items 1, 2 score highest

    res = evaluate_ranks(
        lambda h, u: fixed.expand(len(u), -1), split, protocols=("full",), max_len=1
    )
    assert res.ranks["full"][0] == 0  # items 1 and 2 (in history, not window) are excluded
    assert res.n_candidates["full"][0] == 6 - 2  # item 3 stays a candidate: it is the target


def test_full_ranks_match_brute_force_under_ratio_split():
    split = ratio_split(_random_split().dataset, valid=0.1, test=0.3)
    emb = torch.randn(301, 4, generator=torch.Generator().manual_seed(0))

    def model(history, user):  # coarse scores -> ties
        return (emb[history].mean(1) @ emb.T).round(decimals=0)

    res = evaluate_ranks(model, split, protocols=("full",), batch_size=37, max_len=8)
    assert res.n_targets == split.n_targets("test")
    ds = split.dataset
    scores = model(ds.windows(res.users, res.positions, 8), torch.as_tensor(res.users))
    for i in range(0, res.n_targets, 7):
        u, p = int(res.users[i]), int(res.positions[i])
        target = int(ds.items[p])
        mask = torch.ones(ds.n_items + 1, dtype=torch.bool)
        mask[0] = False
        mask[torch.tensor(ds.items[ds.offsets[u] : p].copy())] = False
        mask[target] = True
        expected = pessimistic_rank(scores[i : i + 1], torch.tensor([target]), mask[None])
        assert res.ranks["full"][i] == int(expected[0])
        assert res.n_candidates["full"][i] == int(mask.sum())


def test_sampled_negatives_are_never_interacted_items():
    split = _random_split(n_items=400)
    ds = split.dataset
    users, positions = split.targets("test")
    seen = np.zeros((ds.n_users, ds.n_items + 1), dtype=bool)
    seen[np.repeat(np.arange(ds.n_users), ds.lengths), ds.items] = True
    target_of = dict(zip(users.tolist(), ds.items[positions].tolist(), strict=True))

    def model(history, user):  # interacted items (any segment) > target > never interacted
        scores = torch.as_tensor(seen[user.numpy()], dtype=torch.float32) * 2.0 - 1.0
        scores[torch.arange(len(user)), torch.tensor([target_of[int(u)] for u in user])] = 0.0
        return scores

    res = evaluate_ranks(model, split, protocols=("uniform-100", "popularity-100"))
    for protocol in ("uniform-100", "popularity-100"):
        assert (res.ranks[protocol] == 0).all(), protocol
        assert (res.n_candidates[protocol] == 101).all()


def test_sampler_draws_distinct_eligible_columns():
    g = torch.Generator().manual_seed(0)
    eligible = torch.rand(64, 50, generator=g) > 0.5
    eligible[:8, :] = False
    eligible[:8, :3] = True  # rows with fewer than n eligible columns
    weights = torch.randint(0, 5, (50,), generator=g)
    for w in (None, weights, weights.double()):
        for oversample in (1, 4):  # 1 forces the exponential-race continuation
            sampler = CandidateSampler(50, generator=g, weights=w, oversample=oversample)
            negatives, valid = sampler.sample(eligible, 10)
            drawable = eligible if w is None else eligible & (w > 0)
            for row in range(64):
                picked = negatives[row][valid[row]]
                assert len(set(picked.tolist())) == len(picked)
                assert drawable[row, picked].all()
                assert len(picked) == min(10, int(drawable[row].sum()))
            assert (negatives[~valid] == 0).all()


@pytest.mark.parametrize("oversample", [1, 4])
@pytest.mark.parametrize("integer_weights", [True, False])
def test_sampler_follows_successive_sampling_law(oversample, integer_weights):
    # Pairs from weights (0, 1, 2, 3, 4) with column 4 ineligible: P({i, j}) is
    # w_i/W * w_j/(W - w_i) + w_j/W * w_i/(W - w_j) with W = 1 + 2 + 3.
    n_rows = 30_000
    weights = torch.tensor([0, 1, 2, 3, 4]) if integer_weights else torch.tensor([0, 1, 2, 3, 4.0])
    eligible = torch.tensor([True, True, True, True, False]).expand(n_rows, -1)
    g = torch.Generator().manual_seed(1)
    sampler = CandidateSampler(5, generator=g, weights=weights, oversample=oversample)
    negatives, valid = sampler.sample(eligible, 2)
    assert valid.all()
    pairs = negatives.sort(dim=1).values
    w = {1: 1.0, 2: 2.0, 3: 3.0}
    for i, j in ((1, 2), (1, 3), (2, 3)):
        expected = w[i] / 6 * w[j] / (6 - w[i]) + w[j] / 6 * w[i] / (6 - w[j])
        observed = float(((pairs[:, 0] == i) & (pairs[:, 1] == j)).float().mean())
        assert observed == pytest.approx(expected, abs=0.015)


def test_uniform_sampler_is_uniform():
    g = torch.Generator().manual_seed(2)
    eligible = torch.ones(20_000, 8, dtype=torch.bool)
    eligible[:, 0] = False
    negatives, _ = CandidateSampler(8, generator=g, oversample=1).sample(eligible, 3)
    counts = torch.bincount(negatives.flatten(), minlength=8)[1:].double() / 20_000
    assert torch.allclose(counts, torch.full((7,), 3 / 7, dtype=torch.float64), atol=0.015)


def test_sampler_edge_cases():
    g = torch.Generator().manual_seed(0)
    eligible = torch.ones(3, 5, dtype=torch.bool)
    sampler = CandidateSampler(5, generator=g, weights=torch.zeros(5, dtype=torch.int64))
    negatives, valid = sampler.sample(eligible, 2)
    assert not valid.any() and (negatives == 0).all()  # nothing has weight: nothing drawn
    with pytest.raises(ValueError, match="non-negative"):
        CandidateSampler(5, generator=g, weights=torch.tensor([1, -1, 0, 0, 0]))
    with pytest.raises(ValueError, match="oversample"):
        CandidateSampler(5, generator=g, oversample=0)
    with pytest.raises(ValueError, match="1 <= n <= 5"):
        CandidateSampler(5, generator=g).sample(eligible, 6)


def test_csr_entries_matches_slices():
    items = torch.arange(10, 20)
    rows, values = csr_entries(items, torch.tensor([0, 4, 4, 7]), torch.tensor([2, 4, 7, 10]))
    assert rows.tolist() == [0, 0, 2, 2, 2, 3, 3, 3]
    assert values.tolist() == [10, 11, 14, 15, 16, 17, 18, 19]


# ----------------------------------------------------------------------------- reproducibility
def test_seeds_and_batch_sizes():
    split = _random_split()
    rec = PopularityRecommender.fit(split)
    a = evaluate_ranks(rec, split, seed=3)
    b = evaluate_ranks(rec, split, seed=3)
    c = evaluate_ranks(rec, split, seed=4)
    d = evaluate_ranks(rec, split, protocols="full", seed=3, batch_size=16)
    for protocol in PROTOCOLS:
        assert np.array_equal(a.ranks[protocol], b.ranks[protocol])
    assert np.array_equal(a.ranks["full"], c.ranks["full"])
    assert np.array_equal(a.ranks["full"], d.ranks["full"])
    assert not np.array_equal(a.ranks["uniform-100"], c.ranks["uniform-100"])
    assert not np.array_equal(a.ranks["popularity-100"], c.ranks["popularity-100"])


def test_protocol_subset_does_not_change_sampled_results():
    split = _random_split()
    rec = PopularityRecommender.fit(split)
    both = evaluate_ranks(rec, split, protocols=("uniform-100", "popularity-100"))
    alone = evaluate_ranks(rec, split, protocols="popularity-100")
    assert np.array_equal(both.ranks["popularity-100"], alone.ranks["popularity-100"])


# ----------------------------------------------------------------------------- output
def test_tidy_frame_and_n_targets(tiny_split):
    df = evaluate(PopularityRecommender.fit(tiny_split), tiny_split, ks=(1, 5))
    assert list(df.columns) == ["protocol", "metric", "k", "value", "n_targets"]
    assert len(df) == len(PROTOCOLS) * (3 * 2 + 1)
    assert str(df["k"].dtype) == "Int64"
    mrr = df[(df["metric"] == "MRR") & df["k"].isna()]
    assert len(mrr) == len(PROTOCOLS)
    # tiny users have lengths 2..6: four of them have >= 3 items.
    assert (df["n_targets"] == 4).all()
    assert df.attrs["stage"] == "test" and df.attrs["ks"] == [1, 5]
    assert df.attrs["split_kind"] == "leave_one_out"
    assert df.attrs["short_targets"]["uniform-100"] == 4  # 7 items: never 100 negatives


def test_n_targets_is_users_with_three_items():
    split = _random_split()
    df = evaluate(PopularityRecommender.fit(split), split, protocols=("full",), ks=(10,))
    assert (df["n_targets"] == int((split.dataset.lengths >= 3).sum())).all()


def test_valid_stage_and_plain_callable(tiny_split):
    res = evaluate_ranks(_constant(7), tiny_split, "valid", protocols=("full",))
    users, positions = tiny_split.targets("valid")
    assert np.array_equal(res.users, users) and np.array_equal(res.positions, positions)


# ----------------------------------------------------------------------------- checks
def test_overlapping_split_refused(tiny_split):
    object.__setattr__(tiny_split, "valid_end", tiny_split.train_end - 1)
    with pytest.raises(DataError, match="must not"):
        evaluate(PopularityRecommender(np.ones(8)), tiny_split)


def test_empty_stage_refused(tiny_dataset):
    split = ratio_split(tiny_dataset, valid=0.0, test=0.2)
    with pytest.raises(DataError, match="no targets"):
        evaluate(_constant(7), split, "valid")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"protocols": ("full", "sampled-100")}, ValueError, "uniform-100"),
        ({"protocols": ("uniform-0",)}, ValueError, "unknown evaluation protocol"),
        ({"protocols": ()}, ValueError, "must not be empty"),
        ({"ks": (0, 10)}, ValueError, "ks must be"),
        ({"stage": "tset"}, ValueError, "stage must be one of"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"max_len": 1.5}, ValueError, "max_len"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_settings(tiny_split, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(_constant(7), tiny_split, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_missing_cuda_is_an_error(tiny_split):
    with pytest.raises(ValueError, match="CUDA is not available"):
        evaluate(_constant(7), tiny_split, device="cuda")


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        (lambda b: torch.zeros(b, 7), ValueError, r"shape \(B, n_items \+ 1\)"),
        (lambda b: torch.zeros(b, 8, dtype=torch.int64), TypeError, "floating point"),
        (lambda b: np.zeros((b, 8)), TypeError, "torch.Tensor"),
        (lambda b: torch.full((b, 8), float("nan")), ValueError, "finite"),
    ],
)
def test_bad_recommender_output(tiny_split, output, error, match):
    with pytest.raises(error, match=match):
        evaluate(lambda h, u: output(len(u)), tiny_split)


def test_scores_may_be_inf_off_candidates(tiny_split):
    table = torch.rand(tiny_split.dataset.n_users, 8, generator=torch.Generator().manual_seed(0))

    def scored(padding: float):
        def recommender(history, user):
            scores = table[user].clone()
            scores[:, 0] = padding
            return scores

        return recommender

    protocols = ("full", "uniform-100")
    masked = evaluate(scored(-torch.inf), tiny_split, protocols=protocols)
    assert np.isfinite(masked["value"]).all()
    # padding is never a candidate: whatever it scores, -inf or above every item, ranks agree
    top = evaluate(scored(1e9), tiny_split, protocols=protocols)
    pd.testing.assert_frame_equal(masked, top)


def test_non_finite_history_scores_are_allowed_in_full_ranking(tiny_split):
    ds = tiny_split.dataset

    def mask_window(history, user):  # the usual "never re-recommend" trick, target excepted
        scores = torch.rand(len(user), 8)
        scores.scatter_(1, history, -torch.inf)
        targets = torch.as_tensor(ds.items[ds.offsets[user.numpy() + 1] - 1].copy())
        scores[torch.arange(len(user)), targets] = 1.0
        return scores

    res = evaluate_ranks(mask_window, tiny_split, protocols=("full",))
    assert (res.ranks["full"] == 0).all()


def test_not_a_recommender(tiny_split):
    with pytest.raises(TypeError, match=r"\.score\(history, user\)"):
        evaluate(object(), tiny_split)


class _Module(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(2, 2)
        self.seen: list[tuple[bool, bool]] = []

    def score(self, history, user):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return torch.zeros(len(user), 8, requires_grad=False)


def test_module_runs_in_eval_mode_without_grad_and_modes_are_restored(tiny_split):
    model = _Module()
    model.train()
    model.inner.eval()  # a mixed state must come back exactly
    evaluate(model, tiny_split, protocols=("full",))
    assert model.seen == [(False, False)]
    assert model.training and not model.inner.training


def test_parse_protocol():
    assert parse_protocol("full") == ("full", None)
    assert parse_protocol("popularity-50") == ("popularity", 50)


# ----------------------------------------------------------------------------- recommenders
def test_popularity_counts_training_only(tiny_split):
    rec = PopularityRecommender.fit(tiny_split)
    assert np.array_equal(rec.counts.numpy(), tiny_split.train_counts())
    scores = rec.score(torch.zeros(3, 4, dtype=torch.int64), torch.arange(3))
    assert scores.shape == (3, 8) and torch.equal(scores[1], rec.counts)
    with pytest.raises(ValueError, match="non-negative"):
        PopularityRecommender(np.array([0, -1, 2]))


def test_random_recommender_is_seeded(tiny_split):
    h, u = torch.zeros(2, 3, dtype=torch.int64), torch.arange(2)
    a = RandomRecommender.fit(tiny_split, seed=1).score(h, u)
    b = RandomRecommender.fit(tiny_split, seed=1).score(h, u)
    assert a.shape == (2, 8) and torch.equal(a, b)
    with pytest.raises(ValueError, match="n_items"):
        RandomRecommender(0)


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_popularity_on_ml100k_full_is_harder_than_uniform():
    root = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    from recgym.datasets.movielens import load_movielens_100k

    split = leave_one_out(load_movielens_100k(root / "movielens-100k"))
    df = evaluate(PopularityRecommender.fit(split), split, ks=(10,))
    value = df.set_index(["protocol", "metric"])["value"]
    assert (df["n_targets"] == 943).all()
    for metric in ("HR", "NDCG"):
        assert value[("full", metric)] < value[("uniform-100", metric)]
    assert isinstance(df, pd.DataFrame)
