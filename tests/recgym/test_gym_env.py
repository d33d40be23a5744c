"""Gymnasium shells: spaces, the action mapping, seeding, vector autoreset, the env checker."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recgym import NotResetError, RewardOutput
from recgym.env_config import EnvConfig
from recgym.gym_env import (
    ENV_ID,
    NextItemEnv,
    NextItemVectorEnv,
    action_to_item,
    item_to_action,
    register_envs,
)
from recgym.reference import HitReward

CONFIG = EnvConfig(max_len=4, horizon=3, stage="test", start="random")
FIXTURE_OK = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def parts_reward(state, action):
    hit = HitReward()(state, action)
    return RewardOutput(hit, {"hit": hit})


def test_action_item_mapping():
    assert action_to_item(0) == 1 and item_to_action(7) == 6
    actions = np.arange(7)
    assert np.array_equal(item_to_action(action_to_item(actions)), actions)


def test_spaces(tiny_split):
    env = NextItemEnv(tiny_split, config=CONFIG)
    assert env.action_space == gymnasium.spaces.Discrete(7)
    assert env.observation_space == gymnasium.spaces.Box(0, 7, (4,), np.int64)
    venv = NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=5)
    assert venv.single_observation_space == env.observation_space
    assert venv.single_action_space == env.action_space
    assert venv.observation_space.shape == (5, 4) and venv.action_space.shape == (5,)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_gymnasium_check_env(tiny_split):
    register_envs()
    env = gymnasium.make(ENV_ID, split=tiny_split, reward_fn=HitReward(), config=CONFIG)
    check_env(env.unwrapped)  # also renders every mode through env.spec
    ansi = gymnasium.make(ENV_ID, split=tiny_split, config=CONFIG, render_mode="ansi")
    check_env(ansi.unwrapped)


def test_register_is_idempotent_and_make_vec_works(tiny_split):
    register_envs()
    register_envs()
    venv = gymnasium.make_vec(
        ENV_ID,
        num_envs=3,
        vectorization_mode="vector_entry_point",
        split=tiny_split,
        reward_fn=HitReward(),
        config=CONFIG,
    )
    assert isinstance(venv.unwrapped, NextItemVectorEnv) and venv.num_envs == 3
    obs, _ = venv.reset(seed=0)
    assert obs in venv.observation_space


def test_single_env_step_and_info(tiny_split):
    env = NextItemEnv(tiny_split, reward_fn=parts_reward, config=CONFIG, render_mode="ansi")
    obs, info = env.reset(seed=0, options={"user": 4})
    assert info == {"user": 4, "step": 0, "true_item": 0, "next_true_item": 1}
    assert isinstance(info["user"], int)
    assert "user 4 step 0/3" in env.render()
    obs, reward, terminated, truncated, info = env.step(item_to_action(1))
    assert obs[-1] == 1 and reward == 1.0 and terminated is False and truncated is False
    assert info["true_item"] == 1 and info["reward/hit"] == 1.0 and info["step"] == 1
    assert obs in env.observation_space


@pytest.mark.parametrize("action", [-1, 7, 1.0, np.array([1, 2]), "3"])
def test_single_env_invalid_actions(tiny_split, action):
    env = NextItemEnv(tiny_split, config=CONFIG)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 6\]"):
        env.step(action)


def test_step_before_reset(tiny_split):
    with pytest.raises(NotResetError):
        NextItemEnv(tiny_split, config=CONFIG).step(0)
    with pytest.raises(NotResetError):
        NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=2).step(np.zeros(2, dtype=np.int64))


def test_unknown_user_option(tiny_split):
    env = NextItemEnv(tiny_split, config=EnvConfig(max_len=4, stage="valid"))
    with pytest.raises(ValueError, match="user 9 is not a user index"):
        env.reset(options={"user": 9})
    with pytest.raises(ValueError, match="user 0 cannot start"):
        env.reset(options={"user": 0})


def rollout_single(env, seed, actions):
    out = [env.reset(seed=seed)]
    for a in actions:
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


@FIXTURE_OK
@given(seed=st.integers(0, 2**31), actions=st.lists(st.integers(0, 6), max_size=8))
def test_single_env_same_seed_same_trajectory(tiny_split, seed, actions):
    a = rollout_single(NextItemEnv(tiny_split, config=CONFIG), seed, actions)
    b = rollout_single(NextItemEnv(tiny_split, config=CONFIG), seed, actions)
    assert repr(a) == repr(b)
    env = NextItemEnv(tiny_split, config=CONFIG)
    for item in a:
        assert item[0] in env.observation_space


@FIXTURE_OK
@given(seed=st.integers(0, 2**31), data=st.data())
def test_vector_env_same_seed_and_spaces(tiny_split, seed, data):
    envs = [NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=4) for _ in range(2)]
    outs = [[e.reset(seed=seed)] for e in envs]
    for _ in range(data.draw(st.integers(1, 7))):
        actions = np.array(data.draw(st.lists(st.integers(0, 6), min_size=4, max_size=4)))
        for env, out in zip(envs, outs, strict=True):
            out.append(env.step(actions))
    assert repr(outs[0]) == repr(outs[1])
    for item in outs[0]:
        assert item[0] in envs[0].observation_space


def test_vector_autoreset_next_step(tiny_split):
    venv = NextItemVectorEnv(tiny_split, reward_fn=parts_reward, config=CONFIG, num_envs=3)
    venv.reset(seed=0, options={"user": np.array([2, 3, 4])})
    for t in range(1, 4):
        actions = item_to_action(venv.core.sessions.target.clamp(min=1).numpy())
        obs, reward, terminated, truncated, info = venv.step(actions)
        assert info["step"].tolist() == [t] * 3 and truncated.tolist() == [t == 3] * 3
        assert not terminated.any() and info["_reward/hit"].all()
    # The next step restarts every session: its action is ignored and its reward is 0.
    obs, reward, terminated, truncated, info = venv.step(np.zeros(3, dtype=np.int64))
    assert reward.tolist() == [0.0] * 3 and not truncated.any() and not terminated.any()
    assert info["step"].tolist() == [0] * 3 and info["true_item"].tolist() == [0] * 3
    assert info["_step"].all() and not info["_reward/hit"].any()
    assert np.array_equal(obs, venv.core.sessions.history.numpy())
    obs, reward, _, _, info = venv.step(np.zeros(3, dtype=np.int64))
    assert info["step"].tolist() == [1] * 3 and obs[:, -1].tolist() == [1] * 3


def test_vector_autoreset_only_finished_rows(tiny_split):
    venv = NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=2)
    venv.reset(seed=0)
    venv.step(np.zeros(2, dtype=np.int64))
    # Finish session 0 early: it restarts on the next step while session 1 keeps going.
    venv._autoreset = torch.tensor([True, False])
    obs, _, _, _, info = venv.step(np.full(2, 4, dtype=np.int64))
    assert info["step"].tolist() == [0, 2] and obs[1, -2:].tolist() == [1, 5]


def test_vector_env_options_and_invalid_actions(tiny_split):
    venv = NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=2)
    _, info = venv.reset(options={"user": np.array([3, 1])})
    assert info["user"].tolist() == [3, 1] and info["_user"].all()
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 6\]"):
        venv.step(np.array([0, 7]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer actions"):
        venv.step(np.array([0.0, 1.0]))


def test_vector_render(tiny_split):
    venv = NextItemVectorEnv(tiny_split, config=CONFIG, num_envs=2, render_mode="ansi")
    venv.reset(seed=0)
    lines = venv.render()
    assert len(lines) == 2 and all(line.startswith("user ") for line in lines)
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        NextItemVectorEnv(tiny_split, config=CONFIG, render_mode="human")


def test_default_split_is_the_synthetic_dataset(monkeypatch):
    synthetic = pytest.importorskip("recgym.synthetic")
    small = synthetic.SyntheticConfig(n_users=10, n_items=20, n_genres=2, max_seq_len=10)
    original = synthetic.make_synthetic
    monkeypatch.setattr(synthetic, "make_synthetic", lambda **kw: original(small, **kw))
    env = NextItemEnv()
    assert env.core.split.dataset.name == "synthetic" and env.action_space.n == 20
    assert isinstance(env.core.reward_fn, HitReward)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space


def test_vector_env_calls_the_reward_once_per_step(tiny_split):
    calls = []

    def counting(state, action):
        calls.append(state.batch_size)
        return HitReward()(state, action)

    venv = NextItemVectorEnv(tiny_split, reward_fn=counting, config=CONFIG, num_envs=3)
    venv.reset(seed=0)
    for _ in range(7):  # crosses two autoresets
        venv.step(np.zeros(3, dtype=np.int64))
    assert calls == [3] * 7
