"""Exact-resume checkpoints of a training run, and the seeding helpers that make resuming exact.

A checkpoint is one plain dict written atomically (``recgym._torch_io.atomic_torch_save``): the
policy's and the reward model's state dicts, optimiser states, the states of every
``torch.Generator`` and of a ``numpy`` generator (as plain Python types), the round counter,
the best metric and free-form ``extra`` values. Everything is tensors and plain containers, so
:func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``: no pickled code.

Randomness that cannot take a generator (dropout draws from the global torch RNG) runs inside
:func:`forked_global_rng`, seeded from a trainer's own generator with :func:`draw_seed`, so the
generators' states are all a resumed run needs to repeat the same draws.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recgym._torch_io import atomic_torch_save, canonical_key, class_key, read_weights_only
from recgym.errors import RecGymError

CHECKPOINT_FORMAT = "recgym.agents.checkpoint/1"
_REQUIRED = ("format", "policy", "reward_model", "optimizers", "generators", "numpy_rng", "round")


# ----------------------------------------------------------------------------- seeding
def draw_seed(generator: torch.Generator) -> int:
    """A fresh non-negative 62-bit seed drawn from ``generator`` (one draw on its device)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


@contextmanager
def forked_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with the global torch RNG (CPU and ``device``) seeded, then restore it.

    Dropout draws from the global RNG; seeding it inside a fork makes the block reproducible
    and leaves the caller's stream exactly as it was.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    index = (
        device.index if device.index is not None else (torch.cuda.current_device() if cuda else 0)
    )
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------- save / load
def make_checkpoint(
    *,
    policy: nn.Module,
    reward_model: nn.Module | None,
    optimizers: Mapping[str, torch.optim.Optimizer],
    generators: Mapping[str, torch.Generator],
    numpy_rng: np.random.Generator | None = None,
    round: int = 0,  # noqa: A002 - the adversarial round counter
    best_metric: float = float("-inf"),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict (tensors on CPU, plain containers only).

    Args:
        policy: the policy module.
        reward_model: the reward model (``None`` when the run has none).
        optimizers: name -> optimiser, e.g. ``{"policy": ..., "reward": ...}``.
        generators: name -> ``torch.Generator`` whose state must survive a restart.
        numpy_rng: a ``numpy`` generator whose bit-generator state is saved too.
        round: completed rounds.
        best_metric: the best validation metric so far.
        extra: further plain values (floats, ints, strings, lists, dicts, tensors).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "policy": _module_entry(policy),
        "reward_model": None if reward_model is None else _module_entry(reward_model),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "generators": {
            name: {"device": str(gen.device), "state": gen.get_state()}
            for name, gen in generators.items()
        },
        "numpy_rng": None if numpy_rng is None else copy.deepcopy(numpy_rng.bit_generator.state),
        "round": int(round),
        "best_metric": float(best_metric),
        "extra": dict(extra or {}),
    }


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any]) -> Path:
    """Write a :func:`make_checkpoint` dict atomically (a crash never leaves a torn file)."""
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("checkpoint must be a dict built by make_checkpoint(...)")
    return atomic_torch_save(dict(checkpoint), path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors on CPU) and check its layout.

    Raises:
        FileNotFoundError: no file at ``path``.
        RecGymError: the file is not a checkpoint of this format.
    """
    checkpoint = read_weights_only(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        got = (
            checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        )
        raise RecGymError(
            f"{str(path)!r} is not a {CHECKPOINT_FORMAT} checkpoint (format {got!r}); "
            "write one with agents.checkpoint.save_checkpoint"
        )
    missing = [key for key in _REQUIRED if key not in checkpoint]
    if missing:
        raise RecGymError(f"checkpoint {str(path)!r} lacks the entries {missing}")
    return checkpoint


def restore_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    policy: nn.Module,
    reward_model: nn.Module | None,
    optimizers: Mapping[str, torch.optim.Optimizer],
    generators: Mapping[str, torch.Generator],
    numpy_rng: np.random.Generator | None = None,
) -> None:
    """Load a checkpoint into live objects (in place), with clear errors on any mismatch.

    Raises:
        RecGymError: another model class, mismatched weights, or other optimiser/generator
            names than the checkpoint holds.
    """
    _load_module(checkpoint["policy"], policy, "policy")
    if (checkpoint["reward_model"] is None) != (reward_model is None):
        raise RecGymError("the checkpoint and the run disagree on whether there is a reward model")
    if reward_model is not None:
        _load_module(checkpoint["reward_model"], reward_model, "reward_model")
    _same_names("optimizers", checkpoint["optimizers"], optimizers)
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(checkpoint["optimizers"][name])
        except (ValueError, KeyError, RuntimeError) as err:
            raise RecGymError(f"optimizer {name!r} does not match the checkpoint: {err}") from err
    _same_names("generators", checkpoint["generators"], generators)
    for name, gen in generators.items():
        saved = checkpoint["generators"][name]
        if torch.device(saved["device"]).type != gen.device.type:
            raise RecGymError(
                f"generator {name!r} was saved on {saved['device']} but the run's is on "
                f"{gen.device}; resume on the same device type to repeat the same draws"
            )
        gen.set_state(saved["state"])
    if numpy_rng is not None:
        saved = checkpoint["numpy_rng"]
        kind = None if saved is None else saved.get("bit_generator")
        if kind != numpy_rng.bit_generator.state.get("bit_generator"):
            raise RecGymError(
                f"the checkpoint's numpy generator state ({kind!r}) does not fit the run's "
                f"{type(numpy_rng.bit_generator).__name__}"
            )
        numpy_rng.bit_generator.state = copy.deepcopy(saved)


# ----------------------------------------------------------------------------- internals
def _module_entry(module: nn.Module) -> dict[str, Any]:
    return {
        "class": class_key(type(module)),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }


def _load_module(entry: Mapping[str, Any], module: nn.Module, what: str) -> None:
    expected = class_key(type(module))
    if canonical_key(entry.get("class")) != expected:
        got = entry.get("class")
        raise RecGymError(f"the checkpoint's {what} is a {got!r}; got a {expected!r}")
    try:
        module.load_state_dict(entry["state_dict"])
    except RuntimeError as err:
        raise RecGymError(
            f"the checkpoint's {what} weights do not fit this {expected}: {err}"
        ) from err


def _same_names(what: str, saved: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    if set(saved) != set(live):
        raise RecGymError(
            f"the checkpoint holds {what} {sorted(saved)}; the run has {sorted(live)}"
        )
