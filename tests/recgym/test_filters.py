"""SAO's item-frequency filter: one pass by default, items re-indexed, factors follow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import DataError, SequenceDataset
from recgym.factors import ItemFactors, categorical_factor
from recgym.filters import filter_rare_items


def _dataset() -> SequenceDataset:
    # counts: item 1 x4, 2 x3, 3 x2, 4 x2; user 3 only has a rare item
    genre = categorical_factor("genre", ["a", "b", "c", "d"])
    seqs = [[1, 3, 2], [1, 2], [4, 1], [3], [1, 4, 2]]
    ds = SequenceDataset.from_sequences(seqs, n_items=4)
    return SequenceDataset(
        name="toy", offsets=ds.offsets, items=ds.items, user_ids=ds.user_ids,
        item_ids=ds.item_ids, factors=ItemFactors(n_items=4, factors=(genre,)),
        timestamps=np.arange(ds.n_interactions),
    )  # fmt: skip


def test_one_pass_drops_rare_items_and_emptied_users_only():
    ds = _dataset()
    out = filter_rare_items(ds, 3)  # keeps items 1 (x4) and 2 (x3)
    assert out.n_items == 2 and out.item_ids[1:].tolist() == [1, 2]
    assert out.user_ids.tolist() == [0, 1, 2, 4]  # user 3 lost its only item
    assert [out.sequence(u).tolist() for u in range(4)] == [[1, 2], [1, 2], [1], [1, 2]]
    assert out.factors["genre"].labels([1, 2]) == ["a", "b"]
    assert out.timestamps.tolist() == [0, 2, 3, 4, 6, 8, 10]  # time order kept
    assert filter_rare_items(ds, 1).n_interactions == ds.n_interactions


def test_user_threshold_and_iteration():
    once = filter_rare_items(_dataset(), 3, min_user_len=2)  # user 2 is left with [1]: dropped
    assert once.user_ids.tolist() == [0, 1, 4]
    seqs = [[1, 2], [1, 2], [1, 2], [3, 1], [3, 2], [3, 4]]  # counts 4, 4, 3, 1
    ds = SequenceDataset.from_sequences(seqs, n_items=4)
    one = filter_rare_items(ds, 3, min_user_len=2)  # item 3 falls to 2 once user 5 goes
    assert one.user_ids.tolist() == [0, 1, 2, 3, 4] and one.item_counts()[1:].tolist() == [4, 4, 2]
    core = filter_rare_items(ds, 3, min_user_len=2, iterate=True)  # a recursive (2, 3)-core
    assert core.user_ids.tolist() == [0, 1, 2] and core.item_counts()[1:].tolist() == [3, 3]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_count": 0}, ValueError, "min_count must be >= 1; got 0"),
        ({"min_count": 2.5}, TypeError, "min_count must be an int; got float 2.5"),
        ({"min_user_len": 0}, ValueError, "min_user_len must be >= 1; got 0"),
        ({"iterate": 1}, TypeError, "iterate must be a bool; got int"),
        ({"min_count": 100}, DataError, "no interaction of 'toy' survives min_count=100"),
    ],
)
def test_bad_settings_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        filter_rare_items(_dataset(), **kwargs)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=15), min_size=1, max_size=12),
    st.integers(1, 4),
)
def test_every_kept_item_is_frequent_and_sequences_are_subsequences(seqs, k):
    ds = SequenceDataset.from_sequences(seqs, n_items=12)
    counts = ds.item_counts()
    if not (counts >= k).any():
        return
    out = filter_rare_items(ds, k)
    kept_raw = out.item_ids[1:].astype(int)
    assert (counts[kept_raw] >= k).all()
    assert set(kept_raw) == {i for i in range(1, 13) if counts[i] >= k}
    for new_u, raw_u in enumerate(out.user_ids):
        expect = [i for i in seqs[raw_u] if counts[i] >= k]
        assert out.item_ids[out.sequence(new_u)].astype(int).tolist() == expect
