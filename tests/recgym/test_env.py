"""The batched core: config validation, start modes, dynamics properties, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recgym import NotResetError, RewardError, RewardOutput, SequenceDataset, leave_one_out
from recgym.env import BatchedRecEnv, Sessions, advance, start_sessions
from recgym.env_config import EnvConfig
from recgym.reference import HitReward

# tiny_split (conftest): sequences u0 [1,2], u1 [3,4,5], u2 [2,4,6,1], u3 [7,1,3,5,2],
# u4 [6,5,4,3,2,1]; leave-one-out -> train_end [2,3,7,12,18], valid_end [2,4,8,13,19].
N_ITEMS = 7
FIXTURE_OK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make_env(split, batch_size=3, seed=0, reward_fn=None, **config):
    config.setdefault("max_len", 4)
    return BatchedRecEnv(
        split, reward_fn or HitReward(), EnvConfig(**config), batch_size=batch_size, seed=seed
    )


def random_split(seed: int):
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(3, 10))
    lengths = rng.integers(1, 12, size=int(rng.integers(1, 8)))
    sequences = [rng.integers(1, n_items + 1, size=n).tolist() for n in lengths]
    return leave_one_out(SequenceDataset.from_sequences(sequences, n_items=n_items))


configs = st.fixed_dictionaries(
    {
        "max_len": st.integers(1, 6),
        "horizon": st.integers(1, 5),
        "stage": st.sampled_from(["train", "valid", "test"]),
        "start": st.sampled_from(["history", "random", "fixed"]),
        "start_len": st.integers(1, 4),
        "min_start_len": st.integers(1, 3),
    }
)


def build_config(c: dict) -> EnvConfig:
    c = dict(c)
    if c["start"] != "fixed":
        c.pop("start_len")
    return EnvConfig(**c)


def try_env(split, config, batch_size, seed=0, reward_fn=None):
    try:
        return BatchedRecEnv(
            split, reward_fn or HitReward(), config, batch_size=batch_size, seed=seed
        )
    except ValueError as e:
        assume("no user" not in str(e))
        raise


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_len": 0}, "max_len must be an int >= 1"),
        ({"horizon": 1.5}, "horizon must be an int >= 1"),
        ({"min_start_len": 0}, "min_start_len"),
        ({"stage": "dev"}, "stage must be one of"),
        ({"start": "middle"}, "start must be one of"),
        ({"start": "fixed"}, "needs start_len"),
        ({"start": "fixed", "start_len": 0}, "start_len must be an int >= 1"),
        ({"start": "random", "start_len": 3}, "only used with start='fixed'"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(**kwargs)


def test_constructor_validation(tiny_split):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        BatchedRecEnv(tiny_split, HitReward(), batch_size=0)
    with pytest.raises(TypeError, match="reward_fn must be callable"):
        BatchedRecEnv(tiny_split, 3, batch_size=1)
    with pytest.raises(TypeError, match="split must be a recgym.Split"):
        BatchedRecEnv(tiny_split.dataset, HitReward(), batch_size=1)
    with pytest.raises(ValueError, match="no user .* can start a session"):
        make_env(tiny_split, start="fixed", start_len=50)


# ----------------------------------------------------------------------------- start modes
def reset_rows(env, users):
    obs, info = env.reset(users=np.array(users))
    return obs.tolist(), info["next_true_item"].tolist(), env.sessions.length.tolist()


def test_history_start_train_is_pure_simulation(tiny_split):
    env = make_env(tiny_split, batch_size=2, stage="train", start="history")
    assert env.eligible_users.tolist() == [0, 1, 2, 3, 4]
    obs, nxt, length = reset_rows(env, [1, 4])
    assert obs == [[0, 0, 0, 3], [6, 5, 4, 3]] and length == [1, 4]
    assert nxt == [0, 0]  # the whole training history is visible: no logged next item
    for _ in range(3):
        _, _, _, _, info = env.step(torch.tensor([1, 1]))
        assert info["next_true_item"].tolist() == [0, 0]


@pytest.mark.parametrize(
    ("stage", "history", "targets"), [("valid", [3], [4]), ("test", [3, 4], [5])]
)
def test_history_start_heldout_targets(tiny_split, stage, history, targets):
    env = make_env(tiny_split, batch_size=1, stage=stage, start="history")
    assert 0 not in env.eligible_users.tolist()  # user 0 has no held-out items
    obs, nxt, _ = reset_rows(env, [1])
    assert obs[0][-len(history) :] == history and nxt == targets
    _, reward, _, _, info = env.step(torch.tensor(targets))
    assert reward.tolist() == [1.0] and info["true_item"].tolist() == targets
    assert info["next_true_item"].tolist() == [0]  # nothing after the stage's segment


def test_random_start_cuts_cover_the_allowed_range(tiny_split):
    env = make_env(tiny_split, batch_size=512, stage="train", start="random", min_start_len=2)
    assert env.eligible_users.tolist() == [3, 4]  # need >= 3 training items
    env.reset(seed=1)
    s = env.sessions
    first = torch.tensor(tiny_split.dataset.offsets)[s.user]
    lo, hi = first + 2, torch.tensor(tiny_split.train_end)[s.user] - 1
    assert bool(((s.cursor >= lo) & (s.cursor <= hi)).all())
    assert bool((s.target > 0).all())  # always at least one logged next item
    user4 = s.cursor[s.user == 4]
    assert set(user4.tolist()) == set(range(14 + 2, 18))  # every allowed cut occurs


def test_fixed_start(tiny_split):
    env = make_env(tiny_split, batch_size=2, stage="test", start="fixed", start_len=2)
    obs, nxt, length = reset_rows(env, [0, 4])
    assert obs == [[0, 0, 1, 2], [0, 0, 6, 5]] and length == [2, 2] and nxt == [0, 4]
    with pytest.raises(ValueError, match="user 1 cannot start .* needs at least start_len = 2"):
        make_env(tiny_split, batch_size=1, stage="train", start="fixed", start_len=2).reset(
            users=[1]
        )


def test_users_validation(tiny_split):
    env = make_env(tiny_split, batch_size=2)
    with pytest.raises(ValueError, match=r"user 7 is not a user index in \[0, 4\]"):
        env.reset(users=np.array([0, 7]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.reset(users=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="user 0 cannot start .* stage='valid'"):
        make_env(tiny_split, batch_size=1, stage="valid").reset(users=torch.tensor([0]))


# ----------------------------------------------------------------------------- dynamics
@FIXTURE_OK
@given(data_seed=st.integers(0, 10_000), config=configs, seed=st.integers(0, 2**32), data=st.data())
def test_batched_step_equals_single_steps(data_seed, config, seed, data):
    split = random_split(data_seed)
    cfg = build_config(config)
    batched = try_env(split, cfg, batch_size=4, seed=seed)
    batched.reset()
    n = batched.n_items
    actions = data.draw(st.lists(st.lists(st.integers(1, n), min_size=4, max_size=4), max_size=6))
    singles = [try_env(split, cfg, batch_size=1) for _ in range(4)]
    for b, single in enumerate(singles):
        single.reset(users=batched.sessions.user[b : b + 1])
        # random starts draw cuts per env; copy the batched row's start to compare dynamics
        single._sessions = Sessions(*(t[b : b + 1] for t in batched.sessions))
    for step_actions in actions:
        out = batched.step(torch.tensor(step_actions))
        rows = [s.step(torch.tensor([a])) for s, a in zip(singles, step_actions, strict=True)]
        for k in range(4):
            assert torch.equal(out[k], torch.cat([r[k] for r in rows]))
        for key, value in out[4].items():
            assert torch.equal(value, torch.cat([r[4][key] for r in rows]))


@pytest.mark.parametrize("start", ["history", "fixed"])
def test_pinned_users_batched_equals_single(tiny_split, start):
    kwargs = {"start_len": 2} if start == "fixed" else {}
    users = [2, 4, 3]
    batched = make_env(tiny_split, batch_size=3, stage="valid", start=start, **kwargs)
    batched.reset(users=users)
    singles = [
        make_env(tiny_split, batch_size=1, stage="valid", start=start, **kwargs) for _ in users
    ]
    for s, u in zip(singles, users, strict=True):
        s.reset(users=[u])
    for action in ([1, 2, 3], [4, 4, 4], [7, 6, 5]):
        obs, reward, _, trunc, info = batched.step(torch.tensor(action))
        rows = [s.step(torch.tensor([a])) for s, a in zip(singles, action, strict=True)]
        assert torch.equal(obs, torch.cat([r[0] for r in rows]))
        assert torch.equal(reward, torch.cat([r[1] for r in rows]))
        assert torch.equal(
            info["next_true_item"], torch.cat([r[4]["next_true_item"] for r in rows])
        )


@FIXTURE_OK
@given(data_seed=st.integers(0, 10_000), config=configs, seed=st.integers(0, 2**32), data=st.data())
def test_history_shift_append_invariant(data_seed, config, seed, data):
    env = try_env(random_split(data_seed), build_config(config), batch_size=3, seed=seed)
    obs, _ = env.reset()
    length, max_len = env.sessions.length, env.max_len
    for _ in range(data.draw(st.integers(1, 5))):
        action = torch.tensor(
            data.draw(st.lists(st.integers(1, env.n_items), min_size=3, max_size=3))
        )
        new_obs, *_ = env.step(action)
        assert torch.equal(new_obs[:, :-1], obs[:, 1:]) and torch.equal(new_obs[:, -1], action)
        length = torch.clamp(length + 1, max=max_len)
        assert torch.equal(env.sessions.length, length)
        real = torch.arange(max_len) >= max_len - length.unsqueeze(1)  # (B, L) non-padding part
        assert bool((new_obs[real] > 0).all()) and bool((new_obs[~real] == 0).all())
        assert bool(((new_obs >= 0) & (new_obs <= env.n_items)).all())
        obs = new_obs


@FIXTURE_OK
@given(data_seed=st.integers(0, 10_000), config=configs, seed=st.integers(0, 2**32))
def test_same_seed_same_trajectory(data_seed, config, seed):
    split, cfg = random_split(data_seed), build_config(config)

    def rollout(env):
        obs, info = env.reset(seed=seed)
        out, gen = [obs, info["user"]], torch.Generator().manual_seed(0)
        for _ in range(4):
            action = torch.randint(1, env.n_items + 1, (3,), generator=gen)
            obs, reward, _, trunc, info = env.step(action)
            out += [obs, reward, trunc, info["next_true_item"]]
            obs, info = env.reset_where(trunc)
            out += [obs, info["user"]]
        return out

    a, b = try_env(split, cfg, 3, seed=None), try_env(split, cfg, 3, seed=None)
    for x, y in zip(rollout(a), rollout(b), strict=True):
        assert torch.equal(x, y)


def test_seed_semantics(tiny_split):
    env = make_env(tiny_split, batch_size=64, start="random", stage="test")
    first = env.reset(seed=3)[1]["user"].clone()
    later = env.reset()[1]["user"]  # None continues the stream
    assert not torch.equal(first, later)
    assert torch.equal(env.reset(seed=3)[1]["user"], first)
    twin = make_env(tiny_split, batch_size=64, start="random", stage="test", seed=3)
    assert torch.equal(twin.reset()[1]["user"], first)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        env.reset(seed=-1)


def test_truncation_at_horizon(tiny_split):
    env = make_env(tiny_split, batch_size=2, horizon=3)
    env.reset(seed=0)
    for t in range(1, 5):
        _, _, terminated, truncated, info = env.step(torch.tensor([1, 2]))
        assert truncated.tolist() == [t >= 3] * 2 and terminated.tolist() == [False, False]
        assert info["step"].tolist() == [t, t]


def test_reset_where_only_touches_masked_rows(tiny_split):
    env = make_env(tiny_split, batch_size=4, stage="test", start="random")
    env.reset(seed=0)
    env.step(torch.tensor([1, 2, 3, 4]))
    before = env.sessions
    mask = torch.tensor([True, False, True, False])
    _, info = env.reset_where(mask)
    after = env.sessions
    for old, new in zip(before, after, strict=True):
        assert torch.equal(old[~mask], new[~mask])
    assert after.step[mask].tolist() == [0, 0] and info["true_item"][mask].tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(4,\)"):
        env.reset_where(torch.tensor([1, 0, 1, 0]))


def test_info_contents(tiny_split):
    def with_parts(state, action):
        hit = HitReward()(state, action)
        return RewardOutput(hit, {"hit": hit, "bonus": torch.ones_like(hit)})

    env = make_env(
        tiny_split, batch_size=3, stage="test", start="fixed", start_len=1, reward_fn=with_parts
    )
    _, info = env.reset(users=[2, 3, 4])
    assert set(info) == {"user", "step", "true_item", "next_true_item"}
    expected = info["next_true_item"].clone()
    _, reward, _, _, info = env.step(expected)
    assert torch.equal(info["true_item"], expected) and reward.tolist() == [1.0] * 3
    assert info["reward/hit"].tolist() == [1.0] * 3 and info["reward/bonus"].tolist() == [1.0] * 3
    assert info["next_true_item"].tolist() == [6, 3, 4] and info["user"].tolist() == [2, 3, 4]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        (
            torch.tensor([0, 1, 1]),
            ValueError,
            r"item ids in \[1, 7\] \(0 is padding\); got ids in \[0, 1\]",
        ),
        (torch.tensor([1, 8, 1]), ValueError, r"item ids in \[1, 7\].*got ids in \[1, 8\]"),
        (torch.tensor([1, 1]), ValueError, r"shape \(3,\) .*got shape \(2,\)"),
        (torch.tensor([[1, 1, 1]]), ValueError, r"got shape \(1, 3\)"),
        (
            torch.tensor([1, 1, 1], dtype=torch.int32),
            TypeError,
            "dtype torch.int64; got dtype torch.int32",
        ),
        (torch.tensor([1.0, 1.0, 1.0]), TypeError, "got dtype torch.float32"),
        (np.array([1, 1, 1]), TypeError, "as a torch.Tensor; got ndarray"),
        (
            torch.ones(3, dtype=torch.int64, device="meta"),
            ValueError,
            "env's device cpu; got device meta",
        ),
    ],
)
def test_invalid_actions(tiny_split, action, error, match):
    env = make_env(tiny_split)
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


def test_step_before_reset(tiny_split):
    env = make_env(tiny_split)
    with pytest.raises(NotResetError, match="call reset"):
        env.step(torch.tensor([1, 1, 1]))
    with pytest.raises(NotResetError):
        env.reset_where(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(NotResetError):
        _ = env.state


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda r: r.clone().fill_(float("nan")), "3 non-finite value"),
        (lambda r: torch.where(r > -1, float("inf"), r), "non-finite"),
        (lambda r: r[:2], r"shape \(2,\)"),
        (lambda r: r.long(), "dtype torch.int64"),
        (lambda r: r.tolist(), "a list, not a tensor"),
        (lambda r: RewardOutput(r, {"part": r[:1]}), r"breakdown entry 'part'"),
    ],
)
def test_invalid_rewards(tiny_split, bad, match):
    def reward_fn(state, action):
        return bad(HitReward()(state, action))

    env = make_env(tiny_split, reward_fn=reward_fn)
    env.reset(seed=0)
    with pytest.raises(RewardError, match=f"reward function reward_fn returned .*{match}"):
        env.step(torch.tensor([1, 1, 1]))


def test_check_rewards_off_skips_validation(tiny_split):
    env = make_env(
        tiny_split, reward_fn=lambda s, a: torch.full((3,), float("nan")), check_rewards=False
    )
    env.reset(seed=0)
    assert torch.isnan(env.step(torch.tensor([1, 1, 1]))[1]).all()


def test_reward_called_once_per_step_before_transition(tiny_split):
    calls = []

    def reward_fn(state, action):
        calls.append((state.history.clone(), state.step.clone(), action.clone()))
        return torch.zeros(state.batch_size)

    env = make_env(tiny_split, reward_fn=reward_fn)
    obs, _ = env.reset(seed=0)
    for t in range(4):
        env.step(torch.tensor([1, 2, 3]))
        assert len(calls) == t + 1
    assert torch.equal(calls[0][0], obs) and calls[0][1].tolist() == [0, 0, 0]


def test_pure_functions_are_row_independent(tiny_split):
    items, offsets = tiny_split.dataset.tensors("cpu")
    users, cuts, ends = (
        torch.tensor([4, 3, 2]),
        torch.tensor([16, 10, 7]),
        torch.tensor([20, 14, 8]),
    )
    batch = start_sessions(items, offsets, users, cuts, ends, 4)
    action = torch.tensor([7, 6, 5])
    stepped = advance(batch, action, items)
    for b in range(3):
        row = start_sessions(items, offsets, users[b : b + 1], cuts[b : b + 1], ends[b : b + 1], 4)
        row = advance(row, action[b : b + 1], items)
        for x, y in zip(row, stepped, strict=True):
            assert torch.equal(x, y[b : b + 1])


@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_split):
    def rollout(device):
        env = BatchedRecEnv(
            tiny_split, HitReward(), EnvConfig(max_len=4, stage="test"), batch_size=3, device=device
        )
        obs, _ = env.reset(users=[1, 3, 4])
        out = [obs]
        for action in ([5, 1, 1], [2, 2, 2], [7, 3, 6]):
            obs, reward, _, trunc, info = env.step(torch.tensor(action, device=device))
            out += [obs, reward, trunc, info["next_true_item"]]
        return [t.cpu() for t in out]

    for x, y in zip(rollout("cpu"), rollout("cuda"), strict=True):
        assert torch.equal(x, y)
