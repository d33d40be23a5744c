"""A GRU4Rec-style recurrent policy (Hidasi et al., ICLR 2016) with a tied output layer.

``embedding -> dropout -> GRU (n_layers) -> dropout -> projection to D (when hidden != D)`` and
next-item logits by a dot product with the item-embedding table (inherited from the base class).

A GRU is not padding-invariant by itself: even a zero input moves the hidden state through the
gate biases. Histories are left-padded, so :meth:`GRUPolicy.encode` shifts every row left
(real items first, from a zero initial state), runs the GRU, and shifts the outputs back; what
the GRU computes over the trailing slots never reaches a real position because the GRU is
causal. Extra left padding therefore leaves every real position's state unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.policy import SequencePolicy, seeded_init
from recgym._checks import check_fraction, check_int
from recgym.device import resolve_device


@dataclass(frozen=True, kw_only=True)
class GRUConfig:
    """Architecture of :class:`GRUPolicy`.

    Attributes:
        max_len: longest history window ``L``.
        dim: item-embedding size ``D`` (input and tied output).
        hidden_size: GRU hidden size; a linear projection maps it to ``dim`` when different.
        n_layers: stacked GRU layers.
        dropout: dropout of the embeddings, between GRU layers and of the GRU outputs.
    """

    max_len: int = 50
    dim: int = 64
    hidden_size: int = 64
    n_layers: int = 1
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("max_len", "dim", "hidden_size", "n_layers"):
            check_int(self, name, 1)
        check_fraction(self, "dropout")


class GRUPolicy(SequencePolicy):
    """GRU next-item policy over left-padded histories.

    Args:
        config: the architecture (default ``GRUConfig()``).
        n_items: catalogue size; ids ``1..n_items``, ``0`` is padding.
    """

    checkpoint_key = "gru"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    config_class = GRUConfig
    padding_invariant = True  # extra left padding changes no state

    def __init__(
        self,
        config: GRUConfig | None = None,
        *,
        n_items: int,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        config = GRUConfig() if config is None else config
        if not isinstance(config, GRUConfig):
            raise TypeError(f"config must be a GRUConfig; got {type(config).__name__}")
        super().__init__(n_items=n_items, max_len=config.max_len)
        self.config = config
        with seeded_init(seed):  # the weights' draws; the caller's RNG stream is kept
            self.item_embedding = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
            self.embedding_dropout = nn.Dropout(config.dropout)
            self.gru = nn.GRU(
                config.dim,
                config.hidden_size,
                num_layers=config.n_layers,
                batch_first=True,
                dropout=config.dropout if config.n_layers > 1 else 0.0,
            )
            self.hidden_dropout = nn.Dropout(config.dropout)
            self.projection = (
                nn.Linear(config.hidden_size, config.dim)
                if config.hidden_size != config.dim
                else nn.Identity()
            )
            self.reset_parameters()
        self.to(resolve_device(device))

    def reset_parameters(self) -> None:
        """Embeddings ``N(0, 1 / D)`` (logits start O(1)), padding row zero."""
        with torch.no_grad():
            nn.init.normal_(self.item_embedding.weight, std=self.config.dim**-0.5)
            self.item_embedding.weight[0].zero_()

    def encode(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Causal states ``(B, L, D)`` of a left-padded ``(B, L)`` history; padding rows are 0.

        Args:
            history: ``(B, L)`` int64 item ids, ``0`` = padding only on the left.
            delta: optional ``(n_items + 1, D)`` perturbation of the item table at the input.

        Raises:
            ValueError: a row has padding after a real item (not left-padded).
        """
        keep = history != 0
        if keep.shape[1] > 1 and bool((keep[:, 1:] < keep[:, :-1]).any()):
            raise ValueError(
                "GRUPolicy needs left-padded histories (all 0s before the first real item); "
                "got a row with padding after a real item"
            )
        length = history.shape[1]
        pad = length - keep.sum(dim=1, keepdim=True)  # (B, 1)
        steps = torch.arange(length, device=history.device).unsqueeze(0)
        x = self.embedding_dropout(F.embedding(history, self.item_table(delta), padding_idx=0))
        left = _gather_steps(x, (steps + pad).clamp(max=length - 1))  # real items first
        out, _ = self.gru(left)
        out = _gather_steps(out, (steps - pad).clamp(min=0))  # back to left padding
        states = self.projection(self.hidden_dropout(out))
        return states * keep.unsqueeze(-1).to(states.dtype)


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """``out[b, t] = x[b, index[b, t]]`` for ``(B, L, C)`` x and ``(B, L)`` index."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
