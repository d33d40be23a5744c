"""The ground-truth user of the synthetic dataset: exact next-item probabilities (the oracle).

The model (written out in ``docs/synthetic.md``) scores item ``i`` for user ``u`` whose newest
history item is ``l``::

    logit(i) = a * log theta_u[g_i] + gamma_u * q_i - beta_u * z_i
               + b * log T[g_l, g_i] + c * 1[i = s(l)]

and gives ``-inf`` to padding and to every item already in the history (no repeats). With an
empty history the two sequential terms are dropped. The oracle conditions only on the window it
is given: items that fell out of a ``max_len`` window are unknown to it and may be "repeated".
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from recgym.device import resolve_device
from recgym.types import PAD

_TABLE_ELEMENTS = 1 << 25  # per-user logit table kept when n_users * (n_items + 1) fits 128 MB
_CHUNK_ELEMENTS = 1 << 20  # rows per sampling chunk * (n_items + 1): stays cache-sized (4 MB)


class SyntheticUserModel:
    """Exact next-item distribution of the synthetic users, batched on one device.

    Satisfies :class:`recgym.types.Recommender` (``score`` = ``log_prob``), so ranking with it
    gives the best achievable (Bayes-optimal) ranking of the synthetic data.

    Args:
        genre: ``(n_items + 1,)`` int64 genre index ``0..G-1`` of each item (row 0 unused).
        popularity: ``(n_items + 1,)`` float latent popularity ``q_i`` (``-s log rank_i``).
        price_z: ``(n_items + 1,)`` float standardised log price ``z_i``.
        sequel: ``(n_items + 1,)`` int64 sequel ``s(i)`` of each item, ``0`` = none.
        theta: ``(n_users, G)`` positive genre preferences, rows summing to 1.
        transition: ``(G, G)`` positive genre transition matrix, rows summing to 1.
        gamma: ``(n_users,)`` popularity bias of each user.
        beta: ``(n_users,)`` price sensitivity of each user.
        genre_weight: ``a``.
        transition_weight: ``b``.
        sequel_weight: ``c``.
        device: where every tensor lives (``"cuda"`` without CUDA raises ``ValueError``).
    """

    def __init__(
        self,
        *,
        genre: Tensor,
        popularity: Tensor,
        price_z: Tensor,
        sequel: Tensor,
        theta: Tensor,
        transition: Tensor,
        gamma: Tensor,
        beta: Tensor,
        genre_weight: float = 1.0,
        transition_weight: float = 1.0,
        sequel_weight: float = 3.0,
        device: torch.device | str = "cpu",
    ) -> None:
        dev = resolve_device(device)
        f32 = {"dtype": torch.float32, "device": dev}
        i64 = {"dtype": torch.int64, "device": dev}
        self.genre = torch.as_tensor(genre, **i64)
        self.popularity = torch.as_tensor(popularity, **f32)
        self.price_z = torch.as_tensor(price_z, **f32)
        self.sequel = torch.as_tensor(sequel, **i64)
        self.theta = torch.as_tensor(theta, **f32)
        self.transition = torch.as_tensor(transition, **f32)
        self.gamma = torch.as_tensor(gamma, **f32)
        self.beta = torch.as_tensor(beta, **f32)
        self.genre_weight = float(genre_weight)
        self.transition_weight = float(transition_weight)
        self.sequel_weight = float(sequel_weight)
        self._validate()
        self._log_theta = self.genre_weight * self.theta.log()
        # Row G is "no previous item": a zero Markov term, so empty histories need no branch.
        log_t = torch.cat([self.transition.log(), self.transition.new_zeros(1, self.n_genres)])
        self._markov = self.transition_weight * log_t[:, self.genre]  # (G + 1, n_items + 1)

    # ------------------------------------------------------------------ sizes and copies
    @property
    def n_users(self) -> int:
        """Number of users (valid user indices are ``0..n_users - 1``)."""
        return int(self.theta.shape[0])

    @property
    def n_items(self) -> int:
        """Number of real items (ids ``1..n_items``)."""
        return int(self.genre.shape[0]) - 1

    @property
    def n_genres(self) -> int:
        """Number of genres ``G``."""
        return int(self.theta.shape[1])

    @property
    def device(self) -> torch.device:
        """The device every tensor lives on."""
        return self.genre.device

    def to(self, device: torch.device | str) -> SyntheticUserModel:
        """Return a copy whose tensors live on ``device``."""
        dev = resolve_device(device)
        out = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(out, name, value.to(dev))
        return out

    def with_weights(
        self,
        *,
        genre_weight: float | None = None,
        transition_weight: float | None = None,
        sequel_weight: float | None = None,
    ) -> SyntheticUserModel:
        """A copy with some of ``a``, ``b``, ``c`` changed (e.g. ``b = c = 0``: no sequence)."""
        pick = lambda new, old: old if new is None else new  # noqa: E731
        return SyntheticUserModel(
            genre=self.genre,
            popularity=self.popularity,
            price_z=self.price_z,
            sequel=self.sequel,
            theta=self.theta,
            transition=self.transition,
            gamma=self.gamma,
            beta=self.beta,
            genre_weight=pick(genre_weight, self.genre_weight),
            transition_weight=pick(transition_weight, self.transition_weight),
            sequel_weight=pick(sequel_weight, self.sequel_weight),
            device=self.device,
        )

    def __repr__(self) -> str:
        return (
            f"SyntheticUserModel(n_users={self.n_users}, n_items={self.n_items}, "
            f"n_genres={self.n_genres}, a={self.genre_weight}, b={self.transition_weight}, "
            f"c={self.sequel_weight}, device={str(self.device)!r})"
        )

    # ------------------------------------------------------------------ the oracle
    def log_prob(self, history: Tensor, user: Tensor) -> Tensor:
        """Exact log-probabilities of the next item.

        Args:
            history: ``(B, L)`` int64 left-padded histories (``0`` = padding), on ``device``.
            user: ``(B,)`` int64 user indices in ``0..n_users - 1``.

        Returns:
            ``(B, n_items + 1)`` float32; ``logsumexp`` over each row is 0; column 0 and the
            items in ``history`` are ``-inf``.

        Raises:
            ValueError: bad shape, dtype, device or range, or a history covering every item.
        """
        self._check_user(user)
        self._check_history(history, user.shape[0])
        seen = self._seen(history)
        if bool(seen.all(dim=1).any()):
            raise ValueError(
                "a history contains all n_items items, so no next item is possible; "
                "pass histories with at least one unseen item"
            )
        logits = self._logits(self._base(user, seen), history[:, -1])
        return torch.log_softmax(logits, dim=1)

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """:class:`~recgym.types.Recommender` scores: the exact :meth:`log_prob`."""
        return self.log_prob(history, user)

    def sample_next(self, history: Tensor, user: Tensor, generator: torch.Generator) -> Tensor:
        """Draw one next item per row from :meth:`log_prob` (inverse-CDF, one uniform per row).

        Returns:
            ``(B,)`` int64 item ids in ``1..n_items``, never an item of ``history``.
        """
        self._check_generator(generator)
        return _sample_categorical(self.log_prob(history, user), generator)

    def generate(
        self,
        user: Tensor,
        n_steps: int,
        generator: torch.Generator,
        history: Tensor | None = None,
    ) -> Tensor:
        """Sample ``n_steps`` consecutive items per user from the true model.

        The oracle remembers the whole given window plus everything generated (the window is
        widened, nothing falls out), so a generated row never repeats an item.

        Args:
            user: ``(B,)`` int64 user indices.
            n_steps: number of items to draw, ``>= 0``.
            generator: a ``torch.Generator`` on ``device``.
            history: optional ``(B, L)`` left-padded starting histories; ``None`` = empty.

        Returns:
            ``(B, n_steps)`` int64 item ids.
        """
        self._check_user(user)
        self._check_generator(generator)
        if not isinstance(n_steps, int) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative int; got {n_steps!r}")
        if history is None:
            history = torch.zeros(user.shape[0], 1, dtype=torch.int64, device=self.device)
        self._check_history(history, user.shape[0])
        seen = self._seen(history)
        unseen = self.n_items + 1 - seen.sum(dim=1)
        if n_steps and bool((unseen < n_steps).any()):
            raise ValueError(
                f"cannot draw n_steps={n_steps} distinct items: some history leaves only "
                f"{int(unseen.min())} unseen of n_items={self.n_items}"
            )
        return self._rollout(user, history[:, -1], seen, n_steps, generator)

    def continuation_log_prob(self, history: Tensor, continuation: Tensor, user: Tensor) -> Tensor:
        """Per-step true log-probabilities of a continuation of ``history``.

        Step ``t`` is scored given ``history`` followed by ``continuation[:, :t]``; the window is
        widened by ``T`` so nothing falls out (equivalently, ``append_items`` on a
        ``(B, L + T)`` window). A repeated item scores ``-inf`` (the true user never repeats);
        the following steps are still scored.

        Args:
            history: ``(B, L)`` int64 left-padded histories.
            continuation: ``(B, T)`` int64 item ids in ``1..n_items``.
            user: ``(B,)`` int64 user indices.

        Returns:
            ``(B, T)`` float32 log-probabilities; ``.sum(1)`` is the sequence log-likelihood.
        """
        self._check_user(user)
        self._check_history(history, user.shape[0])
        self._check_items(continuation, user.shape[0], "continuation", low=1)
        seen = self._seen(history)
        base = self._base(user, seen)
        last = history[:, -1]
        out = []
        for step in continuation.unbind(dim=1):
            logits = self._logits(base, last)
            exhausted = seen.all(dim=1, keepdim=True)  # no valid item left: everything -inf
            logp = torch.log_softmax(logits.masked_fill(exhausted, 0.0), dim=1)
            logp = logp.masked_fill(exhausted | seen, float("-inf"))
            out.append(logp.gather(1, step.unsqueeze(1)).squeeze(1))
            seen.scatter_(1, step.unsqueeze(1), True)
            base.scatter_(1, step.unsqueeze(1), float("-inf"))
            last = step
        if not out:
            return torch.zeros(user.shape[0], 0, device=self.device)
        return torch.stack(out, dim=1)

    # ------------------------------------------------------------------ internals
    def _base(self, user: Tensor, seen: Tensor) -> Tensor:
        """``(B, n_items + 1)`` history-free logits ``a log theta + gamma q - beta z``; ``-inf``
        where ``seen`` (the no-repeat mask is folded in once, not re-applied every step).
        """
        table = self._user_table()
        if table is not None:  # one row gather instead of two gathers and two broadcasts
            return table.index_select(0, user).masked_fill_(seen, float("-inf"))
        return self._static_logits(user).masked_fill_(seen, float("-inf"))

    def _static_logits(self, user: Tensor) -> Tensor:
        logits = self._log_theta[user][:, self.genre]
        logits += self.gamma[user, None] * self.popularity
        logits -= self.beta[user, None] * self.price_z
        return logits

    def _user_table(self) -> Tensor | None:
        """All users' history-free logits, built once when it fits in 128 MB (else ``None``)."""
        if "_table" not in self.__dict__:
            small = self.n_users * (self.n_items + 1) <= _TABLE_ELEMENTS
            users = torch.arange(self.n_users, device=self.device)
            self._table = self._static_logits(users) if small else None
        return self._table

    def _logits(self, base: Tensor, last: Tensor) -> Tensor:
        """Full logits: ``base`` plus the Markov and sequel terms of the newest items ``(B,)``."""
        genre_last = torch.where(last == PAD, self.n_genres, self.genre[last])
        logits = self._markov.index_select(0, genre_last).add_(base)
        if self.sequel_weight:
            succ = self.sequel[last].unsqueeze(1)  # 0 (padding column) when there is no sequel
            logits.scatter_add_(1, succ, logits.new_full(succ.shape, self.sequel_weight))
        return logits

    def _seen(self, history: Tensor) -> Tensor:
        """``(B, n_items + 1)`` bool: padding and every item of ``history``."""
        seen = torch.zeros(history.shape[0], self.n_items + 1, dtype=torch.bool, device=self.device)
        seen.scatter_(1, history, True)
        seen[:, PAD] = True
        return seen

    def _rollout(
        self, user: Tensor, last: Tensor, seen: Tensor, n_steps: int, generator: torch.Generator
    ) -> Tensor:
        """``(B, n_steps)`` draws continuing from the newest items ``last`` and mask ``seen``."""
        out = torch.zeros(user.shape[0], n_steps, dtype=torch.int64, device=self.device)
        # Chunks of rows keep the (rows, n_items + 1) work tensors in cache: ~3x faster.
        chunk = max(1, _CHUNK_ELEMENTS // (self.n_items + 1))
        for rows in torch.arange(user.shape[0], device=self.device).split(chunk):
            base, prev = self._base(user[rows], seen[rows]), last[rows]
            for t in range(n_steps):
                prev = _sample_categorical(self._logits(base, prev), generator)
                base.scatter_(1, prev.unsqueeze(1), float("-inf"))
                out[rows, t] = prev
        return out

    def _validate(self) -> None:
        n, u = self.genre.shape[0], self.theta.shape[0]
        g = self.theta.shape[1] if self.theta.ndim == 2 else 0
        if self.genre.ndim != 1 or n < 2 or g < 1:
            raise ValueError(
                "genre must be (n_items + 1,) with n_items >= 1 and theta (n_users, G >= 1); "
                f"got genre {tuple(self.genre.shape)}, theta {tuple(self.theta.shape)}"
            )
        expected = {"popularity": (n,), "price_z": (n,), "sequel": (n,), "gamma": (u,)}
        for name, shape in {**expected, "beta": (u,), "transition": (g, g)}.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape}; got {tuple(getattr(self, name).shape)}"
                )
        floats = ("popularity", "price_z", "gamma", "beta")
        weights = (self.genre_weight, self.transition_weight, self.sequel_weight)
        finite = all(bool(torch.isfinite(getattr(self, f)).all()) for f in floats)
        if not finite or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"{floats} and the weights a, b, c must be finite")
        if self.genre.min() < 0 or self.genre.max() >= g:
            raise ValueError(f"genre indices must lie in [0, {g - 1}]")
        sequel = self.sequel[1:]
        if (
            sequel.min() < 0
            or sequel.max() >= n
            or bool((sequel == torch.arange(1, n, device=self.device)).any())
        ):
            raise ValueError(f"sequel ids must lie in [0, {n - 1}] and differ from the item")
        for name in ("theta", "transition"):
            rows = getattr(self, name)
            total = rows.sum(1)
            if bool((rows <= 0).any()) or not torch.allclose(
                total, torch.ones_like(total), atol=1e-4
            ):
                raise ValueError(f"{name} rows must be strictly positive and sum to 1")

    def _check_user(self, user: object) -> None:
        if not isinstance(user, Tensor) or user.ndim != 1 or user.dtype != torch.int64:
            raise ValueError(f"user must be a (B,) int64 tensor; got {_describe(user)}")
        self._check_device(user, "user")
        if user.numel() and (int(user.min()) < 0 or int(user.max()) >= self.n_users):
            raise ValueError(
                f"user indices must lie in [0, {self.n_users - 1}]; "
                f"got [{int(user.min())}, {int(user.max())}]"
            )

    def _check_history(self, history: object, batch_size: int) -> None:
        self._check_items(history, batch_size, "history", low=0)
        real = history != PAD
        if history.shape[1] == 0 or bool((real[:, :-1] & ~real[:, 1:]).any()):
            raise ValueError(
                "history must be (B, L) with L >= 1 and left-padded: 0s only before the items"
            )

    def _check_items(self, items: object, batch_size: int, name: str, *, low: int) -> None:
        if not isinstance(items, Tensor) or items.ndim != 2 or items.dtype != torch.int64:
            raise ValueError(f"{name} must be a (B, L) int64 tensor; got {_describe(items)}")
        if items.shape[0] != batch_size:
            raise ValueError(f"{name} has {items.shape[0]} rows but user has {batch_size}")
        self._check_device(items, name)
        if items.numel() and (int(items.min()) < low or int(items.max()) > self.n_items):
            raise ValueError(
                f"{name} item ids must lie in [{low}, n_items={self.n_items}]; "
                f"got [{int(items.min())}, {int(items.max())}]"
            )

    def _check_device(self, tensor: Tensor, name: str) -> None:
        if tensor.device != self.device:
            raise ValueError(
                f"{name} is on {tensor.device} but the user model is on {self.device}; "
                f"move it with .to({str(self.device)!r}) (or the model with .to(...))"
            )

    def _check_generator(self, generator: object) -> None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if generator.device.type != self.device.type:
            raise ValueError(
                f"generator is on {generator.device} but the user model is on {self.device}; "
                f"create it with torch.Generator(device={str(self.device)!r})"
            )


def _sample_categorical(logits: Tensor, generator: torch.Generator) -> Tensor:
    """``(B,)`` one draw per row of ``softmax(logits)`` by inverting the row's CDF.

    One uniform per row instead of one per item (Gumbel-max) makes sampling ~2x faster. The CDF
    is accumulated in float64; ``-inf`` items add nothing to it, so they can never be drawn.
    """
    cdf = torch.softmax(logits, dim=1).cumsum(dim=1, dtype=torch.float64)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64, device=logits.device)
    # Stay strictly below total (u * total can round up to it): the draw is then an item whose
    # CDF step is positive, i.e. an item of positive probability.
    below = torch.nextafter(total, torch.zeros_like(total))
    return torch.searchsorted(cdf, torch.minimum(u * total, below), right=True).squeeze(1)


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    return type(value).__name__
