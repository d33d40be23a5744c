"""SASRec (Kang & McAuley, ICDM 2018) as a :class:`~agents.policy.SequencePolicy`.

Follows the reference PyTorch implementation (pmixer/SASRec.pytorch, ``norm_first`` variant):
item embeddings scaled by ``sqrt(D)`` plus learned position embeddings, embedding dropout,
``n_blocks`` pre-LN blocks of causal multi-head self-attention and a point-wise feed-forward
network (both residual), a timeline mask zeroing padded positions, a final layer norm, and
next-item logits by a dot product with the *tied* item-embedding table (inherited from the
base class). Xavier-normal initialisation with zeroed padding rows, as in the reference.

Two deliberate differences make the policy exact on left-padded histories of any length:

- padded positions are masked out as attention *keys* (the reference only zeroes them, which
  still lets their bias terms leak into the attention), so extra left padding changes nothing;
- positions count real items from the oldest one in the window (``1..n``), so the state of a
  prefix is the same whether it is fed alone or as the start of a longer window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.policy import SequencePolicy, seeded_init
from recgym._checks import check_fraction, check_int
from recgym.device import resolve_device


@dataclass(frozen=True, kw_only=True)
class SASRecConfig:
    """Architecture of :class:`SASRecPolicy`.

    Attributes:
        max_len: longest history window ``L`` (size of the position table).
        dim: embedding and hidden size ``D``.
        n_blocks: number of self-attention blocks.
        n_heads: attention heads; must divide ``dim``.
        dropout: dropout rate of the embeddings, attention weights and feed-forward layers.
    """

    max_len: int = 50
    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("max_len", "dim", "n_blocks", "n_heads"):
            check_int(self, name, 1)
        if self.dim % self.n_heads:
            raise ValueError(
                f"SASRecConfig.n_heads={self.n_heads} must divide dim={self.dim}; "
                f"e.g. n_heads=1 or dim={self.n_heads * math.ceil(self.dim / self.n_heads)}"
            )
        check_fraction(self, "dropout")


class _Block(nn.Module):
    """Pre-LN block: ``x + MHA(LN(x))`` then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attention_out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """``(B, L, D)`` states, ``(B, 1, L, L)`` bool attention mask -> ``(B, L, D)``."""
        b, length, dim = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(b, length, 3, self.n_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, D / H)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.attention_out(attended.transpose(1, 2).reshape(b, length, dim))
        return x + self.ffn(self.ffn_norm(x))


class SASRecPolicy(SequencePolicy):
    """Self-attentive sequential recommender with a tied output layer.

    Args:
        config: the architecture (default ``SASRecConfig()``).
        n_items: catalogue size; ids ``1..n_items``, ``0`` is padding.
    """

    checkpoint_key = "sasrec"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    config_class = SASRecConfig
    padding_invariant = True  # extra left padding changes no state

    def __init__(
        self,
        config: SASRecConfig | None = None,
        *,
        n_items: int,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        config = SASRecConfig() if config is None else config
        if not isinstance(config, SASRecConfig):
            raise TypeError(f"config must be a SASRecConfig; got {type(config).__name__}")
        super().__init__(n_items=n_items, max_len=config.max_len)
        self.config = config
        with seeded_init(seed):  # the weights' draws; the caller's RNG stream is kept
            self.item_embedding = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
            self.position_embedding = nn.Embedding(config.max_len + 1, config.dim, padding_idx=0)
            self.embedding_dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(
                _Block(config.dim, config.n_heads, config.dropout) for _ in range(config.n_blocks)
            )
            self.final_norm = nn.LayerNorm(config.dim, eps=1e-8)
            self.scale = math.sqrt(config.dim)
            self.reset_parameters()
        self.to(resolve_device(device))

    def reset_parameters(self) -> None:
        """Xavier-normal for every matrix, zero padding rows (as the reference main.py)."""
        for param in self.parameters():
            if param.dim() >= 2:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
            self.position_embedding.weight[0].zero_()

    def encode(self, history: Tensor, *, delta: Tensor | None = None) -> Tensor:
        """Causal states ``(B, L, D)`` of a left-padded ``(B, L)`` history; padding rows are 0.

        Args:
            history: ``(B, L)`` int64 item ids, ``0`` = padding, ``L <= max_len``.
            delta: optional ``(n_items + 1, D)`` perturbation of the item table at the input.
        """
        keep = history != 0  # (B, L)
        x = F.embedding(history, self.item_table(delta), padding_idx=0) * self.scale
        positions = keep.long().cumsum(dim=1) * keep  # 1..n over real items, 0 at padding
        x = x + self.position_embedding(positions)
        mask = keep.unsqueeze(-1).to(x.dtype)
        x = self.embedding_dropout(x) * mask
        allowed = _attention_mask(keep)
        for block in self.blocks:
            x = block(x, allowed) * mask
        return self.final_norm(x) * mask


def _attention_mask(keep: Tensor) -> Tensor:
    """``(B, 1, L, L)`` bool: query ``i`` may attend key ``j <= i`` when ``j`` is a real item.

    The diagonal is always allowed so that padded queries (zeroed afterwards) never see an
    all-masked row, whose softmax would be NaN.
    """
    length = keep.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=keep.device).tril()
    allowed = causal & keep.unsqueeze(1)  # (B, L, L)
    allowed |= torch.eye(length, dtype=torch.bool, device=keep.device)
    return allowed.unsqueeze(1)
