"""Quality measures: coverage, Gini, oracle continuation log-likelihood and cascading error."""

from __future__ import annotations

import math

import pytest
import torch

from agents.quality import (
    cascading_error,
    catalogue_coverage,
    generate_continuations,
    gini,
    item_counts,
    oracle_continuation_loglik,
    policy_log_probs,
    real_prefixes,
)
from agents.sasrec import SASRecConfig, SASRecPolicy
from recgym import RecommenderPolicy

COLUMNS = [
    "step",
    "policy_loglik",
    "oracle_loglik",
    "loglik_gap",
    "reverse_kl",
    "forward_kl",
    "oracle_state_kl",
    "sampled_loglik",
    "repeat_rate",
]


@pytest.fixture(scope="module")
def policy():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SASRecPolicy(SASRecConfig(max_len=20, dim=16, n_blocks=1), n_items=60).eval()


# ----------------------------------------------------------------------------- catalogue
def test_coverage_and_gini_by_hand():
    actions = torch.tensor([[1, 1], [2, 1]])
    assert torch.equal(item_counts(actions, 4), torch.tensor([3, 1, 0, 0]))
    assert catalogue_coverage(actions, 4) == 0.5
    # Sorted counts 0, 0, 1, 3: G = 2 * (3 * 1 + 4 * 3) / (4 * 4) - 5 / 4 = 0.625.
    assert math.isclose(gini(actions, 4), 0.625)
    assert gini(torch.tensor([1, 2, 3, 4]), 4) == 0.0
    with pytest.raises(ValueError, match=r"item ids in \[1, 4\]"):
        catalogue_coverage(torch.tensor([0, 1]), 4)


# ----------------------------------------------------------------------------- policies
def test_policy_log_probs_of_each_kind(synthetic, policy):
    data, split = synthetic
    history = torch.tensor([[0, 0, 3, 4], [5, 6, 7, 8]])
    user = torch.tensor([0, 1])
    for candidate in (policy, data.user_model, RecommenderPolicy(data.user_model, greedy=False)):
        log_probs = policy_log_probs(candidate, history, user)
        assert log_probs.shape == (2, 61)
        assert torch.allclose(log_probs.exp().sum(1), torch.ones(2), atol=1e-5)
        assert bool(torch.isinf(log_probs[:, 0]).all())
    greedy = policy_log_probs(RecommenderPolicy(data.user_model), history, user)
    assert torch.equal((greedy == 0).sum(1), torch.ones(2, dtype=torch.int64))
    truth = data.user_model.log_prob(history, user)
    assert torch.allclose(policy_log_probs(data.user_model, history, user), truth, atol=1e-5)
    with pytest.raises(TypeError, match="SequencePolicy"):
        policy_log_probs(object(), history, user)


def test_real_prefixes_are_windows_of_training_sequences(synthetic):
    data, split = synthetic
    history, users = real_prefixes(split, 50, 20, torch.Generator().manual_seed(0))
    assert history.shape == (50, 20) and users.shape == (50,)
    n = (history > 0).sum(1)
    assert bool((n >= 1).all())
    for row, user, length in zip(history[:5], users[:5], n[:5], strict=True):
        sequence = torch.tensor(data.dataset.sequence(int(user)))
        assert torch.equal(row[-int(length) :], sequence[: int(length)])


def test_generate_continuations_shape(synthetic, policy):
    data, split = synthetic
    history, users = real_prefixes(split, 8, 20, torch.Generator().manual_seed(0))
    out = generate_continuations(policy, history, users, 4, torch.Generator().manual_seed(1))
    assert out.shape == (8, 4) and bool(((out >= 1) & (out <= 60)).all())


# ----------------------------------------------------------------------------- oracle
def test_oracle_continuation_loglik_ranks_the_truth_first(synthetic, policy):
    data, split = synthetic
    kwargs = {"n_steps": 5, "n_users": 256, "max_len": 20, "seed": 0}
    truth = oracle_continuation_loglik(data.user_model, data.user_model, split, **kwargs)
    untrained = oracle_continuation_loglik(policy, data.user_model, split, **kwargs)
    assert truth > untrained + 0.5
    assert oracle_continuation_loglik(policy, data.user_model, split, **kwargs) == untrained
    assert -math.log(60) < truth < 0  # better than uniform over the catalogue


def test_cascading_error_frame_and_zero_gap_for_the_oracle(synthetic):
    data, split = synthetic
    oracle = data.user_model
    for candidate in (oracle, RecommenderPolicy(oracle, greedy=False, exclude_seen=False)):
        frame = cascading_error(candidate, oracle, split, max_steps=10, n_users=64, max_len=20)
        assert list(frame.columns) == COLUMNS
        assert frame["step"].tolist() == list(range(1, 11))
        for column in ("loglik_gap", "reverse_kl", "forward_kl", "oracle_state_kl"):
            assert frame[column].abs().max() < 1e-4, column
        assert frame["repeat_rate"].max() == 0.0
        assert bool((frame["policy_loglik"] - frame["oracle_loglik"]).abs().max() < 1e-4)


def test_cascading_error_of_an_untrained_policy(synthetic, policy):
    data, split = synthetic
    frame = cascading_error(policy, data.user_model, split, max_steps=4, n_users=64, max_len=20)
    assert frame.shape == (4, len(COLUMNS))
    assert bool((frame["reverse_kl"] > 0).all()) and bool((frame["forward_kl"] > 0).all())
    assert bool((frame["loglik_gap"] > 0).all())
    assert frame.notna().all().all()
