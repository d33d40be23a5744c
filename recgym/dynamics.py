"""Pure, deterministic session dynamics of the batched environment.

Every function treats each row independently, so a batched step equals B single steps by
construction (Gymnasium's ``FuncEnv`` idea, TorchRL's pure ``_step``). Randomness never enters
here: :class:`recgym.env.BatchedRecEnv` draws users and cuts with its own generator and calls
these functions.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from recgym.data import gather_windows
from recgym.splits import Split
from recgym.types import append_items

if TYPE_CHECKING:
    from recgym.env_config import EnvConfig


# ----------------------------------------------------------------------------- pure dynamics
class Sessions(NamedTuple):
    """The full batched session state (every field ``(B,)`` int64 except ``history``).

    Attributes:
        history: ``(B, L)`` left-padded item histories.
        length: real items in ``history``.
        user: dataset user index.
        step: actions taken since reset.
        cursor: absolute position (in the dataset's CSR item array) of the logged next item.
        end: end (exclusive) of the user's visible sequence for the stage.
        target: ``items[cursor]`` if ``cursor < end`` else ``0``.
    """

    history: Tensor
    length: Tensor
    user: Tensor
    step: Tensor
    cursor: Tensor
    end: Tensor
    target: Tensor


def logged_item(items: Tensor, cursor: Tensor, end: Tensor) -> Tensor:
    """``(B,)`` the logged item at absolute position ``cursor``, ``0`` where ``cursor >= end``."""
    # end <= len(items), so every row with cursor < end indexes in range; clamp only the rest.
    safe = cursor.clamp(max=max(items.numel() - 1, 0))
    return torch.where(cursor < end, items[safe], 0)


def start_sessions(
    items: Tensor, offsets: Tensor, users: Tensor, cuts: Tensor, ends: Tensor, max_len: int
) -> Sessions:
    """Sessions whose history is ``items[offsets[u]:cut]`` (last ``max_len``), at step 0."""
    history = gather_windows(items, offsets, users, cuts, max_len)  # (B, L)
    length = (cuts - offsets[users]).clamp(max=max_len)
    target = logged_item(items, cuts, ends)
    return Sessions(history, length, users, torch.zeros_like(users), cuts, ends, target)


def advance(sessions: Sessions, action: Tensor, items: Tensor) -> Sessions:
    """The deterministic transition: append ``action`` and move the cursor one item on."""
    history, length = append_items(sessions.history, sessions.length, action)
    cursor = sessions.cursor + 1
    target = logged_item(items, cursor, sessions.end)
    return Sessions(history, length, sessions.user, sessions.step + 1, cursor, sessions.end, target)


def replace_rows(sessions: Sessions, rows: Tensor, new: Sessions) -> Sessions:
    """``sessions`` with rows ``rows`` (``(K,)`` indices) replaced by the K rows of ``new``."""
    return Sessions(*(old.index_copy(0, rows, n) for old, n in zip(sessions, new, strict=True)))


# ----------------------------------------------------------------------------- start table
class _StartTable(NamedTuple):
    """Per-user allowed cuts ``[lo, lo + span)``, stage ends and the eligible users, on device."""

    lo: Tensor
    span: Tensor
    end: Tensor
    eligible: np.ndarray
    eligible_users: Tensor
    requirement: str


_START_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def start_table(split: Split, config: EnvConfig, device: torch.device) -> _StartTable:
    """Compute (once per split, start settings and device; cached) where each user may start."""
    key = (config.stage, config.start, config.start_len, config.min_start_len, device)
    per_split = _START_CACHE.setdefault(split, {})
    if key not in per_split:
        per_split[key] = _compute_start_table(split, config, device)
    return per_split[key]


def _compute_start_table(split: Split, config: EnvConfig, device: torch.device) -> _StartTable:
    offsets = split.dataset.offsets
    first = offsets[:-1]
    stage_start, end = split.stage_bounds(config.stage)
    if config.start == "history":
        lo = hi = split.train_end if config.stage == "train" else stage_start
        eligible = lo - first >= 1
        if config.stage != "train":
            eligible &= end > lo
        requirement = (
            "at least 1 training item"
            if config.stage == "train"
            else f"at least 1 item before and 1 item in its {config.stage} segment"
        )
    elif config.start == "random":
        lo, hi = first + config.min_start_len, end - 1
        eligible = lo <= hi
        requirement = f"at least min_start_len + 1 = {config.min_start_len + 1} visible items"
    else:
        lo = hi = first + config.start_len
        eligible = lo <= end
        requirement = f"at least start_len = {config.start_len} visible items"
    span = np.where(eligible, hi - lo + 1, 1)

    def as_tensor(array: np.ndarray) -> Tensor:
        return torch.tensor(np.asarray(array, dtype=np.int64), device=device)  # a writable copy

    return _StartTable(
        lo=as_tensor(lo),
        span=as_tensor(span),
        end=as_tensor(end),
        eligible=eligible,
        eligible_users=as_tensor(np.flatnonzero(eligible)),
        requirement=requirement,
    )
