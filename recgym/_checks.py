"""Argument and config-field checks shared by every layer: clear errors, never asserts.

Each check raises a ``ValueError`` or ``TypeError`` that names the field, the expected value and
the value it got, e.g. ``MLEConfig.lr must be a finite float > 0; got -1``.
"""

from __future__ import annotations

import math

import numpy as np


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy), booleans excluded."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a finite real number (Python or numpy), booleans excluded."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_int(config: object, name: str, low: int) -> None:
    """Raise a ``ValueError`` naming ``config.name`` unless it is an int ``>= low``."""
    value = getattr(config, name)
    if not is_int(value) or value < low:
        raise ValueError(f"{type(config).__name__}.{name} must be an int >= {low}; got {value!r}")


def check_positive_int(name: str, value: object) -> None:
    """Raise a ``ValueError`` naming the argument ``name`` unless ``value`` is an int ``>= 1``."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")


def check_float(
    config: object, name: str, *, positive: bool = False, optional: bool = False
) -> None:
    """Raise unless ``config.name`` is a finite number ``>= 0`` (``> 0`` if ``positive``).

    Args:
        optional: ``None`` passes too (fields typed ``float | None``, e.g. ``max_grad_norm``).
    """
    value = getattr(config, name)
    if value is None and optional:
        return
    if not is_real(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        none = " or None" if optional else ""
        raise ValueError(
            f"{type(config).__name__}.{name} must be a finite float {bound}{none}; got {value!r}"
        )


def check_n_items(what: str, n_items: int, expected: int, *, fix: str = "") -> None:
    """Raise the one error of an ``n_items`` mismatch between a model and its data.

    Raises:
        ValueError: ``n_items != expected``; ``fix`` says how to build a matching model.
    """
    if n_items != expected:
        hint = f"; {fix}" if fix else f"; build the {what} with n_items=dataset.n_items"
        raise ValueError(f"{what} has n_items={n_items} but the data have {expected}{hint}")


def check_fraction(config: object, name: str) -> None:
    """Raise a ``ValueError`` unless ``config.name`` is a number in ``[0, 1)`` (a dropout)."""
    value = getattr(config, name)
    if not is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{type(config).__name__}.{name} must be in [0, 1); got {value!r}")


def check_model_and_split(model: object, split: object, model_class: type, *, what: str) -> None:
    """Raise unless ``model`` is a ``model_class`` whose ``n_items`` matches ``split``'s dataset.

    Args:
        what: the argument's name in messages (``"policy"``, ``"model"``).
    """
    from recgym.splits import Split

    if not isinstance(model, model_class):
        name = f"{model_class.__module__}.{model_class.__qualname__}"
        raise TypeError(f"{what} must be an {name}; got {type(model).__name__}")
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    check_n_items(what, model.n_items, split.dataset.n_items)
