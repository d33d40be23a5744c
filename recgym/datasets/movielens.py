"""MovieLens 100K and 1M (GroupLens) as sequence datasets with genre and year factors.

GroupLens terms allow research use only and forbid redistribution: the files are never shipped
with recgym. They are looked up locally (``$RECGYM_DATA_DIR/movielens-100k``, then the cache
directory) or, with ``download=True``, fetched from files.grouplens.org and verified by MD5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data import SequenceDataset
from recgym.datasets.download import default_cache_dir, download_file, extract_zip
from recgym.datasets.releases import verify_release
from recgym.datasets.strict_text import BadRows, check_bad_rows, read_delimited
from recgym.errors import DataError, DatasetNotFoundError

RATINGS = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}
"""The typed fields of a MovieLens ratings line."""

_TERMS = "GroupLens terms: research use only, no redistribution, cite Harper & Konstan 2015"
# Used when u.genre is absent; it is the order of the 19 flag columns of u.item.
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class _Release:
    """Where one GroupLens release lives locally and upstream."""

    name: str
    subdir: str
    files: tuple[str, ...]
    url: str
    md5: str  # published as <url>.md5 by GroupLens; matches the widely used values

    @property
    def zip_root(self) -> str:
        return self.name  # GroupLens zips hold one folder named like the release


ML_100K = _Release(
    name="ml-100k",
    subdir="movielens-100k",
    files=("u.data", "u.item"),
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    md5="0e33842e24a9c977be4e0107933c0723",
)
ML_1M = _Release(
    name="ml-1m",
    subdir="movielens-1m",
    files=("ratings.dat", "movies.dat"),
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    md5="c4d9eecfca2ab87c1945afe126590906",
)


def load_movielens_100k(
    path: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    n_bins: int = 10,
    on_bad_rows: BadRows = "error",
    verify: bool = True,
) -> SequenceDataset:
    """Load MovieLens 100K: 943 users, 1,682 items, 100,000 time-ordered ratings.

    Factors: ``genres`` (multi-valued, the 19 flags of ``u.item`` named in ``u.genre`` order)
    and ``year`` (release year from ``u.item``, ``n_bins`` quantile bins; item 267 has no date
    and gets the unknown bin). Timestamps are the ``u.data`` Unix times.

    Args:
        path: a directory holding ``u.data`` and ``u.item``; ``None`` searches
            ``$RECGYM_DATA_DIR/movielens-100k`` and then ``<cache_dir>/movielens-100k``.
        download: fetch and MD5-check the GroupLens zip when the files are missing (into
            ``path``, or the cache directory when ``path`` is ``None``).
        cache_dir: overrides :func:`default_cache_dir`.
        min_rating: keep only ratings ``>= min_rating`` (``None`` keeps all).
        k_core: optional k-core filter passed to :meth:`SequenceDataset.from_interactions`.
        n_bins: quantile bins of the ``year`` factor.
        on_bad_rows: a ``u.data`` line that is not four tab-separated numbers is an error
            (``"error"``, naming the line) or skipped (``"drop"``; ``"warn"`` also warns).
        verify: check ``u.data`` and ``u.item`` against the published row counts and SHA-256
            (:mod:`recgym.datasets.releases`); ``False`` loads a modified copy.

    Raises:
        DatasetNotFoundError: the files are missing and ``download`` is false (or fails).
        DataError: a bad line (with ``on_bad_rows="error"``), or a file that is not the
            published one (with ``verify``).
    """
    check_bad_rows(on_bad_rows)
    root = _locate(ML_100K, path, download=download, cache_dir=cache_dir)
    ratings = read_delimited(root / "u.data", sep="\t", columns=RATINGS, on_bad_rows=on_bad_rows)
    genre_names = _ml100k_genre_names(root)
    flag_cols = [f"g{i}" for i in range(len(genre_names))]
    items = _read_table(
        root / "u.item", sep="|", encoding="latin-1",
        names=["item", "title", "release", "video_release", "url", *flag_cols],
        dtype={"item": "int64", **dict.fromkeys(flag_cols, "int64")},
    )  # fmt: skip
    if verify:
        verify_release("movielens-100k/u.data", root / "u.data", ratings.attrs["bad_rows"]
                       + len(ratings))  # fmt: skip
        verify_release("movielens-100k/u.item", root / "u.item", len(items))
    item_idx, genre_idx = np.nonzero(items[flag_cols].to_numpy() == 1)
    genres = (
        pd.Series(np.asarray(genre_names, dtype=object)[genre_idx], index=items.index[item_idx])
        .groupby(level=0)
        .agg(list)
    )
    year = pd.to_numeric(items["release"].str.extract(r"(\d{4})\s*$")[0], errors="coerce")
    item_frame = pd.DataFrame({"genres": genres.reindex(items.index), "year": year})
    return _build(
        ratings, item_frame, min_rating=min_rating, k_core=k_core, n_bins=n_bins, name=ML_100K.name
    )


def load_movielens_1m(
    path: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    n_bins: int = 10,
    on_bad_rows: BadRows = "error",
    verify: bool = True,
) -> SequenceDataset:
    """Load MovieLens 1M: 6,040 users, 3,706 rated movies, 1,000,209 time-ordered ratings.

    Factors: ``genres`` (multi-valued, 18 genres from ``movies.dat``) and ``year`` (from the
    ``"(1995)"`` suffix of the title, ``n_bins`` quantile bins).

    Args:
        path: a directory holding ``ratings.dat`` and ``movies.dat``; ``None`` searches
            ``$RECGYM_DATA_DIR/movielens-1m`` and then ``<cache_dir>/movielens-1m``.
        download, cache_dir, min_rating, k_core, n_bins, on_bad_rows, verify: as in
            :func:`load_movielens_100k` (``ratings.dat``'s row count and ``movies.dat``'s
            SHA-256 are checked).

    Raises:
        DatasetNotFoundError: the files are missing and ``download`` is false (or fails).
        DataError: a bad line, or a file that is not the published one (see ``verify``).
    """
    check_bad_rows(on_bad_rows)
    root = _locate(ML_1M, path, download=download, cache_dir=cache_dir)
    ratings = read_delimited(root / "ratings.dat", sep="::", columns=RATINGS,
                             encoding="latin-1", on_bad_rows=on_bad_rows)  # fmt: skip
    movies = _read_table(
        root / "movies.dat", sep="::", encoding="latin-1", names=["item", "title", "genres"],
        dtype={"item": "int64"},
        engine="python",  # titles contain ":" so the C parser's single-char split cannot work
    )  # fmt: skip
    if verify:
        verify_release("movielens-1m/ratings.dat", root / "ratings.dat",
                       ratings.attrs["bad_rows"] + len(ratings))  # fmt: skip
        verify_release("movielens-1m/movies.dat", root / "movies.dat", len(movies))
    item_frame = pd.DataFrame(
        {
            "genres": movies["genres"].str.split("|"),
            "year": pd.to_numeric(
                movies["title"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce"
            ),
        }
    )
    return _build(
        ratings, item_frame, min_rating=min_rating, k_core=k_core, n_bins=n_bins, name=ML_1M.name
    )


def _build(
    ratings: pd.DataFrame,
    item_frame: pd.DataFrame,
    *,
    min_rating: float | None,
    k_core: int | tuple[int, int] | None,
    n_bins: int,
    name: str,
) -> SequenceDataset:
    if min_rating is not None:
        if isinstance(min_rating, bool) or not isinstance(min_rating, (int, float)):
            raise TypeError(f"min_rating must be a number or None; got {min_rating!r}")
        ratings = ratings[ratings["rating"] >= min_rating]
    return SequenceDataset.from_interactions(
        ratings,
        user_col="user",
        item_col="item",
        time_col="timestamp",
        item_frame=item_frame,
        factor_kinds={"genres": "multi", "year": "binned"},
        n_bins=n_bins,
        k_core=k_core,
        name=name,
    )


def _read_table(path: Path, *, sep: str, encoding: str, names: list[str], dtype: dict,
                engine: str = "c") -> pd.DataFrame:  # fmt: skip
    """An item table indexed by its int ``item`` column; a parse error names the file."""
    try:
        table = pd.read_csv(path, sep=sep, header=None, names=names, encoding=encoding,
                            dtype=dtype, engine=engine)  # fmt: skip
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot parse it as {len(names)} {sep!r}-separated fields "
                        f"{names} ({encoding}): {err}") from err  # fmt: skip
    if table["item"].duplicated().any():
        dup = int(table.loc[table["item"].duplicated(), "item"].iloc[0])
        raise DataError(f"{path}: item {dup} is listed twice")
    return table.set_index("item")


def _ml100k_genre_names(root: Path) -> tuple[str, ...]:
    genre_file = root / "u.genre"
    if not genre_file.exists():
        return _ML100K_GENRES
    table = pd.read_csv(genre_file, sep="|", header=None, names=["genre", "index"])
    return tuple(table.dropna().sort_values("index")["genre"].astype(str))


def _locate(
    release: _Release,
    path: str | os.PathLike | None,
    *,
    download: bool,
    cache_dir: str | os.PathLike | None,
) -> Path:
    """The directory holding ``release.files``, downloading it there if asked."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if path is not None:
        candidates = [Path(path).expanduser()]
    else:
        env = os.environ.get("RECGYM_DATA_DIR")
        candidates = [Path(env).expanduser() / release.subdir] if env else []
        candidates.append(cache / release.subdir)
    for candidate in candidates:
        if all((candidate / f).is_file() for f in release.files):
            return candidate
    target = candidates[-1]
    hint = (
        f"{release.name} needs the files {list(release.files)} in one directory; searched "
        f"{[str(c) for c in candidates]}. Download {release.url} ({_TERMS}), unzip it and put "
        f"the files of its '{release.zip_root}/' folder into {target}, or pass download=True."
    )
    if not download:
        raise DatasetNotFoundError(f"{release.name} not found locally. {hint}")
    archive = download_file(
        release.url, target.parent / f"{release.name}.zip", md5=release.md5, hint=hint
    )
    try:
        extract_zip(archive, target, root=release.zip_root)
    finally:
        archive.unlink(missing_ok=True)
    missing = [f for f in release.files if not (target / f).is_file()]
    if missing:
        raise DatasetNotFoundError(f"the downloaded {release.name} archive lacks {missing}")
    return target
