"""Adversarial embedding perturbations: APR (He et al., SIGIR 2018) and SAO-style SASRec.

Adversarial Personalized Ranking trains on ``L(Θ) + λ L(Θ + Δ_adv)`` where ``Δ_adv`` is the
fast-gradient perturbation of the embedding tables,

    ``Δ_adv = ε · Γ / ||Γ||``,  ``Γ = ∂L(Θ + Δ) / ∂Δ`` at ``Δ = 0``,

normalised per embedding vector (row-wise L2, as in the APR reference code) and treated as a
constant (detached). The mechanism here is generic: :func:`adversarial_loss` takes a closure
``loss_fn(delta)`` of an additive perturbation of one or several tables, so MF-BPR (user and item
tables) and sequence models reuse it. For sequence policies the item table enters twice, at
the input lookup and at the tied output layer; :class:`PerturbationConfig` ``.targets`` picks
where the perturbation is applied (both by default, as SAO perturbs the item embeddings
wherever they are used) and :func:`split_delta` routes one delta to
``policy.encode(history, delta=d_in) @ policy.item_table(d_out).T``. The gradient ``Γ`` is taken
with respect to the perturbation itself, so it only reflects the places it is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

TARGETS = ("input", "output")


@dataclass(frozen=True, kw_only=True)
class PerturbationConfig:
    """Settings of adversarial (APR / SAO) training.

    Attributes:
        eps: L2 norm ``ε`` of the perturbation of each embedding vector (> 0).
        lam: weight ``λ`` of the adversarial loss (>= 0).
        targets: where the item-table perturbation is applied in a sequence policy, a non-empty
            subset of ``("input", "output")``.
    """

    eps: float = 0.5
    lam: float = 1.0
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        if not _finite_number(self.eps) or self.eps <= 0:
            raise ValueError(f"PerturbationConfig.eps must be a finite float > 0; got {self.eps!r}")
        if not _finite_number(self.lam) or self.lam < 0:
            raise ValueError(
                f"PerturbationConfig.lam must be a finite float >= 0; got {self.lam!r}"
            )
        targets = (self.targets,) if isinstance(self.targets, str) else self.targets
        if not isinstance(targets, (tuple, list)):
            raise TypeError(f"PerturbationConfig.targets must be a tuple of str; got {targets!r}")
        targets = tuple(dict.fromkeys(targets))
        bad = [t for t in targets if t not in TARGETS]
        if bad or not targets:
            raise ValueError(
                f"PerturbationConfig.targets must be a non-empty subset of {TARGETS}; "
                f"got {self.targets!r}"
            )
        object.__setattr__(self, "targets", targets)


@dataclass(frozen=True)
class AdversarialLoss:
    """The parts of :func:`adversarial_loss`.

    Attributes:
        total: ``clean + lam * adversarial`` (differentiable; call ``.backward()`` on it).
        clean: ``L(Θ)``.
        adversarial: ``L(Θ + Δ_adv)``.
        delta: the detached perturbation(s), one per table (a tensor when one table was given).
    """

    total: Tensor
    clean: Tensor
    adversarial: Tensor
    delta: Tensor | tuple[Tensor, ...]


def fast_gradient_delta(grad: Tensor, eps: float, *, padding_idx: int | None = 0) -> Tensor:
    """``eps * grad / ||grad||`` row by row: each embedding vector moves by L2 norm ``eps``.

    Args:
        grad: ``(n, D)`` gradient of a loss with respect to an embedding table.
        eps: the per-vector perturbation norm (> 0).
        padding_idx: a row that is never perturbed (``None`` = none).

    Returns:
        ``(n, D)`` detached perturbation; rows whose gradient is zero stay zero.

    >>> grad = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    >>> fast_gradient_delta(grad, 0.5).tolist()  # row 0 = padding, row 2 = untouched
    [[0.0, 0.0], [0.30000001192092896, 0.4000000059604645], [0.0, 0.0]]
    """
    if not isinstance(grad, Tensor) or grad.dim() != 2 or not grad.is_floating_point():
        raise ValueError(
            f"grad must be a (n, D) floating-point tensor; got "
            f"{getattr(grad, 'dtype', type(grad).__name__)} of shape "
            f"{tuple(getattr(grad, 'shape', ()))}"
        )
    if not _finite_number(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite float > 0; got {eps!r}")
    grad = grad.detach()
    # Divide by the row's max first so that tiny gradients cannot underflow the norm to 0.
    peak = grad.abs().amax(dim=1, keepdim=True)
    # (not clamped at finfo.tiny: denormal peaks must divide exactly too)
    scaled = grad / torch.where(peak > 0, peak, torch.ones_like(peak))
    norm = scaled.norm(dim=1, keepdim=True)
    delta = torch.where(peak > 0, eps * scaled / norm.clamp_min(1.0), torch.zeros_like(grad))
    if padding_idx is not None:
        delta[padding_idx] = 0.0
    return delta


def adversarial_loss(
    loss_fn: Callable[..., Tensor],
    table: Tensor | Sequence[Tensor],
    config: PerturbationConfig,
    *,
    padding_idx: int | None | Sequence[int | None] = 0,
) -> AdversarialLoss:
    """APR objective ``L(Θ) + λ L(Θ + Δ_adv)`` with the fast-gradient ``Δ_adv``.

    Args:
        loss_fn: ``loss_fn(delta) -> scalar`` evaluating the loss with ``delta`` (an
            ``(n, D)`` tensor shaped like ``table``) *added* to the table; with several tables
            it receives a tuple of deltas, one per table. It must be deterministic given its
            inputs up to dropout (sample negatives *outside* it so both passes share them).
        table: the embedding table (only its shape, dtype and device are used), or a sequence
            of tables to perturb together (e.g. MF user and item tables).
        config: ``eps`` and ``lam``.
        padding_idx: row(s) never perturbed, one value for all tables or one per table.

    Returns:
        The total, clean and adversarial losses and the perturbation(s).
    """
    if not isinstance(config, PerturbationConfig):
        raise TypeError(f"config must be a PerturbationConfig; got {type(config).__name__}")
    several = not isinstance(table, Tensor)
    tables = tuple(table) if several else (table,)
    if not tables or not all(isinstance(t, Tensor) and t.dim() == 2 for t in tables):
        raise ValueError("table must be a (n, D) tensor or a non-empty sequence of them")
    pads = tuple(padding_idx) if isinstance(padding_idx, Sequence) else (padding_idx,) * len(tables)
    if len(pads) != len(tables):
        raise ValueError(f"padding_idx has {len(pads)} entries for {len(tables)} tables")
    zeros = tuple(torch.zeros_like(t, requires_grad=True) for t in tables)
    clean = loss_fn(zeros if several else zeros[0])
    _check_scalar(clean)
    grads = torch.autograd.grad(clean, zeros, retain_graph=True, allow_unused=True)
    deltas = tuple(
        torch.zeros_like(z) if g is None else fast_gradient_delta(g, config.eps, padding_idx=p)
        for z, g, p in zip(zeros, grads, pads, strict=True)
    )
    adversarial = loss_fn(deltas if several else deltas[0])
    _check_scalar(adversarial)
    return AdversarialLoss(
        total=clean + config.lam * adversarial,
        clean=clean,
        adversarial=adversarial,
        delta=deltas if several else deltas[0],
    )


def split_delta(
    delta: Tensor | None, targets: Sequence[str] = TARGETS
) -> tuple[Tensor | None, Tensor | None]:
    """Route one item-table perturbation to ``(input, output)`` per ``targets``."""
    if delta is None:
        return None, None
    return (
        delta if "input" in targets else None,
        delta if "output" in targets else None,
    )


def _check_scalar(loss: object) -> None:
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.requires_grad:
        raise ValueError(
            "loss_fn must return a scalar tensor that depends on its delta argument; got "
            f"{type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}"
        )


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
