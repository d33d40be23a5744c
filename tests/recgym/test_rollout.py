"""Rollouts with non-learned policies, and their health metrics."""

from __future__ import annotations

import pytest
import torch

from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.recommenders import PopularityRecommender
from recgym.reference import HitReward
from recgym.rollout import RecommenderPolicy, UniformPolicy, gini, mask_scores, rollout


def _env(split, batch_size=6, **kw):
    config = EnvConfig(max_len=4, horizon=3, stage="train", start="random", **kw)
    return BatchedRecEnv(split, HitReward(), config, batch_size=batch_size, seed=0)


def test_mask_scores_masks_padding_and_seen():
    scores = torch.arange(6, dtype=torch.float32).repeat(2, 1)
    history = torch.tensor([[0, 5, 4], [0, 0, 1]])
    out = mask_scores(scores, history, exclude_seen=True)
    assert torch.isinf(out[:, 0]).all()
    assert torch.isinf(out[0, [4, 5]]).all() and torch.isfinite(out[0, 1:4]).all()
    assert torch.isinf(out[1, 1]) and torch.isfinite(out[1, 2:]).all()


def test_uniform_policy_never_picks_seen_or_padding(tiny_split):
    env = _env(tiny_split, batch_size=64)
    env.reset(seed=1)
    for _ in range(3):
        action = UniformPolicy(env.n_items).act(env.state, torch.Generator().manual_seed(0))
        assert ((action >= 1) & (action <= env.n_items)).all()
        assert not (env.state.history == action.unsqueeze(1)).any()
        env.step(action)


def test_greedy_popularity_policy_picks_most_popular_unseen(tiny_split):
    pop = PopularityRecommender.fit(tiny_split)
    env = _env(tiny_split)
    env.reset(seed=0)
    action = RecommenderPolicy(pop).act(env.state)
    scores = mask_scores(pop.score(env.state.history, env.state.user), env.state.history,
                         exclude_seen=True)
    assert torch.equal(scores.gather(1, action[:, None]).squeeze(1), scores.max(1).values)


def test_rollout_shapes_metrics_and_determinism(tiny_split):
    policy = RecommenderPolicy(PopularityRecommender.fit(tiny_split), greedy=False)
    runs = [
        rollout(_env(tiny_split), policy, seed=3, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    a, b = runs
    assert a.actions.shape == a.rewards.shape == a.true_items.shape == (6, 3)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.users, b.users)
    m = a.metrics()
    hits = ((a.actions == a.true_items) & (a.true_items > 0)).float()
    assert torch.equal(a.rewards, hits)  # the hit reward is exactly the hit indicator
    assert 0.0 <= m["coverage"] <= 1.0 and 0.0 <= m["gini"] <= 1.0
    with pytest.raises(ValueError, match=r"n_steps must be in \[1, horizon=3\]"):
        rollout(_env(tiny_split), policy, n_steps=4)


def test_gini_extremes():
    assert gini(torch.ones(10)) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0] * 9 + [5.0])) == pytest.approx(0.9)
    assert gini(torch.zeros(4)) == 0.0
