"""A frozen recommender as a reference reward.

(The logged-item hit and the known user model, :class:`~recgym.reference.HitReward` and
:class:`~recgym.reference.OracleReward`, live in ``recgym.reference``; ``rewards`` exports
them too, so every reward a user might plug in is importable from ``rewards``.)
:class:`FrozenRecommenderReward` turns any trained ``recgym.types.Recommender`` (SASRec, a
Markov chain, MF-BPR, ...) into a fixed reward: how likely the recommender finds the action.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from recgym._torch_io import evaluating
from recgym.types import Recommender, SessionState

RecommenderForm = Literal["log_prob", "reciprocal_rank"]
RECOMMENDER_FORMS: tuple[str, ...] = ("log_prob", "reciprocal_rank")

__all__ = ["FrozenRecommenderReward"]


class FrozenRecommenderReward:
    """Reward the action by a frozen recommender's opinion of it.

    The recommender scores every item for the state's history and user; the candidates are the
    items ``1..n_items`` (padding never competes) or, with ``exclude_seen``, only the items not
    already in the history plus the action itself (so a repeated item is still scored, against
    unseen competitors only).

    ``"log_prob"``: ``log softmax(scores)[action]`` over the candidates (``<= 0``).
    ``"reciprocal_rank"``: ``1 / (rank + 1)`` with ``rank`` the number of *other* candidates
    scoring at least as high as the action (pessimistic ties: a tie never helps), in ``(0, 1]``.

    An ``nn.Module`` recommender is scored in eval mode and without gradients; its weights are
    never changed.

    Args:
        recommender: anything with ``score(history (B, L), user (B,)) -> (B, n_items + 1)``.
        form: ``"log_prob"`` or ``"reciprocal_rank"``.
        exclude_seen: drop items already in the history from the candidates.
    """

    def __init__(
        self,
        recommender: Recommender,
        *,
        form: RecommenderForm = "log_prob",
        exclude_seen: bool = False,
    ) -> None:
        if not callable(getattr(recommender, "score", None)):
            raise TypeError(
                "recommender must have a score(history, user) method (recgym.types.Recommender);"
                f" got {type(recommender).__name__}"
            )
        if form not in RECOMMENDER_FORMS:
            raise ValueError(f"form must be one of {RECOMMENDER_FORMS}; got {form!r}")
        if not isinstance(exclude_seen, bool):
            raise TypeError(f"exclude_seen must be a bool; got {exclude_seen!r}")
        self.recommender, self.form, self.exclude_seen = recommender, form, exclude_seen

    @torch.no_grad()
    def __call__(self, state: SessionState, action: Tensor) -> Tensor:
        """Reward ``(B,)`` float32 of each recommended item ``action`` ``(B,)``."""
        scores = self._scores(state).to(torch.float32)
        chosen = scores.gather(1, action.unsqueeze(1))  # (B, 1)
        masked = scores.clone()
        masked[:, 0] = float("-inf")
        if self.exclude_seen:
            masked.scatter_(1, state.history, float("-inf"))
        masked.scatter_(1, action.unsqueeze(1), chosen)  # the action always competes
        if self.form == "log_prob":
            return (chosen - torch.logsumexp(masked, dim=1, keepdim=True)).squeeze(1)
        rank = (masked >= chosen).sum(1) - 1  # other candidates scoring at least as high
        return 1.0 / (rank.to(torch.float32) + 1.0)

    def _scores(self, state: SessionState) -> Tensor:
        rec = self.recommender
        if isinstance(rec, nn.Module):
            with evaluating(rec):
                scores = rec.score(state.history, state.user)
        else:
            scores = rec.score(state.history, state.user)
        b = state.batch_size
        if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] != b:
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(
                f"{type(rec).__name__}.score must return a ({b}, n_items + 1) tensor; got {got}"
            )
        return scores

    def __repr__(self) -> str:
        return (
            f"FrozenRecommenderReward({type(self.recommender).__name__}, form={self.form!r}, "
            f"exclude_seen={self.exclude_seen})"
        )
