"""Dataset loaders: real-data counts (skipped without ../shared/data) and offline behaviour.

Nothing here touches the network: downloads use ``file://`` URLs or a patched ``urlopen``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import shutil
import tempfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_data
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import ChecksumError, DataError, DatasetNotFoundError, SequenceDataset, leave_one_out
from recgym.datasets import (
    DATASET_NAMES,
    download_file,
    extract_zip,
    load_dataset,
    load_interactions,
    load_movielens_1m,
    load_movielens_100k,
    load_s3rec,
    load_steam_catalogue,
    movielens,
)

ML_GENRES_1M = {
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
}  # fmt: skip


def _sorted_within_users(ds: SequenceDataset) -> bool:
    ts = np.asarray(ds.timestamps, dtype=np.float64)
    same_user = np.diff(np.repeat(np.arange(ds.n_users), ds.lengths)) == 0
    return bool(np.all(np.diff(ts)[same_user] >= 0))


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_movielens_100k_counts_factors_and_split():
    root = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    ds = load_movielens_100k(root / "movielens-100k")
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("ml-100k", 943, 1682, 100_000)
    genres, year = ds.factors["genres"], ds.factors["year"]
    assert genres.kind == "multi" and genres.n_values - 1 == 19
    assert "Sci-Fi" in genres.vocab and "unknown" in genres.vocab
    assert year.kind == "binned" and year.n_values > 1
    item_267 = ds.item_index(267)
    assert year.codes[item_267] == 0  # the one movie without a release date
    assert genres.labels([ds.item_index(1)]) == ["Animation|Children's|Comedy"]
    assert _sorted_within_users(ds)
    split = leave_one_out(ds)
    assert len(split.targets("valid")[0]) == 943 and len(split.targets("test")[0]) == 943
    assert split.segment_sizes()["train"] == 98_114


@pytest.mark.realdata
def test_movielens_100k_via_load_dataset_and_filters():
    root = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    by_name = load_dataset("ml-100k", data_dir=root)
    by_path = load_dataset(root / "movielens-100k")
    np.testing.assert_array_equal(by_name.items, by_path.items)
    liked = load_movielens_100k(root / "movielens-100k", min_rating=4)
    assert liked.n_interactions == 34_174 + 21_201
    cored = load_movielens_100k(root / "movielens-100k", min_rating=4, k_core=10)
    assert cored.item_counts()[1:].min() >= 10 and cored.lengths.min() >= 10


@pytest.mark.realdata
def test_s3rec_beauty_counts_attributes_and_split():
    root = require_data("s3rec-amazon/Beauty.txt", "s3rec-amazon/Beauty_item2attributes.json")
    ds = load_dataset("amazon-beauty", data_dir=root)
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == (
        "amazon-beauty", 22_363, 12_101, 198_502
    )  # fmt: skip
    attributes = ds.factors["attributes"]
    assert attributes.kind == "multi" and attributes.n_values - 1 == 637
    assert (attributes.values[1:] > 0).any(axis=1).all()  # every item has attributes
    first = (root / "s3rec-amazon" / "Beauty.txt").read_text().split("\n", 1)[0].split()
    assert [ds.item_ids[i] for i in ds.sequence(ds.user_index(int(first[0])))] == [
        int(x) for x in first[1:]
    ]
    assert len(leave_one_out(ds).targets("test")[0]) == 22_363


@pytest.mark.realdata
def test_s3rec_sports_counts():
    root = require_data("s3rec-amazon/Sports_and_Outdoors.txt")
    ds = load_s3rec(root / "s3rec-amazon", "Sports_and_Outdoors")
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == (
        "amazon-sports", 35_598, 18_357, 296_337
    )  # fmt: skip
    assert ds.factors["attributes"].n_values - 1 == 2_277
    with pytest.raises(ValueError, match="several S3-Rec datasets"):
        load_dataset(root / "s3rec-amazon")


@pytest.mark.realdata
def test_steam_catalogue_parses_and_feeds_item_frame():
    root = require_data("steam/steam_games.json.gz")
    games = load_steam_catalogue(root / "steam")
    assert 32_000 <= len(games) <= 32_135 and games.index.is_unique
    assert list(games.columns) == ["price", "developer", "genres", "year"]
    assert games["price"].dtype == np.float64
    assert games.loc["643980", "price"] == 0.0  # "Free To Play"
    assert games.loc["761140", "price"] == pytest.approx(4.99)
    assert not games["developer"].dropna().str.contains("&amp;").any()
    assert games["year"].between(1970, 2021).sum() > 29_000
    frame = pd.DataFrame(
        {"user": [1, 1, 2], "item": ["761140", "643980", "761140"], "t": [0, 1, 0]}
    )
    ds = SequenceDataset.from_interactions(frame, time_col="t", item_frame=games, name="steam")
    assert set(ds.factors.names) == {"price", "developer", "genres", "year"}
    assert ds.factors["genres"].labels([ds.item_index("643980")]) == [
        "Free to Play|Indie|RPG|Strategy"
    ]


@pytest.mark.realdata
def test_movielens_1m_on_temp_dir(tmp_path):
    root = require_data("movielens-1m/movies.dat")
    shutil.copy(root / "movielens-1m" / "movies.dat", tmp_path / "movies.dat")
    ratings = ["1::1193::5::978300760", "1::661::3::978302109", "2::1::4::978300000",
               "1::1::4::978300000", "2::3952::2::978300001", "3::1193::1::5"]  # fmt: skip
    (tmp_path / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match="has 6 rows but the published movielens-1m/ratings.dat"):
        load_movielens_1m(tmp_path)  # not the release: refused unless asked for
    ds = load_movielens_1m(tmp_path, verify=False)
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("ml-1m", 3, 4, 6)
    assert [ds.item_ids[i] for i in ds.sequence(0)] == [1, 1193, 661]
    genres = ds.factors["genres"]
    assert set(genres.vocab[1:]) <= ML_GENRES_1M
    assert genres.labels([ds.item_index(1)]) == ["Animation|Children's|Comedy"]
    year = ds.factors["year"]
    assert (year.codes[1:] > 0).all()  # every title ends in "(yyyy)"
    assert load_dataset(tmp_path, verify=False).n_interactions == 6


# ----------------------------------------------------------------------------- offline
def test_missing_movielens_names_files_dirs_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens_100k(cache_dir=tmp_path / "cache")
    message = str(info.value)
    for part in ("u.data", "u.item", str(tmp_path / "data" / "movielens-100k"),
                 str(tmp_path / "cache" / "movielens-100k"), movielens.ML_100K.url):  # fmt: skip
        assert part in message
    with pytest.raises(DatasetNotFoundError, match="ratings.dat"):
        load_movielens_1m(tmp_path)


def _fake_ml100k_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n1\t20\t3\t50\n2\t10\t4\t70\n")
        flags = "|".join(["0"] * 18 + ["1"])
        zf.writestr(
            "ml-100k/u.item",
            (f"10|A (1990)|01-Jan-1990||url|{flags}\n20|Misérables|||url|{flags}\n").encode(
                "latin-1"
            ),
        )
    return path


def test_movielens_download_with_good_and_bad_checksum(tmp_path, monkeypatch):
    archive = _fake_ml100k_zip(tmp_path / "upstream.zip")
    good = hashlib.md5(archive.read_bytes()).hexdigest()
    fake = dataclasses.replace(movielens.ML_100K, url=archive.as_uri(), md5="0" * 32)
    monkeypatch.setattr(movielens, "ML_100K", fake)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="0" * 32):
        load_movielens_100k(cache_dir=cache, download=True)
    assert not any(p.is_file() for p in cache.rglob("*"))
    monkeypatch.setattr(movielens, "ML_100K", dataclasses.replace(fake, md5=good))
    ds = load_movielens_100k(cache_dir=cache, download=True, verify=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    assert [ds.item_ids[i] for i in ds.sequence(0)] == [20, 10]  # ordered by timestamp
    assert sorted(p.name for p in cache.rglob("*")) == ["movielens-100k", "u.data", "u.item"]


def test_download_file_verifies_and_is_atomic(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"recgym" * 1000)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    out_dir = tmp_path / "out"
    dest = download_file(source.as_uri(), out_dir / "f.bin", md5=md5, sha256=sha.upper())
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(ChecksumError, match=f"expected {'f' * 64}, got {sha}"):
        download_file(source.as_uri(), out_dir / "g.bin", sha256="f" * 64)
    assert sorted(p.name for p in out_dir.iterdir()) == ["f.bin"]  # no partial or bad file


def test_download_network_failure_carries_hint(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DatasetNotFoundError, match="put u.data in /somewhere"):
        download_file(
            "https://example.org/x.zip", tmp_path / "x.zip", hint="put u.data in /somewhere"
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetNotFoundError, match="no route to host"):
        load_movielens_100k(tmp_path / "ml", download=True)


def test_extract_zip_atomic_and_merge(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        extract_zip(bad, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]
    archive = _fake_ml100k_zip(tmp_path / "a.zip")
    with pytest.raises(DataError, match="no folder 'ml-1m'"):
        extract_zip(archive, tmp_path / "dest", root="ml-1m")
    existing = tmp_path / "dest"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    extract_zip(archive, existing, root="ml-100k")
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt", "u.data", "u.item"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "bad.zip", "dest"]


def test_s3rec_small_files(tmp_path):
    (tmp_path / "Toy.txt").write_text("2 5 3 5\n\n1 1 2\n7\n")
    (tmp_path / "Toy_item2attributes.json").write_text('{"1": [1], "2": [1, 2], "3": [3]}')
    ds = load_s3rec(tmp_path, "Toy")
    assert ds.name == "amazon-toy" and list(ds.user_ids) == [1, 2]  # user 7 has no items
    assert [list(ds.item_ids[ds.sequence(u)]) for u in range(2)] == [[1, 2], [5, 3, 5]]
    assert ds.factors["attributes"].labels([ds.item_index(2), ds.item_index(5)]) == ["1|2", "<unk>"]
    (tmp_path / "Toy.txt").write_text("1 2 x\n")
    with pytest.raises(DataError, match="integers"):
        load_s3rec(tmp_path, "Toy")
    with pytest.raises(DatasetNotFoundError, match="Nope_item2attributes.json"):
        load_s3rec(tmp_path, "Nope")


def test_steam_small_catalogue(tmp_path):
    lines = [
        "{u'id': u'10', u'price': 9.99, u'developer': u'A &amp; B', u'genres': [u'Action'],"
        " u'release_date': u'2014-05-01'}",
        "{u'id': u'11', u'price': u'Free to Play', u'release_date': u'Oct 2010'}",
        "{u'id': u'12', u'price': u'Install Now', u'early_access': True}",
        "{u'id': u'10', u'price': 1.0}",
        "{u'price': 3.0}",
    ]
    path = tmp_path / "steam_games.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    games = load_steam_catalogue(tmp_path)
    assert list(games.index) == ["10", "11", "12"]
    np.testing.assert_array_equal(games["price"].to_numpy(), [9.99, 0.0, np.nan])
    assert games.loc["10", "developer"] == "A & B"
    assert games["genres"].tolist() == [["Action"], [], []]
    np.testing.assert_array_equal(games["year"].to_numpy(), [2014.0, 2010.0, np.nan])
    with pytest.raises(DatasetNotFoundError, match="steam_games.json.gz"):
        load_steam_catalogue(tmp_path / "missing")


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": ["u2", "u1", "u1", "u2", "u1"],
            "item": [30, 10, 20, 10, 30],
            "timestamp": [5, 3, 1, 2, 2],
            "rating": [1, 2, 3, 4, 5],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".parquet"])
def test_generic_round_trip(tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
        _events().to_parquet(path)
    else:
        _events().to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    ds = load_interactions(path)
    assert ds.name == "events" and list(ds.user_ids) == ["u1", "u2"]
    assert [list(ds.item_ids[ds.sequence(u)]) for u in range(2)] == [[20, 30, 10], [10, 30]]
    assert load_dataset(path).n_interactions == 5


def test_generic_errors(tmp_path):
    path = tmp_path / "events.csv"
    _events().drop(columns="timestamp").to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['timestamp'\].*time_col=None"):
        load_interactions(path)
    assert load_interactions(path, time_col=None).n_interactions == 5
    with pytest.raises(DataError, match=r"\['who'\]"):
        load_interactions(path, user_col="who", time_col=None)
    odd = tmp_path / "events.json"
    odd.write_text("{}")
    with pytest.raises(ValueError, match=r"\.csv.*\.parquet"):
        load_interactions(odd)
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_interactions(tmp_path / "nope.csv")


def test_load_dataset_names_and_paths(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="ml-100k.*amazon-sports"):
        load_dataset("ml-10m")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nothing.csv")
    with pytest.raises(DataError, match="no known dataset layout"):
        load_dataset(tmp_path)
    monkeypatch.delenv("RECGYM_DATA_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError, match="Beauty.txt.*RECGYM_DATA_DIR"):
        load_dataset("amazon-beauty")
    with pytest.raises(DatasetNotFoundError, match="u.data"):
        load_dataset("ml-100k", data_dir=tmp_path)
    assert set(DATASET_NAMES) == {"ml-100k", "ml-1m", "amazon-beauty", "amazon-sports"}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 9), st.integers(0, 3)), min_size=1, max_size=30
    )
)
def test_generic_csv_matches_stable_sort(rows):
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        frame.to_csv(path, index=False)
        ds = load_interactions(path, duplicates="keep")
    expected = frame.sort_values(["user", "timestamp"], kind="stable").groupby("user")["item"]
    assert list(ds.user_ids) == sorted(frame["user"].unique())
    for u, (_, items) in enumerate(expected):
        assert list(ds.item_ids[ds.sequence(u)]) == items.tolist()


def test_download_streams_through_patched_urlopen(tmp_path, monkeypatch):
    payload = b"x" * (3 << 20)  # several chunks

    class Response(io.BytesIO):
        pass

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Response(payload))
    dest = download_file(
        "https://example.org/big", tmp_path / "big", md5=hashlib.md5(payload).hexdigest()
    )
    assert dest.stat().st_size == len(payload)
