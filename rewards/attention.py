"""Self-attention sequence encoders shared by the reward models (bidirectional by default).

A discriminator sees the *whole* sequence it judges, so unlike a next-item generator it may let
every position attend to later ones (MFGAN, Ren et al. SIGIR 2020, Sec. 3.3); ``causal=True``
gives the paper's uni-directional ablation.

Every module here carries ``G`` independent weight sets ("groups") applied in one batched
matmul, so the ``m`` factor discriminators of a multi-factor model run as ONE pass over
``(G, B, L, d)`` tensors instead of a Python loop over ``G`` modules. ``G = 1`` is a plain
encoder. ``groups=slice(j, j + 1)`` runs a single group's weights (for loops and tests).

Padding never changes a score: histories are left-padded, positions are counted from the
*newest* item (position 0 = last column) so extra left padding shifts nothing, and padded keys
are masked out of every real query's attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GroupIndex = slice | None


def make_generator(seed: int | None = None) -> torch.Generator:
    """A private CPU generator for weight initialisation (``None``: seeded from OS entropy).

    Initialising from it, never from the global RNG, makes models reproducible from ``seed``
    and leaves the caller's random state untouched.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class GroupedLinear(nn.Module):
    """``G`` independent affine maps ``x @ W_g + b_g`` evaluated with one ``baddbmm``.

    Args:
        n_groups: number of weight sets ``G``.
        in_dim: input features.
        out_dim: output features.
        generator: initialisation randomness (default: :func:`make_generator`).
    """

    def __init__(
        self, n_groups: int, in_dim: int, out_dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(n_groups, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n_groups, 1, out_dim))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform init with bound ``1/sqrt(in_dim)`` (``nn.Linear``'s scale), biases zero."""
        bound = 1.0 / math.sqrt(self.in_dim)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator or make_generator())
            self.bias.zero_()

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"groups={self.weight.shape[0]}, in_dim={self.in_dim}, out_dim={self.out_dim}"

    def forward(self, x: Tensor, groups: GroupIndex = None) -> Tensor:
        """Map ``(G, ..., in_dim) -> (G, ..., out_dim)`` with group ``g``'s weights on ``x[g]``."""
        weight = self.weight if groups is None else self.weight[groups]
        bias = self.bias if groups is None else self.bias[groups]
        flat = x.reshape(x.shape[0], -1, self.in_dim)
        return torch.baddbmm(bias, flat, weight).reshape(*x.shape[:-1], self.out_dim)


class GroupedLayerNorm(nn.Module):
    """Layer norm over the last dim with a separate scale and shift per group."""

    def __init__(self, n_groups: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_groups, dim))
        self.bias = nn.Parameter(torch.zeros(n_groups, dim))

    def forward(self, x: Tensor, groups: GroupIndex = None) -> Tensor:
        """Normalise ``(G, ..., d)``."""
        weight = self.weight if groups is None else self.weight[groups]
        bias = self.bias if groups is None else self.bias[groups]
        shape = (weight.shape[0],) + (1,) * (x.dim() - 2) + (weight.shape[1],)
        normed = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(bias.reshape(shape), normed, weight.reshape(shape))

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"groups={self.weight.shape[0]}, dim={self.weight.shape[1]}"


class SelfAttentionBlock(nn.Module):
    """One post-norm Transformer block (multi-head attention + FFN) with grouped weights.

    Args:
        n_groups: weight sets ``G``.
        dim: model width ``d`` (divisible by ``n_heads``).
        n_heads: attention heads.
        dropout: dropout on attention weights and on both residual branches.
        ffn_dim: hidden width of the feed-forward net (default ``4 * dim``).
        generator: initialisation randomness (default: :func:`make_generator`).
    """

    def __init__(
        self,
        n_groups: int,
        dim: int,
        n_heads: int,
        dropout: float,
        ffn_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim must be divisible by n_heads; got dim={dim}, n_heads={n_heads}")
        self.n_heads = n_heads
        hidden = 4 * dim if ffn_dim is None else ffn_dim
        generator = generator or make_generator()
        self.query = GroupedLinear(n_groups, dim, dim, generator)
        self.key_value = GroupedLinear(n_groups, dim, 2 * dim, generator)
        self.out = GroupedLinear(n_groups, dim, dim, generator)
        self.norm1 = GroupedLayerNorm(n_groups, dim)
        self.ffn_in = GroupedLinear(n_groups, dim, hidden, generator)
        self.ffn_out = GroupedLinear(n_groups, hidden, dim, generator)
        self.norm2 = GroupedLayerNorm(n_groups, dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, pad: Tensor, *, causal: bool = False, groups: GroupIndex = None
    ) -> Tensor:
        """Every position attends to the (unmasked) others: ``(G, B, L, d) -> (G, B, L, d)``.

        Args:
            x: ``(G, B, L, d)`` inputs.
            pad: ``(B, L)`` bool, true at padding positions (hidden as keys).
            causal: hide keys after each query.
            groups: run only these groups' weights (``x`` then holds only those groups).
        """
        g, b, length, d = x.shape
        h, e = self.n_heads, d // self.n_heads
        q = self.query(x, groups).view(g, b, length, h, e).transpose(2, 3)
        kv = self.key_value(x, groups).view(g, b, length, 2, h, e).permute(3, 0, 1, 4, 2, 5)
        scores = q @ kv[0].transpose(-1, -2) / math.sqrt(e)  # (G, B, h, L, L)
        allowed = attention_mask(pad, causal=causal)  # (B, 1, L, L)
        probs = self.drop(torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1))
        attn = (probs @ kv[1]).transpose(2, 3).reshape(g, b, length, d)
        return self._residual_ffn(x, attn, groups)

    def forward_last(self, x: Tensor, pad: Tensor, groups: GroupIndex = None) -> Tensor:
        """Only the newest position's output, ``(G, B, L, d) -> (G, B, d)``.

        Exact single-query attention without materialising keys or values: with query ``q``,
        ``(x_l W_k + b_k)·q = x_l·(W_k q) + const`` (the constant cancels in the softmax) and
        ``Σ_l p_l (x_l W_v + b_v) = (Σ_l p_l x_l) W_v + (Σ_l p_l) b_v``. Per position this costs
        ``O(d·heads)`` instead of the ``O(d²)`` key/value projections. The newest query sees
        every earlier key, so causal masking would change nothing here.
        """
        g, b, length, d = x.shape
        h, e = self.n_heads, d // self.n_heads
        x_q = x[:, :, -1]
        q = self.query(x_q, groups).view(g, b, h, e)
        weight = self.key_value.weight if groups is None else self.key_value.weight[groups]
        bias = self.key_value.bias if groups is None else self.key_value.bias[groups]
        w_k, w_v = weight[..., :d].reshape(g, d, h, e), weight[..., d:].reshape(g, d, h, e)
        u = torch.einsum("gdhe,gbhe->gbdh", w_k, q) / math.sqrt(e)
        hidden = pad.clone()
        hidden[:, -1] = False  # the query always sees itself: all-padding rows stay finite
        scores = torch.matmul(x, u).masked_fill(hidden[None, :, :, None], -math.inf)
        probs = self.drop(torch.softmax(scores, dim=2))  # (G, B, L, h)
        pooled = torch.matmul(probs.transpose(2, 3), x)  # (G, B, h, d)
        attn = torch.einsum("gbhd,gdhe->gbhe", pooled, w_v)
        attn = attn + probs.sum(2).unsqueeze(-1) * bias[..., d:].reshape(g, 1, h, e)
        return self._residual_ffn(x_q, attn.reshape(g, b, d), groups)

    def _residual_ffn(self, x: Tensor, attn: Tensor, groups: GroupIndex) -> Tensor:
        y = self.norm1(x + self.drop(self.out(attn, groups)), groups)
        ffn = self.ffn_out(self.drop(F.gelu(self.ffn_in(y, groups))), groups)
        return self.norm2(y + self.drop(ffn), groups)


class SelfAttentionEncoder(nn.Module):
    """Embeddings ``+`` learned positions ``->`` self-attention block(s), for ``G`` groups at once.

    Args:
        n_groups: independent encoders ``G`` run in one batched pass.
        dim: model width ``d``.
        n_heads: attention heads (``dim % n_heads == 0``).
        dropout: dropout rate in ``[0, 1)``.
        max_len: longest sequence ``L`` (number of position embeddings).
        causal: if true, position ``i`` attends only to positions ``<= i`` (uni-directional).
        n_blocks: stacked blocks (MFGAN uses one).
        generator: initialisation randomness (default: :func:`make_generator`).
    """

    def __init__(
        self,
        *,
        n_groups: int = 1,
        dim: int,
        n_heads: int,
        dropout: float,
        max_len: int,
        causal: bool = False,
        n_blocks: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_groups, self.dim, self.max_len, self.causal = n_groups, dim, max_len, causal
        generator = generator or make_generator()
        # Row r is the position r steps before the newest item (row 0 = last column), so
        # extra left padding never moves a real item to another position embedding.
        self.position = nn.Parameter(torch.empty(n_groups, max_len, dim))
        self.drop = nn.Dropout(dropout)
        with torch.no_grad():
            self.position.normal_(0.0, 0.1, generator=generator)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(n_groups, dim, n_heads, dropout, generator=generator)
            for _ in range(n_blocks)
        )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all weights from ``generator`` (positions ``N(0, 0.1²)``)."""
        generator = generator or make_generator()
        with torch.no_grad():
            self.position.normal_(0.0, 0.1, generator=generator)
        for module in self.modules():
            if isinstance(module, GroupedLinear):
                module.reset_parameters(generator)
            elif isinstance(module, GroupedLayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(
        self, emb: Tensor, pad: Tensor, *, last_only: bool = False, groups: GroupIndex = None
    ) -> Tensor:
        """Encode embedded sequences.

        Args:
            emb: ``(G, B, L, d)`` item(-factor) embeddings (or ``(B, L, d)`` when ``G = 1``).
            pad: ``(B, L)`` bool, true at padding positions.
            last_only: return only the newest position's representation; the last block then
                runs one query per row (:meth:`SelfAttentionBlock.forward_last`, same result).
            groups: run only these groups (``emb`` then holds only those groups).

        Returns:
            ``(G, B, L, d)``, or ``(G, B, d)`` with ``last_only`` (no leading ``G`` if ``emb``
            had none).
        """
        squeeze = emb.dim() == 3
        x = emb.unsqueeze(0) if squeeze else emb
        length = x.shape[2]
        if length > self.max_len:
            raise ValueError(
                f"sequences have length {length} > max_len={self.max_len}; keep the newest "
                f"max_len items (history[:, -{self.max_len}:]) or build a larger encoder"
            )
        if pad.shape != x.shape[1:3] or pad.dtype != torch.bool:
            raise ValueError(
                f"pad must be a bool (B, L) = {tuple(x.shape[1:3])} mask; got {pad.dtype} "
                f"{tuple(pad.shape)}"
            )
        position = self.position if groups is None else self.position[groups]
        x = self.drop(x + position[:, :length].flip(1).unsqueeze(1))
        for i, block in enumerate(self.blocks):
            if last_only and i == len(self.blocks) - 1:
                out = block.forward_last(x, pad, groups)
                return out.squeeze(0) if squeeze else out
            x = block(x, pad, causal=self.causal, groups=groups)
        return x.squeeze(0) if squeeze else x


def attention_mask(pad: Tensor, *, causal: bool = False) -> Tensor:
    """Which keys each query may attend to, as a bool ``(B, 1, L, L)`` mask (true = allowed).

    Padding keys are hidden from every query, so padding cannot change a real position. A query
    always sees itself, which keeps all-padding rows finite (their outputs are never used).

    Args:
        pad: ``(B, L)`` bool, true at padding positions.
        causal: also hide keys after the query (uni-directional attention).
    """
    length = pad.shape[1]
    cols = torch.arange(length, device=pad.device)
    allowed = ~pad.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=pad.device)
    if causal:
        allowed = allowed & (cols.unsqueeze(0) <= cols.unsqueeze(1))
    return allowed.unsqueeze(1)
