"""MFGAN's multi-factor discriminators (Ren et al., SIGIR 2020, Eq. 9–13).

One discriminator per item factor (item id, genre, year, popularity, ...) judges a sequence from
that factor's point of view: the factor values of the items are embedded, position embeddings
added, ONE bidirectional self-attention block encodes them, and an MLP on the representation of
the newest item gives ``ŷ_j = sigmoid(z_j)``. The ``m`` scores are combined with Eq. 9–10:

    ω = softmax(λ · ŷ),    reward = Σ_j ω_j ŷ_j

so ``λ = 0`` is the mean, ``λ → -∞`` the minimum and ``λ → +∞`` the maximum. Each discriminator
is trained with its own binary cross-entropy and the losses are summed (Eq. 13).

All ``m`` discriminators share code but not weights: their weights are stacked along a group
dimension and evaluated in ONE batched pass (``rewards.attention``), never a Python loop.

Variants (the paper's ablations): ``"multi"`` (MFGAN), ``"sdsf"`` (a single discriminator on the
item id only: a Transformer SeqGAN), ``"sdaf"`` (a single discriminator on all factor
embeddings concatenated and projected to ``dim``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recgym._checks import check_int
from recgym._torch_io import evaluating
from recgym.device import resolve_device
from recgym.factors import ItemFactor, ItemFactors, factors_from_payload, factors_to_payload
from recgym.types import PAD, RewardOutput, SessionState, append_items
from rewards.attention import GroupedLinear, GroupIndex, SelfAttentionEncoder, make_generator
from rewards.base import RewardModel, logits_to_reward

ITEM_ID = "item_id"
ALL_FACTORS = "all_factors"
VARIANTS: tuple[str, ...] = ("multi", "sdsf", "sdaf")
POOLINGS: tuple[str, ...] = ("mean", "sum", "max")
COMBINATIONS: tuple[str, ...] = ("mean", "min", "max")
CPU_BLOCK_POSITIONS = 1 << 16
"""Positions (groups x rows x L) encoded at once without gradients on CPU."""


def check_combination(combination: object) -> float | str:
    """Return a valid combination (a finite float λ or a name) or raise a clear error."""
    expected = f"combination must be a finite float λ or one of {COMBINATIONS}"
    if isinstance(combination, str):
        if combination not in COMBINATIONS:
            raise ValueError(f"{expected}; got {combination!r}")
        return combination
    if isinstance(combination, bool) or not isinstance(combination, (int, float, np.number)):
        raise TypeError(f"{expected}; got {combination!r}")
    if not math.isfinite(float(combination)):
        raise ValueError(f"{expected}; got {combination} (use 'min'/'max' for λ -> -inf/+inf)")
    return float(combination)


def combine(scores: Tensor, combination: float | str = "mean") -> Tensor:
    """Combine per-factor scores with MFGAN's Eq. 9–10.

    Args:
        scores: ``(..., m)`` per-factor scores ``ŷ_j`` in ``[0, 1]``.
        combination: λ (``ω = softmax(λ·ŷ)``, reward ``Σ ω_j ŷ_j``), or ``"mean"``/``"min"``/
            ``"max"``: the exact limits ``λ = 0``, ``λ -> -∞``, ``λ -> +∞``.

    Returns:
        ``(...)`` combined scores.
    """
    combination = check_combination(combination)
    if combination == "mean":
        return scores.mean(-1)
    if combination == "min":
        return scores.amin(-1)
    if combination == "max":
        return scores.amax(-1)
    weights = torch.softmax(combination * scores, dim=-1)
    return (weights * scores).sum(-1)


def combine_logits(logits: Tensor, combination: float | str = "mean") -> Tensor:
    """The logit of :func:`combine` ``(sigmoid(logits))``, ``(..., m) -> (...)``, stably.

    ``1 - Σ ω ŷ = Σ ω (1 - ŷ)``, so both log-probabilities are log-sum-exps of log-sigmoids and
    the logit stays finite even when every ``ŷ_j`` rounds to 0 or 1.
    """
    combination = check_combination(combination)
    if combination == "min":  # sigmoid is monotone: the min score has the min logit
        return logits.amin(-1)
    if combination == "max":
        return logits.amax(-1)
    lam = 0.0 if combination == "mean" else combination
    log_w = torch.log_softmax(lam * torch.sigmoid(logits), dim=-1)
    log_p = torch.logsumexp(log_w + F.logsigmoid(logits), dim=-1)
    log_q = torch.logsumexp(log_w + F.logsigmoid(-logits), dim=-1)
    return log_p - log_q


@dataclass(frozen=True, kw_only=True)
class MultiFactorConfig:
    """Settings of :class:`MultiFactorDiscriminator`.

    Attributes:
        factors: item-factor names to use besides the item id; ``None`` = every factor of the
            table given to the model. Ignored by ``variant="sdsf"`` (must stay ``None``).
        include_item_id: add the item-id discriminator (MFGAN's primary one).
        dim: embedding and model width ``d``.
        n_heads: attention heads (``dim % n_heads == 0``).
        dropout: dropout rate in ``[0, 1)``.
        max_len: newest items scored per history; older ones are ignored.
        causal: uni-directional attention (the paper's ablation). With one block and a
            newest-position readout the score is the same either way: see ``n_blocks``.
        n_blocks: stacked self-attention blocks (MFGAN: 1).
        combination: λ of Eq. 9–10 as a float, or ``"mean"``/``"min"``/``"max"``.
        pooling: how multi-valued factors (genres) embed: ``"mean"``, ``"sum"`` or ``"max"``.
        variant: ``"multi"`` (one discriminator per factor), ``"sdsf"`` (item id only) or
            ``"sdaf"`` (one discriminator over all factors concatenated).
    """

    factors: tuple[str, ...] | None = None
    include_item_id: bool = True
    dim: int = 64
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    causal: bool = False
    n_blocks: int = 1
    combination: float | str = "mean"
    pooling: str = "mean"
    variant: str = "multi"

    def __post_init__(self) -> None:
        if self.factors is not None:
            if isinstance(self.factors, str) or not all(isinstance(n, str) for n in self.factors):
                raise TypeError(f"factors must be a tuple of names; got {self.factors!r}")
            names = tuple(self.factors)
            if len(set(names)) != len(names) or ITEM_ID in names:
                raise ValueError(
                    f"factors must be unique names other than {ITEM_ID!r} (the item id is "
                    f"switched by include_item_id); got {names}"
                )
            object.__setattr__(self, "factors", names)
        for name in ("dim", "n_heads", "max_len", "n_blocks"):
            check_int(self, name, 1)
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1); got {self.dropout!r}")
        for name in ("include_item_id", "causal"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"MultiFactorConfig.{name} must be a bool")
        object.__setattr__(self, "combination", check_combination(self.combination))
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {self.pooling!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}")
        if self.variant == "sdsf" and (not self.include_item_id or self.factors is not None):
            raise ValueError(
                "variant='sdsf' scores the item id only: use include_item_id=True, factors=None"
            )
        if not self.include_item_id and self.factors == ():
            raise ValueError("no discriminator left: include the item id or name some factors")


class MultiFactorDiscriminator(RewardModel):
    """MFGAN's factor discriminators, all evaluated in one batched pass.

    Args:
        config: a :class:`MultiFactorConfig`.
        factors: the item-factor table (e.g. ``split.factors(popularity_bins=10)``), or the plain
            payload :meth:`init_kwargs` saved (used by :meth:`load`).
        device: where the weights and factor tables live.
        seed: seed of the weight initialisation (``None``: fresh entropy).

    Attributes:
        discriminator_names: the ``m`` discriminators, e.g. ``("item_id", "genre", "year")``.
    """

    checkpoint_key = "multifactor"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    config_class = MultiFactorConfig
    reward_form = "d"

    def __init__(
        self,
        config: MultiFactorConfig,
        factors: ItemFactors | Mapping[str, Any],
        *,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        if not isinstance(config, MultiFactorConfig):
            raise TypeError(f"config must be a MultiFactorConfig; got {type(config).__name__}")
        factors = factors if isinstance(factors, ItemFactors) else factors_from_payload(factors)
        super().__init__(n_items=factors.n_items)
        self.config = config
        selected = _select(config, factors)
        self.factors = factors.select(f.name for f in selected)
        embedded = [ITEM_ID] * config.include_item_id + [f.name for f in selected]
        self.embedded_names = tuple(embedded)
        self.discriminator_names = {"multi": tuple(embedded), "sdsf": (ITEM_ID,)}.get(
            config.variant, (ALL_FACTORS,)
        )
        codes, n_rows = code_table(selected, factors.n_items, config.include_item_id)
        self.register_buffer("codes", torch.as_tensor(codes))
        m, d = len(self.discriminator_names), config.dim
        generator = make_generator(seed)
        self.embedding = nn.Parameter(torch.empty(n_rows, d))
        with torch.no_grad():
            self.embedding.normal_(0.0, 1.0, generator=generator)
            self.embedding[PAD].zero_()  # row 0: the padding item and empty bag slots
        self.concat = (
            GroupedLinear(1, len(embedded) * d, d, generator) if config.variant == "sdaf" else None
        )
        self.encoder = SelfAttentionEncoder(
            n_groups=m, dim=d, n_heads=config.n_heads, dropout=config.dropout,
            max_len=config.max_len, causal=config.causal, n_blocks=config.n_blocks,
            generator=generator,
        )  # fmt: skip
        self.head_in = GroupedLinear(m, d, d, generator)
        self.head_out = GroupedLinear(m, d, 1, generator)
        self.to(resolve_device(device))

    @property
    def n_discriminators(self) -> int:
        """Number of discriminators ``m`` (1 for the single-discriminator variants)."""
        return len(self.discriminator_names)

    def init_kwargs(self) -> dict[str, Any]:
        """The selected factor tables as plain lists and tensors (``weights_only``-loadable)."""
        return {"factors": factors_to_payload(self.factors)}

    # ------------------------------------------------------------------ scoring
    def factor_logits(self, history: Tensor, *, one_pass: bool = True) -> Tensor:
        """Per-discriminator logits ``z_j`` (``ŷ_j = sigmoid(z_j)``) of the newest items.

        Args:
            history: ``(B, L)`` int64 left-padded item ids; only the newest ``max_len`` count.
            one_pass: evaluate all discriminators in one batched pass (default). ``False``
                loops over them in Python with the same weights (for benchmarks and tests).

        Returns:
            ``(B, m)`` logits, columns in ``discriminator_names`` order.
        """
        self.check_history(history)
        if one_pass or self.config.variant != "multi":
            return self._logits(history).T
        columns = [self._logits(history, slice(j, j + 1)) for j in range(self.n_discriminators)]
        return torch.cat(columns).T

    def forward(self, history: Tensor) -> Tensor:
        """Logit of the combined score (Eq. 9–10), ``(B, L) -> (B,)``; ``sigmoid`` gives D."""
        return combine_logits(self.factor_logits(history), self.config.combination)

    def breakdown(self, history: Tensor) -> dict[str, Tensor]:
        """``{"factor/<name>": ŷ_j}`` with ``(B,)`` scores per discriminator."""
        return self._breakdown(self.factor_logits(history))

    @torch.no_grad()
    def reward_fn(self, state: SessionState, action: Tensor) -> RewardOutput:
        """The RewardFn call, with reward and breakdown from a single forward pass."""
        history, _ = append_items(state.history, state.length, action)
        self.check_history(history)
        with evaluating(self):
            logits = self._logits(history).T
        reward = logits_to_reward(combine_logits(logits, self.config.combination), self.reward_form)
        return RewardOutput(reward, self._breakdown(logits))

    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """Eq. 13: the sum over discriminators of each one's binary cross-entropy.

        Each discriminator's loss is ``-mean log D_j(real) - mean log(1 - D_j(fake))``; real
        and fake go through one batched pass (the shorter window is left-padded, which does not
        change a score).
        """
        for name, batch in (("real", real), ("fake", fake)):
            self.check_history(batch)
            if batch.shape[0] == 0:
                raise ValueError(f"{name} must hold at least one sequence; got shape (0, L)")
        width = max(real.shape[1], fake.shape[1])
        both = torch.cat([F.pad(x, (width - x.shape[1], 0), value=PAD) for x in (real, fake)])
        logits_real, logits_fake = self._logits(both).split([len(real), len(fake)], dim=1)
        # -log sigmoid(z) = softplus(-z) and -log(1 - sigmoid(z)) = softplus(z), per (m, B)
        return (F.softplus(-logits_real).mean(1) + F.softplus(logits_fake).mean(1)).sum()

    def _breakdown(self, logits: Tensor) -> dict[str, Tensor]:
        scores = torch.sigmoid(logits)
        return {f"factor/{n}": scores[:, j] for j, n in enumerate(self.discriminator_names)}

    def _logits(self, history: Tensor, groups: GroupIndex = None) -> Tensor:
        """``(B, L) -> (G, B)`` logits of the (selected) discriminators; no input checks.

        An item's factor embedding depends on the item only, so when the catalogue is smaller
        than the batch the ``(G, n_items + 1, d)`` per-item table is built once and gathered
        instead of pooling factor values at every position. Without gradients on CPU, rows are
        encoded in blocks of about ``CPU_BLOCK_POSITIONS`` positions: intermediates that stay
        cache-sized make large batches ~3x faster there (the result is the same).
        """
        history = history[:, -self.config.max_len :]
        codes = self.codes if groups is None else self.codes[groups]
        table = self._item_vectors(codes) if codes.shape[1] <= history.numel() else None
        rows = len(history)
        if history.device.type == "cpu" and not torch.is_grad_enabled():
            n_groups = 1 if groups is not None else self.n_discriminators
            rows = max(1, CPU_BLOCK_POSITIONS // (n_groups * history.shape[1]))
        blocks = [self._encode(block, codes, table, groups) for block in history.split(rows)]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)

    def _encode(
        self, history: Tensor, codes: Tensor, table: Tensor | None, groups: GroupIndex
    ) -> Tensor:
        """Embed, encode and score ``(B, L)`` histories: ``(G, B)`` logits."""
        if table is None:  # catalogue larger than the batch: pool per position
            emb = self._item_vectors(codes[:, history.reshape(-1)]).unflatten(1, history.shape)
        else:  # one flat lookup (index_select), much faster than table[:, history]
            n_groups, n_rows = table.shape[:2]
            shift = torch.arange(0, n_groups * n_rows, n_rows, device=table.device)
            emb = F.embedding(history + shift.view(-1, 1, 1), table.flatten(0, 1))
        hidden = self.encoder(emb, history == PAD, last_only=True, groups=groups)  # (G, B, d)
        return self.head_out(F.relu(self.head_in(hidden, groups)), groups).squeeze(-1)

    def check_history(self, history: Tensor) -> None:
        """The base checks, plus at least one column (the newest item is scored)."""
        super().check_history(history)
        if history.shape[1] == 0:
            raise ValueError("history must have at least one column (B, L >= 1); got L = 0")

    def _item_vectors(self, codes: Tensor) -> Tensor:
        """Embeddings of items given their rows ``(G, N, K)``: ``(G', N, d)`` (``G' = 1``: sdaf)."""
        if codes.shape[-1] == 1:
            emb = F.embedding(codes.squeeze(-1), self.embedding, padding_idx=PAD)
        else:
            emb = F.embedding_bag(
                codes.reshape(-1, codes.shape[-1]), self.embedding, mode=self.config.pooling,
                padding_idx=PAD,
            ).unflatten(0, codes.shape[:2])  # fmt: skip
        if self.concat is None:
            return emb
        # sdaf: one sequence of [e_1 | ... | e_m] W per item
        return self.concat(emb.permute(1, 0, 2).flatten(1).unsqueeze(0))

    def extra_repr(self) -> str:
        """The configuration shown by ``print(model)``."""
        c = self.config
        return (
            f"variant={c.variant!r}, discriminators={list(self.discriminator_names)}, "
            f"n_items={self.n_items}, dim={c.dim}, combination={c.combination!r}"
        )


# ---------------------------------------------------------------------- factor tables
def _select(config: MultiFactorConfig, factors: ItemFactors) -> list[ItemFactor]:
    if config.variant == "sdsf":
        return []
    names = factors.names if config.factors is None else config.factors
    missing = [n for n in names if n not in factors.names]
    if missing:
        raise ValueError(
            f"factors {missing} are not in the item-factor table; available: "
            f"{list(factors.names)} (use split.factors(popularity_bins=...) for popularity)"
        )
    if not config.include_item_id and not names:
        raise ValueError("no discriminator left: the factor table is empty and the item id off")
    return [factors[n] for n in names]


def code_table(
    factors: list[ItemFactor], n_items: int, include_item_id: bool
) -> tuple[np.ndarray, int]:
    """Map every item to the embedding rows of each embedded factor.

    One embedding matrix holds every factor's vocabulary in consecutive blocks after row 0.
    ``codes[g, item]`` lists the rows pooled for ``item`` in group ``g``: its known values, or
    the factor's "unknown" row when it has none; row 0 fills empty slots and the padding item.

    Returns:
        ``(codes (G, n_items + 1, K) int64, number of embedding rows)``.
    """
    tables, offset = [], 1
    if include_item_id:
        ids = np.arange(n_items + 1, dtype=np.int64)[:, None]
        tables.append(np.where(ids > 0, ids, PAD))
        offset += n_items
    for factor in factors:
        values = factor.values
        codes = np.where(values > 0, values + offset, PAD)
        codes[~(values > 0).any(axis=1), 0] = offset  # the factor's own "unknown" row
        codes[PAD] = PAD
        tables.append(codes)
        offset += factor.n_values
    width = max(t.shape[1] for t in tables)
    padded = [np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=PAD) for t in tables]
    return np.stack(padded).astype(np.int64), offset
