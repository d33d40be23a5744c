"""Validation of interaction tables on load: ids, time columns and duplicate rows.

:meth:`recgym.SequenceDataset.from_interactions` runs these on every table, so that a garbage id,
a timestamp that would sort as text, or a log written twice is an error (or, for duplicates, a
documented and reported choice) instead of a quietly different dataset.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd

from recgym.errors import DataError

Duplicates = Literal["warn", "drop", "keep", "error"]
DUPLICATES: tuple[str, ...] = ("warn", "drop", "keep", "error")


def check_id_column(values: pd.Series, name: str) -> None:
    """Raise a :class:`DataError` for missing ids or ids of several Python types."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"column {name!r} has {int(missing.sum())} missing id(s); the first "
                        f"in row {row}")  # fmt: skip
    if values.dtype == object:
        kinds = values.map(lambda v: "number" if isinstance(v, (int, np.integer)) else
                           type(v).__name__)  # fmt: skip
        if kinds.nunique() > 1:
            first = kinds.iloc[0]
            row = int(np.flatnonzero((kinds != first).to_numpy())[0])
            raise DataError(
                f"column {name!r} mixes id types: {values.iloc[0]!r} ({first}) in row 0 but "
                f"{values.iloc[row]!r} ({kinds.iloc[row]}) in row {row}; they would never be "
                f"the same id. Convert the column to one type (e.g. .astype(str))"
            )


def check_time_column(values: pd.Series, name: str) -> None:
    """Raise a :class:`DataError` unless ``values`` are numbers or datetimes, none missing."""
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)) \
            or pd.api.types.is_bool_dtype(values):  # fmt: skip
        sample = values.iloc[0] if len(values) else None
        raise DataError(
            f"time column {name!r} must be numeric or datetime64 to order events; got dtype "
            f"{values.dtype} (e.g. {sample!r}), which would sort as text. Parse it first "
            f"(pd.to_numeric or pd.to_datetime)"
        )
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"time column {name!r} has {int(missing.sum())} missing value(s), the first in row "
            f"{row}: they cannot be ordered (drop or fill those rows first)"
        )


def drop_duplicates(df: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Apply the ``duplicates`` policy of :meth:`SequenceDataset.from_interactions`."""
    if policy not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}; got {policy!r}")
    if policy == "keep":
        return df
    repeated = df.duplicated().to_numpy()
    if not repeated.any():
        return df
    first = int(np.flatnonzero(repeated)[0])
    what = f"{int(repeated.sum())} row(s) repeat an earlier row's {list(df.columns)}; the first: "
    what += f"row {first} = {df.iloc[first].tolist()}"
    if policy == "error":
        raise DataError(f"{what} (pass duplicates='drop' or 'keep')")
    if policy == "warn":
        warnings.warn(f"dropped duplicates: {what}", RuntimeWarning, stacklevel=4)
    return df[~repeated].reset_index(drop=True)
