"""Torch I/O shared by every layer: atomic saves, ``weights_only`` loads, model payloads.

A saved model is a plain dict (:func:`module_payload`): a stable registry key naming its class
(``"sasrec"``, ``"multifactor"``; never a module path, so moving a file breaks no saved model),
its config as a dict, its other constructor arguments and its CPU weights. Everything is tensors
and plain containers, so :func:`read_weights_only` reads it with ``torch.load(...,
weights_only=True)``: no pickled code ever runs. :func:`load_module` rebuilds one.

Files written before the keys existed name their class by module path; :data:`LEGACY_KEYS`
maps those paths to today's keys so they keep loading.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from recgym.device import resolve_device
from recgym.errors import RecGymError

M = TypeVar("M", bound=nn.Module)

LEGACY_KEYS: dict[str, str] = {
    "agents.sasrec.SASRecPolicy": "sasrec",
    "agents.gru.GRUPolicy": "gru",
    "agents.acvae.ACVAEPolicy": "acvae",
    "agents.mf.BPRMFRecommender": "bpr-mf",
    "rewards.multifactor.MultiFactorDiscriminator": "multifactor",
    "rewards.energy.EnergyDiscriminator": "energy",
}
"""Class names that files saved before registry keys (main up to 2026-12) hold -> keys."""


class evaluating:  # noqa: N801 - used like torch.no_grad
    """Context manager: put a module in eval mode and restore its previous mode afterwards."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


DIGEST_KEY = "_recgym_sha256"
MIRROR_KEY = "_recgym_sha256_mirror"
"""A second copy of the digest, written first (the digest is written last): a flipped byte in
one key's name would otherwise make a checked file look like an unchecked, pre-digest one."""
_DIGEST_KEYS = (DIGEST_KEY, MIRROR_KEY)
"""The key under which :func:`atomic_torch_save` stores a dict's content digest."""


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content: every tensor's dtype, shape and bytes, every key and
    plain value, in order (what ``torch.load`` gives back, so it is the same after a round trip).

    """
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{data.dtype}{tuple(obj.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _feed(digest, value)
    else:  # plain values (and anything else weights_only loading allows) by their repr
        digest.update(f"P{type(obj).__name__}:{obj!r}".encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, ``fsync`` it and ``os.replace`` it in.

    A dict gets its :func:`content_digest` under :data:`DIGEST_KEY` (and :data:`MIRROR_KEY`), which
    :func:`read_weights_only` checks, so a file changed after writing (a flipped byte, a
    partial copy) is an error and not a model with different weights. Temp files that an
    interrupted save of the same ``path`` left behind (older than an hour) are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, Mapping):
        content = {k: v for k, v in obj.items() if k not in _DIGEST_KEYS}
        digest = content_digest(content)
        obj = {MIRROR_KEY: digest, **content, DIGEST_KEY: digest}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remove_stale_temps(path)
    return path


def _remove_stale_temps(path: Path, max_age_s: float = 3600.0) -> None:
    now = time.time()
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > max_age_s:
                stale.unlink()
        except OSError:  # another process removed or is writing it: not ours to fight over
            pass


def read_weights_only(path: str | os.PathLike, *, hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with clear errors.

    A dict written by :func:`atomic_torch_save` is checked against its stored digest (and
    returned without it); files written before digests existed load unchecked. The digest is
    stored twice (:data:`MIRROR_KEY`), so a flipped byte in one record's key name leaves the
    other, which then fails on the renamed entry left in the content.

    Raises:
        FileNotFoundError: no file at ``path`` (``hint`` is appended to the message).
        RecGymError: the file cannot be unpickled with ``weights_only=True``, or its content
            differs from what was written.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}" + (f"; {hint}" if hint else ""))
    _check_zip_records(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise RecGymError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    if isinstance(obj, dict) and any(key in obj for key in _DIGEST_KEYS):
        # One record alone (a file from before the mirror, or a damaged key name whose renamed
        # entry then stays in the content) is checked against the rest as usual.
        records = [obj.pop(key) for key in _DIGEST_KEYS if key in obj]
        stored, actual = records[0], content_digest(obj)
        if len(records) > 1 and records[0] != records[1]:
            raise RecGymError(
                f"checkpoint {str(path)!r} is corrupt: its two digest records differ (changed "
                "on disk or in a copy); restore it from a good copy"
            )
        if actual != stored:
            raise RecGymError(
                f"checkpoint {str(path)!r} is corrupt: its content digest is {actual[:16]}..., "
                f"the one written with it {str(stored)[:16]}... (changed on disk or in a copy); "
                "restore it from a good copy"
            )
    return obj


def _check_zip_records(path: Path) -> None:
    """Every record of a zip-format checkpoint against its CRC-32 (``torch.load`` skips them): a
    flipped byte in the pickle can turn the whole dict into another object with no digest."""
    try:
        if not zipfile.is_zipfile(path):
            return  # legacy (non-zip) torch format: torch.load reports what it cannot read
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # noqa: BLE001 - a damaged header fails in many ways
        raise RecGymError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    if bad is not None:
        raise RecGymError(
            f"checkpoint {str(path)!r} is corrupt: its record {bad!r} fails its CRC-32 check "
            "(changed on disk or in a copy); restore it from a good copy"
        )


def class_key(cls: type) -> str:
    """The name a saved file gives ``cls``: its ``checkpoint_key``, else its import path.

    The library's classes carry a stable key (``"sasrec"``); a user's own subclass without one
    is named by ``module.QualName``, which stays valid as long as the class does not move.
    """
    key = cls.__dict__.get("checkpoint_key")
    if key is None:
        return f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(key, str) or not key:
        raise TypeError(f"{cls.__qualname__}.checkpoint_key must be a non-empty str; got {key!r}")
    return key


def canonical_key(name: object) -> object:
    """Today's registry key of a saved class name (legacy module paths translated)."""
    return LEGACY_KEYS.get(name, name) if isinstance(name, str) else name


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen dataclass config as a plain dict that `weights_only=True` loading accepts."""
    if config is None:
        return {}
    if not is_dataclass(config):
        raise TypeError(f"config must be a dataclass; got {type(config).__name__}")
    # weights_only loading accepts only plain containers: store tuples as lists.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def module_payload(module: nn.Module) -> dict[str, Any]:
    """A model as plain data for ``weights_only=True`` loading: key, config, kwargs, CPU weights.

    ``module`` has ``init_kwargs()`` and optionally a dataclass ``config`` (reward models,
    policies).
    """
    return {
        "class": class_key(type(module)),
        "config": config_to_dict(getattr(module, "config", None)),
        "init_kwargs": module.init_kwargs(),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }


def rebuild_module(
    cls: type[M], payload: Mapping[str, Any], *, source: str, config: Any = None
) -> M:
    """Construct ``cls`` from a :func:`module_payload` dict and load its weights (on the CPU).

    Args:
        source: where the payload came from, for messages (a path or ``"checkpoint"``).
        config: the config to build with, already parsed (default: ``cls.config_class`` of the
            payload's ``"config"`` dict).

    Raises:
        RecGymError: the payload names another class, or its config or weights do not fit.
    """
    expected = class_key(cls)
    got = payload.get("class") if isinstance(payload, Mapping) else type(payload).__name__
    if canonical_key(got) != expected:
        raise RecGymError(
            f"{source} holds a {got!r}; expected a {expected!r} ({cls.__qualname__}); "
            "load it with that class's .load"
        )
    config_cls = getattr(cls, "config_class", None)
    try:
        if config is None and config_cls is not None:
            config = config_cls(**payload["config"])
        args = [] if config is None else [config]
        model = cls(*args, **payload["init_kwargs"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        raise RecGymError(f"{source} does not match {cls.__qualname__}: {err}") from err
    return model


def load_module(cls: type[M], path: str | os.PathLike, *, device: Any = "cpu") -> M:
    """Rebuild a ``cls`` written by ``save`` (read with ``weights_only=True``) on ``device``.

    Raises:
        FileNotFoundError: no file at ``path``.
        RecGymError: the file is unreadable, holds another class, or its weights do not fit.
    """
    payload = read_weights_only(path, hint=f"write one with {cls.__qualname__}.save")
    model = rebuild_module(cls, payload, source=f"checkpoint {str(path)!r}")
    return model.to(resolve_device(device))


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.Tensor],
    *,
    max_grad_norm: float | None = None,
    what: str = "loss",
    hint: str = "lower the learning rate",
    check_finite: bool = True,
) -> None:
    """One guarded update: refuse a non-finite ``loss``, then zero, backpropagate, clip, step.

    ``check_finite=False`` skips the refusal (a host sync) for a caller that checks its losses
    itself, at an interval.

    Raises:
        RecGymError: ``loss`` is NaN or infinite (named by ``what``, with ``hint``); the weights
            are left as they were, so no step is taken on a diverged loss.
    """
    if check_finite and not bool(torch.isfinite(loss)):
        raise RecGymError(f"{what} became non-finite ({float(loss.detach())}); {hint}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(list(parameters), max_grad_norm)
    optimizer.step()
