"""One progress bar for every long loop (epochs, rounds, seeds): tqdm, or a silent stand-in.

tqdm shows the count, the rate and the ETA; callers add the metric that matters (loss, validation
NDCG@10, AUC) with :meth:`set_postfix`. With ``enabled=False`` nothing is printed and
``tqdm.auto`` is never imported.
"""

from __future__ import annotations

import math
from typing import Any


class SilentBar:
    """Stands in for a tqdm bar when progress is off: the same methods, doing nothing."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> SilentBar:
        return self

    def __exit__(self, *exc: object) -> None: ...


def progress_bar(
    *, total: int, desc: str, unit: str = "epoch", initial: int = 0, enabled: bool = True
) -> Any:
    """A tqdm bar over ``total`` units starting at ``initial`` (a resumed run), or a silent one.

    Use as a context manager (the bar closes on ``break`` and on errors) and call ``update()``
    once per unit.
    """
    if not enabled:
        return SilentBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)


def metric_postfix(row: dict[str, Any], **names: str) -> dict[str, str]:
    """``{label: "0.1234"}`` for each ``label=key`` of ``row`` holding a finite number."""
    out = {}
    for label, key in names.items():
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[label] = f"{value:.4f}"
    return out
