"""Reference rewards: the logged-item hit and the oracle (log-)likelihood."""

from __future__ import annotations

import pytest
import torch

from recgym import SessionState
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.reference import HitReward, OracleReward


def state_with(target, history=None, user=None) -> SessionState:
    target = torch.tensor(target)
    b = len(target)
    history = torch.tensor(history) if history is not None else torch.ones(b, 3, dtype=torch.long)
    return SessionState(
        history=history,
        length=(history > 0).sum(1),
        user=torch.tensor(user) if user is not None else torch.zeros(b, dtype=torch.long),
        step=torch.zeros(b, dtype=torch.long),
        target=target,
    )


class FakeOracle:
    """p(next = i) proportional to exp(-|i - (last + user)|) over items 1..n_items."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.calls = 0

    def log_prob(self, history: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        items = torch.arange(self.n_items + 1)
        centre = (history[:, -1] + user).unsqueeze(1)
        logits = -(items - centre).abs().float()
        logits[:, 0] = float("-inf")  # padding is never a next item
        return torch.log_softmax(logits, dim=1)


def test_hit_reward():
    reward = HitReward()(state_with([3, 5, 0]), torch.tensor([3, 4, 1]))
    assert reward.tolist() == [1.0, 0.0, 0.0] and reward.dtype == torch.float32


def test_hit_reward_target_zero_never_hits():
    n_items = 7
    state = state_with([0] * n_items)
    assert HitReward()(state, torch.arange(1, n_items + 1)).sum() == 0


@pytest.mark.parametrize("log", [True, False])
def test_oracle_reward_is_the_action_likelihood(log):
    oracle = FakeOracle(n_items=6)
    state = state_with([0, 0], history=[[0, 1, 2], [3, 4, 5]], user=[0, 1])
    action = torch.tensor([3, 1])
    reward = OracleReward(oracle, log=log)(state, action)
    expected = oracle.log_prob(state.history, state.user)[torch.arange(2), action]
    assert torch.allclose(reward, expected if log else expected.exp())


def test_oracle_reward_floors_impossible_items():
    class Impossible(FakeOracle):
        def log_prob(self, history, user):
            out = super().log_prob(history, user)
            out[:, 2] = float("-inf")
            return out

    state = state_with([0], history=[[0, 1, 2]])
    reward = OracleReward(Impossible(4), log_floor=-9.0)(state, torch.tensor([2]))
    assert reward.tolist() == [-9.0]
    assert OracleReward(Impossible(4), log=False)(state, torch.tensor([2])).tolist() == [0.0]


def test_oracle_reward_validation():
    with pytest.raises(TypeError, match="oracle must have a log_prob"):
        OracleReward(object())
    with pytest.raises(ValueError, match="log_floor must be a finite number < 0"):
        OracleReward(FakeOracle(3), log_floor=0.0)


def test_rewards_plug_into_the_env(tiny_split):
    oracle = FakeOracle(tiny_split.dataset.n_items)
    for reward_fn in (HitReward(), OracleReward(oracle), OracleReward(oracle, log=False)):
        env = BatchedRecEnv(tiny_split, reward_fn, EnvConfig(max_len=3), batch_size=4, seed=0)
        env.reset()
        _, reward, *_ = env.step(torch.tensor([1, 2, 3, 4]))
        assert reward.shape == (4,) and torch.isfinite(reward).all()
    assert oracle.calls == 2  # once per step, for the whole batch


def test_hit_reward_in_the_env_pays_exactly_the_logged_next_item(tiny_split):
    # isinstance(x, RewardFn) holds for any callable; what counts is what the env pays.
    env = BatchedRecEnv(tiny_split, HitReward(), EnvConfig(max_len=3), batch_size=4, seed=0)
    _, info = env.reset()
    target = info["next_true_item"].clone()
    _, reward, *_ = env.step(torch.where(target > 0, target, 1))
    assert torch.equal(reward, (target > 0).float())
    _, info = env.reset()
    target = info["next_true_item"]
    wrong = target % tiny_split.dataset.n_items + 1  # any item but the logged one
    _, reward, *_ = env.step(wrong)
    assert torch.equal(reward, torch.zeros(4))


def test_oracle_reward_with_the_synthetic_user_model():
    synthetic = pytest.importorskip("recgym.synthetic")
    from recgym import leave_one_out

    data = synthetic.make_synthetic(
        synthetic.SyntheticConfig(n_users=20, n_items=30, n_genres=3, max_seq_len=12), seed=0
    )
    env = BatchedRecEnv(
        leave_one_out(data.dataset),
        OracleReward(data.user_model),
        EnvConfig(max_len=8, start="random"),
        batch_size=16,
        seed=0,
    )
    obs, _ = env.reset()
    action = obs[:, -1]  # repeats are impossible for the synthetic user: floored, still finite
    _, reward, *_ = env.step(action)
    assert torch.equal(reward, torch.full((16,), -30.0))
