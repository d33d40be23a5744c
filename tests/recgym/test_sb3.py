"""stable-baselines3 compatibility: its env checker, PPO smoke runs, and the batched VecEnv."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from recgym import NotResetError
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.gym_env import NextItemEnv
from recgym.reference import HitReward

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

from recgym.sb3 import SB3VecEnv  # noqa: E402

CONFIG = EnvConfig(max_len=4, horizon=3, stage="train", start="random")


def make_venv(split, batch_size=4, seed=0):
    return SB3VecEnv(BatchedRecEnv(split, HitReward(), CONFIG, batch_size=batch_size, seed=seed))


def test_sb3_check_env(tiny_split):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns about spaces it handles badly: none expected
        check_env(NextItemEnv(tiny_split, config=CONFIG))


def test_ppo_learns_on_single_env(tiny_split):
    model = PPO(
        "MlpPolicy", NextItemEnv(tiny_split, config=CONFIG), n_steps=64, batch_size=32,
        n_epochs=1, seed=0, device="cpu",
    )  # fmt: skip
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256


def test_ppo_learns_on_sb3_vec_env(tiny_split):
    model = PPO(
        "MlpPolicy", make_venv(tiny_split, batch_size=64), n_steps=8, batch_size=128,
        n_epochs=1, seed=0, device="cpu",
    )  # fmt: skip
    model.learn(total_timesteps=1024)
    assert model.num_timesteps >= 1024


def test_vec_env_same_step_autoreset(tiny_split):
    venv = make_venv(tiny_split)
    obs = venv.reset()
    assert obs.shape == (4, 4) and all(row in venv.observation_space for row in obs)
    for t in range(1, 4):
        venv.step_async(np.full(4, 2))
        obs, reward, done, infos = venv.step_wait()
        assert reward.dtype == np.float32 and done.tolist() == [t == 3] * 4
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"][-3:].tolist() == [3, 3, 3]
        assert obs[i].tolist() == venv.env.sessions.history[i].tolist()
    assert venv.env.sessions.step.tolist() == [0] * 4  # restarted in the same call
    assert venv.last_info["step"].tolist() == [0] * 4


def test_vec_env_seed_and_options(tiny_split):
    a, b = make_venv(tiny_split, seed=None), make_venv(tiny_split, seed=None)
    a.seed(7)
    b.seed(7)
    assert np.array_equal(a.reset(), b.reset())
    a.set_options({"user": np.array([4, 3, 4, 3])})
    a.reset()
    assert a.env.sessions.user.tolist() == [4, 3, 4, 3]
    assert a.get_attr("n_items") == [7] * 4 and a.env_is_wrapped(object) == [False] * 4


def test_vec_env_bad_input(tiny_split):
    venv = make_venv(tiny_split)
    with pytest.raises(NotResetError):
        venv.step(np.zeros(4, dtype=np.int64))
    venv.reset()
    with pytest.raises(ValueError, match=r"actions must be 4 integer actions in \[0, 6\]"):
        venv.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"item ids in \[1, 7\]"):
        venv.step(np.full(4, 7))
    with pytest.raises(TypeError, match="BatchedRecEnv"):
        SB3VecEnv(NextItemEnv(tiny_split, config=CONFIG))


def test_vec_env_actions_map_to_items(tiny_split):
    venv = make_venv(tiny_split)
    venv.reset()
    venv.step(np.array([0, 1, 5, 6]))
    assert venv.env.sessions.history[:, -1].tolist() == [1, 2, 6, 7]
    assert torch.equal(venv.last_info["user"], venv.env.sessions.user)
