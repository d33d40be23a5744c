"""Pessimistic ranks and HR / NDCG / MRR against hand-computed values and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.metrics import (
    at_least_target,
    count_true,
    metrics_from_ranks,
    metrics_per_target,
    pessimistic_rank,
    split_metric_name,
    validate_ks,
)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------- ranks
def test_rank_ties_count_against_the_target():
    # Target (column 0) ties with two others, beats two: 2 candidates are >= it -> rank 2.
    scores = _t([[0.3, 0.3, 0.1, 0.3, 0.2]])
    assert pessimistic_rank(scores, torch.tensor([0])).tolist() == [2]


def test_rank_hand_examples_batch():
    scores = _t(
        [
            [0.5, 0.9, 0.5, 0.1, 0.5],  # one higher + two ties -> 3
            [0.1, 0.2, 0.3, 0.4, 0.5],  # target col 4 is the strict best -> 0
            [1.0, 1.0, 1.0, 1.0, 1.0],  # constant -> worst rank 4
            [0.0, -1.0, 2.0, 2.0, 3.0],  # target col 2: ties with col 3, col 4 higher -> 2
        ]
    )
    ranks = pessimistic_rank(scores, torch.tensor([0, 4, 1, 2]))
    assert ranks.tolist() == [3, 0, 4, 2]
    assert ranks.dtype == torch.int64


def test_rank_respects_candidate_mask():
    scores = _t([[0.5, 0.9, 0.5, 0.1, 0.5]])
    mask = torch.tensor([[True, False, True, True, False]])  # drop the higher one and a tie
    assert pessimistic_rank(scores, torch.tensor([0]), mask).tolist() == [1]


def test_constant_scores_get_the_worst_rank_among_candidates():
    scores = torch.zeros(3, 6)
    mask = torch.tensor([[True] * 6, [True, True, False, False, True, True], [True] + [False] * 5])
    ranks = pessimistic_rank(scores, torch.tensor([0, 1, 0]), mask)
    assert ranks.tolist() == [5, 3, 0]


def test_non_finite_scores_only_rejected_on_candidates():
    scores = _t([[0.2, float("nan"), -float("inf"), 0.1]])
    mask = torch.tensor([[True, False, False, True]])
    assert pessimistic_rank(scores, torch.tensor([0]), mask).tolist() == [0]
    with pytest.raises(ValueError, match="finite"):
        pessimistic_rank(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match="finite"):
        pessimistic_rank(_t([[0.2, float("inf")]]), torch.tensor([0]))


def test_rank_input_errors():
    scores = torch.zeros(2, 4)
    with pytest.raises(TypeError, match="floating"):
        pessimistic_rank(torch.zeros(2, 4, dtype=torch.int64), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"shape \(B, C\)"):
        pessimistic_rank(torch.zeros(4), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        pessimistic_rank(scores, torch.tensor([0]))
    with pytest.raises(TypeError, match="int64"):
        pessimistic_rank(scores, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pessimistic_rank(scores, torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="bool"):
        pessimistic_rank(scores, torch.tensor([0, 1]), torch.ones(2, 4))
    with pytest.raises(ValueError, match="target must be a candidate"):
        pessimistic_rank(scores, torch.tensor([0, 1]), torch.tensor([[True] * 4, [False] * 4]))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda c: st.tuples(
            st.lists(st.lists(st.integers(0, 3), min_size=c, max_size=c), min_size=1, max_size=5),
            st.lists(st.lists(st.booleans(), min_size=c, max_size=c), min_size=5, max_size=5),
            st.lists(st.integers(0, c - 1), min_size=5, max_size=5),
        )
    )
)
def test_rank_matches_brute_force(data):
    values, mask_rows, targets = data
    b = len(values)
    scores = _t(values)  # small integers -> many ties
    target = torch.tensor(targets[:b])
    mask = torch.tensor(mask_rows[:b])
    mask[torch.arange(b), target] = True
    ranks = pessimistic_rank(scores, target, mask)
    for i in range(b):
        t = int(target[i])
        expected = sum(
            1
            for j in range(scores.shape[1])
            if j != t and bool(mask[i, j]) and scores[i, j] >= scores[i, t]
        )
        assert int(ranks[i]) == expected
        assert 0 <= int(ranks[i]) <= int(mask[i].sum()) - 1


@pytest.mark.parametrize("width", [1, 301, 1016, 3048])
def test_count_true_matches_sum(width):
    mask = torch.rand(7, width, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[0] = True  # a full row: every byte lane at its maximum
    assert torch.equal(count_true(mask), mask.sum(dim=1))
    assert count_true(mask).dtype == torch.int64


@pytest.mark.parametrize("width", [3, 1015, 1017, 2500])
def test_at_least_target_pads_with_false(width):
    g = torch.Generator().manual_seed(width)
    scores = torch.randint(0, 4, (5, width), generator=g).float()
    target = torch.randint(0, width, (5,), generator=g)
    at_least = at_least_target(scores, target)
    expected = scores >= scores.gather(1, target[:, None])
    assert torch.equal(at_least[:, :width], expected)
    assert not at_least[:, width:].any()
    assert torch.equal(count_true(at_least), expected.sum(dim=1))


# ----------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    ranks = np.array([0, 1, 4, 10])
    m = metrics_from_ranks(ranks, ks=(5, 1))
    assert list(m) == ["HR@1", "HR@5", "NDCG@1", "NDCG@5", "MRR@1", "MRR@5", "MRR"]
    assert m["HR@1"] == pytest.approx(1 / 4)
    assert m["HR@5"] == pytest.approx(3 / 4)
    assert m["NDCG@1"] == pytest.approx(1 / 4)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert m["MRR@1"] == pytest.approx(1 / 4)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4)


def test_metrics_accept_tensors_and_match_per_target():
    ranks = torch.tensor([3, 0, 2])
    per = metrics_per_target(ranks, (1, 3))
    assert per["HR@3"].tolist() == [0.0, 1.0, 1.0]
    assert per["NDCG@3"][2] == pytest.approx(0.5)  # 1 / log2(4)
    means = metrics_from_ranks(ranks, (1, 3))
    assert all(means[k] == pytest.approx(per[k].mean()) for k in per)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="at least one"):
        metrics_from_ranks(np.array([], dtype=np.int64), (1,))
    with pytest.raises(ValueError, match="non-negative integers"):
        metrics_from_ranks(np.array([-1, 2]), (1,))
    with pytest.raises(ValueError, match="non-negative integers"):
        metrics_from_ranks(np.array([0.5]), (1,))
    with pytest.raises(ValueError, match="1-D"):
        metrics_from_ranks(np.zeros((2, 2), dtype=np.int64), (1,))


@pytest.mark.parametrize("bad", [(), (0,), (5, -1), (True,), ("10",), (2.5,)])
def test_bad_ks_rejected(bad):
    with pytest.raises(ValueError, match="ks must be"):
        validate_ks(bad)


def test_ks_sorted_and_deduplicated():
    assert validate_ks((10, 1, 10, np.int64(5))) == (1, 5, 10)
    assert validate_ks(3) == (3,)
    with pytest.raises(TypeError, match="ks must be"):
        validate_ks(None)  # type: ignore[arg-type]


def test_split_metric_name():
    assert split_metric_name("NDCG@10") == ("NDCG", 10)
    assert split_metric_name("MRR") == ("MRR", None)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=40))
def test_metrics_monotone_in_k_and_bounded(ranks):
    ks = (1, 2, 5, 10, 50)
    m = metrics_from_ranks(np.array(ranks), ks)
    for name in ("HR", "NDCG", "MRR"):
        values = [m[f"{name}@{k}"] for k in ks]
        assert all(a <= b + 1e-12 for a, b in zip(values[:-1], values[1:], strict=True))
    for k in ks:
        assert 0.0 <= m[f"MRR@{k}"] <= m[f"NDCG@{k}"] + 1e-12
        assert m[f"NDCG@{k}"] <= m[f"HR@{k}"] + 1e-12 <= 1.0 + 1e-12
        assert m[f"MRR@{k}"] <= m["MRR"] + 1e-12
