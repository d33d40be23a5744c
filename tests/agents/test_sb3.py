"""agents.sb3: history features extractors, PPO vs a random policy, the reward-model callback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.logger import KVWriter, Logger
from torch import nn

from agents.policy import SequencePolicy
from agents.sb3 import (
    PolicyFeaturesExtractor,
    RewardModelCallback,
    observations_to_history,
)
from recgym import (
    BatchedRecEnv,
    EnvConfig,
    HitReward,
    OracleReward,
    SyntheticConfig,
    leave_one_out,
    make_synthetic,
)
from recgym.gym_env import observation_space
from recgym.sb3 import SB3VecEnv
from rewards import EnergyConfig, EnergyDiscriminator, NormalizedReward, real_sequences


class TinyPolicy(SequencePolicy):
    """A causal stand-in encoder: tanh of a linear map of the running embedding sum."""

    def __init__(self, *, n_items: int, max_len: int, dim: int = 8) -> None:
        super().__init__(n_items=n_items, max_len=max_len)
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.proj = nn.Linear(dim, dim)

    def encode(self, history, *, delta=None):
        x = F.embedding(history, self.item_table(delta), padding_idx=0)
        return torch.tanh(self.proj(x.cumsum(1)))


@pytest.fixture(scope="module")
def synthetic():
    config = SyntheticConfig(n_users=200, n_items=30, n_genres=4, min_seq_len=5, max_seq_len=15)
    data = make_synthetic(config, seed=0)
    return data, leave_one_out(data.dataset)


ENV = EnvConfig(max_len=10, horizon=5, stage="train", start="random")


def make_venv(split, reward_fn, *, batch_size=64, seed=0):
    return SB3VecEnv(BatchedRecEnv(split, reward_fn, ENV, batch_size=batch_size, seed=seed))


# ---------------------------------------------------------------------- extractors
def test_observations_to_history_round_trips_floats():
    ids = torch.tensor([[0, 0, 3, 7], [1, 2, 3, 4]])
    assert torch.equal(observations_to_history(ids.float(), 7), ids)
    assert observations_to_history(ids.float(), 7).dtype == torch.int64


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[0.0, 1.5]]), "non-integers"),
        (torch.tensor([[0.0, 9.0]]), r"\[0, 7\]"),
        (torch.tensor([[-1.0, 2.0]]), r"\[0, 7\]"),
        (torch.tensor([1.0, 2.0]), r"\(B, max_len\)"),
    ],
)
def test_observations_to_history_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        observations_to_history(bad, 7)


def test_policy_features_extractor_gives_newest_state():
    space = observation_space(20, 6)
    policy = TinyPolicy(n_items=20, max_len=6)
    extractor = PolicyFeaturesExtractor(space, policy=policy)
    obs = torch.tensor([[0, 0, 0, 1, 2, 3], [4, 5, 6, 7, 8, 20]])
    features = extractor(obs.float())
    assert features.shape == (2, extractor.features_dim) == (2, 8)
    assert torch.allclose(features, policy.encode(obs)[:, -1])


def test_policy_features_extractor_rejects_mismatched_policy():
    with pytest.raises(ValueError, match="n_items=20"):
        PolicyFeaturesExtractor(observation_space(20, 6), policy=TinyPolicy(n_items=19, max_len=6))
    with pytest.raises(ValueError, match="max_len >= 6"):
        PolicyFeaturesExtractor(observation_space(20, 6), policy=TinyPolicy(n_items=20, max_len=4))
    with pytest.raises(TypeError, match="SequencePolicy"):
        PolicyFeaturesExtractor(observation_space(20, 6), policy=nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["SASRec", "GRU"])
def test_named_features_extractors(name):
    module = pytest.importorskip(f"agents.{name.lower()}")
    from agents import sb3

    extractor_cls = getattr(sb3, f"{name}FeaturesExtractor")
    space = observation_space(25, 7)
    extractor = extractor_cls(space)
    obs = torch.tensor([[0, 0, 0, 0, 1, 2, 3], [1, 2, 3, 4, 5, 6, 25], [0] * 6 + [9]])
    features = extractor(obs.float())
    assert features.shape == (3, extractor.features_dim)
    assert torch.isfinite(features).all()
    config_cls = getattr(module, f"{name}Config")
    with pytest.raises(TypeError, match=config_cls.__name__):
        extractor_cls(space, config=object())
    with pytest.raises(ValueError, match="n_items=24"):
        extractor_cls(space, n_items=24)


def test_ppo_smoke_with_policy_features_extractor(synthetic):
    data, split = synthetic
    policy = TinyPolicy(n_items=data.dataset.n_items, max_len=ENV.max_len)
    before = policy.item_embedding.weight.detach().clone()
    model = PPO(
        "MlpPolicy", make_venv(split, HitReward(), batch_size=16), n_steps=8, batch_size=64,
        n_epochs=1, seed=0, device="cpu",
        policy_kwargs={
            "features_extractor_class": PolicyFeaturesExtractor,
            "features_extractor_kwargs": {"policy": policy},
        },
    )  # fmt: skip
    model.learn(256)
    assert model.num_timesteps >= 256
    assert not torch.equal(before, policy.item_embedding.weight)  # trained by PPO's optimiser


# ---------------------------------------------------------------------- PPO beats random
def mean_reward(split, reward_fn, act, *, seed=123, batch_size=512):
    """Mean per-step reward of ``act(obs, rng) -> actions`` over one episode of each session."""
    venv = make_venv(split, reward_fn, batch_size=batch_size, seed=seed)
    venv.seed(seed)
    obs, total, rng = venv.reset(), 0.0, np.random.default_rng(seed)
    for _ in range(ENV.horizon):
        obs, reward, _, _ = venv.step(act(obs, rng))
        total += float(reward.mean())
    return total / ENV.horizon


def test_ppo_beats_random_policy(synthetic):
    data, split = synthetic
    reward_fn = OracleReward(data.user_model, log=False)  # p(item | history): the true user
    model = PPO(
        "MlpPolicy", make_venv(split, reward_fn), n_steps=16, batch_size=256, n_epochs=4,
        learning_rate=3e-3, seed=0, device="cpu", policy_kwargs={"net_arch": [64]},
    )  # fmt: skip
    model.learn(20_000)
    n = data.dataset.n_items
    random = mean_reward(split, reward_fn, lambda obs, rng: rng.integers(0, n, len(obs)))
    trained = mean_reward(
        split, reward_fn, lambda obs, rng: model.predict(obs, deterministic=True)[0]
    )
    assert random == pytest.approx(1 / n, rel=0.35)  # uniform over n items, minus repeats
    assert trained > 2 * random, (trained, random)


# ---------------------------------------------------------------------- the callback
class RecordingWriter(KVWriter):
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.records.append(dict(key_values))


def make_reward_model(n_items, seed=0):
    return EnergyDiscriminator(EnergyConfig(dim=8, dropout=0.0), n_items=n_items, seed=seed)


def test_callback_updates_reward_model_during_learn(synthetic):
    data, split = synthetic
    reward_model = make_reward_model(data.dataset.n_items)
    before = {k: v.clone() for k, v in reward_model.state_dict().items()}
    callback = RewardModelCallback(
        reward_model, real_sampler=real_sequences(split, ENV.max_len), batch_size=32,
        n_updates=2, update_every_n_rollouts=2,
    )  # fmt: skip
    model = PPO("MlpPolicy", make_venv(split, reward_model, batch_size=16), n_steps=8, seed=0)
    writer = RecordingWriter()
    model.set_logger(Logger(None, [writer]))
    model.learn(16 * 8 * 4, callback=callback)  # 4 rollouts -> 2 rounds
    assert callback.n_rollouts == 4 and callback.n_rounds == 2
    changed = [k for k, v in reward_model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    logged = [r for r in writer.records if "disc/loss" in r]
    assert len(logged) == 2 and logged[-1]["disc/rounds"] == 2
    assert {"disc/auc", "disc/accuracy"} <= set(logged[-1])
    assert np.isfinite(logged[-1]["disc/loss"])


def test_callback_generated_sequences_append_action_items(synthetic):
    data, split = synthetic
    reward_model = make_reward_model(data.dataset.n_items)
    wrapped = NormalizedReward(reward_model)  # wrappers around the model are accepted
    callback = RewardModelCallback(reward_model, real_sampler=real_sequences(split, 4))
    model = A2C("MlpPolicy", make_venv(split, wrapped, batch_size=8), n_steps=5, seed=0)
    model.learn(40, callback=callback)
    fake = callback.generated_sequences()
    buffer = model.rollout_buffer
    obs = torch.as_tensor(buffer.observations.reshape(-1, ENV.max_len)).long()
    actions = torch.as_tensor(buffer.actions.reshape(-1)).long()
    assert fake.shape == (40, ENV.max_len)
    assert torch.equal(fake[:, -1], actions + 1)  # item = action + 1
    assert torch.equal(fake[:, :-1], obs[:, 1:])
    real = callback.sample_real(6, ENV.max_len)  # width 4 pool, left-padded to 10
    assert real.shape == (6, ENV.max_len) and (real[:, :6] == 0).all()


def test_callback_rejects_env_with_another_reward(synthetic):
    data, split = synthetic
    reward_model = make_reward_model(data.dataset.n_items)
    callback = RewardModelCallback(reward_model, real_sampler=real_sequences(split, 10))
    venv = make_venv(split, HitReward(), batch_size=8)
    model = PPO("MlpPolicy", venv, n_steps=4, batch_size=32, seed=0)
    with pytest.raises(ValueError, match="reward_fn=reward_model"):
        model.learn(32, callback=callback)


def test_callback_rejects_off_policy_and_bad_arguments(synthetic):
    data, split = synthetic
    reward_model = make_reward_model(data.dataset.n_items)
    real = real_sequences(split, 10)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        RewardModelCallback(reward_model, real_sampler=real, batch_size=0)
    with pytest.raises(TypeError, match="RewardModel"):
        RewardModelCallback(HitReward(), real_sampler=real)
    with pytest.raises(TypeError, match="real_sampler"):
        RewardModelCallback(reward_model, real_sampler=[1, 2])
    callback = RewardModelCallback(reward_model, real_sampler=real)
    dqn = DQN("MlpPolicy", make_venv(split, reward_model, batch_size=1), buffer_size=100)
    with pytest.raises(TypeError, match="on-policy"):
        dqn.learn(10, callback=callback)
