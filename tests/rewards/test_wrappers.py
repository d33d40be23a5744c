"""Reward wrappers (form, normalisation, weighted sum) and the frozen-recommender reward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from recgym.types import RewardOutput, SessionState
from rewards import (
    REWARD_FORMS,
    EnergyConfig,
    EnergyDiscriminator,
    FrozenRecommenderReward,
    HitReward,
    NormalizedReward,
    OracleReward,
    RewardFormWrapper,
    RewardModel,
    WeightedSum,
    logits_to_reward,
)

N_ITEMS = 6


class LastItemModel(RewardModel):
    """Logit = a fixed value per newest item; breakdown = the logit itself."""

    reward_form = "d"

    def __init__(self) -> None:
        super().__init__(n_items=N_ITEMS)
        self.table = nn.Parameter(torch.linspace(-3.0, 3.0, N_ITEMS + 1))

    def forward(self, history):
        return self.table[history[:, -1]]

    def loss(self, real, fake):
        return -self(real).mean() + self(fake).mean()

    def breakdown(self, history):
        return {"logit": self(history).detach()}


def state_of(history: list[list[int]], target: list[int] | None = None) -> SessionState:
    h = torch.tensor(history, dtype=torch.int64)
    b = h.shape[0]
    return SessionState(
        history=h,
        length=(h != 0).sum(1),
        user=torch.arange(b),
        step=torch.zeros(b, dtype=torch.int64),
        target=torch.tensor(target if target is not None else [0] * b),
    )


# ---------------------------------------------------------------------- RewardFormWrapper
@pytest.mark.parametrize("form", [f for f in REWARD_FORMS if f != "neg_energy"])
def test_form_wrapper_reinterprets_logits(form):
    model = LastItemModel()
    wrapper = RewardFormWrapper(model, form)
    state, action = state_of([[0, 1], [2, 3]]), torch.tensor([5, 1])
    out = wrapper(state, action)
    expected = logits_to_reward(model.table.detach()[action], form)
    assert torch.allclose(out.reward, expected)
    assert torch.allclose(out.breakdown["logit"], model.table.detach()[action])


def test_form_wrapper_refuses_to_mix_energies_and_logits():
    energy = EnergyDiscriminator(EnergyConfig(dim=8), n_items=N_ITEMS, seed=0)
    with pytest.raises(ValueError, match="energies only take 'neg_energy'"):
        RewardFormWrapper(energy, "log_d")
    with pytest.raises(ValueError, match="cannot read"):
        RewardFormWrapper(LastItemModel(), "neg_energy")
    with pytest.raises(ValueError, match="form must be one of"):
        RewardFormWrapper(LastItemModel(), "exp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RewardModel"):
        RewardFormWrapper(HitReward(), "d")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- NormalizedReward
class StreamReward:
    """Returns the next batch of a fixed stream on every call."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def __call__(self, state, action):
        return RewardOutput(next(self.batches), {"part": torch.zeros(len(action))})


def test_normalized_reward_running_stats_are_exact_and_standardise_a_stream():
    gen = torch.Generator().manual_seed(0)
    batches = [5.0 + 3.0 * torch.randn(32, generator=gen, dtype=torch.float64) for _ in range(60)]
    norm = NormalizedReward(StreamReward(batches))
    state, action = state_of([[1]] * 32), torch.ones(32, dtype=torch.int64)
    outs = [norm(state, action) for _ in range(60)]
    stream = torch.cat(batches).numpy()
    assert int(norm.count) == stream.size
    assert math.isclose(float(norm.mean), stream.mean(), rel_tol=1e-12)
    assert math.isclose(float(norm.var), stream.var(), rel_tol=1e-10)
    late = torch.cat([o.reward for o in outs[30:]])
    assert abs(float(late.mean())) < 0.1 and abs(float(late.std()) - 1.0) < 0.1
    assert torch.equal(outs[-1].breakdown["raw"], batches[-1])
    assert "part" in outs[-1].breakdown


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    seed=st.integers(0, 1000),
)
def test_parallel_variance_update_matches_numpy(sizes, seed):
    values = np.random.default_rng(seed).normal(2.0, 4.0, sum(sizes))
    norm = NormalizedReward(lambda s, a: torch.zeros(1))
    for chunk in np.split(values, np.cumsum(sizes)[:-1]):
        norm.update_stats(torch.as_tensor(chunk))
    assert np.isclose(float(norm.mean), values.mean(), rtol=1e-9, atol=1e-12)
    assert np.isclose(float(norm.var), values.var(), rtol=1e-9, atol=1e-12)


def test_momentum_tracks_a_drifting_reward_and_freeze_stops_updates():
    norm = NormalizedReward(lambda s, a: torch.zeros(1), momentum=0.5)
    norm.update_stats(torch.tensor([0.0, 2.0]))  # first batch sets mean 1, var 1
    assert float(norm.mean) == 1.0 and float(norm.var) == 1.0
    norm.update_stats(torch.tensor([3.0, 5.0]))  # mixture of N(1, 1) and N(4, 1) at 1/2
    assert float(norm.mean) == 2.5 and math.isclose(float(norm.var), 1.0 + 0.25 * 9.0)
    norm.freeze()
    frozen = NormalizedReward(lambda s, a: torch.full((2,), 7.0), update=False)
    out = frozen(state_of([[1], [2]]), torch.tensor([1, 2]))
    assert torch.allclose(out.reward, torch.full((2,), 7.0), atol=1e-6)  # identity before stats
    assert int(frozen.count) == 0


def test_normalized_reward_state_dict_round_trip_and_errors():
    norm = NormalizedReward(lambda s, a: torch.zeros(1))
    norm.update_stats(torch.tensor([1.0, 2.0, 4.0]))
    other = NormalizedReward(lambda s, a: torch.zeros(1))
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other.mean, norm.mean) and torch.equal(other.var, norm.var)
    with pytest.raises(ValueError, match="momentum"):
        NormalizedReward(HitReward(), momentum=0.0)
    with pytest.raises(TypeError, match="callable"):
        NormalizedReward(3)  # type: ignore[arg-type]
    bad = NormalizedReward(lambda s, a: torch.ones(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="float tensor"):
        bad(state_of([[1], [2]]), torch.tensor([1, 2]))


# ---------------------------------------------------------------------- WeightedSum
def test_weighted_sum_equals_the_weighted_sum_and_namespaces_breakdowns():
    model = LastItemModel()
    state, action = state_of([[1, 2], [0, 3]], target=[4, 5]), torch.tensor([4, 2])
    combo = WeightedSum({"disc": (model, 2.0), "hit": (HitReward(), -0.5)})
    out = combo(state, action)
    disc = model(state, action).reward
    hit = torch.tensor([1.0, 0.0])
    assert torch.allclose(out.reward, 2.0 * disc - 0.5 * hit)
    assert set(out.breakdown) == {"disc", "disc/logit", "hit"}
    assert torch.allclose(out.breakdown["disc"], disc) and torch.equal(out.breakdown["hit"], hit)


def test_weighted_sum_accepts_sequences_and_nests():
    state, action = state_of([[1], [2]]), torch.tensor([3, 4])
    const = lambda value: lambda s, a: torch.full((len(a),), value)  # noqa: E731
    inner = WeightedSum([(const(1.0), 1.0), ("two", const(2.0), 3.0)])
    outer = WeightedSum({"inner": (NormalizedReward(inner, update=False), 0.5)})
    out = outer(state, action)
    assert torch.allclose(out.reward, torch.full((2,), 3.5))
    assert {"inner", "inner/part0", "inner/two", "inner/raw"} <= set(out.breakdown)


@pytest.mark.parametrize(
    ("parts", "error", "match"),
    [
        ({}, ValueError, "at least one part"),
        ({"a": (HitReward(),)}, TypeError, r"\(reward_fn, weight\) pair"),
        ({"a": (HitReward(), float("nan"))}, ValueError, "finite number"),
        ({"a": (3, 1.0)}, TypeError, "callable"),
        ([("x", HitReward(), 1.0), ("x", HitReward(), 1.0)], ValueError, "unique"),
        ("hit", TypeError, "mapping or a sequence"),
    ],
)
def test_weighted_sum_errors(parts, error, match):
    with pytest.raises(error, match=match):
        WeightedSum(parts)


# ---------------------------------------------------------------------- FrozenRecommenderReward
class TableRecommender:
    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def score(self, history, user):
        return self.scores[user]


SCORES = [
    [9.0, 3.0, 1.0, 1.0, 0.0, 2.0, -1.0],  # item 1 best, items 2 and 3 tie
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # all tie
]


def test_frozen_recommender_log_prob_by_hand():
    reward = FrozenRecommenderReward(TableRecommender(SCORES))
    state = state_of([[1, 2], [0, 5]])
    out = reward(state, torch.tensor([2, 4]))
    logz = math.log(sum(math.exp(s) for s in SCORES[0][1:]))  # padding column excluded
    assert math.isclose(float(out[0]), 1.0 - logz, rel_tol=1e-6)
    assert math.isclose(float(out[1]), -math.log(6), rel_tol=1e-6)
    assert out.dtype == torch.float32


def test_frozen_recommender_reciprocal_rank_is_pessimistic_on_ties():
    reward = FrozenRecommenderReward(TableRecommender(SCORES), form="reciprocal_rank")
    state = state_of([[1, 2], [0, 5]])
    out = reward(state, torch.tensor([2, 4]))
    # Items 1 and 5 beat item 2 and item 3 ties it: three others >= it, rank 3 (0-based).
    assert out.tolist() == [pytest.approx(1 / 4), pytest.approx(1 / 6)]  # all tie -> last
    best = reward(state, torch.tensor([1, 4]))
    assert float(best[0]) == 1.0


def test_frozen_recommender_exclude_seen_drops_history_items_but_keeps_the_action():
    state = state_of([[1, 5], [0, 5]])
    rr = FrozenRecommenderReward(
        TableRecommender(SCORES), form="reciprocal_rank", exclude_seen=True
    )
    out = rr(state, torch.tensor([2, 5]))
    assert float(out[0]) == pytest.approx(1 / 2)  # item 1 and 5 are seen: only item 3 ties
    assert float(out[1]) == pytest.approx(1 / 6)  # the seen action still competes with 5 others
    lp = FrozenRecommenderReward(TableRecommender(SCORES), exclude_seen=True)
    logz = math.log(sum(math.exp(SCORES[0][i]) for i in (2, 3, 4, 6)))
    assert math.isclose(float(lp(state, torch.tensor([2, 5]))[0]), 1.0 - logz, rel_tol=1e-6)


def test_frozen_recommender_keeps_a_module_frozen_and_in_its_mode():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(1, N_ITEMS + 1)
            self.drop = nn.Dropout(0.9)

        def score(self, history, user):
            return self.drop(self.linear(history[:, -1:].float()))

    net = Net().train()
    reward = FrozenRecommenderReward(net)
    state, action = state_of([[1, 2]] * 4), torch.tensor([1, 2, 3, 4])
    first, second = reward(state, action), reward(state, action)
    assert torch.equal(first, second) and net.training  # eval mode inside, restored after
    assert not first.requires_grad


def test_frozen_recommender_errors():
    with pytest.raises(TypeError, match="score"):
        FrozenRecommenderReward(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="form must be one of"):
        FrozenRecommenderReward(TableRecommender(SCORES), form="rank")  # type: ignore[arg-type]
    bad = FrozenRecommenderReward(TableRecommender([[0.0, 1.0]]))
    bad.recommender.score = lambda h, u: torch.zeros(3)
    with pytest.raises(ValueError, match=r"must return a \(1, n_items \+ 1\) tensor"):
        bad(state_of([[1]]), torch.tensor([1]))


def test_reference_rewards_are_re_exported():
    import recgym.reference

    assert HitReward is recgym.reference.HitReward
    assert OracleReward is recgym.reference.OracleReward
