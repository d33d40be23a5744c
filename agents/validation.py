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
    if model.n_items != split.dataset.n_items:
        raise ValueError(
            f"{what} has n_items={model.n_items} but the split's dataset has "
            f"{split.dataset.n_items}; build the {what} with n_items=dataset.n_items"
        )
