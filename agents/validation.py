"""Config-field checks shared by the agents' frozen configs (clear errors, never asserts)."""

from __future__ import annotations

import math


def check_int(config: object, name: str, low: int) -> None:
    """Raise a ``ValueError`` naming ``config.name`` unless it is an int ``>= low``."""
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{type(config).__name__}.{name} must be an int >= {low}; got {value!r}")


def check_float(config: object, name: str, *, positive: bool = False) -> None:
    """Raise unless ``config.name`` is a finite number ``>= 0`` (``> 0`` if ``positive``).

    ``None`` passes for fields typed ``float | None`` (e.g. ``max_grad_norm``).
    """
    value = getattr(config, name)
    if value is None and name == "max_grad_norm":
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{type(config).__name__}.{name} must be a finite float {bound}; got {value!r}"
        )
