"""Exceptions raised by recgym.

Every check at a public boundary raises one of these (or a plain ``ValueError``/``TypeError``)
with the expected and the actual value, never an ``assert``: asserts vanish under ``python -O``.
"""

from __future__ import annotations


class RecGymError(Exception):
    """Base class of recgym's own errors (misuse of an environment, bad data, bad checkpoints)."""


class NotResetError(RecGymError):
    """An environment was stepped before ``reset()`` was called."""


class DataError(RecGymError, ValueError):
    """A dataset, split or data file is malformed or inconsistent."""


class DatasetNotFoundError(RecGymError, FileNotFoundError):
    """A dataset's files are missing locally and cannot be downloaded."""


class ChecksumError(RecGymError, ValueError):
    """A downloaded or local file does not match its published checksum."""


class RewardError(RecGymError, ValueError):
    """A reward function returned a wrong shape, dtype or device, or a non-finite value."""
