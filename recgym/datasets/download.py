"""Atomic, checksum-verified downloads and zip extraction for the dataset loaders.

Nothing half-written is ever left at a final path: downloads stream into a temporary file in
the destination's directory and are renamed into place (``os.replace``) only after the checksum
matches; archives are extracted into a temporary directory and then renamed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from recgym.errors import ChecksumError, DataError, DatasetNotFoundError

_CHUNK = 1 << 20
# Errors that mean "could not fetch", as opposed to local failures such as a full disk.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def default_cache_dir() -> Path:
    """Where downloaded datasets go: ``$RECGYM_CACHE_DIR``, else ``~/.cache/recgym``."""
    env = os.environ.get("RECGYM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recgym"


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its checksum(s).

    Args:
        url: any URL ``urllib`` understands (``https://``, ``file://``).
        dest: final file path; its parent directory is created.
        md5: expected hex MD5 digest, or ``None`` to skip that check.
        sha256: expected hex SHA-256 digest, or ``None`` to skip that check.
        timeout: socket timeout in seconds.
        hint: what to do by hand when the download fails (which files to put where); it is
            appended to the error message.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DatasetNotFoundError: the URL could not be fetched (no network, HTTP error, timeout).
        ChecksumError: the content does not match ``md5``/``sha256``; nothing is left on disk.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
        except _NETWORK_ERRORS as err:
            message = f"could not download {url} to {dest}: {err}"
            raise DatasetNotFoundError(f"{message}. {hint}" if hint else message) from err
        for kind, expected in (("md5", md5), ("sha256", sha256)):
            actual = digests[kind].hexdigest()
            if expected is not None and actual != expected.strip().lower():
                raise ChecksumError(
                    f"{kind} mismatch for {url}: expected {expected}, got {actual}; the file was "
                    f"discarded. Retry, or check that the upstream file has not changed."
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a local file (``"md5"``, ``"sha256"``, any ``hashlib`` name)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_zip(
    archive: str | os.PathLike, dest: str | os.PathLike, *, root: str | None = None
) -> Path:
    """Extract a zip archive into ``dest`` atomically.

    Everything is extracted into a temporary directory beside ``dest`` first. Then the
    directory is renamed to ``dest``, or, when ``dest`` already exists, each extracted file is
    moved into it with ``os.replace``, so a failed extraction never leaves partial files.

    Args:
        archive: the ``.zip`` file.
        dest: the directory that receives the files.
        root: a folder inside the archive whose *contents* go to ``dest`` (e.g. ``"ml-100k"``
            for GroupLens zips); ``None`` installs the whole archive.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DataError: the archive is not a valid zip, or lacks ``root``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".extract"))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)  # extractall strips absolute paths and ".." components
        except zipfile.BadZipFile as err:
            raise DataError(f"{archive} is not a valid zip archive: {err}") from err
        source = tmp / root if root else tmp
        if not source.is_dir():
            found = sorted(p.name for p in tmp.iterdir())
            raise DataError(f"{archive} has no folder {root!r}; its top level holds {found}")
        if not dest.exists():
            os.replace(source, dest)
        else:
            _merge_into(source, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _merge_into(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
