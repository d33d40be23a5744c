"""Strict reading of delimited text files: typed columns, every bad line named or counted.

pandas' ``read_csv`` infers types, so one garbage line in a column of ids turns every id into a
string, a line with too few fields is padded with NaN, and a decoding error does not name the
file. :func:`read_delimited` reads each line itself and checks it against declared column types:
a line with the wrong number of fields or a value that does not parse is an error naming the file,
the line number and the value — or, with ``on_bad_rows="drop"``/``"warn"``, a dropped line that
is counted (``frame.attrs["bad_rows"]``) and, for ``"warn"``, reported.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recgym.errors import DataError

BadRows = Literal["error", "drop", "warn"]
BAD_ROWS: tuple[str, ...] = ("error", "drop", "warn")
ColumnType = Literal["int", "float", "str"]


def check_bad_rows(on_bad_rows: object) -> None:
    """Raise a ``ValueError`` unless ``on_bad_rows`` is one of :data:`BAD_ROWS`."""
    if on_bad_rows not in BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {BAD_ROWS}; got {on_bad_rows!r}")


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The file's text; a decoding error names the file, the byte offset and an encoding hint.

    Line endings are kept as they are (no universal-newline translation): ``\\r\\n`` lines lose
    their ``\\r`` when split, and a lone ``\\r`` is a character of its line, not a line break.
    """
    path = Path(path)
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: cannot decode byte {err.object[err.start:err.start + 1]!r} at offset "
            f"{err.start} as {encoding}; pass the file's encoding (e.g. encoding='latin-1')"
        ) from err
    except LookupError as err:
        raise ValueError(f"unknown encoding {encoding!r} for {path}") from err


def read_delimited(
    path: str | os.PathLike,
    *,
    sep: str,
    columns: Mapping[str, ColumnType],
    encoding: str = "utf-8",
    on_bad_rows: BadRows = "error",
    header: bool = False,
) -> pd.DataFrame:
    """Read a delimited text file into typed columns, line by line.

    Blank lines are skipped. Every other line must split by ``sep`` into exactly
    ``len(columns)`` fields, and each field must parse as its column's type (``"int"``: an integer
    without a fractional part; ``"float"``: any finite or NaN-free number; ``"str"``: anything
    non-empty).

    Args:
        path: the file.
        sep: the field separator (may be several characters, e.g. ``"::"``).
        columns: ``{name: type}`` in field order.
        encoding: the text encoding.
        on_bad_rows: ``"error"`` (raise on the first bad line), ``"drop"`` (skip bad lines) or
            ``"warn"`` (skip them and warn once with their count and the first one).
        header: the first non-blank line names the columns (checked against ``columns``).

    Returns:
        One row per good line, int columns ``int64``, float ``float64``, str ``object``;
        ``frame.attrs["bad_rows"]`` is the number of skipped lines and ``frame.attrs["lines"]``
        the source line number (1-based) of each row.

    Raises:
        DataError: a bad line under ``on_bad_rows="error"``, a header that does not match, or
            an undecodable file.
    """
    check_bad_rows(on_bad_rows)
    path, names = Path(path), list(columns)
    text = read_text(path, encoding)
    raw, numbers, n_wrong_count, first = _split(text, sep, len(names), path, names)
    if header:
        if len(raw) == 0 or raw.iloc[0].tolist() != names:
            got = raw.iloc[0].tolist() if len(raw) else "nothing"
            raise DataError(f"{path}: expected the header {names}; got {got}")
        raw, numbers = raw.iloc[1:].reset_index(drop=True), numbers[1:]
    raw.columns = names
    problems = [] if first is None else [(first[0], -1, first[1])]
    invalid = np.zeros(len(raw), dtype=bool)
    for name, kind in columns.items():
        parsed, wrong = _parse(raw[name], kind)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            problems.append((int(numbers[row]), names.index(name), f"{path}, line "
                             f"{numbers[row]}: column {name!r} must be {_WHAT[kind]}; got "
                             f"{raw[name].iloc[row]!r}"))  # fmt: skip
        raw[name] = parsed
        invalid |= wrong
    n_bad = n_wrong_count + int(invalid.sum())
    if n_bad:
        message = min(problems)[2]
        if on_bad_rows == "error":
            raise DataError(f"{message} ({n_bad} bad line(s) in all; pass on_bad_rows='drop' or "
                            "'warn' to skip them)")  # fmt: skip
        if on_bad_rows == "warn":
            warnings.warn(f"{path}: skipped {n_bad} bad line(s); the first: {message}",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
    frame = raw[~invalid].reset_index(drop=True)
    for name, kind in columns.items():
        frame[name] = frame[name].astype(_DTYPES[kind])
    frame.attrs["bad_rows"] = n_bad
    frame.attrs["lines"] = numbers[~invalid]
    return frame


def _split(
    text: str, sep: str, n_fields: int, path: Path, names: list[str]
) -> tuple[pd.DataFrame, np.ndarray, int, tuple[int, str] | None]:
    """``(fields as str, their 1-based line numbers, lines with a wrong field count, the first
    such problem)``; blank lines dropped. Python's split, not pandas' tokenizer: that one
    guesses (a first line with an extra field becomes an index, a lone ``\\r`` ends a line)."""
    lines = text.split("\n")
    fields = [line.rstrip("\r").split(sep) for line in lines]
    counts = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    blank = np.fromiter((not line.strip() for line in lines), dtype=bool, count=len(lines))
    wrong = (counts != n_fields) & ~blank
    first = None
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        first = (i + 1, _field_count_problem(path, i + 1, names, fields[i], int(counts[i])))
    keep = np.flatnonzero(~wrong & ~blank)
    columns = list(zip(*(fields[i] for i in keep), strict=True)) or [()] * n_fields
    raw = pd.DataFrame({k: pd.Series(col, dtype=object) for k, col in enumerate(columns)})
    return raw, keep + 1, int(wrong.sum()), first


_WHAT = {"int": "an integer", "float": "a number", "str": "a non-empty string"}
_DTYPES = {"int": np.int64, "float": np.float64, "str": object}


def _field_count_problem(
    path: Path, line: int, names: Sequence[str], fields: list[str], got: int
) -> str:
    return (f"{path}, line {line}: expected {len(names)} fields {list(names)}, got {got}: "
            f"{fields!r}")  # fmt: skip


def _parse(values: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray]:
    """``(parsed, wrong)``: the column converted (bad entries 0 / kept) and its bad-entry mask."""
    stripped = values.str.strip()
    if kind == "str":
        return stripped, (stripped == "").to_numpy()
    if kind == "int":  # parsed from the digits, so ids beyond 2**53 stay exact
        ok = stripped.str.fullmatch(r"[+-]?\d{1,18}").fillna(False).to_numpy(dtype=bool)
        out = np.zeros(len(stripped), dtype=np.int64)
        out[ok] = stripped[ok].astype(np.int64).to_numpy()
        return pd.Series(out, index=values.index), ~ok
    numbers = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=np.float64)
    wrong = ~np.isfinite(numbers)
    return pd.Series(np.where(wrong, 0.0, numbers), index=values.index), wrong
