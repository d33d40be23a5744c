"""EB-SeqGAN: an energy-based discriminator over item sequences.

An :class:`EnergyDiscriminator` maps a left-padded history to a non-negative scalar energy
``E(S)``; real sequences are pushed to low energy and generated ones above a margin ``m`` with
the EBGAN loss (Zhao et al., 2017)::

    L_D = E_real[E(S)] + E_gen[max(0, m - E(S))]

and the generator is rewarded with ``-E`` (Yoo et al., 2017, "Energy-based sequence GANs for
recommendation and their connection to imitation learning").

Link to maximum-entropy IRL: with reward ``r(S) = -E(S)``, a generator ``p`` that maximises
``E_p[-E(S)] + H(p)`` is optimal at ``p*(S) = exp(-E(S)) / Z``: the Boltzmann distribution of
the energy. This is the MaxEnt IRL model of demonstrations, and fitting ``E`` adversarially to
real vs generated sequences is the sample-based MaxEnt IRL / energy-based GAN correspondence of
Finn, Christiano, Abbeel & Levine (2016), "A connection between generative adversarial
networks, inverse reinforcement learning, and energy-based models". The entropy term belongs to
the agent (its entropy bonus), not to this module.

Per-step rewards (``per_step=True``): the reward of the item appended at step ``t`` is the
energy drop it causes, ``r_t = -(E(s_{<=t}) - E(s_{<t}))``, so an episode's rewards telescope to
``E(s_0) - E(s_T)``: the same total as a terminal ``-E(s_T)`` up to the constant start energy,
but credited to the step that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recgym._checks import check_float, check_fraction, check_int
from recgym._torch_io import evaluating
from recgym.device import resolve_device
from rewards.base import RewardModel

Encoder = Literal["gru", "cnn", "transformer"]
ENCODERS: tuple[str, ...] = ("gru", "cnn", "transformer")


@dataclass(frozen=True, kw_only=True)
class EnergyConfig:
    """Architecture and loss of an :class:`EnergyDiscriminator`.

    Attributes:
        encoder: ``"gru"`` (causal recurrent), ``"cnn"`` (causal dilated convolutions, left
            padding) or ``"transformer"`` (bidirectional self-attention over the whole prefix).
        dim: embedding and hidden size.
        n_layers: encoder layers.
        kernel_size: CNN kernel width (layer ``i`` is dilated by ``2**i``).
        n_heads: transformer attention heads; must divide ``dim``.
        dropout: dropout on embeddings and between layers.
        max_len: transformer positions; longer histories are cut to their newest ``max_len``
            items by the transformer (the GRU and CNN read any length).
        margin: EBGAN margin ``m``: generated sequences are pushed to energies ``>= m``.
        per_step: reward the energy drop of each appended item instead of ``-E`` (see module).
    """

    encoder: Encoder = "gru"
    dim: int = 64
    n_layers: int = 1
    kernel_size: int = 3
    n_heads: int = 2
    dropout: float = 0.1
    max_len: int = 50
    margin: float = 1.0
    per_step: bool = False

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"EnergyConfig.encoder must be one of {ENCODERS}; got {self.encoder!r}"
            )
        for name in ("dim", "n_layers", "kernel_size", "n_heads", "max_len"):
            check_int(self, name, 1)
        if self.encoder == "transformer" and self.dim % self.n_heads:
            raise ValueError(
                f"EnergyConfig.n_heads must divide dim for the transformer; got dim={self.dim}, "
                f"n_heads={self.n_heads}"
            )
        check_fraction(self, "dropout")
        check_float(self, "margin", positive=True)
        if not isinstance(self.per_step, bool):
            raise TypeError(f"EnergyConfig.per_step must be a bool; got {self.per_step!r}")


class EnergyDiscriminator(RewardModel):
    """Energy network ``E(S) >= 0`` of an item sequence, read at its newest item.

    Item embedding -> encoder -> the energy read at the newest item ``x_t``::

        E = softplus(w . LayerNorm(h_t) + <W c_t, e(x_t)> + b(x_t))

    with ``h_t`` the encoder state at the newest item, ``c_t`` the state of the context before
    it (``h_{t-1}`` for the causal encoders; for the transformer the previous column, which is
    masked from attending to the newest item), ``e`` the item embedding and ``b`` a per-item
    bias. The bilinear term scores how well the newest item fits its context (as next-item
    models do) and the bias its overall plausibility; both learn far faster than the same
    signal routed through ``h_t`` alone. The energy is kept non-negative so the real term of
    the EBGAN loss is bounded below (EBGAN's energy is a reconstruction error for the same
    reason).

    Padding never changes the energy: the GRU reads the real items only, the CNN zeroes
    padded positions after every layer (exactly the convolution's own zero padding), and the
    transformer masks padded keys and counts positions from the newest item. The empty
    history has a learned constant energy.

    Args:
        config: architecture and loss (default ``EnergyConfig()``).
        n_items: catalogue size; item ids are ``1..n_items`` and ``0`` is padding.
        device: where the weights live.
        seed: seed of the weight initialisation (``None``: fresh OS entropy). The global torch
            RNG is forked, so the caller's stream is untouched either way.
    """

    checkpoint_key = "energy"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    config_class = EnergyConfig
    reward_form = "neg_energy"

    def __init__(
        self,
        config: EnergyConfig | None = None,
        *,
        n_items: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(n_items=n_items)
        config = EnergyConfig() if config is None else config
        if not isinstance(config, EnergyConfig):
            raise TypeError(f"config must be an EnergyConfig; got {type(config).__name__}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0; got {seed!r}")
        self.config = config
        with torch.random.fork_rng(devices=[]):
            if seed is None:
                torch.seed()
            else:
                torch.manual_seed(seed)
            self._build(config, n_items)
        self.to(resolve_device(device))

    def _build(self, config: EnergyConfig, n_items: int) -> None:
        d = config.dim
        self.embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        # A small embedding scale keeps the initial context score near 0 (softplus unsaturated).
        nn.init.normal_(self.embedding.weight, std=d**-0.5)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.item_bias.weight)
        self.dropout = nn.Dropout(config.dropout)
        if config.encoder == "gru":
            inner = config.dropout if config.n_layers > 1 else 0.0
            self.gru = nn.GRU(d, d, config.n_layers, batch_first=True, dropout=inner)
        elif config.encoder == "cnn":
            self.convs = nn.ModuleList(
                nn.Conv1d(d, d, config.kernel_size, dilation=2**i) for i in range(config.n_layers)
            )
        else:
            self.positions = nn.Embedding(config.max_len, d)
            nn.init.normal_(self.positions.weight, std=d**-0.5)
            layer = nn.TransformerEncoderLayer(
                d, config.n_heads, 2 * d, config.dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, config.n_layers, enable_nested_tensor=False
            )
        self.context = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)

    # ------------------------------------------------------------------ energies
    def forward(self, history: Tensor) -> Tensor:
        """Energies ``(B,)`` of left-padded histories ``(B, L)`` (newest item last)."""
        if self.config.encoder == "transformer":
            return self._transformer_energy(history)
        h, e = self._causal_states(history)
        before = h[:, -2] if history.shape[1] > 1 else torch.zeros_like(h[:, -1])
        return self._energy(h[:, -1], before, e[:, -1], history[:, -1])

    def prefix_energies(self, history: Tensor) -> Tensor:
        """Energy of every prefix: column ``t`` is ``E(history[:, :t+1])``, ``(B, L)``.

        One pass for the causal encoders (GRU, CNN); the bidirectional transformer scores all
        ``L`` prefixes as one batch of ``B * L`` rows (``L`` times the cost). Padded columns
        hold the energy of the empty history.
        """
        if history.shape[1] == 0:
            raise ValueError("history must have at least one column (L >= 1)")
        if self.config.encoder == "transformer":
            b, length = history.shape
            cols = torch.arange(length, device=history.device)
            # Prefix t: the first t + 1 columns, shifted right by L - 1 - t (left-padded).
            src = cols.unsqueeze(0) - (length - 1 - cols).unsqueeze(1)  # (L, L)
            prefixes = torch.where(src >= 0, history[:, src.clamp(min=0)], 0)  # (B, L, L)
            return self._transformer_energy(prefixes.reshape(b * length, length)).view(b, length)
        h, e = self._causal_states(history)
        before = F.pad(h[:, :-1], (0, 0, 1, 0))  # state of the prefix before each item
        return self._energy(h, before, e, history)

    def _causal_states(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """GRU/CNN states ``(B, L, D)`` (zero at padding) and item embeddings ``(B, L, D)``."""
        mask = history != 0
        e = self.embedding(history)
        x = self.dropout(e)
        h = self._gru_states(x, mask) if self.config.encoder == "gru" else self._cnn_states(x, mask)
        return h, e

    def _energy(self, state: Tensor, before: Tensor, e: Tensor, items: Tensor) -> Tensor:
        """``softplus(head(state) + <W before, e> + b_item)`` over any leading shape."""
        z = self.head(self.norm(state)).squeeze(-1)
        z = z + (self.context(before) * e).sum(-1) + self.item_bias(items).squeeze(-1)
        return F.softplus(z)

    def _gru_states(self, x: Tensor, mask: Tensor) -> Tensor:
        # Right-align the real items so the GRU never reads padding: position j of row b is
        # its j-th real item. Padding after the items cannot affect earlier (causal) outputs.
        b, length, _ = x.shape
        n = mask.sum(1, keepdim=True)  # (B, 1)
        cols = torch.arange(length, device=x.device).unsqueeze(0)  # (1, L)
        to_right = (cols + length - n).clamp(max=length - 1)  # right col j <- left col j + L - n
        right = x.gather(1, to_right.unsqueeze(-1).expand_as(x)) * (cols < n).unsqueeze(-1)
        out, _ = self.gru(right)
        to_left = (cols - (length - n)).clamp(min=0)  # left col c <- right col c - (L - n)
        left = out.gather(1, to_left.unsqueeze(-1).expand_as(out))
        return left * mask.unsqueeze(-1)  # the empty prefix reads the zero state

    def _cnn_states(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(1).to(x.dtype)  # (B, 1, L)
        h = x.transpose(1, 2) * keep  # (B, D, L)
        for conv in self.convs:
            pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
            out = self.dropout(F.relu(conv(F.pad(h, (pad, 0)))))
            # Zero padded positions so every layer sees what its own zero padding would be.
            h = (h + out) * keep
        return h.transpose(1, 2)

    def _transformer_energy(self, history: Tensor) -> Tensor:
        history = history[:, -self.config.max_len :]
        b, length = history.shape
        real = history != 0
        distance = torch.arange(length - 1, -1, -1, device=history.device)  # from the newest
        e = self.embedding(history)
        x = e + self.positions(distance).unsqueeze(0)
        h = self.transformer(self.dropout(x), mask=self._attention_mask(real))
        # The newest column reads everything; the one before it reads the context only.
        before = h[:, -2] * real[:, -2:-1] if length > 1 else torch.zeros_like(h[:, -1])
        return self._energy(h[:, -1], before, e[:, -1], history[:, -1])

    def _attention_mask(self, real: Tensor) -> Tensor:
        """``(B * n_heads, L, L)`` bool, True = blocked: padding keys, and the newest item for
        every other query (so the previous column encodes the context alone). Each query sees
        itself, so no row is fully blocked (padded queries are never read)."""
        b, length = real.shape
        allowed = real.unsqueeze(1).expand(b, length, length).clone()
        allowed[:, :, -1] = False
        allowed[:, -1, -1] = True
        allowed |= torch.eye(length, dtype=torch.bool, device=real.device)
        return (~allowed).repeat_interleave(self.config.n_heads, dim=0)

    # ------------------------------------------------------------------ loss and rewards
    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """EBGAN margin loss ``mean E(real) + mean max(0, m - E(fake))``; a scalar.

        Real and fake go through one batched pass (the shorter window is left-padded, which
        does not change an energy).
        """
        width = max(real.shape[1], fake.shape[1])
        both = torch.cat([F.pad(x, (width - x.shape[1], 0)) for x in (real, fake)])
        energy = self(both)
        n_real = real.shape[0]
        return energy[:n_real].mean() + F.relu(self.config.margin - energy[n_real:]).mean()

    @torch.no_grad()
    def reward(self, history: Tensor) -> Tensor:
        """No-grad reward ``(B,)`` of the newest item: ``-E`` or, per step, the energy drop.

        With ``per_step=True`` the reward is ``-(E(history) - E(history[:, :-1]))``, both
        prefixes scored in one batched pass.
        """
        self.check_history(history)
        with evaluating(self):
            if not self.config.per_step:
                return -self(history)
            if self.config.encoder != "transformer":
                # Causal states in one pass; two leading pad columns keep the previous prefix
                # (column -2) and its context (column -3) defined even when L == 1.
                padded = F.pad(history, (2, 0))
                h, e = self._causal_states(padded)
                energies = self._energy(h[:, -2:], h[:, -3:-1], e[:, -2:], padded[:, -2:])
                return -(energies[:, 1] - energies[:, 0])
            previous = F.pad(history[:, :-1], (1, 0))  # drop the newest item, keep L columns
            energies = self(torch.cat([history, previous])).view(2, -1)
            return -(energies[0] - energies[1])

    def check_history(self, history: Tensor) -> None:
        """Base checks plus left padding: no real item may precede a padding id."""
        super().check_history(history)
        real = history != 0
        if history.shape[1] > 1 and bool((real[:, :-1] & ~real[:, 1:]).any()):
            raise ValueError(
                "history must be left-padded (zeros only before the first real item); found "
                "a padding id after a real item"
            )
