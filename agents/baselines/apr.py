"""APR / AMF: adversarial training of MF-BPR, and its robustness analysis (He et al., SIGIR 2018).

:class:`APRTrainer` minimises ``L_BPR(Θ) + λ L_BPR(Θ + Δ_adv)`` (Eq. 11) where, per mini-batch,
``Δ_adv`` is the fast-gradient perturbation of the user and item embedding tables (Eq. 12),
``ε Γ / ||Γ||`` with ``Γ = ∂L_BPR(Θ + Δ)/∂Δ`` normalised per embedding vector (``AMF.py``:
``tf.nn.l2_normalize(grad, 1) * eps``). Only the rows of the batch's users and items have a
non-zero gradient, so only they are perturbed (Eq. 16's mini-batch form); the mechanism is
:func:`agents.perturbation.adversarial_loss`. As in the paper and ``AMF.py``, adversarial
training starts from a pre-trained MF-BPR (pass a model trained by
:class:`agents.baselines.bpr.BPRTrainer`) with a fresh Adagrad optimiser.

:func:`perturbation_robustness` repeats the paper's motivating analysis (Section 3.2, Fig. 2):
the relative NDCG drop of a trained model when its *whole* embedding tables are moved by
adversarial versus random perturbations of the same per-vector norm ``ε``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from agents.baselines.bpr import BPRConfig, BPRTrainer
from agents.baselines.mf import BPRMFRecommender, NegativeSampler, training_pairs
from agents.perturbation import (
    AdversarialLoss,
    PerturbationConfig,
    adversarial_loss,
    fast_gradient_delta,
)
from recgym._checks import check_float
from recgym.device import resolve_device
from recgym.evaluation import evaluate
from recgym.splits import Split


@dataclass(frozen=True, kw_only=True)
class APRConfig(BPRConfig):
    """Settings of :class:`APRTrainer`: :class:`BPRConfig`'s plus the adversary's.

    Attributes:
        eps: per-vector L2 norm ``ε`` of the adversarial perturbation (0.5, the paper's and
            ``AMF.py``'s default).
        lam: weight ``λ`` of the adversarial loss (``reg_adv`` 1 in ``AMF.py``).
    """

    eps: float = 0.5
    lam: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float(self, "eps", positive=True)
        check_float(self, "lam")

    @property
    def perturbation(self) -> PerturbationConfig:
        """``PerturbationConfig(eps=eps, lam=lam)`` for :func:`adversarial_loss`."""
        return PerturbationConfig(eps=self.eps, lam=self.lam)


class APRTrainer(BPRTrainer):
    """Adversarial Personalized Ranking on a (pre-trained) :class:`BPRMFRecommender`.

    Same arguments, loop, early stopping and :class:`~agents.baselines.bpr.BPRResult` as
    :class:`BPRTrainer`; ``config`` is an :class:`APRConfig` and the history's losses are
    ``apr/loss`` (``clean + lam * adv`` per pair), ``apr/clean_loss`` and ``apr/adv_loss``.
    """

    prefix = "apr"
    config_class = APRConfig

    def objective(
        self, users: Tensor, positives: Tensor, negatives: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """``L_BPR(Θ) + λ L_BPR(Θ + Δ_adv)`` of a batch (summed over its triples)."""
        adv, _ = batch_apr_loss(self.model, users, positives, negatives, self.config.perturbation)
        parts = {
            "apr/clean_loss": float(adv.clean.detach()),
            "apr/adv_loss": float(adv.adversarial.detach()),
        }
        return adv.total, parts


def apr_loss(
    model: BPRMFRecommender,
    users: Tensor,
    positives: Tensor,
    negatives: Tensor,
    perturbation: PerturbationConfig,
) -> AdversarialLoss:
    """APR's objective on a batch of ``(B,)`` triples, with its perturbations as whole tables.

    ``Δ_adv = (Δ_P, Δ_Q)`` is :func:`agents.perturbation.adversarial_loss`'s fast-gradient
    perturbation of the user table (no padding row) and the item table (row 0 = padding): rows
    of users and items outside the batch have a zero gradient and stay unperturbed.

    Returns:
        ``total = clean + lam * adversarial`` (summed BPR losses) and ``delta =
        (user_delta (n_users, D), item_delta (n_items + 1, D))``.
    """
    adv, (user_rows, item_rows) = batch_apr_loss(model, users, positives, negatives, perturbation)
    user_delta, item_delta = adv.delta
    full = (
        torch.zeros_like(model.user_embedding.weight).index_copy_(0, user_rows, user_delta),
        torch.zeros_like(model.item_embedding.weight).index_copy_(0, item_rows, item_delta),
    )
    return AdversarialLoss(
        total=adv.total, clean=adv.clean, adversarial=adv.adversarial, delta=full
    )


def batch_apr_loss(
    model: BPRMFRecommender,
    users: Tensor,
    positives: Tensor,
    negatives: Tensor,
    perturbation: PerturbationConfig,
) -> tuple[AdversarialLoss, tuple[Tensor, Tensor]]:
    """:func:`apr_loss` with ``Δ_adv`` held only on the batch's distinct rows.

    The same objective: a row's gradient is the sum over its occurrences in the batch either
    way, and the fast gradient normalises row by row. Perturbing ``(U, D)`` rows instead of the
    ``(n_users, D)`` and ``(n_items + 1, D)`` tables makes the adversary O(batch), not
    O(catalogue): with sparse table gradients, a training step is 15–19× faster than the
    whole-table form at Amazon Sports' sizes and 1.2× at ML-100K's (``benchmarks/mf_step.py``).

    Returns:
        The loss (its ``delta`` = ``(user_delta (U, D), item_delta (I, D))``) and the rows
        ``(user_rows (U,), item_rows (I,))`` they perturb, sorted.
    """
    user_rows, user_index = torch.unique(users, return_inverse=True)
    items = torch.cat([positives, negatives])
    item_rows, item_index = torch.unique(items, return_inverse=True)
    p_rows = model.rows(model.user_embedding, user_rows)  # (U, D)
    q_rows = model.rows(model.item_embedding, item_rows)  # (I, D)
    pos_index, neg_index = item_index[: len(positives)], item_index[len(positives) :]
    bias = (
        0.0 if model.item_bias is None else model.item_bias[positives] - model.item_bias[negatives]
    )

    def loss_at(delta: tuple[Tensor, Tensor]) -> Tensor:
        p = (p_rows + delta[0])[user_index]
        q = q_rows + delta[1]
        margin = (p * (q[pos_index] - q[neg_index])).sum(-1) + bias
        return torch.nn.functional.softplus(-margin).sum()

    # item 0 (padding) never moves; it sorts first if a caller passed it
    item_pad = 0 if int(item_rows[0]) == 0 else None
    adv = adversarial_loss(loss_at, (p_rows, q_rows), perturbation, padding_idx=(None, item_pad))
    return adv, (user_rows, item_rows)


# ----------------------------------------------------------------------------- robustness
def adversarial_direction(
    model: BPRMFRecommender,
    split: Split,
    *,
    seed: int = 0,
    batch_size: int = 65_536,
) -> tuple[Tensor, Tensor]:
    """``Γ``: the BPR-loss gradient w.r.t. whole-table perturbations ``(Δ_P, Δ_Q)`` at 0.

    The loss sums over every training pair of ``split`` with one fixed negative each (drawn
    with ``seed``); it is accumulated in chunks of ``batch_size`` pairs to bound memory.

    Returns:
        ``(grad_user (n_users, D), grad_item (n_items + 1, D))`` on the model's device.
    """
    device = model.device
    users, items = training_pairs(split, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    negatives = NegativeSampler(users, items, model.n_items)(users, generator)
    grads = (
        torch.zeros_like(model.user_embedding.weight),
        torch.zeros_like(model.item_embedding.weight),
    )
    for lo in range(0, len(users), batch_size):
        deltas = tuple(torch.zeros_like(g, requires_grad=True) for g in grads)
        sl = slice(lo, lo + batch_size)
        loss = model.bpr_loss(users[sl], items[sl], negatives[sl], delta=deltas)
        for total, part in zip(grads, torch.autograd.grad(loss, deltas), strict=True):
            total += part
    return grads


def perturbation_robustness(
    model: BPRMFRecommender,
    split: Split,
    eps_values: Sequence[float] = (0.5, 1.0, 2.0),
    *,
    stage: str = "test",
    device: torch.device | str = "cpu",
    seed: int = 0,
    eval_batch_size: int = 1024,
) -> pd.DataFrame:
    """Full-ranking NDCG@10 of ``model`` under adversarial and random embedding perturbations.

    The adversarial perturbation moves every embedding vector by ``ε`` along the normalised
    gradient of the BPR loss over all training pairs (:func:`adversarial_direction`,
    :func:`agents.perturbation.fast_gradient_delta`); the random control moves the *same*
    vectors by the same norm ``ε`` in a Gaussian direction (drawn with ``seed``). Rows without
    gradient (and the padding row) are left alone by both.

    Args:
        model: a trained model (not modified; perturbed copies are evaluated).
        split: the split; the gradient uses its training pairs.
        eps_values: perturbation norms (each > 0).
        stage: ``"test"`` or ``"valid"``.
        device: where to compute.
        seed: seeds the negatives of the gradient and the random directions.
        eval_batch_size: targets ranked at once.

    Returns:
        One row per ``eps``: ``eps``, ``ndcg_clean``, ``ndcg_adversarial``, ``ndcg_random``,
        ``drop_adversarial`` and ``drop_random`` (relative drops ``1 - perturbed / clean``).
    """
    if not isinstance(model, BPRMFRecommender):
        raise TypeError(f"model must be an agents.baselines.mf.BPRMFRecommender; got {type(model)}")
    eps_values = tuple(eps_values)
    for eps in eps_values:
        PerturbationConfig(eps=eps)  # the same validation (finite, > 0) as training
    device = resolve_device(device)
    base = model.perturbed().to(device)  # a private copy: the caller's model stays put
    grads = adversarial_direction(base, split, seed=seed)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    noise = tuple(
        torch.randn(g.shape, generator=generator, device=device)
        * (g.abs().amax(dim=1, keepdim=True) > 0)  # only the rows the adversary moves
        for g in grads
    )

    def ndcg(recommender: BPRMFRecommender) -> float:
        frame = evaluate(
            recommender,
            split,
            stage,
            protocols=("full",),
            ks=(10,),
            max_len=1,
            batch_size=eval_batch_size,
            device=device,
        )
        return float(frame.set_index(["metric", "k"])["value"][("NDCG", 10)])

    clean = ndcg(base)
    rows = []
    for eps in eps_values:
        adv = _row_normalised(grads, eps)
        rand = _row_normalised(noise, eps)
        rows.append(
            {
                "eps": float(eps),
                "ndcg_clean": clean,
                "ndcg_adversarial": ndcg(base.perturbed(*adv)),
                "ndcg_random": ndcg(base.perturbed(*rand)),
            }
        )
    frame = pd.DataFrame(rows)
    for kind in ("adversarial", "random"):
        frame[f"drop_{kind}"] = 1.0 - frame[f"ndcg_{kind}"] / clean if clean > 0 else float("nan")
    frame.attrs.update(stage=stage, metric="NDCG@10", protocol="full", seed=seed)
    return frame


def _row_normalised(directions: tuple[Tensor, Tensor], eps: float) -> tuple[Tensor, Tensor]:
    """``eps * d / ||d||`` per row of the user and item directions (padding row 0 untouched)."""
    user, item = directions
    return (
        fast_gradient_delta(user, eps, padding_idx=None),
        fast_gradient_delta(item, eps, padding_idx=0),
    )
