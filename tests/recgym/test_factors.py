"""Item factors: categorical, multi-valued and quantile-binned numeric."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.factors import ItemFactor, ItemFactors, binned_factor, categorical_factor, multi_factor


def test_categorical_unknown_is_zero():
    f = categorical_factor("dev", ["b", None, "a", "b", ""])
    assert f.vocab == ("<unk>", "a", "b")
    assert f.codes.tolist() == [0, 2, 0, 1, 2, 0]
    assert f.n_values == 3 and f.width == 1


def test_multi_factor_pads_and_dedups():
    f = multi_factor("genres", [["x", "y", "x"], [], None, ["z"]])
    assert f.width == 2
    assert f.values.tolist() == [[0, 0], [1, 2], [0, 0], [0, 0], [3, 0]]
    with pytest.raises(ValueError, match="multi-valued"):
        _ = f.codes


def test_binned_quantiles_and_nan():
    f = binned_factor("price", [1, 2, 3, 4, np.nan, 5, 6, 7, 8], n_bins=4)
    codes = f.codes[1:]
    assert codes[4] == 0
    finite = codes[codes > 0]
    assert finite.min() == 1 and finite.max() == 4
    assert np.all(np.diff(finite) >= 0)  # monotone in the value
    assert f.vocab[1].startswith("[") and f.vocab[2].startswith("(")


def test_binned_collapses_duplicate_edges():
    f = binned_factor("price", [0, 0, 0, 0, 0, 0, 9.99], n_bins=10)
    assert f.codes[1:].tolist() == [1, 1, 1, 1, 1, 1, 2]
    assert f.vocab == ("<unk>", "[0, 0]", "(0, 9.99]")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.integers(1, 12))
def test_binned_codes_in_vocab_and_monotone(values, n_bins):
    f = binned_factor("x", values, n_bins=n_bins)
    codes = f.codes[1:]
    assert codes.min() >= 1 and codes.max() < f.n_values <= n_bins + 1
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(codes[order]) >= 0)


def test_item_factor_validation():
    with pytest.raises(ValueError, match="row 0"):
        ItemFactor(name="g", kind="categorical", values=np.array([[1], [1]]), vocab=("<unk>", "a"))
    with pytest.raises(ValueError, match=r"value ids must lie in \[0, 1\]"):
        ItemFactor(name="g", kind="categorical", values=np.array([[0], [5]]), vocab=("<unk>", "a"))
    with pytest.raises(ValueError, match="kind must be one of"):
        ItemFactor(name="g", kind="tag", values=np.zeros((2, 1), int), vocab=("<unk>",))


def test_item_factors_table(tiny_dataset):
    table = tiny_dataset.factors
    assert table.names == ("genre", "tags", "price")
    assert table.without("tags").names == ("genre", "price")
    assert table.select(["price", "genre"]).names == ("price", "genre")
    with pytest.raises(KeyError, match="available"):
        table["year"]
    with pytest.raises(ValueError, match="covers 2 items"):
        ItemFactors(n_items=7, factors=(categorical_factor("g", ["a", "b"]),))
    assert table["genre"].as_tensor().shape == (8, 1)
