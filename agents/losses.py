"""Next-item losses of :mod:`agents.mle`: full-softmax CE (dense or chunked) and sampled BCE.

:func:`chunked_cross_entropy` is the fused cross-entropy the field uses for large vocabularies
(Liger / Cut-Cross-Entropy style): the ``(M, n_items)`` logits are never materialised. Rows
are processed ``chunk_size`` at a time; each chunk's logits, softmax and logit gradient live
only in cache-sized buffers, and the gradients of the states and of the item table are
accumulated during the forward pass (the loss is a scalar, so backward only rescales them).
It gives the dense loss and gradients to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from agents.perturbation import split_delta
from agents.policy import SequencePolicy

LOSSES = ("ce", "bce")


def sample_negatives(targets: Tensor, n_items: int, generator: torch.Generator) -> Tensor:
    """One uniform negative in ``1..n_items`` per entry, never equal to the target.

    Args:
        targets: ``(...)`` int64 target ids (``0`` entries get an arbitrary negative).
        n_items: catalogue size (>= 2).
        generator: a seeded generator on ``targets.device``.
    """
    if n_items < 2:
        raise ValueError(f"negative sampling needs n_items >= 2; got {n_items}")
    draw = torch.randint(
        1, n_items, targets.shape, generator=generator, device=targets.device
    )  # 1..n_items - 1, then skip over the target: uniform over the n_items - 1 others
    return draw + (draw >= targets).long() * (targets > 0).long()


class _ChunkedCE(torch.autograd.Function):
    """Mean (optionally row-weighted) softmax CE of ``states @ table[1:].T`` against
    ``targets - 1``; gradients computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(ctx, states, table, targets, weights, chunk_size: int, matmul_dtype, compiled):  # noqa: ANN001
        classes = table[1:]  # the padding row is never a class and gets no gradient
        n = states.shape[0]
        needs = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_states = torch.empty_like(states) if needs else None
        grad_classes = torch.zeros_like(classes) if needs else None
        # the matmuls may run in bfloat16 (fp32 accumulation); softmax and sums stay fp32
        low = classes.to(matmul_dtype)
        total = states.new_zeros(())
        terms = _compiled_terms() if compiled else _softmax_terms
        for lo in range(0, n, chunk_size):
            s, y = states[lo : lo + chunk_size], targets[lo : lo + chunk_size] - 1
            s_low = s.to(matmul_dtype)
            w = None if weights is None else weights[lo : lo + chunk_size]
            scale = (w / n) if w is not None else states.new_full((len(y),), 1.0 / n)
            nll, grad = terms(s_low @ low.T, y, scale, states.dtype, needs)
            total += nll.sum() if w is None else (nll * w).sum()
            if needs:
                grad_states[lo : lo + chunk_size] = grad @ low
                grad_classes.add_(grad.T @ s_low)
        ctx.save_for_backward(grad_states, grad_classes)
        return total / n

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001
        grad_states, grad_classes = ctx.saved_tensors
        d_states = d_table = None
        if ctx.needs_input_grad[0]:
            d_states = grad_states * grad_output
        if ctx.needs_input_grad[1]:
            d_table = F.pad(grad_classes * grad_output, (0, 0, 1, 0))  # row 0: zero
        return d_states, d_table, None, None, None, None, None


def _softmax_terms(
    logits: Tensor, y: Tensor, scale: Tensor, dtype: torch.dtype, needs_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """A chunk's ``(rows,)`` NLL and ``(rows, n_items)`` logit gradient ``(softmax - onehot) *
    scale`` in the logits' dtype (the matmuls'); softmax and sums in ``dtype`` (fp32)."""
    # one log-softmax pass and one exp pass: fewer sweeps over the (rows, n_items) buffer
    # than logsumexp followed by exp(logits - lse)
    log_p = torch.log_softmax(logits.to(dtype), dim=1)
    nll = -log_p.gather(1, y[:, None]).squeeze(1)
    if not needs_grad:
        return nll, None
    grad = log_p.exp_()
    grad.scatter_add_(1, y[:, None], grad.new_full((len(y), 1), -1.0))
    return nll, grad.mul_(scale[:, None]).to(logits.dtype)


def _fusable_terms(
    logits: Tensor, y: Tensor, scale: Tensor, dtype: torch.dtype, needs_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`_softmax_terms` written for ``torch.compile`` to fuse into two sweeps (the
    eager version makes six over the buffer: cast, log-softmax's three, exp, scale)."""
    z = logits.to(dtype)
    lse = torch.logsumexp(z, dim=1, keepdim=True)
    nll = lse.squeeze(1) - z.gather(1, y[:, None]).squeeze(1)
    if not needs_grad:
        return nll, None
    onehot = torch.zeros_like(z).scatter_(1, y[:, None], 1.0)
    return nll, ((torch.exp(z - lse) - onehot) * scale[:, None]).to(logits.dtype)


_COMPILED: dict[str, object] = {}


def _compiled_terms():
    """:func:`_fusable_terms` compiled once per process (dynamic shapes: chunks of any size)."""
    if "terms" not in _COMPILED:
        _COMPILED["terms"] = torch.compile(_fusable_terms, dynamic=True)
    return _COMPILED["terms"]


def chunked_cross_entropy(
    states: Tensor,
    table: Tensor,
    targets: Tensor,
    *,
    weights: Tensor | None = None,
    chunk_size: int = 1024,
    matmul_dtype: torch.dtype | None = None,
    compiled: bool = False,
) -> Tensor:
    """Mean softmax cross-entropy of ``states @ table.T`` over classes ``1..n_items``.

    Equals ``F.cross_entropy(logits, targets)`` with ``logits = states @ table.T`` and column 0
    (padding) at ``-inf`` — or, with ``weights``, the mean of the row-weighted losses — but
    never holds more than ``chunk_size`` rows of logits. Differentiable in ``states`` and
    ``table`` (first-order; not twice).

    Args:
        states: ``(M, D)`` float states.
        table: ``(n_items + 1, D)`` item table (row 0 = padding).
        targets: ``(M,)`` int64 ids in ``1..n_items``.
        weights: optional ``(M,)`` per-row weights.
        chunk_size: rows per chunk (``>= 1``).
        matmul_dtype: dtype of the three matmuls per chunk (logits, both gradients):
            ``torch.bfloat16`` runs them 2-4x faster on CPUs with AVX512-BF16/AMX and on GPUs
            (fp32 accumulation; logits rounded to bf16's 8-bit mantissa before an fp32
            softmax); the default ``None`` (the states' dtype) is the dense loss to rounding.
        compiled: run each chunk's softmax, NLL and logit gradient as one ``torch.compile``
            kernel (two sweeps over the chunk's logits instead of six; the first call in a
            process compiles: ~16 s on a CPU with a cold inductor cache, ~4 s warm). The
            same loss and gradients to float rounding.
    """
    matmul_dtype = states.dtype if matmul_dtype is None else matmul_dtype
    if matmul_dtype not in (torch.float32, torch.float64, torch.bfloat16):
        raise ValueError(
            f"matmul_dtype must be None, torch.float32, float64 or bfloat16; got {matmul_dtype!r}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    if states.ndim != 2 or table.ndim != 2 or states.shape[1] != table.shape[1]:
        raise ValueError(
            f"states (M, D) and table (n_items + 1, D) must share D; got {tuple(states.shape)} "
            f"and {tuple(table.shape)}"
        )
    if states.shape[0] == 0:
        return (states.sum() + table.sum()) * 0.0 / 0.0  # the dense loss of no rows: NaN
    if weights is not None:
        weights = weights.to(states.dtype)
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be a bool; got {type(compiled).__name__}")
    return _ChunkedCE.apply(states, table, targets, weights, chunk_size, matmul_dtype, compiled)


def sequence_loss(
    policy: SequencePolicy,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss: str = "ce",
    negatives: Tensor | None = None,
    delta: Tensor | None = None,
    where: tuple[str, ...] = ("input", "output"),
    weights: Tensor | None = None,
    chunk_size: int | None = None,
    matmul_dtype: torch.dtype | None = None,
    compiled: bool = False,
) -> Tensor:
    """Mean all-position next-item loss of a batch of windows.

    Only positions with a target enter the loss (their states are gathered before the output
    layer, so padded positions cost nothing there).

    Args:
        policy: the model.
        inputs: ``(B, L)`` left-padded input windows.
        targets: ``(B, L)`` next items, ``0`` = no target (ignored).
        loss: ``"ce"`` or ``"bce"``.
        negatives: ``(B, L)`` negatives for ``"bce"`` (see :func:`sample_negatives`).
        delta: optional ``(n_items + 1, D)`` item-table perturbation.
        where: where ``delta`` applies, a subset of ``("input", "output")``.
        weights: optional ``(B,)`` per-sequence weights of the positive term (the whole CE, or
            BCE's positive part), as MFGAN's discriminator-weighted generator step; the mean
            stays over target positions, so all-ones weights give the unweighted loss.
        chunk_size: ``"ce"`` only: ``None`` = dense logits; an int = :func:`chunked_cross_entropy`
            with that many rows per chunk (the same loss, never the whole logit matrix).
        matmul_dtype: the chunked CE's matmul dtype (``torch.bfloat16``: faster, rounded
            logits; see :func:`chunked_cross_entropy`).
        compiled: the chunked CE's compiled softmax step (see :func:`chunked_cross_entropy`).
    """
    d_in, d_out = split_delta(delta, where)
    valid = targets > 0
    row_weights = None
    if weights is not None:
        if weights.shape != (len(targets),):
            raise ValueError(
                f"weights must have shape ({len(targets)},); got {tuple(weights.shape)}"
            )
        row_weights = weights.to(torch.float32).unsqueeze(1).expand_as(targets)[valid]
    states = policy.encode(inputs, delta=d_in)[valid]  # (M, D): only positions with a target
    table = policy.item_table(d_out)
    if loss == "ce" and chunk_size is not None:
        return chunked_cross_entropy(
            states, table, targets[valid], weights=row_weights, chunk_size=chunk_size,
            matmul_dtype=matmul_dtype, compiled=compiled,
        )  # fmt: skip
    if loss == "ce":
        logits = states @ table.T
        logits[:, 0] = float("-inf")  # padding is never a class (and row 0 gets no gradient)
        if row_weights is None:
            return F.cross_entropy(logits, targets[valid])
        return (F.cross_entropy(logits, targets[valid], reduction="none") * row_weights).mean()
    if loss == "bce":
        if negatives is None:
            raise ValueError("loss='bce' needs negatives (see sample_negatives)")
        pos = (states * table[targets[valid]]).sum(-1)
        neg = (states * table[negatives[valid]]).sum(-1)
        positive = F.softplus(-pos) if row_weights is None else F.softplus(-pos) * row_weights
        return positive.mean() + F.softplus(neg).mean()
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
