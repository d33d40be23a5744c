"""Bad input at the library's boundaries is a clear error naming what was expected and got."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import recgym  # noqa: F401 - registers the gymnasium ids
from recgym import BatchedRecEnv, EnvConfig, SyntheticConfig, leave_one_out, make_synthetic
from recgym.device import resolve_device
from recgym.errors import RewardError


@pytest.fixture(scope="module")
def split():
    return leave_one_out(make_synthetic(SyntheticConfig(n_users=50, n_items=60), seed=0).dataset)


def env_with(split, reward_fn, **config):
    env = BatchedRecEnv(split, reward_fn, EnvConfig(max_len=10, horizon=3, **config),
                        batch_size=4, seed=0)  # fmt: skip
    env.reset()
    return env


def test_a_reward_function_that_writes_into_the_state_is_caught(split):
    def writer(state, action):
        state.history[:, -1] = 7
        return torch.zeros(len(action))

    with pytest.raises(RewardError, match=r"wrote into the state it was given \(\['history'\]\)"):
        env_with(split, writer).step(torch.ones(4, dtype=torch.long))
    unchecked = env_with(split, writer, check_rewards=False)  # the documented opt-out
    unchecked.step(torch.ones(4, dtype=torch.long))


def test_a_malformed_reward_tuple_names_the_expected_forms(split):
    env = env_with(split, lambda s, a: (torch.zeros(len(a)), 1))
    with pytest.raises(RewardError, match=r"\(reward, breakdown dict\) pair; got a tuple of "
                                          r"\['Tensor', 'int'\]"):  # fmt: skip
        env.step(torch.ones(4, dtype=torch.long))
    ok = env_with(split, lambda s, a: (torch.zeros(len(a)), {"part": torch.ones(len(a))}))
    assert ok.step(torch.ones(4, dtype=torch.long))[4]["reward/part"].tolist() == [1.0] * 4


@pytest.mark.parametrize(
    ("user", "error", "match"),
    [("42", TypeError, "must be an int .* got '42'"), (2.9, TypeError, "got 2.9"),
     (True, TypeError, "got True"), ([1, 2], ValueError, "must hold 1 user index")],
)  # fmt: skip
def test_gym_reset_options_must_be_user_indices(user, error, match):
    env = gym.make("recgym/NextItem-v0")
    with pytest.raises(error, match=match):
        env.reset(options={"user": user})
    assert env.reset(options={"user": np.int64(3)})[1]["user"] == 3


@pytest.mark.parametrize(("device", "error"), [("auto", ValueError), ("tpu", ValueError),
                                               (0.5, TypeError)])  # fmt: skip
def test_device_names_that_are_not_devices(device, error):
    with pytest.raises(error, match="device"):
        resolve_device(device)


def test_a_reward_model_update_on_an_empty_batch_is_refused():
    from rewards import EnergyConfig, EnergyDiscriminator

    model = EnergyDiscriminator(EnergyConfig(dim=8), n_items=60, seed=0)
    empty, real = torch.zeros(0, 10, dtype=torch.long), torch.ones(3, 10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"one real and one fake .* \(3, 10\) and \(0, 10\)"):
        model.update(real, empty)
