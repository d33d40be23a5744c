"""SASRec's preprocessed sequence files: one ``user item`` pair per line, in time order.

Kang & McAuley (ICDM 2018) released their preprocessed data in this format (``Beauty.txt``,
``Steam.txt``, ``ml-1m.txt``, ``Video.txt`` in ``data/`` of github.com/kang205/SASRec), and SAO
(Manotumruksa & Yilmaz, SIGIR 2020) reads the same files. Each non-blank line is
``<user> <item>``: two whitespace-separated integers, 1-based. There are no timestamps: a user's
lines are in time order, and lines of different users may be grouped or interleaved.

Item ids are kept as they are by default (item ``i`` of the file is item ``i`` of the dataset and
``n_items`` is the largest id), as SASRec's own code does (``itemnum = max(item ids)``; its
negatives are drawn from ``1..itemnum``), so full-ranking and sampled metrics see the same
catalogue as SASRec's numbers even when some ids never occur. ``item_ids="reindex"`` numbers the
occurring ids ``1..m`` instead (in sorted order); :func:`recgym.filters.filter_rare_items`
(SAO's item filter, ``min_item_count=``) always re-indexes.

A dataset spec ``"sasrec:<path>"`` (optionally ``"sasrec:<path>?min_item_count=10"``, options
separated by commas) makes a file reachable from :func:`recgym.datasets.load_dataset`,
``recgym data`` and ``benchmarks/reproduce.py --data``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recgym._checks import is_int
from recgym.data import SequenceDataset
from recgym.datasets.strict_text import BadRows, check_bad_rows, read_text
from recgym.errors import DataError, DatasetNotFoundError
from recgym.filters import filter_rare_items

SASREC_SOURCE = "https://github.com/kang205/SASRec/tree/master/data"
SPEC_PREFIX = "sasrec:"
"""A :func:`recgym.datasets.load_dataset` argument starting with this names a pair file."""
ItemIds = Literal["keep", "reindex"]
ITEM_IDS: tuple[str, ...] = ("keep", "reindex")
# Under item_ids="keep", more unused ids than this (and than used ones) means the file numbers
# items by raw ids, not SASRec's dense indices: an (n_items + 1)-row catalogue would be mostly
# items that never occur, and could not be allocated at all for ids like 10**15.
_MAX_UNUSED_IDS = 1_000_000
_INT = re.compile(r"[+-]?[0-9]{1,18}")  # int64-safe; ASCII only (``\d`` matches other scripts)
_SPACE = r"[ \t\r\f\v]"  # whitespace within a line
_PAIR_LINE = re.compile(rf"^{_SPACE}*{_INT.pattern}{_SPACE}+{_INT.pattern}{_SPACE}*$", re.M)


def load_sasrec(
    path: str | os.PathLike,
    *,
    min_item_count: int | None = None,
    item_ids: ItemIds = "keep",
    on_bad_rows: BadRows = "error",
    name: str | None = None,
) -> SequenceDataset:
    """Load a file in SASRec's pair format (e.g. SASRec's ``Beauty.txt`` or ``ml-1m.txt``).

    Users are indexed in sorted raw-id order (``user_ids`` are the file's ids); each user's
    items keep the order of their lines. ``timestamps`` are the events' 0-based positions in
    the file, so a file in global time order also orders events across users.

    Args:
        path: the text file.
        min_item_count: apply SAO's filter (:func:`recgym.filters.filter_rare_items`): drop items
            with fewer interactions (SAO: 10), then users left with none, and re-index items
            ``1..m`` (``item_ids`` keeps the file's ids). ``None``: no filter.
        item_ids: ``"keep"`` (item ``i`` is the file's ``i``, ``n_items`` = the largest id, as in
            SASRec's code) or ``"reindex"`` (the occurring ids become ``1..m``, sorted).
        on_bad_rows: ``"error"`` (raise on bad lines), ``"drop"`` or ``"warn"`` (skip them; see
            :func:`read_sasrec_pairs`).
        name: the dataset name; defaults to ``"sasrec-<file stem, lower case>"``.

    Raises:
        DatasetNotFoundError: ``path`` is not a file.
        TypeError, ValueError: a bad ``min_item_count`` or ``item_ids``.
        DataError: a bad line (the message names the file, the line and the value), an empty
            file, item ids too sparse for ``item_ids="keep"``, or nothing left after the filter.
    """
    if item_ids not in ITEM_IDS:
        raise ValueError(f"item_ids must be one of {ITEM_IDS}; got {item_ids!r}")
    if min_item_count is not None and not is_int(min_item_count):
        raise TypeError(
            f"min_item_count must be an int or None; got {type(min_item_count).__name__} "
            f"{min_item_count!r}"
        )
    if min_item_count is not None and min_item_count < 1:
        raise ValueError(f"min_item_count must be >= 1 (SAO: 10); got {min_item_count}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(
            f"SASRec pair file not found: {path} (SASRec's files come from {SASREC_SOURCE})"
        )
    pairs = read_sasrec_pairs(path, on_bad_rows=on_bad_rows)
    name = name if name is not None else f"sasrec-{path.name.split('.')[0].lower()}"
    dataset = _from_pairs(pairs, path, name=name, item_ids=item_ids)
    if min_item_count is not None:
        dataset = filter_rare_items(dataset, min_item_count)
    return dataset


def read_sasrec_pairs(path: str | os.PathLike, *, on_bad_rows: BadRows = "error") -> pd.DataFrame:
    """The ``(user, item)`` pairs of a SASRec-format file, in file order.

    Blank lines are skipped. Every other line must hold exactly two whitespace-separated
    integers (spaces or tabs; a trailing ``\\r`` is whitespace), both ``>= 1``.

    Args:
        path: the text file (UTF-8; SASRec's files are ASCII).
        on_bad_rows: ``"error"`` raises on the first bad line; ``"drop"`` skips bad lines;
            ``"warn"`` skips them and warns once with their count and the first one.

    Returns:
        Columns ``user``, ``item`` (``int64``) and ``line`` (the 1-based source line), one row
        per good line; ``frame.attrs["bad_rows"]`` counts the skipped lines.

    Raises:
        DataError: a bad line under ``on_bad_rows="error"``, a file with no non-blank line, or
            one whose every line is bad.
    """
    check_bad_rows(on_bad_rows)
    path = Path(path)
    text = read_text(path)
    lines = text.split("\n")
    filled = np.fromiter((bool(line.strip()) for line in lines), dtype=bool, count=len(lines))
    nonblank = np.flatnonzero(filled)
    if not len(nonblank):
        raise DataError(f"{path} is empty: expected one 'user item' pair per line")
    pairs, n_bad, first = _fast_pairs(text, len(nonblank)), 0, None
    if pairs is None:  # some line is bad: check them one by one, for the message
        pairs, nonblank, n_bad, first = _checked_pairs(path, lines, nonblank)
    if n_bad and on_bad_rows == "error":
        raise DataError(f"{first} ({n_bad} bad line(s) in all; pass on_bad_rows='drop' or "
                        "'warn' to skip them)")  # fmt: skip
    if not len(pairs):
        raise DataError(f"{path}: none of its {n_bad} non-blank lines is a 'user item' pair of "
                        f"integers >= 1; the first: {first}")  # fmt: skip
    if n_bad and on_bad_rows == "warn":
        warnings.warn(f"{path}: skipped {n_bad} bad line(s); the first: {first}",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
    frame = pd.DataFrame({"user": pairs[:, 0], "item": pairs[:, 1], "line": nonblank + 1})
    frame.attrs["bad_rows"] = n_bad
    return frame


def _fast_pairs(text: str, n_lines: int) -> np.ndarray | None:
    """``(n_lines, 2)`` int64 pairs if every one of the ``n_lines`` non-blank lines is good.

    One regex pass and one C-level conversion instead of a Python loop over lines (ml-1m.txt has
    a million); ``None`` sends the file to :func:`_checked_pairs`, which names the bad line.
    """
    if len(_PAIR_LINE.findall(text)) != n_lines:
        return None
    # every non-blank line is two ASCII integers, so the token stream is the pairs in order
    pairs = np.array(text.split(), dtype=np.int64).reshape(n_lines, 2)
    return pairs if pairs.min() >= 1 else None


def _checked_pairs(
    path: Path, lines: list[str], nonblank: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """``(good pairs (n, 2), their 0-based line indices, number of bad lines, first problem)``."""
    pairs, keep, n_bad, first = [], [], 0, None
    for index in nonblank.tolist():
        checked = _check_line(path, index + 1, lines[index])
        if isinstance(checked, str):
            n_bad, first = n_bad + 1, first or checked
        else:
            pairs.append(checked)
            keep.append(index)
    pairs_array = np.array(pairs, dtype=np.int64).reshape(len(pairs), 2)
    return pairs_array, np.array(keep, dtype=np.int64), n_bad, first


def _check_line(path: Path, number: int, line: str) -> tuple[int, int] | str:
    """The line's ``(user, item)``, or the message saying what is wrong with it."""
    fields = line.split()
    where = f"{path}, line {number}"
    if len(fields) != 2:
        text = line.strip() if len(line.strip()) <= 80 else line.strip()[:77] + "..."
        return (f"{where}: expected 2 whitespace-separated fields (user item), got "
                f"{len(fields)}: {text!r}")  # fmt: skip
    for what, token in zip(("user", "item"), fields, strict=True):
        if not _INT.fullmatch(token):
            return f"{where}: {what} must be an integer; got {token!r}"
        if int(token) < 1:
            return f"{where}: {what} ids must be >= 1 (1-based; 0 is padding); got {int(token)}"
    return int(fields[0]), int(fields[1])


def _from_pairs(
    pairs: pd.DataFrame, path: Path, *, name: str, item_ids: ItemIds
) -> SequenceDataset:
    """The CSR dataset: users in sorted raw-id order, each user's items in file order."""
    users, items = pairs["user"].to_numpy(), pairs["item"].to_numpy()
    order = np.argsort(users, kind="stable")  # stable: a user's lines keep their order
    user_ids, lengths = np.unique(users, return_counts=True)
    if item_ids == "reindex":
        raw, items = np.unique(items, return_inverse=True)
        items = items.reshape(-1) + 1
    else:
        n_items, n_used = int(items.max()), len(np.unique(items))
        if n_items - n_used > max(n_used, _MAX_UNUSED_IDS):
            raise DataError(
                f"{path}: item ids go up to {n_items} but only {n_used} occur; SASRec's files "
                "number items 1..n. Pass item_ids='reindex' (spec: '?item_ids=reindex') to "
                "number the occurring ids 1..m"
            )
        raw = np.arange(1, n_items + 1)
    return SequenceDataset(
        name=name,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=items[order],
        user_ids=user_ids,
        item_ids=np.array([None, *raw.tolist()], dtype=object),
        timestamps=np.arange(len(items), dtype=np.int64)[order],
    )


def write_sasrec(dataset: SequenceDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` in SASRec's pair format, e.g. to run SASRec's own code on it.

    One ``<user> <item>`` line per event: user index ``u`` is written as ``u + 1``, items as
    their ids ``1..n_items`` (not the raw ids), grouped by user in index order, each user's
    events in time order. Users without events do not appear. The file is written to a
    temporary name and renamed into place.

    Returns:
        The path written.
    """
    path = Path(path).expanduser()
    users = np.repeat(np.arange(1, dataset.n_users + 1), dataset.lengths)
    pairs = zip(users.tolist(), dataset.items.tolist(), strict=True)
    text = "".join(f"{u} {i}\n" for u, i in pairs)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_sasrec_spec(spec: str, *, data_dir: str | os.PathLike | None = None) -> SequenceDataset:
    """Load ``"sasrec:<path>[?<option>,...]"``, options ``min_item_count=N``, ``item_ids=...``.

    Options are separated by commas, not ``&``: an unquoted ``&`` on a shell command line would
    end the command (quote the spec anyway: ``?`` is a glob character).

    A relative ``<path>`` is looked up in the working directory, then under ``data_dir``
    (default ``$RECGYM_DATA_DIR``).

    Raises:
        ValueError: a malformed spec (the message shows the expected form).
        DatasetNotFoundError: no such file (the message lists the places tried).
    """
    text, options = parse_sasrec_spec(spec)
    path = Path(text).expanduser()
    tried = [path]
    root = data_dir if data_dir is not None else os.environ.get("RECGYM_DATA_DIR")
    if not path.is_file() and not path.is_absolute() and root is not None:
        tried.append(Path(root).expanduser() / path)
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise DatasetNotFoundError(
            f"SASRec pair file {text!r} not found; tried {[str(p) for p in tried]} "
            f"(SASRec's files come from {SASREC_SOURCE})"
        )
    return load_sasrec(found, **options)


_SPEC_FORM = (
    "'sasrec:<path>' or 'sasrec:<path>?<option>,...' with the options min_item_count=<int >= 1> "
    "and item_ids=keep|reindex, e.g. 'sasrec:Beauty.txt?min_item_count=10'"
)


def parse_sasrec_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``(path, load_sasrec keyword arguments)`` of a ``"sasrec:..."`` spec."""
    if not isinstance(spec, str) or not spec.startswith(SPEC_PREFIX):
        raise ValueError(f"a SASRec spec has the form {_SPEC_FORM}; got {spec!r}")
    path, _, query = spec[len(SPEC_PREFIX) :].partition("?")
    if not path:
        raise ValueError(f"{spec!r} names no file; expected {_SPEC_FORM}")
    options: dict[str, object] = {}
    for part in query.split(",") if query else []:
        key, _, value = part.partition("=")
        if key == "min_item_count" and re.fullmatch("[0-9]{1,9}", value):
            options[key] = int(value)
        elif key == "item_ids" and value in ITEM_IDS:
            options[key] = value
        else:
            raise ValueError(f"bad option {part!r} in {spec!r}; expected {_SPEC_FORM}")
    return path, options
