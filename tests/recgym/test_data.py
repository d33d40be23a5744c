"""SequenceDataset: CSR invariants, builders, k-core, windows, id maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import DataError, SequenceDataset
from recgym.data import k_core_filter


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "u": ["bob", "bob", "bob", "amy", "amy", "amy", "amy"],
            "i": [30, 10, 20, 20, 40, 10, 30],
            "t": [5, 3, 3, 9, 7, 8, 1],
        }
    )


def test_from_interactions_orders_by_time_with_stable_ties():
    ds = SequenceDataset.from_interactions(_frame(), user_col="u", item_col="i", time_col="t")
    assert ds.n_users == 2 and ds.n_items == 4 and ds.n_interactions == 7
    assert list(ds.user_ids) == ["amy", "bob"]  # sorted raw ids
    assert list(ds.item_ids) == [None, 10, 20, 30, 40]  # sorted raw ids, 0 = padding
    # amy: t=1 (30), 7 (40), 8 (10), 9 (20); bob: t=3 (10), 3 (20) in input order, 5 (30)
    assert [ds.item_ids[i] for i in ds.sequence(0)] == [30, 40, 10, 20]
    assert [ds.item_ids[i] for i in ds.sequence(1)] == [10, 20, 30]
    assert ds.timestamps.tolist() == [1, 7, 8, 9, 3, 3, 5]
    assert ds.user_index("bob") == 1 and ds.item_index(40) == 4 and ds.item_index("40") == 4


def test_dataset_is_immutable():
    ds = SequenceDataset.from_interactions(_frame(), user_col="u", item_col="i", time_col="t")
    with pytest.raises(ValueError):
        ds.items[0] = 3
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_missing_column_error_names_columns():
    with pytest.raises(DataError, match=r"lacks column\(s\) \['ts'\]"):
        SequenceDataset.from_interactions(_frame(), user_col="u", item_col="i", time_col="ts")


def test_unknown_raw_ids_raise_keyerror():
    ds = SequenceDataset.from_sequences([[1, 2]], n_items=2)
    with pytest.raises(KeyError, match="unknown raw item id 7"):
        ds.item_index(7)
    with pytest.raises(IndexError, match="user index"):
        ds.sequence(5)


@pytest.mark.parametrize(
    ("offsets", "items", "match"),
    [
        ([0, 2], [1, 9], r"item ids must lie in \[1, n_items=3\]"),
        ([0, 1], [1, 2], "end at len"),
        ([0, 2], [0, 1], "0 is padding"),
    ],
)
def test_invalid_csr_rejected(offsets, items, match):
    with pytest.raises(DataError, match=match):
        SequenceDataset(
            name="bad",
            offsets=np.array(offsets),
            items=np.array(items),
            user_ids=np.array([0]),
            item_ids=np.array([None, 1, 2, 3], dtype=object),
        )


def test_k_core_is_iterative():
    # Item 9 has 1 interaction; dropping it leaves user "c" with 1 item, which must go too,
    # which in turn leaves item 3 with 1 interaction.
    df = pd.DataFrame(
        {"user": list("aabbcc"), "item": [1, 2, 1, 2, 3, 9], "timestamp": range(6)}
    )
    out = k_core_filter(df, user_col="user", item_col="item", k=2)
    assert sorted(out["user"].unique()) == ["a", "b"]
    assert sorted(out["item"].unique()) == [1, 2]
    ds = SequenceDataset.from_interactions(df, k_core=2)
    assert ds.n_users == 2 and ds.n_items == 2
    with pytest.raises(DataError, match="no interactions left"):
        SequenceDataset.from_interactions(df, k_core=5)


def test_item_frame_factors_align_and_infer_kinds():
    items = pd.DataFrame(
        {
            "genres": [["drama"], ["comedy", "drama"], None, ["horror"]],
            "year": [1990.0, 2000.0, np.nan, 1980.0],
            "studio": ["p", "q", "p", None],
        },
        index=[10, 20, 30, 40],
    )
    ds = SequenceDataset.from_interactions(
        _frame(), user_col="u", item_col="i", time_col="t", item_frame=items, n_bins=2
    )
    assert ds.factors.names == ("genres", "year", "studio")
    assert [f.kind for f in ds.factors.values()] == ["multi", "binned", "categorical"]
    genres = ds.factors["genres"]
    assert genres.labels([1, 2, 3, 4]) == ["drama", "comedy|drama", "<unk>", "horror"]
    assert ds.factors["studio"].labels([1, 4]) == ["p", "<unk>"]
    assert ds.factors["year"].codes[3] == 0  # NaN year -> unknown


def test_windows_left_pad_and_truncate(tiny_dataset):
    # user 3 = [7, 1, 3, 5, 2] at offsets[3] = 9
    start = tiny_dataset.offsets[3]
    win = tiny_dataset.windows(np.array([3, 3, 3]), np.array([start, start + 2, start + 5]), 3)
    assert win.tolist() == [[0, 0, 0], [0, 7, 1], [3, 5, 2]]
    assert win.dtype == torch.int64


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=8), min_size=1, max_size=6),
    st.integers(1, 6),
    st.data(),
)
def test_windows_match_python_slices(sequences, max_len, data):
    ds = SequenceDataset.from_sequences(sequences, n_items=9)
    users = np.arange(ds.n_users)
    ends = np.array(
        [data.draw(st.integers(ds.offsets[u], ds.offsets[u + 1])) for u in users], dtype=np.int64
    )
    win = ds.windows(users, ends, max_len).numpy()
    for u in users:
        seq = list(ds.items[ds.offsets[u] : ends[u]])[-max_len:]
        assert list(win[u]) == [0] * (max_len - len(seq)) + seq


def test_stats(tiny_dataset):
    s = tiny_dataset.stats()
    assert (s["users"], s["items"], s["interactions"], s["min_len"], s["max_len"]) == (
        5,
        7,
        20,
        2,
        6,
    )
