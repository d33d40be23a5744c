"""Reward wrappers: change how a reward is read, normalise it, or combine several.

Wrappers hold the wrapped reward instead of subclassing it (as ``imitation``'s reward-net
wrappers do), so they compose with any :class:`rewards.base.RewardModel` *and* any plain
``recgym.types.RewardFn``. Every wrapper is itself a ``RewardFn``: call it with
``(state, action)``; it returns a :class:`recgym.types.RewardOutput`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from recgym._torch_io import evaluating
from recgym.types import RewardFn, RewardOutput, SessionState, append_items, as_reward_output
from rewards.base import REWARD_FORMS, RewardForm, RewardModel, logits_to_reward


def _call(reward_fn: RewardFn, state: SessionState, action: Tensor) -> RewardOutput:
    out = as_reward_output(reward_fn(state, action))
    if not isinstance(out.reward, Tensor) or not out.reward.dtype.is_floating_point:
        got = getattr(out.reward, "dtype", type(out.reward).__name__)
        raise TypeError(f"reward function {reward_fn!r} must return a float tensor; got {got}")
    return out


class RewardFormWrapper:
    """Read a discriminator's logits with another reward form (see ``rewards.base``).

    Example: a model trained with ``reward_form="d"`` used as an AIRL-style ``"logit"`` reward:
    ``RewardFormWrapper(model, "logit")``. Energies and logits are different quantities, so an
    energy model (``"neg_energy"``) can only be read as ``"neg_energy"`` and vice versa.

    Args:
        model: the wrapped reward model; its ``forward`` gives the logits.
        form: the reward form to apply to them.
    """

    def __init__(self, model: RewardModel, form: RewardForm) -> None:
        if not isinstance(model, RewardModel):
            raise TypeError(f"model must be a rewards.RewardModel; got {type(model).__name__}")
        if form not in REWARD_FORMS:
            raise ValueError(f"form must be one of {REWARD_FORMS}; got {form!r}")
        if (form == "neg_energy") != (model.reward_form == "neg_energy"):
            raise ValueError(
                f"cannot read a {type(model).__name__} (reward_form={model.reward_form!r}) as "
                f"{form!r}: energies only take 'neg_energy' and logits only the logit forms"
            )
        self.model, self.form = model, form

    @torch.no_grad()
    def reward(self, history: Tensor) -> Tensor:
        """Reward ``(B,)`` of the newest item of each ``(B, L)`` history, in eval mode."""
        self.model.check_history(history)
        with evaluating(self.model):
            return logits_to_reward(self.model(history), self.form)

    @torch.no_grad()
    def __call__(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The ``RewardFn`` call: append ``action`` and score; the model's breakdown is kept."""
        history, _ = append_items(state.history, state.length, action)
        with evaluating(self.model):
            return RewardOutput(self.reward(history), self.model.breakdown(history))

    def __repr__(self) -> str:
        return f"RewardFormWrapper({type(self.model).__name__}, form={self.form!r})"


class NormalizedReward:
    """Standardise a reward with running statistics: ``(r - mean) / sqrt(var + epsilon)``.

    Statistics are updated with every batch *before* normalising it (as SB3's
    ``VecNormalize``). With ``momentum=None`` they are the exact mean and (population)
    variance of every reward seen, merged batch by batch with the parallel-variance update of
    Chan et al. (Welford for batches); with a ``momentum`` they are exponential moving
    averages that track a drifting reward (e.g. a discriminator still in training). Before the
    first update the wrapper is the identity. The raw reward is reported as ``"raw"`` in the
    breakdown, next to the wrapped reward's own parts.

    Args:
        reward_fn: any ``RewardFn`` (a reward model, a wrapper, a function).
        momentum: ``None`` for exact running statistics, else the EMA weight in ``(0, 1]``.
        epsilon: added to the variance before the square root.
        update: whether calls update the statistics (see :meth:`freeze`).
    """

    def __init__(
        self,
        reward_fn: RewardFn,
        *,
        momentum: float | None = None,
        epsilon: float = 1e-8,
        update: bool = True,
    ) -> None:
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable (a RewardFn); got {reward_fn!r}")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be None or in (0, 1]; got {momentum!r}")
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be a finite float > 0; got {epsilon!r}")
        self.reward_fn, self.momentum, self.epsilon = reward_fn, momentum, float(epsilon)
        self.update = bool(update)
        self.count = torch.zeros((), dtype=torch.float64)
        self.mean = torch.zeros((), dtype=torch.float64)
        self.var = torch.ones((), dtype=torch.float64)

    def freeze(self) -> NormalizedReward:
        """Stop updating the statistics (e.g. for evaluation); returns ``self``."""
        self.update = False
        return self

    def unfreeze(self) -> NormalizedReward:
        """Resume updating the statistics; returns ``self``."""
        self.update = True
        return self

    @property
    def std(self) -> Tensor:
        """The running standard deviation ``sqrt(var + epsilon)``, a float64 scalar."""
        return torch.sqrt(self.var + self.epsilon)

    def update_stats(self, reward: Tensor) -> None:
        """Merge a batch of rewards ``(B,)`` into the running statistics (no device sync)."""
        x = reward.detach().to(torch.float64).flatten()
        if x.numel() == 0:
            return
        self._to(x.device)
        n = x.numel()
        batch_mean, batch_var = x.mean(), x.var(unbiased=False)
        delta = batch_mean - self.mean
        first = self.count == 0
        if self.momentum is None:
            total = self.count + n
            mean = self.mean + delta * n / total
            m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
            var = m2 / total
        else:
            m = self.momentum
            mean = self.mean + m * delta
            var = (1 - m) * self.var + m * batch_var + m * (1 - m) * delta**2
        # The first batch sets the statistics whatever the momentum (no prior to average with).
        self.mean = torch.where(first, batch_mean, mean)
        self.var = torch.where(first, batch_var, var)
        self.count = self.count + n

    def normalize(self, reward: Tensor) -> Tensor:
        """``(reward - mean) / std`` with the current statistics, in ``reward``'s dtype."""
        self._to(reward.device)
        return ((reward.to(torch.float64) - self.mean) / self.std).to(reward.dtype)

    def __call__(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The ``RewardFn`` call: score with the wrapped reward, update, normalise."""
        reward, parts = _call(self.reward_fn, state, action)
        if self.update:
            self.update_stats(reward)
        return RewardOutput(self.normalize(reward), {**parts, "raw": reward})

    def state_dict(self) -> dict[str, Tensor]:
        """The running statistics (to save with an agent's checkpoint)."""
        return {"count": self.count.cpu(), "mean": self.mean.cpu(), "var": self.var.cpu()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        missing = {"count", "mean", "var"} - set(state)
        if missing:
            raise KeyError(f"NormalizedReward state lacks {sorted(missing)}")
        device = self.mean.device
        for key in ("count", "mean", "var"):
            setattr(self, key, torch.as_tensor(state[key], dtype=torch.float64, device=device))

    def _to(self, device: torch.device) -> None:
        if self.mean.device != device:
            self.count, self.mean, self.var = (
                t.to(device) for t in (self.count, self.mean, self.var)
            )

    def __repr__(self) -> str:
        return (
            f"NormalizedReward({self.reward_fn!r}, momentum={self.momentum}, "
            f"update={self.update}, count={int(self.count)})"
        )


class DifferenceReward:
    """Per-step increments of a sequence-level score: ``r_t = F(s_t + a_t) - F(s_t)``.

    A discriminator that judges *prefixes* scores the whole sequence so far, so using
    ``F(s_t + a_t)`` as the reward of every step counts the first generated item ``T`` times and
    the last once. Its increments are potential-based shaping (Ng et al., 1999): they sum to
    ``F(s_T) - F(s_0)``, leave the optimal policy of the final-sequence reward unchanged, and
    with the optimal discriminator read as ``logit = log p_data / p_pi`` each increment is the
    per-step log-ratio ``log p(a_t | s_t) - log pi(a_t | s_t)`` — AIRL's reward, whose expected
    sum is ``-KL(pi || p)``: add no entropy bonus on top of it.

    An empty history has score ``0`` (nothing to judge yet).

    Args:
        score: the sequence-level score: a reward model or wrapper with
            ``.reward(history (B, L)) -> (B,)`` (e.g. ``RewardFormWrapper(model, "logit")``).
    """

    def __init__(self, score: Any) -> None:
        if not callable(getattr(score, "reward", None)):
            raise TypeError(
                "score must have a .reward(history) method (a RewardModel or "
                f"RewardFormWrapper); got {type(score).__name__}"
            )
        self.score = score

    @torch.no_grad()
    def reward(self, history: Tensor) -> Tensor:
        """The sequence-level score ``(B,)`` of ``(B, L)`` histories (Monte-Carlo rollouts)."""
        return self.score.reward(history)

    @torch.no_grad()
    def __call__(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The ``RewardFn`` call: ``F(history + action) - F(history)``, both parts kept."""
        after, _ = append_items(state.history, state.length, action)
        now = self.score.reward(after).float()
        before = torch.where(
            state.length > 0, self.score.reward(state.history).float(), torch.zeros_like(now)
        )
        return RewardOutput(now - before, {"score": now, "score_before": before})

    def __repr__(self) -> str:
        return f"DifferenceReward({self.score!r})"


class WeightedSum:
    """``sum_i w_i * r_i`` over several reward functions, each part kept in the breakdown.

    The breakdown holds every part's *unweighted* reward under its name and the part's own
    breakdown entries namespaced as ``"<name>/<entry>"``.

    Args:
        parts: ``{name: (reward_fn, weight)}``, or a sequence of ``(reward_fn, weight)``
            (named ``"part0"``, ``"part1"``, ...) or of ``(name, reward_fn, weight)``.

    Example:
        >>> reward = WeightedSum({"disc": (model, 1.0), "hit": (HitReward(), 0.5)})
    """

    def __init__(
        self, parts: Mapping[str, tuple[RewardFn, float]] | Sequence[tuple[Any, ...]]
    ) -> None:
        if isinstance(parts, Mapping):
            items = [(name, *_pair(name, value)) for name, value in parts.items()]
        elif isinstance(parts, Sequence) and not isinstance(parts, str):
            items = [_named(i, value) for i, value in enumerate(parts)]
        else:
            raise TypeError(f"parts must be a mapping or a sequence; got {type(parts).__name__}")
        if not items:
            raise ValueError("WeightedSum needs at least one part")
        names = [name for name, _, _ in items]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"part names must be unique non-empty strings; got {names}")
        self.parts: dict[str, tuple[RewardFn, float]] = {n: (fn, w) for n, fn, w in items}

    def __call__(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The ``RewardFn`` call: the weighted sum ``(B,)`` and the namespaced breakdown."""
        total: Tensor | None = None
        breakdown: dict[str, Tensor] = {}
        for name, (reward_fn, weight) in self.parts.items():
            reward, parts = _call(reward_fn, state, action)
            term = weight * reward.to(torch.float32)
            total = term if total is None else total + term
            breakdown[name] = reward
            breakdown.update({f"{name}/{key}": value for key, value in parts.items()})
        return RewardOutput(total, breakdown)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: ({fn!r}, {w})" for n, (fn, w) in self.parts.items())
        return f"WeightedSum({{{inner}}})"


def _pair(name: object, value: object) -> tuple[RewardFn, float]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"part {name!r} must be a (reward_fn, weight) pair; got {value!r}")
    reward_fn, weight = value
    if not callable(reward_fn):
        raise TypeError(
            f"part {name!r}: reward_fn must be callable (a RewardFn); got {reward_fn!r}"
        )
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
    ):
        raise ValueError(f"part {name!r}: weight must be a finite number; got {weight!r}")
    return reward_fn, float(weight)


def _named(index: int, value: object) -> tuple[str, RewardFn, float]:
    if isinstance(value, tuple) and len(value) == 3:
        return (value[0], *_pair(value[0], value[1:]))  # type: ignore[return-value]
    return (f"part{index}", *_pair(f"part{index}", value))


def uses_model(reward_fn: Any, model: RewardModel, depth: int = 0) -> bool:
    """Whether ``reward_fn`` is ``model`` or a reward wrapper around it (any depth up to 8)."""
    if reward_fn is model:
        return True
    if depth > 8:
        return False
    inner = [getattr(reward_fn, name, None) for name in ("model", "reward_fn", "score")]
    parts = getattr(reward_fn, "parts", None)  # rewards.WeightedSum: {name: (fn, weight)}
    if isinstance(parts, Mapping):
        inner += [part[0] for part in parts.values() if isinstance(part, tuple)]
    return any(fn is not None and uses_model(fn, model, depth + 1) for fn in inner)
