"""Training ACVAE (Xie et al., WWW 2021): AVB adversary, contrastive discriminator, ablations.

Each minibatch of all-position windows (:func:`agents.sequences.training_windows`) makes two
updates, in the order of the official ``train.py`` (``ACVAE/ACVAE-PyTorch``):

1. **VAE + contrastive step**: ``recon + alpha * KL + beta * I``, with ``recon`` the softmax
   next-item NLL at every position with a target, ``KL = E_q[T_psi(x, z)]`` (the analytic
   Gaussian KL without AVB) and ``I`` the Jensen-Shannon InfoMax loss of ``G_omega`` on
   ``(x, z)`` vs ``(x, z shuffled within the batch)``. Encoder/decoder *and* ``G_omega`` step
   on this one loss (official ``optimizer_primal`` and ``optimizer_dual`` after one backward).
2. **Adversary step**: ``T_psi`` tells ``(x, z ~ q(z | x))`` (detached) from
   ``(x, z ~ N(0, I))`` by the logistic loss; skipped without AVB.

The official losses are sums over positions / batch size; here each term is a mean over real
positions, which keeps the ratios ``alpha``, ``beta`` (official ``kl_weight=0.05``,
``contrast_weight=0.1``). The official dual/prior optimisers are SGD (lr ``3e-4``/``5e-4``,
weight decay 0.1) on those sums; on means both are Adam. Early stopping on validation NDCG@10
mirrors :class:`agents.mle.MLETrainer`. The paper's latent-correlation measure is
:func:`agents.baselines.acvae.analysis.latent_correlation`.

A step computes only what the losses read: the softmax at target positions (fused and chunked,
:func:`agents.losses.chunked_cross_entropy`), the GRUs from each row's first real input on
(:func:`agents.baselines.acvae.gru_scan.suffix_gru`), the convolution and ``T_psi`` at real
positions. Losses and gradients are those of the dense form to float rounding
(``tests/agents/baselines/test_acvae_step.py``); ``T_psi``'s dropout and prior draws are made
for the real positions only (same distribution, another random stream than the dense form's).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from agents.baselines.acvae.discriminators import AVBAdversary, ContrastiveDiscriminator, kl_term
from agents.baselines.acvae.model import (
    ACVAEConfig,
    ACVAEPolicy,
    LatentCodes,
    reconstruction_loss,
)
from agents.checkpoint import forked_global_rng
from agents.early_stopping import BestWeights, TrainingResult, validation_metrics
from agents.losses import chunked_cross_entropy
from agents.sequences import drop_padding_columns, minibatches, training_windows
from recgym._checks import check_float, check_int, check_model_and_split
from recgym._progress import metric_postfix, progress_bar
from recgym.device import resolve_device
from recgym.errors import RecGymError
from recgym.splits import Split

ABLATIONS = ("full", "no_avb", "no_contrastive", "no_cnn")
# One fused kernel per optimiser step instead of a loop over parameters (the same update to
# rounding; ~4x cheaper on CPU for the 3M parameters); CPU support came with torch 2.4.
_FUSED = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4) or None


@dataclass(frozen=True, kw_only=True)
class ACVAETrainingConfig:
    """Optimisation settings of :class:`ACVAETrainer` (defaults: official ``train.py``).

    Attributes:
        epochs: maximum passes over the training windows.
        batch_size: windows per step (64).
        lr: AdamW learning rate of the encoder/decoder (``lr_primal=1e-3``).
        weight_decay: AdamW weight decay of the encoder/decoder (``l2_regular=1e-2``).
        adversary_lr: Adam learning rate of the AVB adversary ``T_psi``.
        contrast_lr: Adam learning rate of the contrastive discriminator ``G_omega``.
        alpha: weight of the KL term (``kl_weight=0.05``).
        beta: weight of the contrastive term (``contrast_weight=0.1``).
        contrastive: train with the contrastive term (``False``: the "without contrastive"
            ablation, no ``G_omega``).
        anneal_steps: ramp ``alpha`` linearly from 0 over this many steps (official
            ``anneal=False`` by default: 0 = no annealing).
        adversary_dim: width of ``T_psi`` (128).
        contrast_dim: GRU width of ``G_omega`` (128).
        eval_every: epochs between validation rankings (the last epoch is always evaluated).
        patience: evaluations without a better validation NDCG@10 before stopping.
        eval_batch_size: targets ranked at once during validation.
        max_len: window length; ``None`` = the model's ``max_len``.
        seed: seeds batch order, noise, dropout and the discriminators' initialisation.
        max_grad_norm: gradient-norm clip of every update, ``None`` for none.
        loss_chunk: rows of logits per chunk of the fused next-item cross-entropy
            (:func:`agents.losses.chunked_cross_entropy`: the same loss and gradients without
            the ``(targets, n_items)`` logit matrix); ``None`` = dense logits.
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    adversary_lr: float = 1e-3
    contrast_lr: float = 1e-3
    alpha: float = 0.05
    beta: float = 0.1
    contrastive: bool = True
    anneal_steps: int = 0
    adversary_dim: int = 128
    contrast_dim: int = 128
    eval_every: int = 1
    patience: int = 10
    eval_batch_size: int = 1024
    max_len: int | None = None
    seed: int = 0
    max_grad_norm: float | None = 5.0
    loss_chunk: int | None = 256

    def __post_init__(self) -> None:
        ints = {"epochs": 1, "batch_size": 2, "adversary_dim": 1, "contrast_dim": 1}
        ints |= {"eval_every": 1, "patience": 1, "eval_batch_size": 1, "anneal_steps": 0}
        for name, low in {**ints, "seed": 0}.items():  # batch_size 2: z is shuffled in a batch
            check_int(self, name, low)
        for name in ("max_len", "loss_chunk"):
            if getattr(self, name) is not None:
                check_int(self, name, 1)
        for name in ("lr", "adversary_lr", "contrast_lr", "weight_decay", "alpha", "beta"):
            check_float(self, name, positive=name.endswith("lr"))
        if not isinstance(self.contrastive, bool):
            raise TypeError(
                f"ACVAETrainingConfig.contrastive must be a bool; got {self.contrastive!r}"
            )
        check_float(self, "max_grad_norm", positive=True, optional=True)

    def alpha_at(self, step: int) -> float:
        """The KL weight after ``step`` completed updates (linear annealing when enabled)."""
        if self.anneal_steps == 0:
            return self.alpha
        return self.alpha * min(1.0, step / self.anneal_steps)


def ablation_configs(
    name: str,
    model: ACVAEConfig | None = None,
    training: ACVAETrainingConfig | None = None,
) -> tuple[ACVAEConfig, ACVAETrainingConfig]:
    """The configs of ACVAE (``"full"``) or one of its ablations .

    ``"no_avb"``: Gaussian posterior with analytic KL; ``"no_contrastive"``: no contrastive
    term; ``"no_cnn"``: position-wise layer instead of the causal convolution.

    Raises:
        ValueError: ``name`` not in :data:`ABLATIONS`.
    """
    model = ACVAEConfig() if model is None else model
    training = ACVAETrainingConfig() if training is None else training
    if name not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}; got {name!r}")
    full_model = dataclasses.replace(model, avb=True, cnn=True)
    full_training = dataclasses.replace(training, contrastive=True)
    if name == "no_avb":
        return dataclasses.replace(full_model, avb=False), full_training
    if name == "no_cnn":
        return dataclasses.replace(full_model, cnn=False), full_training
    if name == "no_contrastive":
        return full_model, dataclasses.replace(training, contrastive=False)
    return full_model, full_training


ACVAEResult = TrainingResult
"""The result of :meth:`ACVAETrainer.fit` (``agents.early_stopping.TrainingResult``)."""


# ----------------------------------------------------------------------------- trainer
class ACVAETrainer:
    """Trains an :class:`ACVAEPolicy` on a split's training segments (Algorithm 1).

    Args:
        model: the model; moved to ``device`` and left holding the best weights.
        split: training windows come from its train segments, early stopping from ``"valid"``.
        config: optimisation settings (default ``ACVAETrainingConfig()``).
        device: where to train.
        checkpoint_path: save the best model there (atomically) whenever it improves.
        progress: show a tqdm bar over epochs (loss, validation NDCG@10, ETA).

    Attributes:
        adversary: the AVB adversary ``T_psi`` (``None`` without AVB).
        contrast: the contrastive discriminator ``G_omega`` (``None`` without the term).
    """

    def __init__(
        self,
        model: ACVAEPolicy,
        split: Split,
        config: ACVAETrainingConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        checkpoint_path: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> None:
        check_model_and_split(model, split, ACVAEPolicy, what="model")
        self.progress = progress
        self.config = cfg = ACVAETrainingConfig() if config is None else config
        if not isinstance(cfg, ACVAETrainingConfig):
            raise TypeError(f"config must be an ACVAETrainingConfig; got {type(cfg).__name__}")
        self.max_len = cfg.max_len or model.max_len
        if self.max_len > model.max_len:
            raise ValueError(f"config.max_len={self.max_len} > model.max_len={model.max_len}")
        self.device = resolve_device(device)
        self.model, self.split = model.to(self.device), split
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        dims = {"embed_dim": model.config.embed_dim, "latent_dim": model.config.latent_dim}
        with forked_global_rng(cfg.seed + 2, self.device):
            avb, contrastive = model.config.avb, cfg.contrastive
            self.adversary = AVBAdversary(hidden_dim=cfg.adversary_dim, **dims) if avb else None
            self.contrast = (
                ContrastiveDiscriminator(hidden_dim=cfg.contrast_dim, **dims)
                if contrastive
                else None
            )
        for module in (self.adversary, self.contrast):
            if module is not None:
                module.to(self.device)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=_FUSED
        )
        self.adversary_optimizer = _adam(self.adversary, cfg.adversary_lr)
        self.contrast_optimizer = _adam(self.contrast, cfg.contrast_lr)
        self.noise = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.steps = 0

    # ------------------------------------------------------------------ training
    def fit(self) -> ACVAEResult:
        """Train until ``epochs`` or early stopping; restore and return the best epoch.

        The history has one row per epoch: ``epoch``, step means of
        ``acvae/{loss,recon,kl,contrast}``, ``adversary/{loss,accuracy}``,
        ``contrast/accuracy`` (NaN for parts that are off), ``acvae/alpha``, ``eval/NDCG@10``,
        ``eval/HR@10``, ``time/epoch_s``, ``time/elapsed_s``.
        """
        inputs, targets = training_windows(self.split, self.max_len, device=self.device)
        if len(inputs) == 0:
            raise RecGymError(f"{self.split!r} has no training targets (every user has < 2 items)")
        with forked_global_rng(self.config.seed, self.device):  # dropout's draws
            return self._fit(inputs, targets)

    def _fit(self, inputs: Tensor, targets: Tensor) -> ACVAEResult:
        cfg = self.config
        order = torch.Generator().manual_seed(cfg.seed)
        best, rows = BestWeights(patience=cfg.patience), []
        start = time.perf_counter()
        with progress_bar(total=cfg.epochs, desc="acvae", enabled=self.progress) as bar:
            for epoch in range(1, cfg.epochs + 1):
                tic = time.perf_counter()
                row = {"epoch": epoch, **self._epoch(inputs, targets, order)}
                row["time/epoch_s"] = time.perf_counter() - tic
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    row.update(self.validate())
                row["time/elapsed_s"] = time.perf_counter() - start
                rows.append(row)
                bar.update()
                bar.set_postfix(metric_postfix(row, loss="acvae/loss", val_ndcg10="eval/NDCG@10"))
                if "eval/NDCG@10" in row and best.update(row, self.model, self.checkpoint_path):
                    break
        best.restore(self.model)
        stopped = len(rows) < cfg.epochs
        return ACVAEResult(pd.DataFrame(rows), best.epoch, best.metrics, stopped)

    def _epoch(self, inputs: Tensor, targets: Tensor, order: torch.Generator) -> dict:
        """One shuffled pass; returns the step means weighted by batch size."""
        sums: dict[str, float] = {}
        batches = minibatches(inputs, targets, batch_size=self.config.batch_size, generator=order)
        for batch_inputs, batch_targets in batches:
            for key, value in self.step(batch_inputs, batch_targets).items():
                sums[key] = sums.get(key, 0.0) + value * len(batch_inputs)
        return {key: value / len(inputs) for key, value in sums.items()}

    def step(self, inputs: Tensor, targets: Tensor) -> dict[str, float]:
        """One VAE + contrastive update, then one adversary update, on a batch of windows.

        Args:
            inputs: ``(B, L)`` left-padded windows; targets: ``(B, L)`` next items (0 = none).

        Returns:
            The losses and discriminator accuracies as floats (NaN for parts that are off).
        """
        cfg = self.config
        for module in (self.model, self.adversary, self.contrast):
            if module is not None:
                module.train()
        alpha = cfg.alpha_at(self.steps)
        codes, terms = self.objective(*drop_padding_columns(inputs, targets), alpha=alpha)
        loss, contrast = terms["loss"], terms.get("contrast")
        if not torch.isfinite(loss):
            raise RecGymError(f"ACVAE loss became non-finite ({float(loss)}); lower the lr")
        _update(loss, [self.optimizer, self.contrast_optimizer], cfg.max_grad_norm)
        row = {
            "acvae/loss": float(loss.detach()),
            "acvae/recon": float(terms["recon"].detach()),
            "acvae/kl": float(terms["kl"].detach()),
            "acvae/contrast": float(contrast["loss"].detach()) if contrast else math.nan,
            "contrast/accuracy": contrast["accuracy"] if contrast else math.nan,
            "acvae/alpha": alpha,
            "adversary/loss": math.nan,
            "adversary/accuracy": math.nan,
        }
        if self.adversary is not None:
            adv = self.adversary.loss(codes, self.noise)
            _update(adv["loss"], [self.adversary_optimizer], cfg.max_grad_norm)
            row["adversary/loss"] = float(adv["loss"].detach())
            row["adversary/accuracy"] = adv["accuracy"]
        self.steps += 1
        return row

    def objective(
        self, inputs: Tensor, targets: Tensor, *, alpha: float
    ) -> tuple[LatentCodes, dict]:
        """The encoder/decoder loss ``recon + alpha * KL + beta * I`` of a batch (no update).

        Args:
            inputs: ``(B, L)`` left-padded windows; targets: ``(B, L)`` next items (0 = none).
            alpha: the KL weight.

        Returns:
            ``(codes, terms)``: the sampled latent codes, and ``loss``, ``recon``, ``kl`` (scalar
            tensors) and, when the contrastive term is on, ``contrast`` (what
            :meth:`ContrastiveDiscriminator.loss` returns). Modules keep their train/eval mode.
        """
        codes = self.model.latent(inputs, sample=True, generator=self.noise)
        valid = targets > 0
        terms = {"recon": self._reconstruction(codes, targets, valid)}
        terms["kl"] = kl_term(codes, self.adversary)
        terms["loss"] = terms["recon"] + alpha * terms["kl"]
        if self.contrast is not None and len(inputs) > 1:  # a batch of 1 has no pairs
            terms["contrast"] = self.contrast.loss(codes)
            terms["loss"] = terms["loss"] + self.config.beta * terms["contrast"]["loss"]
        return codes, terms

    def _reconstruction(self, codes: LatentCodes, targets: Tensor, valid: Tensor) -> Tensor:
        """The next-item NLL at the target positions ``valid`` (dense or chunked logits)."""
        if self.config.loss_chunk is None:
            return reconstruction_loss(self.model.decode(codes, valid), targets[valid])
        states, table = self.model.target_states(codes, valid), self.model.item_table()
        return chunked_cross_entropy(
            states, table, targets[valid], chunk_size=self.config.loss_chunk
        )

    # ------------------------------------------------------------------ evaluation
    def validate(self) -> dict[str, float]:
        """Validation NDCG@10 and HR@10 under full ranking (eval mode: ``eps = 0``)."""
        return validation_metrics(
            self.model, self.split, max_len=self.max_len,
            batch_size=self.config.eval_batch_size, device=self.device,
        )  # fmt: skip


# ----------------------------------------------------------------------------- internals
def _update(loss: Tensor, optimizers: list, max_grad_norm: float | None) -> None:
    optimizers = [opt for opt in optimizers if opt is not None]
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        if max_grad_norm is not None:
            params = [p for group in opt.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()


def _adam(module: nn.Module | None, lr: float) -> torch.optim.Optimizer | None:
    return None if module is None else torch.optim.Adam(module.parameters(), lr=lr, fused=_FUSED)
