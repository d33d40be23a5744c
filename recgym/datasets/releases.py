"""What the published datasets hold: row counts and SHA-256 digests of their files.

A loader of a known dataset checks the files it read against these (``verify=True``, the
default), so that a truncated download, a copy with a line edited, or another release of the
same name is an error instead of a quietly different dataset. The digests are of the original
files as published (GroupLens zips; the S3-Rec repository's ``data/`` folder).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from recgym.errors import DataError

SHA256: dict[str, str] = {
    "movielens-100k/u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "movielens-100k/u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "movielens-1m/movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "s3rec/Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    "s3rec/Beauty_item2attributes.json":
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
    "s3rec/Sports_and_Outdoors.txt":
        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
    "s3rec/Sports_and_Outdoors_item2attributes.json":
        "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
}  # fmt: skip
"""``"<dataset>/<file>"`` -> SHA-256 of the published file."""

ROWS: dict[str, int] = {
    "movielens-100k/u.data": 100_000,
    "movielens-100k/u.item": 1_682,
    "movielens-1m/ratings.dat": 1_000_209,
    "movielens-1m/movies.dat": 3_883,
    "s3rec/Beauty.txt": 198_502,
    "s3rec/Sports_and_Outdoors.txt": 296_337,
}
"""``"<dataset>/<file>"`` -> documented rows (ratings; S3-Rec: events, i.e. items over lines)."""


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_release(key: str, path: Path, n_rows: int | None = None) -> None:
    """Check ``path`` (file ``key`` of a known release) against :data:`ROWS` and :data:`SHA256`.

    Args:
        key: ``"<dataset>/<file>"``; keys with nothing on record pass.
        path: the local file.
        n_rows: the rows it was read into (checked against the documented count first, as the
            more telling message).

    Raises:
        DataError: the row count or the digest differs from the published file's.
    """
    expected_rows = ROWS.get(key)
    hint = "pass verify=False to load a modified copy on purpose"
    if n_rows is not None and expected_rows is not None and n_rows != expected_rows:
        raise DataError(
            f"{path} has {n_rows:,} rows but the published {key} has {expected_rows:,}: a "
            f"truncated or modified copy? Fetch the file again, or {hint}"
        )
    expected = SHA256.get(key)
    if expected is not None and (actual := sha256(path)) != expected:
        raise DataError(
            f"{path} is not the published {key}: its SHA-256 is {actual}, the release's is "
            f"{expected}. Fetch the file again, or {hint}"
        )
