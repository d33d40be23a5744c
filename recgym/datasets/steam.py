"""The Steam game catalogue (Kang & McAuley, ICDM 2018) as an item-attribute table.

``steam_games.json.gz`` holds one *Python dict literal* per line (single quotes, ``u''``
prefixes, ``True``/``False``), so it is parsed with ``ast.literal_eval``, not ``json``. There
are no Steam interactions here: the table is an item-factor source, passed as ``item_frame=``
to :meth:`recgym.SequenceDataset.from_interactions` together with interactions from elsewhere.
UCSD research data: cite Kang & McAuley ICDM'18 and Wan & McAuley RecSys'18.
"""

from __future__ import annotations

import ast
import gzip
import html
import os
from pathlib import Path

import pandas as pd

from recgym.errors import DataError, DatasetNotFoundError

STEAM_FILE = "steam_games.json.gz"
STEAM_SOURCE = "https://cseweb.ucsd.edu/~wckang/steam_games.json.gz"
# Price strings that mean "costs nothing": "Free", "Free to Play", "Free Demo", "Play for Free!".
_FREE_PATTERN = r"^\s*free\b|\bfor free\b"
_FIELDS = ["id", "price", "developer", "genres", "release_date"]


def load_steam_catalogue(path: str | os.PathLike) -> pd.DataFrame:
    """Parse the Steam catalogue into an item frame indexed by app id (``str``).

    Records without an id are dropped, and of duplicate ids the first is kept.

    Args:
        path: ``steam_games.json.gz`` or a directory that holds it.

    Returns:
        A frame indexed by app id with columns ``price`` (float; "Free"-like strings are
        ``0.0``, other strings such as ``"Install Now"`` and missing prices are NaN),
        ``developer`` (str, HTML-unescaped, missing = None), ``genres`` (list of str, empty when
        unknown) and ``year`` (float release year, NaN when the date has no year).

    Raises:
        DatasetNotFoundError: the file is missing.
        DataError: a line is not a Python dict literal.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / STEAM_FILE
    if not file.is_file():
        raise DatasetNotFoundError(
            f"Steam catalogue not found at {file}; put {STEAM_FILE} there (download it from "
            f"{STEAM_SOURCE}; UCSD research data, cite Kang & McAuley ICDM'18)."
        )
    records = _read_records(file)
    raw = pd.DataFrame.from_records(records, columns=_FIELDS)
    raw = raw[raw["id"].notna()]
    raw = raw.assign(id=raw["id"].astype(str)).drop_duplicates("id", keep="first")
    raw = raw.set_index("id").rename_axis("item")
    return pd.DataFrame(
        {
            "price": _parse_price(raw["price"]),
            "developer": raw["developer"].map(html.unescape, na_action="ignore"),
            "genres": _parse_genres(raw["genres"]),
            "year": pd.to_numeric(
                raw["release_date"].astype("string").str.extract(r"\b((?:19|20)\d\d)\b")[0],
                errors="coerce",
            ).astype(float),
        },
        index=raw.index,
    )


def _read_records(file: Path) -> list[dict]:
    records = []
    with gzip.open(file, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError) as err:
                raise DataError(
                    f"{file} line {number} is not a Python dict literal: {err}"
                ) from err
            if not isinstance(record, dict):
                raise DataError(
                    f"{file} line {number}: expected a dict, got {type(record).__name__}"
                )
            records.append(record)
    return records


def _parse_price(price: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(price.where(~price.map(lambda v: isinstance(v, bool))), errors="coerce")
    text = price.where(price.map(lambda v: isinstance(v, str))).astype("string")
    free = text.str.contains(_FREE_PATTERN, case=False, regex=True).fillna(False).astype(bool)
    return numeric.astype(float).mask(free, 0.0)


def _parse_genres(genres: pd.Series) -> pd.Series:
    # Records are already Python objects (one literal_eval each); a per-record comprehension
    # is far cheaper here than exploding and regrouping in pandas.
    return genres.map(lambda v: [html.unescape(str(g)) for g in v] if isinstance(v, list) else [])
