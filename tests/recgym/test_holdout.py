"""ACVAE's multi-target hold-out evaluation against hand-computed and brute-force values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recgym import DataError, SequenceDataset, leave_one_out, ratio_split
from recgym.evaluation import evaluate
from recgym.holdout import evaluate_holdout, holdout_ranks


def _fixed(scores_by_item: dict[int, float], n_items: int):
    row = torch.full((n_items + 1,), -1.0)
    for item, s in scores_by_item.items():
        row[item] = s

    def score(history, user):
        return row.expand(len(user), -1).clone()

    return score


def test_hand_computed_recall_ndcg_mrr():
    # user 0: [1, 2, 3 | 4, 5] (8:2 of 5 items is 4:1, so use test=0.4 -> 2 held out)
    ds = SequenceDataset.from_sequences([[1, 2, 3, 4, 5]], n_items=6)
    split = ratio_split(ds, valid=0.0, test=0.4, rounding="floor")
    # input items 1-3 are masked; ranking over {4, 5, 6}: 6 (0.9), 4 (0.8), 5 (0.1)
    score = _fixed({1: 5.0, 2: 5.0, 3: 5.0, 4: 0.8, 5: 0.1, 6: 0.9}, 6)
    frame = evaluate_holdout(score, split, ks=(1, 2, 5))
    got = {(r.metric, r.k): r.value for r in frame.itertuples()}
    d2, d3 = 1 / math.log2(3), 1 / math.log2(4)
    assert got[("Recall", 1)] == 0 and got[("Recall", 2)] == 0.5 and got[("Recall", 5)] == 1
    assert got[("NDCG", 1)] == 0
    assert got[("NDCG", 2)] == pytest.approx(d2 / (1 + d2))
    assert got[("NDCG", 5)] == pytest.approx((d2 + d3) / (1 + d2))
    assert got[("MRR", 1)] == 0 and got[("MRR", 2)] == 0.5 and got[("MRR", 5)] == 0.5
    assert frame["n_users"].unique().tolist() == [1]


def test_ties_count_against_the_relevant_items():
    ds = SequenceDataset.from_sequences([[1, 2, 3, 4]], n_items=5)
    split = ratio_split(ds, valid=0.0, test=0.5, rounding="floor")  # held out: 3, 4
    score = _fixed({1: 0.0, 2: 0.0, 3: 0.5, 4: 0.5, 5: 0.5}, 5)  # all three candidates tie
    ranks = holdout_ranks(score, split)
    assert ranks.positions.tolist() == [1, 2]  # item 5 first, then the two relevant ones


def test_one_target_per_user_equals_full_ranking_leave_one_out():
    """With one held-out item (leave-one-out test), Recall@k = HR@k and MRR@k = MRR@k."""
    rng = np.random.default_rng(0)
    seqs = [rng.choice(np.arange(1, 31), size=rng.integers(3, 12), replace=False).tolist()
            for _ in range(25)]  # fmt: skip
    split = leave_one_out(SequenceDataset.from_sequences(seqs, n_items=30))
    table = torch.as_tensor(rng.normal(size=(25, 31)), dtype=torch.float32)

    def score(history, user):
        return table[user]

    hold = evaluate_holdout(score, split, ks=(1, 5, 10))
    full = evaluate(score, split, protocols="full", ks=(1, 5, 10))
    ours = {(r.metric, r.k): r.value for r in hold.itertuples()}
    theirs = {(r.metric, r.k): r.value for r in full.itertuples() if r.protocol == "full"}
    for metric, name in (("HR", "Recall"), ("NDCG", "NDCG"), ("MRR", "MRR")):
        for k in (1, 5, 10):
            assert ours[(name, k)] == pytest.approx(theirs[(metric, k)])


def test_brute_force_positions_on_random_data():
    rng = np.random.default_rng(1)
    seqs = [rng.choice(np.arange(1, 41), size=rng.integers(5, 20), replace=False).tolist()
            for _ in range(30)]  # fmt: skip
    split = ratio_split(SequenceDataset.from_sequences(seqs, n_items=40), valid=0.0, test=0.2,
                        rounding="floor")  # fmt: skip
    table = torch.as_tensor(rng.integers(0, 5, size=(30, 41)), dtype=torch.float32)  # many ties
    ranks = holdout_ranks(lambda h, u: table[u], split, batch_size=7)
    start, end = split.stage_bounds("test")
    for j, u in enumerate(ranks.users):
        seen = set(split.dataset.items[split.dataset.offsets[u] : start[u]].tolist())
        rel = split.dataset.items[start[u] : end[u]].tolist()
        others = [i for i in range(1, 41) if i not in seen and i not in rel]
        s = table[u].numpy()
        expect = sorted(
            sum(s[o] >= s[r] for o in others) + sum(s[r2] > s[r] for r2 in rel) for r in rel
        )
        # equal-score relevant items take consecutive positions
        expect = [e + sum(1 for x in expect[:i] if x == e) for i, e in enumerate(expect)]
        got = ranks.positions[ranks.offsets[j] : ranks.offsets[j + 1]].tolist()
        assert got == expect


def test_bad_inputs_raise(tiny_dataset):
    split = ratio_split(tiny_dataset, valid=0.0, test=0.2, rounding="floor")
    score = _fixed({}, tiny_dataset.n_items)
    with pytest.raises(ValueError, match="stage must be 'valid' or 'test'; got 'train'"):
        holdout_ranks(score, split, "train")
    with pytest.raises(DataError, match="stage 'valid' .* holds no item"):
        holdout_ranks(score, split, "valid")
    with pytest.raises(TypeError, match="split must be a recgym.Split; got list"):
        holdout_ranks(score, [1, 2])
    with pytest.raises(ValueError, match="ks"):
        evaluate_holdout(score, split, ks=(0,))

    def nan_scores(history, user):
        return torch.full((len(user), tiny_dataset.n_items + 1), float("nan"))

    with pytest.raises(ValueError, match="NaN or inf|NaN|finite"):
        holdout_ranks(nan_scores, split)
