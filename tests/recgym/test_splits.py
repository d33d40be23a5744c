"""Splits: leave-one-out and ratio; segments ordered, disjoint, popularity from train only."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import DataError, SequenceDataset, Split, leave_one_out, ratio_split


def test_leave_one_out_segments(tiny_dataset):
    split = leave_one_out(tiny_dataset)
    users, pos = split.targets("test")
    # user 0 has 2 items: stays in train; the others hold out their last item.
    assert users.tolist() == [1, 2, 3, 4]
    assert tiny_dataset.items[pos].tolist() == [5, 1, 2, 1]
    v_users, v_pos = split.targets("valid")
    assert v_users.tolist() == [1, 2, 3, 4] and (v_pos == pos - 1).all()
    assert split.segment_sizes() == {"train": 12, "valid": 4, "test": 4}


def test_train_targets_skip_first_item(tiny_split):
    users, pos = tiny_split.targets("train")
    assert tiny_split.n_targets("train") == len(users) == 12 - 5
    assert not np.isin(pos, tiny_split.dataset.offsets[:-1]).any()


def test_popularity_factor_uses_train_counts_only():
    ds = SequenceDataset.from_sequences([[1, 2, 3], [1, 2, 3], [1, 2, 3]], n_items=3)
    split = leave_one_out(ds)
    assert split.train_counts().tolist() == [0, 3, 0, 0]
    pop = split.factors(popularity_bins=2)["popularity"]
    assert pop.codes[1] > pop.codes[2] == pop.codes[3]


def test_train_dataset_holds_train_segments(tiny_split):
    train = tiny_split.train_dataset()
    assert train.n_users == tiny_split.dataset.n_users
    assert train.sequence(4).tolist() == [6, 5, 4, 3]
    assert train.sequence(0).tolist() == [1, 2]


def test_split_refuses_overlap(tiny_dataset):
    end = tiny_dataset.offsets[1:]
    with pytest.raises(DataError, match="validation and test must not overlap"):
        Split(dataset=tiny_dataset, train_end=end - 1, valid_end=end - 2)
    with pytest.raises(DataError, match=r"must have shape \(5,\)"):
        Split(dataset=tiny_dataset, train_end=end[:2], valid_end=end)


def test_ratio_split_rounds_and_keeps_train(tiny_dataset):
    split = ratio_split(tiny_dataset, valid=0.2, test=0.2)
    start, train_end = split.stage_bounds("train")
    assert ((train_end - start) >= 1).all()
    # user 4 has 6 items: round(1.2) = 1 test, 1 valid
    assert split.valid_end[4] == tiny_dataset.offsets[5] - 1
    with pytest.raises(ValueError, match="valid \\+ test must be < 1"):
        ratio_split(tiny_dataset, valid=0.5, test=0.5)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=20),
    st.floats(0.0, 0.45),
    st.floats(0.0, 0.45),
)
def test_ratio_split_segments_partition_every_sequence(lengths, valid, test):
    seqs = [list(range(1, n + 1)) for n in lengths]
    ds = SequenceDataset.from_sequences(seqs, n_items=30)
    split = ratio_split(ds, valid=valid, test=test)
    sizes = split.segment_sizes()
    assert sum(sizes.values()) == ds.n_interactions
    for stage in ("valid", "test"):
        users, pos = split.targets(stage)
        start, end = split.stage_bounds(stage)
        assert ((pos >= start[users]) & (pos < end[users])).all()
    _, vpos = split.targets("valid")
    _, tpos = split.targets("test")
    assert not np.intersect1d(vpos, tpos).size


def test_ratio_split_acvae_floor_rounding(tiny_dataset):
    """ACVAE's 8:2: the last int(0.2 n) items are test, no validation (user lengths 2..6)."""
    split = ratio_split(tiny_dataset, valid=0.0, test=0.2, rounding="floor")
    n = tiny_dataset.lengths
    start, end = split.stage_bounds("test")
    assert (end - start).tolist() == [int(0.2 * k) for k in n]
    assert split.segment_sizes()["valid"] == 0
    half_up = ratio_split(tiny_dataset, valid=0.0, test=0.3)
    assert (np.diff(np.stack(half_up.stage_bounds("test")), axis=0)[0] >= end - start).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"test": 1.0}, ValueError, r"test must be in \[0, 1\); got 1.0"),
        ({"test": -0.2}, ValueError, r"test must be in \[0, 1\); got -0.2"),
        ({"valid": 1.5}, ValueError, r"valid must be in \[0, 1\); got 1.5"),
        ({"test": "0.2"}, TypeError, r"test must be a float in \[0, 1\); got str"),
        ({"rounding": "ceil"}, ValueError, r"rounding must be 'half_up' or 'floor'; got 'ceil'"),
    ],
)
def test_ratio_split_refuses_bad_settings(tiny_dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        ratio_split(tiny_dataset, **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=15),
    st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5]),
    st.sampled_from(["floor", "half_up"]),
)
def test_ratio_split_partitions_chronologically_with_the_ratio_rule(lengths, test, rounding):
    """Every user's items are partitioned train | test in time order; sizes follow the rule."""
    seqs = [list(range(1, n + 1)) for n in lengths]  # item = time rank, so order is visible
    ds = SequenceDataset.from_sequences(seqs, n_items=40)
    split = ratio_split(ds, valid=0.0, test=test, rounding=rounding)
    for u, n in enumerate(lengths):
        parts = [ds.items[slice(*map(int, (b[0][u], b[1][u])))] for b in map(split.stage_bounds,
                 ("train", "valid", "test"))]  # fmt: skip
        assert np.concatenate(parts).tolist() == seqs[u]  # a partition, order kept
        exact = int(np.floor(n * test + (0.5 if rounding == "half_up" else 0.0) + 1e-9))
        assert len(parts[2]) == min(exact, n - 1) and len(parts[1]) == 0
        assert len(parts[0]) >= 1
