"""ACVAE's latent-correlation measure (Xie et al., WWW 2021, Eq. 14, reconstructed).

The paper compares how correlated the latent codes of ACVAE and of a Gaussian VAE are; its
text could not be retrieved, so :func:`latent_correlation` is our reading: the mean absolute
Pearson correlation between latent dimensions (default) or between users' codes, in ``[0, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents.baselines.acvae.model import ACVAEPolicy
from recgym._torch_io import evaluating
from recgym.splits import STAGES, Split


@torch.no_grad()
def latent_correlation(
    model: ACVAEPolicy,
    split: Split,
    *,
    stage: str = "valid",
    between: str = "dimensions",
    max_len: int | None = None,
    batch_size: int = 1024,
) -> float:
    """Mean absolute Pearson correlation of the latent codes of a stage's histories.

    The code of a target is ``z`` at the newest position of the history before it (eval mode:
    ``eps = 0`` / the Gaussian mean), one per user under leave-one-out. ``between="dimensions"``
    averages ``|corr(z_i, z_j)|`` over pairs of latent dimensions ``i != j`` (across users);
    ``between="users"`` over pairs of users (across dimensions). Lower = more independent
    dimensions resp. more personalised codes (Eq. 14 of the paper, reconstructed).

    Returns:
        A float in ``[0, 1]``.

    Raises:
        ValueError: bad ``stage``/``between``, or fewer than two codes or dimensions.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    if between not in ("dimensions", "users"):
        raise ValueError(f"between must be 'dimensions' or 'users'; got {between!r}")
    users, positions = split.targets(stage)
    keep = positions > split.dataset.offsets[users]  # a target needs a non-empty history
    users, positions, codes = users[keep], positions[keep], []
    with evaluating(model):
        for begin in range(0, len(users), batch_size):
            window = slice(begin, begin + batch_size)
            history = split.dataset.windows(
                users[window], positions[window], max_len or model.max_len, device=model.device
            )
            codes.append(model.latent(history, sample=False).z[:, -1])  # (b, latent_dim)
    codes = torch.cat(codes) if codes else torch.zeros(0, model.config.latent_dim)
    return mean_abs_correlation(codes.T if between == "users" else codes)


def mean_abs_correlation(samples: Tensor) -> float:
    """Mean ``|Pearson correlation|`` over pairs of distinct columns of ``(n, d)`` samples.

    A constant column has correlation 0 with everything. Computed in ``(1024, d)`` blocks, so
    ``d`` may be large (users).

    Raises:
        ValueError: fewer than two rows or columns.
    """
    n, d = samples.shape
    if n < 2 or d < 2:
        raise ValueError(f"correlation needs >= 2 samples of >= 2 variables; got {n} x {d}")
    centred = samples.double() - samples.double().mean(dim=0)
    norms = centred.norm(dim=0)  # (d,)
    unit = centred / norms.clamp_min(1e-12)  # unit columns; constant ones stay zero
    total = 0.0
    for begin in range(0, d, 1024):
        block = unit[:, begin : begin + 1024].T @ unit  # (k, d) rows of the correlation matrix
        block[:, begin : begin + 1024].fill_diagonal_(0.0)
        total += float(block.abs().sum())
    return min(1.0, max(0.0, total / (d * (d - 1))))
