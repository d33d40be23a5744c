"""ACVAE's two discriminators (Xie et al., WWW 2021) and the KL term the first one estimates.

- :class:`AVBAdversary` ``T_psi(x, z)`` tells posterior codes from prior samples; at its optimum
  it equals ``log q(z | x) - log p(z)``, so ``E_q[T_psi]`` replaces the ELBO's KL term (AVB).
- :class:`ContrastiveDiscriminator` ``G_omega(x, z)`` tells matched pairs from shuffled ones;
  its loss is the contrastive (InfoMax) term that makes ``z`` informative about its history.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.baselines.acvae.gru_scan import suffix_gru
from agents.baselines.acvae.model import LatentCodes


class AVBAdversary(nn.Module):
    """The AVB adversary ``T_psi(x_t, z_t)`` of every position (official ``model.Adversary``).

    ``concat(x, z) -> Linear(hidden) -> dropout -> 2 residual blocks (ELU) -> Linear(latent_dim)
    -> dropout``, plus ``z_d^2 / 2`` on head ``d``: one logistic head per latent dimension, as
    in the official code. Every head sees all of ``(x, z)``, so at the optimum each equals
    ``log q(z | x) - log p(z)`` and their mean over heads, averaged over ``q``, estimates the
    KL term of the ELBO (official ``loss_func.kl_loss``).

    Args:
        embed_dim: size of ``x`` (item embeddings).
        latent_dim: size of ``z`` (and number of heads).
        hidden_dim: width (128 in the official code).
        dropout: dropout after the input and output layers (0.2).
    """

    def __init__(
        self, *, embed_dim: int, latent_dim: int, hidden_dim: int = 128, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(embed_dim + latent_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.Linear(hidden_dim, hidden_dim))
            for _ in range(2)
        )
        self.out = nn.Linear(hidden_dim, latent_dim)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Position-wise logits ``(..., latent_dim)`` of ``x (..., E)`` and ``z (..., latent_dim)``
        (``> 0`` = "from the posterior")."""
        net = self.dropout(self.inp(torch.cat([x, z], dim=-1)))
        for block in self.blocks:
            net = F.elu(net + block(net))
        return self.dropout(self.out(net)) + 0.5 * z.pow(2)

    def forward(self, x: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, L, latent_dim)`` at every position, zero at padding.

        Args:
            x: ``(B, L, E)`` item embeddings; z: ``(B, L, latent_dim)``; mask: ``(B, L)`` bool.
        """
        logits = self.logits(x, z)
        return logits * mask.unsqueeze(-1).to(logits.dtype)

    def loss(self, codes: LatentCodes, generator: torch.Generator | None = None) -> dict:
        """Logistic loss: posterior codes (detached) vs prior samples ``N(0, I)`` (official
        ``loss_func.adversary_kl_loss``), over real positions.

        Only the ``M`` real positions are scored (padding is most of a short-history batch),
        both classes in one pass; the prior draws are ``(M, latent_dim)``.

        Returns:
            ``{"loss": scalar tensor, "accuracy": float}``.
        """
        x, z = codes.inputs.detach()[codes.mask], codes.z.detach()[codes.mask]  # (M, ...)
        prior_z = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        posterior, prior = self.logits(x.repeat(2, 1), torch.cat([z, prior_z])).chunk(2)
        loss = F.softplus(-posterior).mean() + F.softplus(prior).mean()
        return {"loss": loss, "accuracy": _accuracy(posterior, prior)}


class ContrastiveDiscriminator(nn.Module):
    """``G_omega(x, z)``: tells matched ``(x, z)`` from ``(x, shuffled z)`` at every position.

    ``GRU(concat(x, z)) -> GELU -> Linear(1)`` (official ``model.GRUAdversary``); maximising the
    Jensen-Shannon mutual-information bound it defines (Deep InfoMax) makes ``z`` informative
    about its own history.

    Args:
        embed_dim: size of ``x``; latent_dim: size of ``z``; hidden_dim: GRU width (128).
    """

    def __init__(self, *, embed_dim: int, latent_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.gru = nn.GRU(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, x: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, L)`` (``> 0`` = "matched pair"), zero at padding of ``mask``."""
        states, _ = self.gru(torch.cat([x, z], dim=-1))
        logits = self.out(F.gelu(states)).squeeze(-1)
        return logits * mask.to(logits.dtype)

    def loss(self, codes: LatentCodes) -> dict:
        """Jensen-Shannon InfoMax loss ``softplus(-G(x, z)) + softplus(G(x, z'))`` (official
        ``loss_func.adversary_loss``), ``z'`` = ``z`` rolled by one row (no row keeps its own).

        The same as scoring ``self(x, z, mask)[mask]`` and ``self(x, z', mask')[mask']``
        (``mask'`` = real in both rows), but the GRU steps only from each row's first non-zero
        input: before it, ``x`` (masked) and ``z`` are zero, so a row's state is that of an
        all-zero sequence, run once for all rows (:func:`suffix_gru` with ``zero_prefix``).

        Returns:
            ``{"loss": scalar tensor, "accuracy": float}`` over positions real in both rows.
        """
        x, z, mask = codes.inputs, codes.z, codes.mask
        x = x * mask.unsqueeze(-1).to(x.dtype)  # a no-op for ACVAEPolicy (zero padding row)
        pad = (~mask).sum(dim=1)
        shuffled_mask = mask & mask.roll(1, dims=0)
        pairs = torch.cat([torch.cat([x, z], -1), torch.cat([x, z.roll(1, dims=0)], -1)])
        first_input = torch.cat([pad, torch.minimum(pad, pad.roll(1))])
        states = suffix_gru(self.gru, pairs, first_input, zero_prefix=True)
        n = len(x)
        joint = self.out(F.gelu(states[:n][mask])).squeeze(-1)
        marginal = self.out(F.gelu(states[n:][shuffled_mask])).squeeze(-1)
        loss = F.softplus(-joint).mean() + F.softplus(marginal).mean()
        return {"loss": loss, "accuracy": _accuracy(joint, marginal)}


def kl_term(codes: LatentCodes, adversary: AVBAdversary | None) -> Tensor:
    """Mean per-position KL surrogate: ``E_q[T_psi(x, z)]`` (AVB) or the analytic Gaussian KL."""
    if codes.mean is not None:  # the "without AVB" ablation
        kl = 0.5 * (codes.mean.pow(2) + codes.logvar.exp() - 1.0 - codes.logvar).sum(-1)
        return kl[codes.mask].mean()
    if adversary is None:
        raise ValueError("an AVB model needs an AVBAdversary for its KL term")
    return adversary.logits(codes.inputs[codes.mask], codes.z[codes.mask]).mean()


def _accuracy(positive: Tensor, negative: Tensor) -> float:
    """Share of correct signs, ``positive > 0`` and ``negative < 0``, each class weighted 1/2."""
    if positive.numel() == 0 or negative.numel() == 0:
        return float("nan")
    return 0.5 * (float((positive > 0).float().mean()) + float((negative < 0).float().mean()))
