"""Dataset loaders: MovieLens, S3-Rec Amazon, SASRec's pair files, Steam catalogue, CSV/Parquet.

No data ships with recgym (the licences forbid redistribution). Loaders read local files
(``$RECGYM_DATA_DIR``, or explicit paths); MovieLens can also be downloaded and MD5-checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from recgym.data import SequenceDataset
from recgym.datasets.amazon import S3REC_SOURCE, load_s3rec, s3rec_files
from recgym.datasets.download import default_cache_dir, download_file, extract_zip, file_digest
from recgym.datasets.generic import SUPPORTED_SUFFIXES, load_interactions, table_format
from recgym.datasets.movielens import load_movielens_1m, load_movielens_100k
from recgym.datasets.sasrec import SPEC_PREFIX, load_sasrec, load_sasrec_spec, write_sasrec
from recgym.datasets.steam import load_steam_catalogue
from recgym.errors import DataError, DatasetNotFoundError

__all__ = [
    "DATASET_NAMES",
    "default_cache_dir",
    "download_file",
    "extract_zip",
    "file_digest",
    "load_dataset",
    "load_interactions",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_s3rec",
    "load_sasrec",
    "load_steam_catalogue",
    "write_sasrec",
]

_S3REC_DIR = "s3rec-amazon"
_MOVIELENS: dict[str, tuple[str, Callable[..., SequenceDataset]]] = {
    "ml-100k": ("movielens-100k", load_movielens_100k),
    "ml-1m": ("movielens-1m", load_movielens_1m),
}
_AMAZON = {"amazon-beauty": "Beauty", "amazon-sports": "Sports_and_Outdoors"}
DATASET_NAMES = (*_MOVIELENS, *_AMAZON)


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    verify: bool = True,
) -> SequenceDataset:
    """Load a dataset by name or from a path.

    Names: ``"ml-100k"``, ``"ml-1m"`` (``<data_dir>/movielens-100k`` resp. ``movielens-1m``;
    with no ``data_dir`` the MovieLens loaders search ``$RECGYM_DATA_DIR`` and the cache),
    ``"amazon-beauty"``, ``"amazon-sports"`` (S3-Rec files under ``<data_dir>/s3rec-amazon``).
    A path may be a directory in one of those layouts or a ``.csv``/``.tsv``/``.parquet``
    interaction file (columns ``user``, ``item``, ``timestamp``). ``"sasrec:<path>"`` loads a
    file in SASRec's ``user item`` pair format (:func:`load_sasrec`; a relative path is looked
    up in the working directory, then under ``data_dir``); ``"sasrec:<path>?min_item_count=10"``
    applies SAO's item filter (no published checksums: ``verify`` does not apply).

    Args:
        name_or_path: a name from :data:`DATASET_NAMES` or a path.
        data_dir: the root holding the per-dataset folders; defaults to ``$RECGYM_DATA_DIR``.
        download: download MovieLens when missing (other datasets cannot be downloaded).
        verify: check a known dataset's files against the published row counts and SHA-256
            (:mod:`recgym.datasets.releases`); ``False`` loads a modified copy.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
        DatasetNotFoundError: the files are missing (the message says which and where).
        DataError: a directory matches no known layout.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASET_NAMES:
        return _load_named(name_or_path, data_dir=data_dir, download=download, verify=verify)
    if isinstance(name_or_path, str) and name_or_path.startswith(SPEC_PREFIX):
        return load_sasrec_spec(name_or_path, data_dir=data_dir)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _load_path(path, verify=verify)
    text = str(name_or_path)
    if isinstance(name_or_path, str) and os.sep not in text and not Path(text).suffix:
        raise ValueError(
            f"unknown dataset {text!r}; valid names are {list(DATASET_NAMES)}, or pass the path "
            f"of a dataset directory or of a {list(SUPPORTED_SUFFIXES)} interaction file, or "
            f"'{SPEC_PREFIX}<path>' for a file in SASRec's 'user item' pair format"
        )
    raise DatasetNotFoundError(f"dataset path does not exist: {path}")


def _load_named(
    name: str, *, data_dir: str | os.PathLike | None, download: bool, verify: bool
) -> SequenceDataset:
    if name in _MOVIELENS:
        subdir, loader = _MOVIELENS[name]
        path = Path(data_dir).expanduser() / subdir if data_dir is not None else None
        return loader(path, download=download, verify=verify)
    root = data_dir if data_dir is not None else os.environ.get("RECGYM_DATA_DIR")
    files = list(s3rec_files(_AMAZON[name]))
    if root is None:
        raise DatasetNotFoundError(
            f"{name} needs {files} in <data_dir>/{_S3REC_DIR}; pass data_dir= or set "
            f"RECGYM_DATA_DIR. The files come from {S3REC_SOURCE} (no automatic download)."
        )
    return load_s3rec(Path(root).expanduser() / _S3REC_DIR, _AMAZON[name], verify=verify)


def _load_path(path: Path, *, verify: bool) -> SequenceDataset:
    if path.is_file():
        if table_format(path) is None:
            hint = (f"; for SASRec's 'user item' pair format pass '{SPEC_PREFIX}{path}'"
                    if path.suffix.lower() == ".txt" else "")  # fmt: skip
            raise ValueError(
                f"cannot load {path.name!r}: expected a dataset directory or a "
                f"{list(SUPPORTED_SUFFIXES)} interaction file{hint}"
            )
        return load_interactions(path)
    if (path / "u.data").is_file() and (path / "u.item").is_file():
        return load_movielens_100k(path, verify=verify)
    if (path / "ratings.dat").is_file() and (path / "movies.dat").is_file():
        return load_movielens_1m(path, verify=verify)
    stems = sorted(
        p.name.removesuffix("_item2attributes.json")
        for p in path.glob("*_item2attributes.json")
        if (path / s3rec_files(p.name.removesuffix("_item2attributes.json"))[0]).is_file()
    )
    if len(stems) == 1:
        return load_s3rec(path, stems[0], verify=verify)
    if len(stems) > 1:
        raise ValueError(
            f"{path} holds several S3-Rec datasets {stems}; choose one with "
            f"recgym.datasets.load_s3rec({str(path)!r}, name=...)"
        )
    raise DataError(
        f"{path} matches no known dataset layout: expected u.data + u.item (ML-100K), "
        f"ratings.dat + movies.dat (ML-1M) or <name>.txt + <name>_item2attributes.json (S3-Rec). "
        f"A Steam catalogue is item metadata only: use load_steam_catalogue()."
    )
