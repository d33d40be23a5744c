"""SASRec as implemented by pmixer/SASRec.pytorch, re-written from its specification.

Origin: https://github.com/pmixer/SASRec.pytorch (``python/model.py``, class ``SASRec``; the
house-style anchor is commit fde8a9c). **This file is not a copy.** The stored copies of that
repository hold no LICENSE file, so its terms could not be checked, and the code-search tool
that served them asks that their code stay out of this repository. This module is therefore a
from-spec re-implementation, written for recgym, of the *computation* the reference performs
(same layers, same order, same initialisation), with recgym's conventions at the interface
(tensors in, keyword arguments instead of an ``args`` namespace). Everything below follows
the reference's default path (``--norm_first`` off) unless noted:

- input: item embedding (padding row 0) scaled by ``sqrt(D)``, plus a position embedding of
  size ``maxlen + 1`` (padding row 0) indexed ``1..L`` by column of the window and multiplied
  by ``history != 0``, so in a left-padded window the newest item always has position ``L``;
  then embedding dropout. Padded positions are **not** masked as attention keys and their
  states are **not** zeroed (the reference does neither).
- ``num_blocks`` blocks, post-LN: ``x = LN(x + MHA(x, x, x, causal))`` then
  ``x = LN(x + FFN(x))``; ``norm_first=True`` gives the reference's pre-LN option
  ``x = x + MHA(LN(x))``, ``x = x + FFN(LN(x))``. MHA is ``torch.nn.MultiheadAttention``
  with attention-weight dropout; FFN is ``Dropout(Linear(ReLU(Dropout(Linear(x)))))``
  (the reference uses kernel-1 ``Conv1d`` layers: the same map and the same initial
  distributions).
- a final LayerNorm; all LayerNorms use ``eps=1e-8``.
- scores: dot product of the last position's state with the (tied) item embeddings.
- initialisation (done in the reference's ``main.py``): Xavier-normal for every parameter with
  at least two dimensions (the reference's ``try: xavier_normal_ except: pass`` skips exactly
  the 1-D ones), then padding rows of both embedding tables set to zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointWiseFeedForward(nn.Module):
    """``(B, L, D) -> (B, L, D)``: linear, dropout, ReLU, linear, dropout (no residual)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, dim),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ReferenceSASRec(nn.Module):
    """The reference SASRec network.

    Args:
        n_items: catalogue size; ids ``1..n_items``, ``0`` is padding.
        maxlen: window length (size of the position table minus one).
        hidden_units: embedding size ``D``.
        num_blocks: self-attention blocks.
        num_heads: attention heads.
        dropout_rate: dropout of embeddings, attention weights and feed-forward layers.
        norm_first: the reference's ``--norm_first`` (pre-LN); default post-LN.
    """

    def __init__(
        self,
        n_items: int,
        *,
        maxlen: int,
        hidden_units: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout_rate: float = 0.2,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.n_items, self.maxlen, self.norm_first = n_items, maxlen, norm_first
        self.item_emb = nn.Embedding(n_items + 1, hidden_units, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen + 1, hidden_units, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout_rate)
        self.attention_layernorms = nn.ModuleList()
        self.attention_layers = nn.ModuleList()
        self.forward_layernorms = nn.ModuleList()
        self.forward_layers = nn.ModuleList()
        for _ in range(num_blocks):
            self.attention_layernorms.append(nn.LayerNorm(hidden_units, eps=1e-8))
            self.attention_layers.append(
                nn.MultiheadAttention(hidden_units, num_heads, dropout_rate, batch_first=True)
            )
            self.forward_layernorms.append(nn.LayerNorm(hidden_units, eps=1e-8))
            self.forward_layers.append(PointWiseFeedForward(hidden_units, dropout_rate))
        self.last_layernorm = nn.LayerNorm(hidden_units, eps=1e-8)

    def init_like_reference(self) -> None:
        """Xavier-normal on every matrix, zero padding rows (uses the global torch RNG)."""
        for param in self.parameters():
            if param.dim() >= 2:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.pos_emb.weight[0].zero_()
            self.item_emb.weight[0].zero_()

    def log2feats(self, log_seqs: Tensor) -> Tensor:
        """``(B, L)`` int64 left-padded windows (``L <= maxlen``) -> ``(B, L, D)`` states."""
        b, length = log_seqs.shape
        seqs = self.item_emb(log_seqs) * self.item_emb.embedding_dim**0.5
        positions = torch.arange(1, length + 1, device=log_seqs.device).expand(b, -1)
        seqs = seqs + self.pos_emb(positions * (log_seqs != 0))
        seqs = self.emb_dropout(seqs)
        # True = may not attend (future positions), as in the reference.
        blocked = ~torch.tril(torch.ones(length, length, dtype=torch.bool, device=seqs.device))
        for i in range(len(self.attention_layers)):
            attention, ffn = self.attention_layers[i], self.forward_layers[i]
            norm_a, norm_f = self.attention_layernorms[i], self.forward_layernorms[i]
            if self.norm_first:
                x = norm_a(seqs)
                seqs = seqs + attention(x, x, x, attn_mask=blocked, need_weights=False)[0]
                seqs = seqs + ffn(norm_f(seqs))
            else:
                mha = attention(seqs, seqs, seqs, attn_mask=blocked, need_weights=False)[0]
                seqs = norm_a(seqs + mha)
                seqs = norm_f(seqs + ffn(seqs))
        return self.last_layernorm(seqs)

    def forward(
        self, log_seqs: Tensor, pos_seqs: Tensor, neg_seqs: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Training logits ``(B, L)`` of the positive and the negative item at every position."""
        feats = self.log2feats(log_seqs)  # (B, L, D)
        pos_logits = (feats * self.item_emb(pos_seqs)).sum(dim=-1)
        neg_logits = (feats * self.item_emb(neg_seqs)).sum(dim=-1)
        return pos_logits, neg_logits

    def predict(self, log_seqs: Tensor, item_indices: Tensor) -> Tensor:
        """Logits ``(B, C)`` of candidate items ``(B, C)`` after windows ``(B, L)``."""
        final = self.log2feats(log_seqs)[:, -1, :]  # (B, D)
        return (self.item_emb(item_indices) * final.unsqueeze(1)).sum(dim=-1)

    def all_scores(self, log_seqs: Tensor) -> Tensor:
        """Logits ``(B, n_items + 1)`` of every item (column 0 = padding)."""
        return self.log2feats(log_seqs)[:, -1, :] @ self.item_emb.weight.T
