"""Amazon review sequences in the S3-Rec format (Zhou et al., CIKM 2020).

``<name>.txt`` holds one user per line, ``user item_1 item_2 ...``, items already in time order
with 1-based ids. ``<name>_item2attributes.json`` maps each item id to anonymous attribute ids
(brand and sub-categories), which become the multi-valued ``attributes`` factor. The files are
research data from the UCSD Amazon reviews (cite McAuley et al. SIGIR'15, Zhou et al. CIKM'20);
they come from the ``data/`` folder of github.com/aHuiWang/CIKM2020-S3Rec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data import SequenceDataset
from recgym.datasets.releases import verify_release
from recgym.datasets.strict_text import read_text
from recgym.errors import DataError, DatasetNotFoundError

S3REC_SOURCE = "https://github.com/aHuiWang/CIKM2020-S3Rec/tree/master/data"
# Short dataset names for the S3-Rec file stems that recgym knows.
S3REC_NAMES = {"Beauty": "amazon-beauty", "Sports_and_Outdoors": "amazon-sports"}


def s3rec_files(name: str) -> tuple[str, str]:
    """The two file names of S3-Rec dataset ``name``: sequences and item attributes."""
    return f"{name}.txt", f"{name}_item2attributes.json"


def load_s3rec(
    path: str | os.PathLike, name: str = "Beauty", *, n_bins: int = 10, verify: bool = True
) -> SequenceDataset:
    """Load an S3-Rec Amazon dataset (e.g. Beauty: 22,363 users, 12,101 items, 198,502 events).

    There are no timestamps: the file order is the time order, so the dataset's timestamps are
    the events' positions in the file. Item ids are kept (raw id ``i`` is item ``i`` whenever
    all ids ``1..n`` occur, as in the published files). Users listed without items are skipped.

    Args:
        path: the directory holding ``<name>.txt`` and ``<name>_item2attributes.json``.
        name: the file stem, e.g. ``"Beauty"`` or ``"Sports_and_Outdoors"``.
        n_bins: unused by the attribute factor; kept for a uniform loader signature.
        verify: for the published Beauty and Sports files, check the event count and the
            SHA-256 of both files (:mod:`recgym.datasets.releases`); ``False`` loads a
            modified copy.

    Raises:
        DatasetNotFoundError: a file is missing.
        DataError: a line holds something other than integers, the attribute file is not a
            JSON object of integer keys, or (with ``verify``) a file is not the published one.
    """
    root = Path(path).expanduser()
    seq_file, attr_file = (root / f for f in s3rec_files(name))
    missing = [f.name for f in (seq_file, attr_file) if not f.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"S3-Rec dataset {name!r} needs {list(s3rec_files(name))} in {root}; missing "
            f"{missing}. Get them from {S3REC_SOURCE} (research use; cite Zhou et al. CIKM'20)."
        )
    frame = _read_sequences(seq_file)
    item_frame = _read_attributes(attr_file)
    if verify:
        verify_release(f"s3rec/{seq_file.name}", seq_file, len(frame))
        verify_release(f"s3rec/{attr_file.name}", attr_file)
    return SequenceDataset.from_interactions(
        frame,
        user_col="user",
        item_col="item",
        time_col="position",
        item_frame=item_frame,
        factor_kinds={"attributes": "multi"},
        n_bins=n_bins,
        name=S3REC_NAMES.get(name, f"amazon-{name.lower()}"),
    )


def _read_sequences(seq_file: Path) -> pd.DataFrame:
    """``(user, item, position)`` rows in file order from ``user item_1 item_2 ...`` lines."""
    lines = read_text(seq_file).splitlines()
    counts = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    try:
        tokens = np.array(" ".join(lines).split(), dtype=np.int64)
    except ValueError as err:
        raise DataError(f"{seq_file} must hold whitespace-separated integers: {err}") from err
    counts = counts[counts > 0]  # blank lines
    starts = np.cumsum(counts) - counts
    is_user = np.zeros(len(tokens), dtype=bool)
    is_user[starts] = True
    users = np.repeat(tokens[starts], counts - 1)
    items = tokens[~is_user]
    if len(items) and items.min() < 1:
        raise DataError(f"{seq_file}: item ids must be >= 1 (1-based); got {items.min()}")
    return pd.DataFrame({"user": users, "item": items, "position": np.arange(len(items))})


def _read_attributes(attr_file: Path) -> pd.DataFrame:
    """An item frame indexed by int item id with one list-valued ``attributes`` column."""
    try:
        raw = json.loads(read_text(attr_file))
    except json.JSONDecodeError as err:
        raise DataError(f"{attr_file}: not valid JSON (truncated?): {err}") from err
    if not isinstance(raw, dict):
        raise DataError(f"{attr_file} must hold a JSON object {{item: [attr, ...]}}")
    try:
        index = pd.Index(np.array(list(raw.keys()), dtype=np.int64), name="item")
    except ValueError as err:
        raise DataError(f"{attr_file}: item keys must be integers: {err}") from err
    return pd.DataFrame({"attributes": list(raw.values())}, index=index)
