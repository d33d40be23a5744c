"""BPR training of :class:`~agents.baselines.mf.BPRMFRecommender`, early-stopped on NDCG@10.

Follows the MF-BPR stage of APR's reference code (``hexiangnan/adversarial_personalized_ranking``,
``AMF.py``): every epoch shuffles the unique training ``(user, item)`` pairs, draws one uniform
negative per pair among the items the user never interacted with in training, and takes one
Adagrad step (lr 0.05, initial accumulator 0.1 as TensorFlow's ``AdagradOptimizer``) per
mini-batch of 512 on the *summed* BPR loss plus ``reg * (||P||^2 + ||Q||^2)`` over the whole
tables (``reg`` 0 by default). The last, smaller batch of an epoch is kept (``AMF.py`` drops it).

Unlike ``AMF.py``, which trains a fixed number of epochs and reports its best, the model is
ranked on the split's validation targets (full ranking, :func:`recgym.evaluate`) every
``eval_every`` epochs and training stops when validation NDCG@10 has not improved for
``patience`` evaluations; the best weights are restored.
:class:`agents.baselines.apr.APRTrainer` reuses this loop with the adversarial objective.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from agents.baselines.mf import BPRMFRecommender, NegativeSampler, training_pairs
from agents.early_stopping import BestWeights, TrainingResult, check_stopping, validation_metrics
from recgym._checks import check_float, check_int
from recgym._progress import metric_postfix, progress_bar
from recgym.device import resolve_device
from recgym.errors import RecGymError
from recgym.splits import Split


@dataclass(frozen=True, kw_only=True)
class BPRConfig:
    """Optimisation settings of :class:`BPRTrainer` (defaults: ``AMF.py``'s MF-BPR).

    Attributes:
        epochs: maximum passes over the training pairs.
        batch_size: triples per Adagrad step (512).
        lr: Adagrad learning rate (0.05).
        reg: L2 weight on the full embedding tables (0).
        eval_every: epochs between validation rankings (the last epoch is always evaluated).
        patience: evaluations without a better validation NDCG@10 before stopping.
        min_epochs: evaluations before this epoch never use up patience (as
            ``MLEConfig.min_epochs``; :class:`~agents.early_stopping.BestWeights`).
        stop_smoothing: count patience on the trailing mean of this many validation values
            (as ``MLEConfig.stop_smoothing``; ``1`` = raw; the weights kept are the raw best's).
        eval_batch_size: validation targets ranked at once.
        seed: seeds the pair order and the negatives.
    """

    epochs: int = 500
    batch_size: int = 512
    lr: float = 0.05
    reg: float = 0.0
    eval_every: int = 5
    patience: int = 10
    min_epochs: int = 0
    stop_smoothing: int = 1
    eval_batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size"):
            check_int(self, name, 1)
        check_int(self, "seed", 0)
        check_stopping(self)
        check_float(self, "lr", positive=True)
        check_float(self, "reg")


@dataclass(frozen=True)
class BPRResult(TrainingResult):
    """What :meth:`BPRTrainer.fit` measured: a ``TrainingResult`` plus its wall time.

    ``history`` columns: ``epoch``, ``<prefix>/loss`` (mean BPR loss per training pair, without
    the L2 term; for APR the total ``clean + lam * adv`` per pair, then also ``apr/clean_loss``
    and ``apr/adv_loss``), ``eval/NDCG@10``, ``eval/HR@10``, ``time/epoch_s`` and
    ``time/elapsed_s``; ``<prefix>`` is ``bpr`` or ``apr``.

    Attributes:
        fit_seconds: wall time of :meth:`BPRTrainer.fit`, validation included.
    """

    fit_seconds: float = 0.0


class BPRTrainer:
    """Trains a :class:`BPRMFRecommender` by BPR on a split's training segments.

    Args:
        model: the model; moved to ``device`` and left holding the best weights.
        split: positives come from its training segments, early stopping from ``"valid"``.
        config: optimisation settings (default ``BPRConfig()``).
        device: where to train.
        progress: show a tqdm bar over epochs.
        checkpoint_path: save the best model there (atomically) whenever it improves.
    """

    prefix = "bpr"
    config_class: type = BPRConfig

    def __init__(
        self,
        model: BPRMFRecommender,
        split: Split,
        config: BPRConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        progress: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> None:
        if not isinstance(model, BPRMFRecommender):
            raise TypeError(
                f"model must be an agents.baselines.mf.BPRMFRecommender; got {type(model)}"
            )
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        ds = split.dataset
        if (model.n_users, model.n_items) != (ds.n_users, ds.n_items):
            raise ValueError(
                f"model has n_users={model.n_users}, n_items={model.n_items} but the split's "
                f"dataset has {ds.n_users}, {ds.n_items}; use BPRMFRecommender.for_split(split)"
            )
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"config must be a {self.config_class.__name__}; got {type(config).__name__}"
            )
        self.config = config
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.split = split
        self.progress = progress
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        # TensorFlow's AdagradOptimizer starts its accumulator at 0.1 (PyTorch: 0).
        self.optimizer = torch.optim.Adagrad(
            model.parameters(), lr=config.lr, initial_accumulator_value=0.1
        )

    # ------------------------------------------------------------------ training
    def fit(self) -> BPRResult:
        """Train until ``epochs`` or early stopping; restore and return the best epoch.

        Raises:
            RecGymError: the split has no training pairs, or the loss became non-finite.
        """
        cfg, tic = self.config, time.perf_counter()
        users, items = training_pairs(self.split, device=self.device)
        if len(users) == 0:
            raise RecGymError(f"{self.split!r} has no training interactions")
        sampler = NegativeSampler(users, items, self.model.n_items)
        order = torch.Generator().manual_seed(cfg.seed)
        negatives = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        best = BestWeights.for_config(cfg)
        rows = []
        with progress_bar(total=cfg.epochs, desc=self.prefix, enabled=self.progress) as bar:
            for epoch in range(1, cfg.epochs + 1):
                start = time.perf_counter()
                row = {"epoch": epoch, **self._epoch(users, items, sampler, order, negatives)}
                row["time/epoch_s"] = time.perf_counter() - start
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    row.update(self.validate())
                row["time/elapsed_s"] = time.perf_counter() - tic
                rows.append(row)
                bar.update()
                bar.set_postfix(
                    metric_postfix(row, loss=f"{self.prefix}/loss", val_ndcg10="eval/NDCG@10")
                )
                if "eval/NDCG@10" in row and best.update(row, self.model, self.checkpoint_path):
                    break
        best.restore(self.model)
        return BPRResult(
            history=pd.DataFrame(rows),
            best_epoch=best.epoch,
            best_metrics=best.metrics,
            stopped_early=len(rows) < cfg.epochs,
            fit_seconds=time.perf_counter() - tic,
        )

    def _epoch(
        self,
        users: Tensor,
        items: Tensor,
        sampler: NegativeSampler,
        order: torch.Generator,
        generator: torch.Generator,
    ) -> dict[str, float]:
        """One shuffled pass with fresh negatives; returns the mean losses per pair."""
        self.model.train()
        perm = torch.randperm(len(users), generator=order).to(self.device)
        users, items = users[perm], items[perm]
        negatives = sampler(users, generator)
        sums: dict[str, float] = {}
        for lo in range(0, len(users), self.config.batch_size):
            hi = lo + self.config.batch_size
            for key, value in self._step(users[lo:hi], items[lo:hi], negatives[lo:hi]).items():
                sums[key] = sums.get(key, 0.0) + value
        return {key: value / len(users) for key, value in sums.items()}

    def _step(self, users: Tensor, positives: Tensor, negatives: Tensor) -> dict[str, float]:
        """One Adagrad step on a batch of triples; returns its summed losses."""
        loss, parts = self.objective(users, positives, negatives)
        total = loss + self._l2() if self.config.reg > 0 else loss
        if not torch.isfinite(total):
            raise RecGymError(
                f"{self.prefix} loss became non-finite ({float(total)}); lower the lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        # the embedding gradients are sparse (BPRMFRecommender.rows); Adagrad builds sparse
        # tensors from them that are valid by construction, so skip torch's invariant checks
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            self.optimizer.step()
        return {f"{self.prefix}/loss": float(loss.detach()), **parts}

    def objective(
        self, users: Tensor, positives: Tensor, negatives: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The summed batch loss to minimise (without L2) and extra parts to log.

        Args:
            users, positives, negatives: ``(B,)`` int64 triples.
        """
        return self.model.bpr_loss(users, positives, negatives), {}

    def _l2(self) -> Tensor:
        model = self.model
        squares = model.user_embedding.weight.square().sum()
        return self.config.reg * (squares + model.item_embedding.weight.square().sum())

    # ------------------------------------------------------------------ evaluation
    def validate(self) -> dict[str, float]:
        """Validation NDCG@10 and HR@10 under full ranking (eval mode, no gradient)."""
        return validation_metrics(
            self.model, self.split, max_len=1,  # MF ignores the history window
            batch_size=self.config.eval_batch_size, device=self.device,
        )  # fmt: skip
