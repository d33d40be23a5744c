"""SASRec's ``user item`` pair files: parsing, validation, SAO's filter and the entry points.

Tiny files are written to ``tmp_path``; the real-data test converts S3-Rec's Beauty to pair format
in a temporary directory (skipped without ``../shared/data``).
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, require_data
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import DataError, DatasetNotFoundError, SequenceDataset
from recgym.cli import main as recgym_main
from recgym.datasets import load_dataset, load_s3rec, load_sasrec, write_sasrec
from recgym.datasets.sasrec import parse_sasrec_spec, read_sasrec_pairs
from recgym.filters import filter_rare_items

# Users 3 and 1 interleaved; user 3's lines come first; item 6 never occurs (ids kept: 7 items).
TOY = "3 2\n1 4\n3 7\n\n1 4\n3 1\n1 5\n1 2\n"
TOY_SEQUENCES = {1: [4, 4, 5, 2], 3: [2, 7, 1]}
TOY_POSITIONS = {1: [1, 3, 5, 6], 3: [0, 2, 4]}  # 0-based event positions in the file


def _write(tmp_path: Path, text: str, name: str = "Toy.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _sequences(ds: SequenceDataset) -> dict[int, list[int]]:
    """``{raw user id: [raw item id, ...]}``."""
    return {
        int(ds.user_ids[u]): [ds.item_ids[i] for i in ds.sequence(u)] for u in range(ds.n_users)
    }


# ----------------------------------------------------------------------------- parsing
def test_toy_file_matches_the_hand_built_dataset(tmp_path):
    ds = load_sasrec(_write(tmp_path, TOY))
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("sasrec-toy", 2, 7, 7)
    assert list(ds.user_ids) == [1, 3]  # sorted raw ids
    assert [ds.sequence(u).tolist() for u in range(2)] == [TOY_SEQUENCES[1], TOY_SEQUENCES[3]]
    assert _sequences(ds) == TOY_SEQUENCES  # ids kept: raw id i is item i
    assert ds.timestamps.tolist() == TOY_POSITIONS[1] + TOY_POSITIONS[3]
    assert ds.item_counts()[6] == 0 and ds.item_index(7) == 7
    assert load_sasrec(_write(tmp_path, TOY), name="mine").name == "mine"


def test_grouped_and_interleaved_files_give_the_same_sequences(tmp_path):
    grouped = "1 4\n1 4\n1 5\n1 2\n3 2\n3 7\n3 1\n"
    a = load_sasrec(_write(tmp_path, grouped, "grouped.txt"))
    b = load_sasrec(_write(tmp_path, TOY, "mixed.txt"))
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.items, b.items)


def test_tabs_crlf_and_signs_are_whitespace_and_integers(tmp_path):
    ds = load_sasrec(_write(tmp_path, "1\t4\r\n 1   +2 \r\n\r\n2 03\r\n"))
    assert _sequences(ds) == {1: [4, 2], 2: [3]}


def test_reindex_numbers_the_occurring_ids(tmp_path):
    ds = load_sasrec(_write(tmp_path, TOY), item_ids="reindex")
    assert ds.n_items == 5 and ds.item_ids.tolist() == [None, 1, 2, 4, 5, 7]
    assert _sequences(ds) == TOY_SEQUENCES
    assert ds.sequence(1).tolist() == [2, 5, 1]  # user 3: raw 2, 7, 1 -> 2, 5, 1


def test_sparse_raw_ids_are_refused_unless_reindexed(tmp_path):
    path = _write(tmp_path, "1 1000000000000\n1 5\n2 5\n")
    with pytest.raises(DataError, match=r"up to 1000000000000 but only 2 occur.*reindex"):
        load_sasrec(path)
    ds = load_sasrec(path, item_ids="reindex")
    assert ds.n_items == 2 and _sequences(ds) == {1: [1_000_000_000_000, 5], 2: [5]}


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 2\n1 x\n", r"Toy.txt, line 2: item must be an integer; got 'x'"),
        ("1 2\n\nu1 3\n", r"line 3: user must be an integer; got 'u1'"),
        ("1 2.0\n", r"line 1: item must be an integer; got '2.0'"),
        ("1 \u0663\n", r"line 1: item must be an integer"),  # a non-ASCII digit
        ("1 2\n1\n", r"line 2: expected 2 whitespace-separated fields \(user item\), got 1"),
        ("1 2 1700000000\n", r"line 1: expected 2 .* got 3: '1 2 1700000000'"),
        ("1 2\n1 0\n", r"line 2: item ids must be >= 1 \(1-based; 0 is padding\); got 0"),
        ("-4 2\n", r"line 1: user ids must be >= 1 .* got -4"),
        ("1 99999999999999999999\n", r"line 1: item must be an integer"),  # beyond int64
    ],
)
def test_a_bad_line_is_an_error_naming_file_line_and_value(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_sasrec(_write(tmp_path, text))


def test_the_first_bad_line_is_reported_with_the_count(tmp_path):
    path = _write(tmp_path, "1 2\n1 0\n1\n1 x\n2 y\n2 3\n")
    with pytest.raises(DataError, match=r"line 2: item ids .* \(4 bad line\(s\) in all"):
        read_sasrec_pairs(path)


def test_bad_rows_drop_and_warn(tmp_path):
    path = _write(tmp_path, "1 2\n1 x\n0 3\n1 2 3\n2 4\n")
    frame = read_sasrec_pairs(path, on_bad_rows="drop")
    assert frame.to_dict("list") == {"user": [1, 2], "item": [2, 4], "line": [1, 5]}
    assert frame.attrs["bad_rows"] == 3
    with pytest.warns(RuntimeWarning, match=r"skipped 3 bad line\(s\); the first: .*line 2"):
        ds = load_sasrec(path, on_bad_rows="warn")
    assert _sequences(ds) == {1: [2], 2: [4]}
    with pytest.raises(ValueError, match="on_bad_rows must be one of"):
        load_sasrec(path, on_bad_rows="skip")


@pytest.mark.parametrize("text", ["", "\n", " \n\t\n\r\n"])
def test_an_empty_file_is_an_error(tmp_path, text):
    with pytest.raises(DataError, match="Toy.txt is empty"):
        load_sasrec(_write(tmp_path, text))


def test_a_file_of_only_bad_lines_is_an_error_even_when_dropping(tmp_path):
    with pytest.raises(DataError, match="none of its 2 non-blank lines .* the first: .*line 1"):
        load_sasrec(_write(tmp_path, "a b\n0 0\n"), on_bad_rows="drop")


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not found.*kang205/SASRec"):
        load_sasrec(tmp_path / "Beauty.txt")
    path = _write(tmp_path, TOY)
    with pytest.raises(ValueError, match=r"item_ids must be one of \('keep', 'reindex'\)"):
        load_sasrec(path, item_ids="compact")
    with pytest.raises(TypeError, match="min_item_count must be an int or None; got float"):
        load_sasrec(path, min_item_count=2.0)
    with pytest.raises(ValueError, match="min_item_count must be >= 1"):
        load_sasrec(path, min_item_count=0)


# ----------------------------------------------------------------------------- SAO's filter
def test_min_item_count_is_saos_filter(tmp_path):
    path = _write(tmp_path, TOY + "2 7\n2 3\n")
    ds = load_sasrec(path, min_item_count=2)
    expected = filter_rare_items(load_sasrec(path), 2)
    np.testing.assert_array_equal(ds.items, expected.items)
    np.testing.assert_array_equal(ds.offsets, expected.offsets)
    # items 4, 2, 7 occur twice or more; 5, 1, 3 once; user 2 keeps item 7
    assert _sequences(ds) == {1: [4, 4, 2], 2: [7], 3: [2, 7]}
    assert ds.n_items == 3 and ds.item_ids.tolist() == [None, 2, 4, 7]
    with pytest.raises(DataError, match="no interaction .* survives min_count=3"):
        load_sasrec(path, min_item_count=3)


# ----------------------------------------------------------------------------- entry points
def test_load_dataset_spec_absolute_relative_and_options(tmp_path, monkeypatch):
    path = _write(tmp_path, TOY + "2 7\n2 3\n")
    monkeypatch.delenv("RECGYM_DATA_DIR", raising=False)
    assert _sequences(load_dataset(f"sasrec:{path}")) == _sequences(load_sasrec(path))
    assert load_dataset("sasrec:Toy.txt", data_dir=tmp_path).n_interactions == 9
    monkeypatch.chdir(tmp_path)
    assert load_dataset("sasrec:Toy.txt").n_interactions == 9  # the working directory first
    filtered = load_dataset(f"sasrec:{path}?min_item_count=2")
    assert filtered.n_items == 3 and filtered.n_interactions == 6
    assert load_dataset("sasrec:Toy.txt?item_ids=reindex,min_item_count=1").n_items == 6
    monkeypatch.setenv("RECGYM_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(REPO_ROOT)
    assert load_dataset("sasrec:Toy.txt").n_interactions == 9  # $RECGYM_DATA_DIR


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("sasrec:", "names no file"),
        ("sasrec:?min_item_count=2", "names no file"),
        ("sasrec:Toy.txt?min_count=10", "bad option 'min_count=10'"),
        ("sasrec:Toy.txt?min_item_count=ten", "bad option 'min_item_count=ten'"),
        ("sasrec:Toy.txt?item_ids=dense", r"expected 'sasrec:<path>' or .*item_ids=keep\|reindex"),
        ("sasrec:Toy.txt?min_item_count=2&item_ids=reindex", "bad option 'min_item_count=2&"),
    ],
)
def test_malformed_specs_show_the_expected_form(spec, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(spec)


def test_spec_options_and_missing_files(tmp_path, monkeypatch):
    assert parse_sasrec_spec("sasrec:a/b.txt?min_item_count=10,item_ids=reindex") == (
        "a/b.txt", {"min_item_count": 10, "item_ids": "reindex"}
    )  # fmt: skip
    monkeypatch.delenv("RECGYM_DATA_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"'nope.txt' not found; tried \['nope.txt', '"):
        load_dataset("sasrec:nope.txt", data_dir=tmp_path)
    path = _write(tmp_path, TOY)
    with pytest.raises(ValueError, match=f"pass 'sasrec:{path}'"):
        load_dataset(path)  # a bare .txt is not guessed: S3-Rec's files are .txt too
    with pytest.raises(ValueError, match="'sasrec:<path>' for a file in SASRec's"):
        load_dataset("Beauty")


def test_recgym_data_command_reads_a_pair_file(tmp_path, capsys):
    path = _write(tmp_path, TOY)
    assert recgym_main(["data", f"sasrec:{path}"]) == 0
    out = capsys.readouterr().out
    assert "SequenceDataset(name='sasrec-toy', users=2, items=7, interactions=7" in out
    assert "leave-one-out segments" in out


def _pair_file_for_reproduce(path: Path) -> Path:
    """30 users x 6 events over 12 items, users' lines interleaved."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"user": np.tile(np.arange(1, 31), 6), "item": rng.integers(1, 13, size=180)}
    )
    frame.to_csv(path, sep=" ", header=False, index=False)
    return path


def test_reproduce_runs_popularity_on_a_pair_file(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "reproduce", REPO_ROOT / "benchmarks/reproduce.py"
    )
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    path = _pair_file_for_reproduce(tmp_path / "Mine.txt")
    argv = ["--data", f"sasrec:{path}", "--models", "popularity", "--seeds", "0"]
    assert reproduce.main([*argv, "--out-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert results["data"].tolist() == [f"sasrec:{path}"] and results["model"].tolist() == [
        "popularity"
    ]
    assert 0 <= results["full/NDCG@10"].iloc[0] <= 1


# ----------------------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=8), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_writing_any_dataset_and_reading_it_back_gives_its_sequences(sequences, random):
    ds = SequenceDataset.from_sequences(sequences)
    with tempfile.TemporaryDirectory() as tmp:
        back = load_sasrec(write_sasrec(ds, Path(tmp) / "out.txt"))
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["out.txt"]  # no temp file left
        # the same events with users' lines interleaved at random, each user's order kept
        lines = [[f"{u + 1} {i}" for i in seq] for u, seq in enumerate(sequences)]
        merged = []
        while lines:
            k = random.randrange(len(lines))
            merged.append(lines[k].pop(0))
            lines = [rest for rest in lines if rest]
        mixed = load_sasrec(_write(Path(tmp), "\n".join(merged) + "\n", "mixed.txt"))
    for loaded in (back, mixed):
        assert loaded.n_items == ds.n_items and loaded.user_ids.tolist() == list(
            range(1, ds.n_users + 1)
        )
        np.testing.assert_array_equal(loaded.offsets, ds.offsets)
        np.testing.assert_array_equal(loaded.items, ds.items)


def _reference_pairs(text: str) -> list[tuple[int, int, int]]:
    """``(user, item, line)`` of the good lines, by the format's definition, line by line."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if len(fields) == 2 and all(re.fullmatch(r"[+-]?[0-9]{1,18}", f) for f in fields):
            if min(map(int, fields)) >= 1:
                rows.append((int(fields[0]), int(fields[1]), number))
    return rows


_PIECES = ["1", "2", "17", "0", "-3", "+4", "x", "2.5", " ", "  ", "\t", "\r", "\xa0", "\n"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_any_text_loads_exactly_the_lines_the_format_accepts(pieces):
    text = "".join(pieces)
    expected = _reference_pairs(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), text)
        if not expected:
            with pytest.raises(DataError):
                read_sasrec_pairs(path, on_bad_rows="drop")
            return
        frame = read_sasrec_pairs(path, on_bad_rows="drop")
        n_filled = sum(bool(line.strip()) for line in text.split("\n"))
        if n_filled > len(expected):  # a bad line is an error unless dropped
            with pytest.raises(DataError, match=r"line \d+: .* bad line\(s\) in all"):
                read_sasrec_pairs(path)
    assert list(frame.itertuples(index=False, name=None)) == expected
    assert frame.attrs["bad_rows"] == n_filled - len(expected)


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_s3rec_beauty_in_pair_format_loads_the_same_sequences(tmp_path):
    root = require_data("s3rec-amazon/Beauty.txt", "s3rec-amazon/Beauty_item2attributes.json")
    s3rec = load_s3rec(root / "s3rec-amazon", "Beauty")
    lines = (root / "s3rec-amazon" / "Beauty.txt").read_text().splitlines()
    pairs = [f"{user} {item}" for user, *items in map(str.split, lines) for item in items]
    pair_file = tmp_path / "Beauty.txt"  # a temporary copy, never in the repository
    pair_file.write_text("\n".join(pairs) + "\n")
    ds = load_dataset(f"sasrec:{pair_file}")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (22_363, 12_101, 198_502)
    np.testing.assert_array_equal(ds.user_ids, s3rec.user_ids.astype(np.int64))
    np.testing.assert_array_equal(ds.offsets, s3rec.offsets)
    np.testing.assert_array_equal(ds.items, s3rec.items)  # ids 1..12,101 all occur: kept as-is
    sao = load_dataset(f"sasrec:{pair_file}?min_item_count=10")
    expected = filter_rare_items(s3rec, 10)
    assert sao.n_items == expected.n_items < ds.n_items
    np.testing.assert_array_equal(sao.items, expected.items)
    np.testing.assert_array_equal(sao.offsets, expected.offsets)
