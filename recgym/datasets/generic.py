"""Any interaction log in CSV, TSV or Parquet as a sequence dataset."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from recgym.data import SequenceDataset
from recgym.data_checks import Duplicates
from recgym.errors import DataError, DatasetNotFoundError
from recgym.factors import FactorKind

_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
SUPPORTED_SUFFIXES = (*_SEPARATORS, ".parquet")


def table_format(path: str | os.PathLike) -> str | None:
    """The table suffix of ``path`` (``".csv"``, ``".tsv"``, ``".tab"``, ``".parquet"``) or None.

    A trailing compression suffix (``.gz``, ``.bz2``, ...) is looked through for text tables.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            return None  # parquet compresses internally; a compressed parquet file is not read
    return suffixes[-1] if suffixes and suffixes[-1] in SUPPORTED_SUFFIXES else None


def load_interactions(
    path: str | os.PathLike,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = "timestamp",
    sep: str | None = None,
    item_frame: pd.DataFrame | None = None,
    factor_kinds: Mapping[str, FactorKind] | None = None,
    k_core: int | tuple[int, int] | None = None,
    n_bins: int = 10,
    name: str | None = None,
    encoding: str = "utf-8",
    duplicates: Duplicates = "warn",
) -> SequenceDataset:
    """Load a long interaction table (one row per event) from CSV/TSV or Parquet.

    Args:
        path: a ``.csv``/``.tsv``/``.tab`` file (optionally ``.gz``/``.bz2``/... compressed) or
            a ``.parquet`` file. Text files need a header row.
        user_col: column of raw user ids.
        item_col: column of raw item ids.
        time_col: column to order each user's events by, or ``None`` to keep the file order.
        sep: text separator; ``None`` picks ``","`` for ``.csv`` and tab for ``.tsv``/``.tab``.
        item_frame: item attributes indexed by raw item id (see
            :meth:`SequenceDataset.from_interactions`).
        factor_kinds: explicit factor kind per ``item_frame`` column.
        k_core: optional iterative k-core filter.
        n_bins: quantile bins of numeric factors.
        name: dataset name; defaults to the file name without its suffixes.
        encoding: the text encoding of CSV/TSV files.
        duplicates: what to do with repeated rows (see
            :meth:`SequenceDataset.from_interactions`).

    Raises:
        DatasetNotFoundError: ``path`` does not exist.
        ValueError: the extension is not supported.
        DataError: a named column is missing, the file cannot be decoded or parsed (the
            message names it), or the table fails the checks of
            :meth:`SequenceDataset.from_interactions` (missing or mixed-type ids, a time column
            that is not numeric, duplicates under ``duplicates="error"``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"interaction file not found: {path}")
    fmt = table_format(path)
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path.name!r}: expected one of {list(SUPPORTED_SUFFIXES)} "
            f"(text tables may end in {list(_COMPRESSION)}); rename the file or convert it"
        )
    columns = [user_col, item_col] + ([time_col] if time_col is not None else [])
    if fmt == ".parquet":
        frame = pd.read_parquet(path)
    else:
        try:
            frame = pd.read_csv(path, sep=sep if sep is not None else _SEPARATORS[fmt],
                                encoding=encoding)  # fmt: skip
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: cannot decode it as {encoding} ({err.reason} at byte "
                            f"{err.start}); pass encoding= (e.g. 'latin-1')") from err  # fmt: skip
        except pd.errors.ParserError as err:
            raise DataError(f"{path}: cannot parse it: {err}") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = " (pass time_col=None to keep the file order)" if time_col in missing else ""
        raise DataError(
            f"{path.name} lacks column(s) {missing}; it has {list(frame.columns)}. Name the "
            f"right ones with user_col=/item_col=/time_col={hint}"
        )
    return SequenceDataset.from_interactions(
        frame[columns],
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        item_frame=item_frame,
        factor_kinds=factor_kinds,
        n_bins=n_bins,
        k_core=k_core,
        name=name if name is not None else path.name.split(".")[0],
        duplicates=duplicates,
    )
