"""Every reward model and wrapper runs inside the recgym environments and passes both checkers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.gym_env import NextItemEnv, NextItemVectorEnv
from recgym.recommenders import PopularityRecommender
from rewards import (
    EnergyConfig,
    EnergyDiscriminator,
    FrozenRecommenderReward,
    HitReward,
    MultiFactorConfig,
    MultiFactorDiscriminator,
    NormalizedReward,
    RewardFormWrapper,
    WeightedSum,
)

CONFIG = EnvConfig(max_len=4, horizon=3, stage="test", start="random")


def multifactor(split, variant: str, **kw) -> MultiFactorDiscriminator:
    config = MultiFactorConfig(dim=8, n_heads=2, max_len=8, variant=variant, **kw)
    return MultiFactorDiscriminator(config, split.factors(popularity_bins=3), seed=0)


def energy(split, encoder: str, **kw) -> EnergyDiscriminator:
    config = EnergyConfig(encoder=encoder, dim=8, n_layers=2, max_len=8, **kw)
    return EnergyDiscriminator(config, n_items=split.dataset.n_items, seed=0)


def reward_cases(split) -> dict[str, tuple[object, set[str]]]:
    """name -> (reward_fn, breakdown keys it must put in the env's info)."""
    mf = multifactor(split, "multi")
    factor_keys = {f"factor/{name}" for name in mf.discriminator_names}
    popularity = PopularityRecommender.fit(split)
    return {
        "mfgan": (mf, factor_keys),
        "mfgan_causal_lambda": (multifactor(split, "multi", causal=True, combination=-2.0), None),
        "sdsf": (multifactor(split, "sdsf"), None),
        "sdaf": (multifactor(split, "sdaf"), None),
        "energy_gru": (energy(split, "gru"), set()),
        "energy_cnn": (energy(split, "cnn"), set()),
        "energy_transformer": (energy(split, "transformer"), set()),
        "energy_per_step": (energy(split, "gru", per_step=True), set()),
        "frozen_log_prob": (FrozenRecommenderReward(popularity), set()),
        "frozen_rr": (
            FrozenRecommenderReward(popularity, form="reciprocal_rank", exclude_seen=True),
            set(),
        ),
        "form_logit": (RewardFormWrapper(mf, "logit"), factor_keys),
        "normalized": (NormalizedReward(energy(split, "cnn")), {"raw"}),
        "weighted": (
            WeightedSum({"mf": (mf, 1.0), "hit": (HitReward(), 0.5)}),
            {"mf", "hit"} | {f"mf/{k}" for k in factor_keys},
        ),
    }


CASES = [
    "mfgan", "mfgan_causal_lambda", "sdsf", "sdaf", "energy_gru", "energy_cnn",
    "energy_transformer", "energy_per_step", "frozen_log_prob", "frozen_rr", "form_logit",
    "normalized", "weighted",
]  # fmt: skip


@pytest.fixture
def cases(tiny_split):
    return reward_cases(tiny_split)


def expected_keys(case, reward_fn) -> set[str]:
    keys = case[1]
    if keys is None:  # the single-discriminator variants name their one part
        keys = {f"factor/{name}" for name in reward_fn.discriminator_names}
    return {f"reward/{k}" for k in keys}


def test_every_case_is_listed(cases):
    assert sorted(cases) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_batched_env_rewards_and_breakdowns(name, cases, tiny_split):
    reward_fn, _ = case = cases[name]
    env = BatchedRecEnv(tiny_split, reward_fn, CONFIG, batch_size=6, seed=0)
    obs, _ = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(CONFIG.horizon):
        action = torch.randint(1, env.n_items + 1, (6,), generator=gen)
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward.shape == (6,) and reward.dtype.is_floating_point
        assert torch.isfinite(reward).all()
        parts = {k for k in info if k.startswith("reward/")}
        assert parts == expected_keys(case, reward_fn)
    assert truncated.all() and not terminated.any()


@pytest.mark.parametrize("name", CASES)
def test_single_env_passes_gymnasium_and_sb3_checkers(name, cases, tiny_split):
    reward_fn, _ = case = cases[name]
    if isinstance(reward_fn, NormalizedReward):
        reward_fn.freeze()  # the checkers replay seeded steps: a learning reward would differ
    env = NextItemEnv(tiny_split, reward_fn, CONFIG)
    gym_check_env(env, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(NextItemEnv(tiny_split, reward_fn, CONFIG))
    env.reset(seed=1)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and np.isfinite(reward)
    assert {k for k in info if k.startswith("reward/")} == expected_keys(case, reward_fn)


@pytest.mark.parametrize("name", CASES)
def test_vector_env_steps_with_breakdowns(name, cases, tiny_split):
    reward_fn, _ = case = cases[name]
    venv = NextItemVectorEnv(tiny_split, reward_fn, CONFIG, num_envs=3)
    venv.reset(seed=0)
    keys = expected_keys(case, reward_fn)
    for _ in range(2 * CONFIG.horizon):
        _, reward, _, _, info = venv.step(np.array([0, 3, 6]))
        assert reward.shape == (3,) and np.isfinite(reward).all()
        assert keys <= set(info) and all(info[k].shape == (3,) for k in keys)
