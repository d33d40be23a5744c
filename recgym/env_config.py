"""How environment sessions start and end: :class:`EnvConfig`.

Its own module so that both the environment (``recgym.env``) and its pure dynamics
(``recgym.dynamics``) import it one way, with no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recgym._checks import is_int
from recgym.splits import STAGES, Stage

StartMode = Literal["history", "random", "fixed"]
START_MODES: tuple[StartMode, ...] = ("history", "random", "fixed")


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """How sessions start and end.

    Attributes:
        max_len: history window ``L``; older items fall off the left.
        horizon: steps before an episode is truncated.
        stage: which part of each user's real sequence is visible: ``"train"`` (training
            segment only), ``"valid"`` (train + validation) or ``"test"`` (everything).
        start: where a session starts in the user's visible sequence. ``"history"``: for
            ``stage="train"`` after the whole training history (no logged next item: pure
            simulation); for ``"valid"``/``"test"`` just before the held-out segment, whose
            items become the logged next items. ``"random"``: a uniform cut that keeps at least
            ``min_start_len`` items of history and at least one logged next item. ``"fixed"``:
            after the first ``start_len`` items.
        start_len: history length for ``start="fixed"`` (required there).
        min_start_len: shortest history for ``start="random"`` (``>= 1``).
        check_rewards: validate every reward (shape, dtype, device, finiteness). Costs one
            device sync per step on CUDA; switch off only for trusted reward functions.
    """

    max_len: int = 50
    horizon: int = 10
    stage: Stage = "train"
    start: StartMode = "history"
    start_len: int | None = None
    min_start_len: int = 1
    check_rewards: bool = True

    def __post_init__(self) -> None:
        for name in ("max_len", "horizon", "min_start_len"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"EnvConfig.{name} must be an int >= 1; got {value!r}")
        if self.stage not in STAGES:
            raise ValueError(f"EnvConfig.stage must be one of {STAGES}; got {self.stage!r}")
        if self.start not in START_MODES:
            raise ValueError(f"EnvConfig.start must be one of {START_MODES}; got {self.start!r}")
        if self.start == "fixed" and self.start_len is None:
            raise ValueError("EnvConfig.start='fixed' needs start_len (history length), e.g. 5")
        if self.start_len is not None and (not is_int(self.start_len) or self.start_len < 1):
            raise ValueError(f"EnvConfig.start_len must be an int >= 1; got {self.start_len!r}")
        if self.start_len is not None and self.start != "fixed":
            raise ValueError(
                f"EnvConfig.start_len is only used with start='fixed'; got start={self.start!r}"
            )
        if not isinstance(self.check_rewards, bool):
            raise TypeError(f"EnvConfig.check_rewards must be a bool; got {self.check_rewards!r}")
