"""Matrix factorisation for pairwise ranking (MF-BPR, Rendle et al. 2009), the APR base model.

The score of item ``i`` for user ``u`` is the dot product ``x_ui = p_u . q_i`` of a user and an
item embedding; there are no bias terms, as in the MF of APR (He et al., SIGIR 2018, Eq. 1) and
its reference code (``hexiangnan/adversarial_personalized_ranking``, ``AMF.py``); an item bias
can be switched on. The BPR loss of a batch of triples ``(u, i, j)`` (``i`` a training item of
``u``, ``j`` an item ``u`` never interacted with in training) is
``sum softplus(-(x_ui - x_uj))``, summed over the batch as in ``AMF.py``.

:func:`training_pairs` lists the unique ``(user, item)`` pairs of a split's *training* segments
(so validation and test items are never positives) and :class:`NegativeSampler` draws one
uniform negative per positive by vectorised rejection sampling with a ``torch.Generator``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.checkpoint import forked_global_rng
from recgym._checks import check_positive_int, is_real
from recgym._torch_io import atomic_torch_save, load_module, module_payload
from recgym.arrays import expand_ranges
from recgym.device import resolve_device
from recgym.errors import RecGymError
from recgym.splits import Split

SPARSE_GRAD_ROWS = 20_000
"""User plus item rows above which :class:`BPRMFRecommender` trains with sparse gradients:
dense and sparse BPR steps cost about the same around 10k rows on a CPU core (batch 512)."""


class BPRMFRecommender(nn.Module):
    """User and item embedding tables scored by a dot product (a ``recgym`` recommender).

    Args:
        n_users: number of users; indices ``0..n_users - 1`` (a dataset's user indices).
        n_items: catalogue size; items are ``1..n_items`` and row ``0`` is padding (kept zero).
        dim: embedding size (64 in APR's experiments).
        item_bias: add a learned per-item bias to the scores (off: the paper's MF has none).
        init_std: weights are drawn from a normal of this std truncated at two stds
            (``tf.truncated_normal(stddev=0.01)`` in ``AMF.py``).
        seed: seeds the initialisation (the global RNG is forked and left untouched).
        sparse_grad: give the tables sparse gradients (only the batch's rows), so that an
            Adagrad step touches only them, as ``AMF.py``'s TensorFlow gather does. The update
            is the same; it pays on large catalogues (6.5× per BPR step at Amazon Sports'
            54k rows) and costs on small ones (0.3× at ML-100K's 2.6k). ``None``: sparse when
            the tables have more than :data:`SPARSE_GRAD_ROWS` rows together
            (``benchmarks/mf_step.py``).
        device: where the tables live (``"cuda"`` without CUDA is an error).

    Attributes:
        user_embedding: ``(n_users, dim)`` table ``P``.
        item_embedding: ``(n_items + 1, dim)`` table ``Q``.
        item_bias: ``(n_items + 1,)`` parameter, or ``None``.
    """

    checkpoint_key = "bpr-mf"
    """The stable name saved files give this class (see ``recgym._torch_io``)."""

    def __init__(
        self,
        *,
        n_users: int,
        n_items: int,
        dim: int = 64,
        item_bias: bool = False,
        init_std: float = 0.01,
        seed: int = 0,
        sparse_grad: bool | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            check_positive_int(f"BPRMFRecommender.{name}", value)
        if not is_real(init_std) or init_std <= 0:
            raise ValueError(f"BPRMFRecommender.init_std must be a float > 0; got {init_std!r}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.init_std = float(init_std)
        if sparse_grad is not None and not isinstance(sparse_grad, bool):
            raise TypeError(f"sparse_grad must be a bool or None; got {sparse_grad!r}")
        auto = n_users + n_items + 1 > SPARSE_GRAD_ROWS
        self.sparse_grad = auto if sparse_grad is None else sparse_grad
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1)) if item_bias else None
        # nn.Embedding's own init draws from the global RNG too: build the tables in the fork.
        with forked_global_rng(seed), torch.no_grad():
            self.user_embedding = nn.Embedding(n_users, dim)
            self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
            for table in (self.user_embedding.weight, self.item_embedding.weight):
                nn.init.trunc_normal_(table, std=init_std, a=-2 * init_std, b=2 * init_std)
            self.item_embedding.weight[0] = 0.0
        self.to(resolve_device(device))

    @classmethod
    def for_split(cls, split: Split, **kwargs: Any) -> BPRMFRecommender:
        """A model sized for ``split``'s dataset; ``kwargs`` go to the constructor."""
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        return cls(n_users=split.dataset.n_users, n_items=split.dataset.n_items, **kwargs)

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return self.item_embedding.weight.device

    # ------------------------------------------------------------------ scores
    def pair_scores(
        self,
        users: Tensor,
        items: Tensor,
        *,
        user_delta: Tensor | None = None,
        item_delta: Tensor | None = None,
    ) -> Tensor:
        """``x_ui`` for aligned ``(B,)`` users and items, optionally with perturbed tables.

        Args:
            users: ``(B,)`` int64 user indices.
            items: ``(B,)`` int64 item ids.
            user_delta: ``(n_users, dim)`` additive perturbation of ``P`` (APR's ``Δ_P``).
            item_delta: ``(n_items + 1, dim)`` additive perturbation of ``Q`` (``Δ_Q``).

        Returns:
            ``(B,)`` scores. Only the indexed rows of a delta enter, so its gradient is zero on
            every other row (the mini-batch form of APR's Eq. 10).
        """
        p = self.rows(self.user_embedding, users)  # (B, D)
        q = self.rows(self.item_embedding, items)  # (B, D)
        if user_delta is not None:
            p = p + user_delta[users]
        if item_delta is not None:
            q = q + item_delta[items]
        scores = (p * q).sum(-1)
        return scores if self.item_bias is None else scores + self.item_bias[items]

    def rows(self, table: nn.Embedding, index: Tensor) -> Tensor:
        """``table.weight[index]``, with a sparse gradient if ``sparse_grad``."""
        return F.embedding(index, table.weight, sparse=self.sparse_grad)

    def bpr_loss(
        self,
        users: Tensor,
        positives: Tensor,
        negatives: Tensor,
        *,
        delta: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``sum softplus(-(x_ui - x_uj))`` over a batch of ``(B,)`` triples (``AMF.py``'s loss).

        Args:
            users, positives, negatives: ``(B,)`` int64 triples.
            delta: optional ``(user_delta, item_delta)`` added to the tables.
        """
        user_delta, item_delta = (None, None) if delta is None else delta
        kw = {"user_delta": user_delta, "item_delta": item_delta}
        margin = self.pair_scores(users, positives, **kw) - self.pair_scores(users, negatives, **kw)
        return F.softplus(-margin).sum()

    def forward(self, user: Tensor) -> Tensor:
        """Scores of every item, ``(B,) -> (B, n_items + 1)`` (column 0 is the padding row's)."""
        scores = self.user_embedding(user) @ self.item_embedding.weight.T
        return scores if self.item_bias is None else scores + self.item_bias

    @torch.no_grad()
    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``recgym.types.Recommender`` scores ``(B, n_items + 1)`` from ``user`` alone.

        Args:
            history: ``(B, L)`` int64 histories; ignored (MF is not sequential) but checked.
            user: ``(B,)`` int64 user indices in ``0..n_users - 1``.
        """
        self.check_users(user, batch=history.shape[0] if isinstance(history, Tensor) else None)
        return self(user)

    def check_users(self, user: Tensor, *, batch: int | None = None) -> None:
        """Raise a clear error for user indices of the wrong dtype, shape, device or range."""
        ok = isinstance(user, Tensor) and user.dtype == torch.int64 and user.dim() == 1
        if not ok or (batch is not None and user.shape[0] != batch):
            raise ValueError(
                f"user must be a ({batch if batch is not None else 'B'},) int64 tensor; got "
                f"{getattr(user, 'dtype', type(user).__name__)} of shape "
                f"{tuple(getattr(user, 'shape', ()))}"
            )
        if user.device != self.device:
            raise ValueError(f"user is on {user.device} but the model is on {self.device}")
        if user.numel() and (int(user.min()) < 0 or int(user.max()) >= self.n_users):
            raise ValueError(
                f"user indices must lie in [0, {self.n_users - 1}]; "
                f"got [{int(user.min())}, {int(user.max())}]"
            )

    def perturbed(
        self, user_delta: Tensor | None = None, item_delta: Tensor | None = None
    ) -> BPRMFRecommender:
        """A copy with ``P + user_delta`` and ``Q + item_delta`` (the model is not changed)."""
        model = copy.deepcopy(self)
        with torch.no_grad():
            if user_delta is not None:
                model.user_embedding.weight.add_(user_delta.to(self.device))
            if item_delta is not None:
                model.item_embedding.weight.add_(item_delta.to(self.device))
        return model

    # ------------------------------------------------------------------ persistence
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments needed to rebuild the model."""
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "dim": self.dim,
            "item_bias": self.item_bias is not None,
            "init_std": self.init_std,
            "sparse_grad": self.sparse_grad,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the constructor arguments and weights atomically."""
        return atomic_torch_save(module_payload(self), path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, device: torch.device | str = "cpu"
    ) -> BPRMFRecommender:
        """Rebuild a model written by :meth:`save` (read with ``weights_only=True``) on ``device``.

        Raises:
            FileNotFoundError: no file at ``path``.
            RecGymError: the file is unreadable, holds another class, or its weights do not fit.
        """
        return load_module(cls, path, device=device)


# ----------------------------------------------------------------------------- training data
def training_pairs(split: Split, *, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The unique ``(user, item)`` pairs of ``split``'s training segments.

    Validation and test positions are never included (an item repeated inside the training
    segment counts once, like the ``trainMatrix`` keys of ``AMF.py``).

    Returns:
        ``(users, items)``: two ``(P,)`` int64 tensors on ``device``, sorted by user then item.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    start, end = split.stage_bounds("train")
    counts = end - start
    users = np.repeat(np.arange(split.dataset.n_users, dtype=np.int64), counts)
    items = split.dataset.items[expand_ranges(start, counts)]
    keys = np.unique(users * (split.dataset.n_items + 1) + items)
    users, items = np.divmod(keys, split.dataset.n_items + 1)
    return torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)


class NegativeSampler:
    """Uniform negatives in ``1..n_items`` outside each user's training items.

    Rejection sampling, vectorised: draw for every row, redraw only the rows that hit one of the
    user's items, until none does (``AMF.py`` does the same per pair in Python).

    Args:
        users, items: ``(P,)`` int64 positive pairs (e.g. from :func:`training_pairs`).
        n_items: catalogue size.

    Raises:
        RecGymError: some user has interacted with every item (no negative exists).
    """

    max_rounds = 10_000

    def __init__(self, users: Tensor, items: Tensor, n_items: int) -> None:
        self.n_items = int(n_items)
        keys = users.long() * (self.n_items + 1) + items.long()
        self.keys = torch.unique(keys)  # sorted
        n_seen = torch.bincount(torch.div(self.keys, self.n_items + 1, rounding_mode="floor"))
        full = torch.nonzero(n_seen >= self.n_items).flatten()
        if len(full):
            raise RecGymError(
                f"{len(full)} user(s) interacted with all {self.n_items} items in training "
                f"(e.g. user {int(full[0])}), so no negative item exists for them"
            )

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """``(B,)`` bool: whether each ``(user, item)`` is a training pair."""
        keys = users * (self.n_items + 1) + items
        if len(self.keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, keys).clamp_max(len(self.keys) - 1)
        return self.keys[pos] == keys

    def __call__(self, users: Tensor, generator: torch.Generator) -> Tensor:
        """One negative per entry of ``users`` ``(B,)``, drawn with ``generator`` (its device)."""
        device = users.device
        negatives = torch.randint(
            1, self.n_items + 1, users.shape, generator=generator, device=device
        )
        if self.keys.device != device:
            self.keys = self.keys.to(device)
        redo = torch.nonzero(self.contains(users, negatives)).flatten()
        for _ in range(self.max_rounds):
            if len(redo) == 0:
                return negatives
            draw = torch.randint(
                1, self.n_items + 1, redo.shape, generator=generator, device=device
            )
            negatives[redo] = draw
            redo = redo[self.contains(users[redo], draw)]
        raise RecGymError(
            f"negative sampling did not finish in {self.max_rounds} rounds; some user has seen "
            "almost every item"
        )
