"""Strict loading: every malformed input is a clear error or an exact load, never a quiet change."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recgym import DataError, SequenceDataset
from recgym.datasets import load_interactions, load_movielens_100k, load_s3rec
from recgym.datasets.strict_text import read_delimited

RATINGS = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}


@pytest.fixture
def ml100k_copy(tmp_path):
    """A writable copy of the real ML-100K files (the test skips without them)."""
    root = require_data("movielens-100k/u.data", "movielens-100k/u.item") / "movielens-100k"
    for name in ("u.data", "u.item", "u.genre"):
        shutil.copy(root / name, tmp_path / name)
    return tmp_path


def edit_line(path: Path, line: int, text: str | None) -> None:
    """Replace 1-based ``line`` of ``path`` by ``text`` (``None`` deletes it)."""
    lines = path.read_text().split("\n")
    lines[line - 1 : line] = [] if text is None else [text]
    path.write_text("\n".join(lines))


# ----------------------------------------------------------------------------- MovieLens
@pytest.mark.realdata
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("garbage line", r"line 500: expected 4 fields .* got 1: \['garbage line'\]"),
        ("1\t2\t3\tyesterday", r"line 500: column 'timestamp' must be an integer; got 'yesterday'"),
        ("1\tx42\t3\t881250949", r"line 500: column 'item' must be an integer; got 'x42'"),
        ("1\t2\t3\t881250949\t7", r"line 500: expected 4 fields .* got 5"),
        ("1\t2\t3", r"line 500: expected 4 fields .* got 3"),
        ("x\t2\t3\t881250949", r"line 500: column 'user' must be an integer; got 'x'"),
    ],
)
def test_one_bad_line_in_ml100k_is_an_error_naming_file_line_and_value(ml100k_copy, text, match):
    edit_line(ml100k_copy / "u.data", 500, text)
    with pytest.raises(DataError, match=match) as info:
        load_movielens_100k(ml100k_copy)
    assert str(ml100k_copy / "u.data") in str(info.value)
    # skipping it is a choice the user makes, and the count is reported
    with pytest.warns(RuntimeWarning, match="skipped 1 bad line"):
        ds = load_movielens_100k(ml100k_copy, on_bad_rows="warn", verify=False)
    assert ds.n_interactions == 99_999
    assert all(isinstance(i, (int, np.integer)) for i in ds.item_ids[1:])  # ids stay ints


@pytest.mark.realdata
def test_a_truncated_or_partial_ml100k_never_loads_quietly(ml100k_copy):
    data = (ml100k_copy / "u.data").read_bytes()
    cuts = [len(data) // 2 + k for k in range(4)]  # mid-line at 4 different offsets
    for cut in cuts + [data.index(b"\n", len(data) // 2) + 1]:  # and at a line boundary
        (ml100k_copy / "u.data").write_bytes(data[:cut])
        with pytest.raises(DataError, match=r"u\.data"):
            load_movielens_100k(ml100k_copy)
    first_half = b"\n".join(data.split(b"\n")[:50_000]) + b"\n"
    (ml100k_copy / "u.data").write_bytes(first_half)
    with pytest.raises(DataError, match="has 50,000 rows but the published movielens-100k/u.data"):
        load_movielens_100k(ml100k_copy)
    # a line edited into another valid one: only the digest can tell
    (ml100k_copy / "u.data").write_bytes(data.replace(b"\t3\t", b"\t4\t", 1))
    with pytest.raises(DataError, match="SHA-256"):
        load_movielens_100k(ml100k_copy)
    assert load_movielens_100k(ml100k_copy, verify=False).n_interactions == 100_000


# ----------------------------------------------------------------------------- tables
def test_time_columns_must_order_as_numbers_or_datetimes():
    frame = pd.DataFrame({"user": [1, 1, 1, 1], "item": [1, 2, 3, 4],
                          "timestamp": ["9", "10", "100", "1000"]})  # fmt: skip
    with pytest.raises(DataError, match="time column 'timestamp' must be numeric or datetime64"):
        SequenceDataset.from_interactions(frame)  # would sort as text: 10, 100, 1000, 9
    numeric = SequenceDataset.from_interactions(frame.assign(timestamp=lambda f: f.timestamp
                                                             .astype(int)))  # fmt: skip
    assert numeric.item_ids[numeric.sequence(0)].tolist() == [1, 2, 3, 4]
    dates = frame.assign(timestamp=pd.to_datetime(["2020-03-01", "2020-01-01", "2020-02-01",
                                                   "2019-12-31"]))  # fmt: skip
    by_date = SequenceDataset.from_interactions(dates)
    assert by_date.item_ids[by_date.sequence(0)].tolist() == [4, 2, 3, 1]
    with pytest.raises(DataError, match=r"1 missing value\(s\), the first in row 2"):
        SequenceDataset.from_interactions(frame.assign(timestamp=[1.0, 2.0, np.nan, 3.0]))


def test_ids_of_mixed_types_or_missing_are_errors():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [10, "10", 11], "timestamp": [1, 2, 3]})
    with pytest.raises(DataError, match=r"column 'item' mixes id types: 10 \(number\) .* '10'"):
        SequenceDataset.from_interactions(frame)
    with pytest.raises(DataError, match=r"column 'user' has 1 missing id"):
        SequenceDataset.from_interactions(frame.assign(user=[1, None, 2], item=[10, 12, 11]))


def test_duplicate_rows_follow_the_documented_policy():
    frame = pd.DataFrame({"user": [1, 1, 1, 2], "item": [5, 6, 6, 5], "timestamp": [1, 2, 2, 1]})
    with pytest.warns(RuntimeWarning, match=r"1 row\(s\) repeat an earlier row"):
        ds = SequenceDataset.from_interactions(frame)
    assert ds.n_interactions == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SequenceDataset.from_interactions(frame, duplicates="drop").n_interactions == 3
        assert SequenceDataset.from_interactions(frame, duplicates="keep").n_interactions == 4
    with pytest.raises(DataError, match="row 2 = \\[1, 6, 2\\]"):
        SequenceDataset.from_interactions(frame, duplicates="error")
    with pytest.raises(ValueError, match="duplicates must be one of"):
        SequenceDataset.from_interactions(frame, duplicates="first")


def test_text_files_name_their_encoding_problem(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes("user,item,timestamp\nzoë,café,1\nzoë,thé,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"log\.csv: cannot decode it as utf-8 .*latin-1"):
        load_interactions(path)
    ds = load_interactions(path, encoding="latin-1")
    assert ds.item_ids[ds.sequence(0)].tolist() == ["café", "thé"]


def test_a_truncated_s3rec_attribute_file_names_the_file(tmp_path):
    (tmp_path / "Toy.txt").write_text("1 1 2 3\n2 2 3\n")
    attrs = json.dumps({"1": [1], "2": [2], "3": [1, 2]})
    (tmp_path / "Toy_item2attributes.json").write_text(attrs[: len(attrs) // 2])
    with pytest.raises(DataError, match=r"Toy_item2attributes\.json: not valid JSON"):
        load_s3rec(tmp_path, "Toy")


@pytest.mark.realdata
def test_a_modified_s3rec_beauty_is_refused(tmp_path):
    root = require_data("s3rec-amazon/Beauty.txt") / "s3rec-amazon"
    for name in ("Beauty.txt", "Beauty_item2attributes.json"):
        shutil.copy(root / name, tmp_path / name)
    lines = (tmp_path / "Beauty.txt").read_text().split("\n")
    (tmp_path / "Beauty.txt").write_text("\n".join(lines[:-100]))
    with pytest.raises(DataError, match="rows but the published s3rec/Beauty.txt has 198,502"):
        load_s3rec(tmp_path, "Beauty")


# ----------------------------------------------------------------------------- properties
GOOD = "1\t10\t4\t100\n1\t11\t3\t101\n2\t10\t5\t99\n3\t12\t1.5\t7\n"


def reference_rows(text: str) -> list[tuple[int, int, float, int]]:
    """The lines a strict reader may accept, parsed by hand."""
    rows = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        ints = len(fields) == 4 and all(re.fullmatch(r"[+-]?\d{1,18}", fields[i])
                                        for i in (0, 1, 3))  # fmt: skip
        try:
            ok = ints and bool(np.isfinite(float(fields[2])))
        except ValueError:
            ok = False
        rows.append((int(fields[0]), int(fields[1]), float(fields[2]), int(fields[3]))
                    if ok else None)  # fmt: skip
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["replace", "delete", "insert", "truncate"]),
                  st.integers(0, len(GOOD) - 1),
                  st.sampled_from(list("0123456789\t\n .-xe") + ["nan", "inf", "1e3", "\r"])),
        min_size=1, max_size=4,
    )  # fmt: skip
)
def test_random_corruption_is_a_clear_error_or_an_exact_load(edits):
    text = GOOD
    for op, at, chars in edits:
        at = min(at, len(text))
        if op == "replace":
            text = text[:at] + chars + text[at + 1 :]
        elif op == "delete":
            text = text[:at] + text[at + 1 :]
        elif op == "insert":
            text = text[:at] + chars + text[at:]
        else:
            text = text[:at]
    expected = reference_rows(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.data"
        path.write_text(text, newline="")
        try:
            strict = read_delimited(path, sep="\t", columns=RATINGS)
        except DataError as err:
            assert str(path) in str(err) and None in expected
            strict = None
        dropped = read_delimited(path, sep="\t", columns=RATINGS, on_bad_rows="drop")
    good = [row for row in expected if row is not None]
    assert list(dropped.itertuples(index=False, name=None)) == good
    assert dropped.attrs["bad_rows"] == len(expected) - len(good)
    if strict is not None:
        assert None not in expected
        assert list(strict.itertuples(index=False, name=None)) == good
