"""ACVAE: the adversarial and contrastive variational autoencoder (Xie et al., WWW 2021).

Architecture (official ``ACVAE/ACVAE-PyTorch``, ``model.py``: ``Model`` with
``model_func='fc_cnn'``, ``add_eps=True``), at every position of a left-padded history::

    h = GRU(dropout(item_embedding(x)))                 # (B, L, H), causal
    a = softplus(W_a (h + n(eps_1)))                    # position-wise, "add eps"
    c = softplus(CausalConv_k(a + n(eps_2)))            # (B, L, 2H), left zero padding
    z = W_z dropout(h + softplus(W_c c))                # (B, L, latent_dim)
    logits = W_o tanh(W_d z) + b_o                      # (B, L, n_items + 1), untied output

``n(eps) = tanh(W eps + b)``, ``eps ~ N(0, I)``: the noise is an *input* of the encoder (AVB,
Mescheder et al. 2017), so ``q(z | x)`` is implicit and its KL term is estimated by
:class:`~agents.baselines.acvae.discriminators.AVBAdversary`. The official code samples
``eps`` even at
evaluation; here eval mode (:meth:`~agents.policy.SequencePolicy.score`) uses ``eps = 0``, so
rankings are deterministic.
``avb=False`` (the "without AVB" ablation) drops the noise and outputs a Gaussian
``(mean, logvar)`` (``z = mean`` in eval); ``cnn=False`` makes the convolution position-wise.

Causality: the GRU and the convolution (``k - 1`` zeros on the left, as the official
``Conv1d(padding=k-1)[..., :-(k-1)]``) only look back, so position ``t`` never sees items after
``t``. Each row's GRU starts afresh at its first real item
(:func:`agents.baselines.acvae.gru_scan.suffix_gru`) and everything after it is computed at the
real positions only: extra left padding changes nothing and costs nothing.
:meth:`ACVAEPolicy.encode` returns ``[tanh(W_d z), 1]`` and :meth:`ACVAEPolicy.item_table`
``[W_o, b_o]``, so the untied decoder fits the ``SequencePolicy`` contract (``score``,
``act``, ``log_prob``, MLE, REINFORCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.baselines.acvae.gru_scan import suffix_gru
from agents.checkpoint import forked_global_rng
from agents.policy import SequencePolicy
from recgym._checks import check_fraction, check_int
from recgym.device import resolve_device


@dataclass(frozen=True, kw_only=True)
class ACVAEConfig:
    """Architecture of :class:`ACVAEPolicy` (defaults: the official ``train.py`` hyper-params).

    Attributes:
        max_len: longest history window ``L``.
        embed_dim: item-embedding size ``E`` (``item_embed_size=128``).
        hidden_dim: GRU and convolution width ``H`` (``rnn_size=100``).
        latent_dim: size of ``z`` (``latent_size=64``).
        kernel_size: width of the causal convolution (5 in ``FCEncoderCNN``).
        embed_dropout: dropout of the item embeddings before the GRU (0.5 in ``Model``).
        dropout: dropout before the latent layer (0.5 in ``FCEncoderCNN``).
        avb: implicit posterior with noise inputs (AVB); ``False`` = Gaussian posterior with an
            analytic KL (the "without AVB" ablation).
        cnn: causal convolution over time; ``False`` = position-wise layer (the "without CNN"
            ablation).
    """

    max_len: int = 50
    embed_dim: int = 128
    hidden_dim: int = 100
    latent_dim: int = 64
    kernel_size: int = 5
    embed_dropout: float = 0.5
    dropout: float = 0.5
    avb: bool = True
    cnn: bool = True

    def __post_init__(self) -> None:
        for name in ("max_len", "embed_dim", "hidden_dim", "latent_dim", "kernel_size"):
            check_int(self, name, 1)
        for name in ("embed_dropout", "dropout"):
            check_fraction(self, name)
        for name in ("avb", "cnn"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"ACVAEConfig.{name} must be a bool; got {getattr(self, name)!r}")


class LatentCodes(NamedTuple):
    """What :meth:`ACVAEPolicy.latent` returns; every tensor is zero at padding positions.

    Attributes:
        z: ``(B, L, latent_dim)`` latent codes (sampled in training, ``eps = 0`` in eval).
        mask: ``(B, L)`` bool, ``True`` at real (non-padding) positions.
        inputs: ``(B, L, E)`` item embeddings of the history, the ``x`` the discriminators see.
        mean: ``(B, L, latent_dim)`` Gaussian mean (``avb=False`` only, else ``None``).
        logvar: ``(B, L, latent_dim)`` Gaussian log-variance (``avb=False`` only).
    """

    z: Tensor
    mask: Tensor
    inputs: Tensor
    mean: Tensor | None = None
    logvar: Tensor | None = None


class NoiseInput(nn.Module):
    """``x + tanh(W eps + b)``: noise ``eps`` through a learned map (official ``AddEps``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: Tensor, eps: Tensor) -> Tensor:
        """``(..., dim) -> (..., dim)``; ``eps`` has the shape of ``x``."""
        return x + torch.tanh(self.linear(eps))


class CausalConv1d(nn.Module):
    """A 1-D convolution over time whose output at ``t`` sees inputs ``t - k + 1 .. t`` only.

    The sequence is padded with ``kernel_size - 1`` zeros on the left (the official code pads
    both sides by 4 and drops the last 4 outputs, which is the same).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, L, in_dim) -> (B, L, out_dim)``."""
        x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
        return self.conv(x).transpose(1, 2)

    def at(self, rows: Tensor, where: Tensor) -> Tensor:
        """``forward`` at the ``M`` true positions of ``where`` only: ``(M, in_dim) -> (M,
        out_dim)``, ``rows`` = the inputs there (every other position's input is zero).

        Each output is one ``(in_dim * k)``-wide dot product with its window of inputs, so the
        cost is that of the ``M`` positions, not of the whole ``(B, L)`` grid.
        """
        grid = _to_grid(rows, where)  # (B, L, in_dim)
        grid = F.pad(grid, (0, 0, self.kernel_size - 1, 0))  # k - 1 zeros before each row
        windows = grid.unfold(1, self.kernel_size, 1)[where]  # (M, in_dim, k)
        weight = self.conv.weight.flatten(1)  # (out_dim, in_dim * k), the same (in, k) order
        return torch.addmm(self.conv.bias, windows.flatten(1), weight.T)


class ACVAEPolicy(SequencePolicy):
    """The ACVAE sequential recommender and next-item policy.

    Args:
        config: the architecture (default ``ACVAEConfig()``).
        n_items: catalogue size; ids ``1..n_items``, ``0`` is padding.
        seed: seeds the weight initialisation (the caller's global RNG is left untouched).
        device: where the weights live (``"cuda"`` without CUDA is an error).
    """

    checkpoint_key = "acvae"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    config_class = ACVAEConfig
    padding_invariant = True  # extra left padding changes no state

    def __init__(
        self,
        config: ACVAEConfig | None = None,
        *,
        n_items: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        config = ACVAEConfig() if config is None else config
        if not isinstance(config, ACVAEConfig):
            raise TypeError(f"config must be an ACVAEConfig; got {type(config).__name__}")
        super().__init__(n_items=n_items, max_len=config.max_len)
        self.config = config
        e, h, d = config.embed_dim, config.hidden_dim, config.latent_dim
        with forked_global_rng(seed):
            self.item_embedding = nn.Embedding(n_items + 1, e, padding_idx=0)
            self.embed_dropout = nn.Dropout(config.embed_dropout)
            self.gru = nn.GRU(e, h, batch_first=True)
            # One noise map used at both injection points, as the official FCEncoderCNN does.
            self.noise = NoiseInput(h) if config.avb else None
            self.pointwise_in = nn.Linear(h, h)
            self.temporal = CausalConv1d(h, 2 * h, config.kernel_size if config.cnn else 1)
            self.pointwise_out = nn.Linear(2 * h, h)
            self.dropout = nn.Dropout(config.dropout)
            self.head = nn.Linear(h, d if config.avb else 2 * d)
            self.decoder_hidden = nn.Linear(d, e)
            self.output = nn.Linear(e, n_items + 1)
            nn.init.xavier_normal_(self.decoder_hidden.weight)
            nn.init.xavier_normal_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        self.to(resolve_device(device))

    # ------------------------------------------------------------------ encoder
    def latent(
        self,
        history: Tensor,
        *,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> LatentCodes:
        """Latent codes of every position of a left-padded history.

        Args:
            history: ``(B, L)`` int64 item ids, ``0`` = padding on the left only.
            sample: draw the noise (``eps ~ N(0, I)``); ``None`` = only in training mode.
                Without sampling, ``eps = 0`` (AVB) or ``z = mean`` (Gaussian).
            generator: draws ``eps``; ``None`` = the global RNG (trainers fork and seed it).

        Returns:
            :class:`LatentCodes` with ``z`` of shape ``(B, L, latent_dim)``.

        Raises:
            ValueError: a row has padding after a real item (not left-padded).
        """
        sample = self.training if sample is None else sample
        inputs = self.item_embedding(history)  # (B, L, E); the padding row is zero
        hidden, keep, first = self._recurrent(history, inputs)  # (M, H): real positions
        rows = self.head(self._trunk(hidden, first, sample, generator))
        if self.config.avb:
            return LatentCodes(_to_grid(rows, keep), keep, inputs)
        mean, logvar = (_to_grid(x, keep) for x in rows.clamp(-20.0, 20.0).chunk(2, dim=-1))
        z = mean
        if sample:
            noise = _normal(mean.shape, mean, generator) * keep.unsqueeze(-1).to(mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        return LatentCodes(z, keep, inputs, mean, logvar)

    def _recurrent(self, history: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """GRU states of the real positions, each row's GRU starting at its first real item.

        Returns:
            ``(hidden (M, H), keep (B, L) bool, first (B, L) bool)``: ``keep`` marks the real
            positions of ``history``, ``first`` the same positions in the frame where each
            row's real items come first (the first ``n_b`` of row ``b``). Both list them in the
            same row-major order as the rows of ``hidden``, so ``out[keep] = hidden`` maps them
            back (:func:`_to_grid`).
        """
        keep = history != 0
        if keep.shape[1] > 1 and bool((keep[:, 1:] < keep[:, :-1]).any()):
            raise ValueError(
                "ACVAEPolicy needs left-padded histories (all 0s before the first real item); "
                "got a row with padding after a real item"
            )
        real = keep.sum(dim=1)
        steps = torch.arange(history.shape[1], device=history.device).unsqueeze(0)
        # The GRU runs from each row's first real item only: extra left padding changes
        # nothing, and on short histories the padding is most of the batch.
        x = self.embed_dropout(inputs)
        hidden = suffix_gru(self.gru, x, history.shape[1] - real, zero_prefix=False)
        return hidden[keep], keep, steps < real.unsqueeze(1)

    def _trunk(
        self, hidden: Tensor, first: Tensor, sample: bool, generator: torch.Generator | None
    ) -> Tensor:
        """The convolutional encoder (official ``FCEncoderCNN.forward`` without its output
        layer) on the ``(M, H)`` GRU states of the real positions.

        Position-wise layers and the convolution run on those rows only, but the noise and the
        dropout mask are drawn for the whole ``(B, L, H)`` frame where real items come first
        (``first``) and read there, so the draws and the values are those of the dense form
        over that frame (``tests/agents/baselines/test_acvae_step.py``).
        """
        a = hidden
        if self.noise is not None:
            a = self.noise(a, _noise_rows(a, first, sample, generator))
        a = F.softplus(self.pointwise_in(a))
        if self.noise is not None:
            a = self.noise(a, _noise_rows(a, first, sample, generator))
        c = F.softplus(self.temporal.at(a, first))  # (M, 2H)
        out = hidden + F.softplus(self.pointwise_out(c))
        return self.dropout(_to_grid(out, first))[first]

    def encoder_states(self, history: Tensor) -> Tensor:
        """``(B, L, H)`` GRU states, left-padded like ``history`` (zero at padding)."""
        hidden, keep, _ = self._recurrent(history, self.item_embedding(history))
        return _to_grid(hidden, keep)

    # ------------------------------------------------------------------ decoder
    def decoder_states(self, z: Tensor, mask: Tensor) -> Tensor:
        """``[tanh(W_d z), 1]``, ``(B, L, latent_dim) -> (B, L, E + 1)``, zero at padding."""
        h = torch.tanh(self.decoder_hidden(z))
        h = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)
        return h * mask.unsqueeze(-1).to(h.dtype)

    def decode(self, codes: LatentCodes, where: Tensor | None = None) -> Tensor:
        """Decoder logits of latent codes.

        Args:
            codes: from :meth:`latent`.
            where: optional ``(B, L)`` bool; decode only its ``M`` true positions.

        Returns:
            ``(B, L, n_items + 1)`` logits (0 at padding), or ``(M, n_items + 1)`` with
            ``where``: the output layer is most of the cost, and short histories leave most
            positions without a target.
        """
        if where is None:
            return self.decoder_states(codes.z, codes.mask) @ self.item_table().T
        return self.target_states(codes, where) @ self.item_table().T

    def target_states(self, codes: LatentCodes, where: Tensor) -> Tensor:
        """``(M, E + 1)`` decoder states of the ``M`` true positions of ``(B, L)`` bool
        ``where``: ``decoder_states(codes.z, codes.mask)[where]``, computed on those rows only."""
        h = torch.tanh(self.decoder_hidden(codes.z[where]))
        h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        return h * codes.mask[where].unsqueeze(1).to(h.dtype)

    def encode(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Decoder states ``(B, L, E + 1)`` such that ``encode(h) @ item_table().T`` = logits.

        In training mode the noise is sampled from the global RNG (as dropout is); in eval mode
        ``eps = 0``. ``delta`` (embedding perturbations) is not supported: input and output
        tables are untied here.
        """
        _no_delta(delta)
        codes = self.latent(history)
        return self.decoder_states(codes.z, codes.mask)

    def item_table(self, delta: Tensor | None = None) -> Tensor:
        """``(n_items + 1, E + 1)`` output table ``[W_o, b_o]`` of the decoder."""
        _no_delta(delta)
        return torch.cat([self.output.weight, self.output.bias.unsqueeze(1)], dim=1)

    def init_kwargs(self) -> dict:
        """Constructor arguments besides ``config`` (the seed is irrelevant once loaded)."""
        return {"n_items": self.n_items}


# ----------------------------------------------------------------------------- objective
def reconstruction_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean multinomial NLL of the next items (official ``loss_func.vae_loss``, per position).

    Args:
        logits: ``(B, L, n_items + 1)`` or ``(M, n_items + 1)``.
        targets: ``(B, L)`` resp. ``(M,)`` next items, ``0`` = none (ignored).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} need targets of shape {tuple(logits.shape[:-1])}; "
            f"got {tuple(targets.shape)}"
        )
    valid = targets > 0
    chosen = logits[valid]  # (M, n_items + 1), a copy
    chosen[:, 0] = float("-inf")  # padding is never a class
    return F.cross_entropy(chosen, targets[valid])


# ----------------------------------------------------------------------------- helpers
def _to_grid(rows: Tensor, where: Tensor) -> Tensor:
    """``(M, C)`` rows into a zero ``(B, L, C)`` grid at the true positions of ``where``
    (row-major order, the order of ``grid[where]``)."""
    grid = rows.new_zeros(*where.shape, rows.shape[-1])
    return grid.index_put((where,), rows)


def _normal(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _noise_rows(
    rows: Tensor, where: Tensor, sample: bool, generator: torch.Generator | None
) -> Tensor:
    """``eps`` for the ``(M, C)`` rows at ``where``: drawn for the whole ``(B, L, C)`` grid
    (the draws of the dense form) and read there; zero without sampling."""
    if not sample:
        return torch.zeros_like(rows)
    return _normal((*where.shape, rows.shape[-1]), rows, generator)[where]


def _no_delta(delta: Tensor | None) -> None:
    if delta is not None:
        raise ValueError(
            "ACVAEPolicy has untied input and output item tables; embedding perturbations "
            "(delta) are not supported"
        )
