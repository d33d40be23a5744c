"""Maximum-likelihood (supervised next-item) training of a sequence policy, with early stopping.

Every position of every training window (:func:`agents.sequences.training_windows`) is a
next-item target. Two losses:

- ``"ce"``: full softmax cross-entropy over all items (the padding column is excluded);
- ``"bce"``: the SASRec paper's binary cross-entropy of the target against **one** uniformly
  sampled negative item per position (``negative != target``, drawn by a seeded generator).

After every ``eval_every`` epochs the policy is ranked on the split's validation targets under
the full-ranking protocol of :func:`recgym.evaluate`; training stops when validation NDCG@10
has not improved for ``patience`` evaluations (counted from ``min_epochs`` on, optionally on a
trailing mean: :class:`~agents.early_stopping.BestWeights`) and the best weights are restored
(they are also written atomically to ``checkpoint_path`` when given). An optional
:class:`~agents.perturbation.PerturbationConfig` turns the objective into APR / SAO adversarial
training. Batch order, negatives and dropout all follow ``config.seed``; the global torch RNG is
forked, so the caller's random stream is left untouched.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from agents import distributed as ddp
from agents.distributed.mle import DistributedMLEMixin
from agents.distributed.training import own_rank_state
from agents.early_stopping import BestWeights, Monitor, TrainingResult, validation_metrics
from agents.losses import LOSSES, sample_negatives, sequence_loss  # noqa: F401 (re-exported)
from agents.mle_config import BATCHINGS, LOSS_DTYPES, MLEConfig  # noqa: F401 (re-exported)
from agents.perturbation import PerturbationConfig, adversarial_loss
from agents.policy import SequencePolicy
from agents.schedules import lr_factor
from agents.sequences import (
    bucketed_minibatches,
    minibatches,
    training_windows,
    trimmed_batches,
)
from recgym._checks import check_model_and_split
from recgym._progress import metric_postfix, progress_bar
from recgym._torch_io import atomic_torch_save, config_to_dict, optimizer_step, read_weights_only
from recgym.device import resolve_device
from recgym.errors import RecGymError
from recgym.splits import Split

MLE_STATE_FORMAT = "recgym.agents.mle-state/1"

MLEResult = TrainingResult
"""The result of :meth:`MLETrainer.fit` (``agents.early_stopping.TrainingResult``)."""


class MLETrainer(DistributedMLEMixin):
    """Trains a :class:`SequencePolicy` by maximum likelihood on a split's training segments.

    Args:
        policy: the model; moved to ``device`` and left holding the best weights.
        split: training windows come from its train segments, early stopping from ``"valid"``.
        config: optimisation settings (default ``MLEConfig()``).
        device: where to train.
        log_dir: write TensorBoard scalars there (``None`` = no logging).
        progress: show a tqdm bar over epochs.
        checkpoint_path: save the best policy there (atomically) whenever it improves.
        perturbation: APR / SAO adversarial training settings (``None`` = plain MLE).
        state_path: a resumable training state, written atomically after every epoch (weights,
            optimiser, every generator, the early-stopping bookkeeping, the history). When the
            file exists, :meth:`fit` continues from it — a killed run resumed ends with the
            weights of the uninterrupted run — and a finished one returns at once.
        distributed: train data-parallel over the initialised process group (``None`` = when
            one with more than one rank is). Each global batch of ``batch_size`` windows (one
            seeded order, the same on every rank) is split over the ranks, gradients are
            all-reduced by DDP so that a step equals the single-process step on the whole
            batch, validation is sharded (:mod:`agents.distributed.evaluation`), and only
            rank 0 writes ``checkpoint_path`` and ``state_path``. Dropout and BCE negatives
            draw per rank (a given world size is reproducible). Not with ``perturbation``.
        monitor: extra metrics recorded at every validation and never used to select or stop
            (e.g. :func:`agents.early_stopping.test_monitor`, to measure what picking the best
            test evaluation would report).
    """

    _loss_fn = staticmethod(sequence_loss)  # for the data-parallel half (DistributedMLEMixin)
    _negatives_fn = staticmethod(sample_negatives)
    _state_format = MLE_STATE_FORMAT

    def __init__(
        self,
        policy: SequencePolicy,
        split: Split,
        config: MLEConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        log_dir: str | os.PathLike | None = None,
        progress: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
        perturbation: PerturbationConfig | None = None,
        state_path: str | os.PathLike | None = None,
        distributed: bool | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        check_model_and_split(policy, split, SequencePolicy, what="policy")
        if monitor is not None and not callable(monitor):
            raise TypeError(f"monitor must be callable (model -> dict); got {monitor!r}")
        self.monitor = monitor
        if perturbation is not None and not isinstance(perturbation, PerturbationConfig):
            raise TypeError(f"perturbation must be a PerturbationConfig; got {perturbation!r}")
        self.config = MLEConfig() if config is None else config
        self.max_len = self.config.max_len or policy.max_len
        if self.max_len > policy.max_len:
            raise ValueError(f"MLEConfig.max_len={self.max_len} > policy.max_len={policy.max_len}")
        self.device = resolve_device(device)
        self.policy = policy.to(self.device)
        self.split = split
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.progress = progress
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.perturbation = perturbation
        self.state_path = None if state_path is None else Path(state_path)
        self.optimizer = torch.optim.Adam(
            policy.parameters(),
            lr=self.config.lr,
            betas=(0.9, 0.98),
            weight_decay=self.config.weight_decay,
        )
        self.distributed = ddp.is_distributed() if distributed is None else bool(distributed)
        if self.distributed and self.config.batching == "bucketed":
            raise ValueError(
                "MLEConfig.batching='bucketed' is single-process; got a distributed trainer "
                "(use batching='random' with torch.distributed)"
            )
        self._ddp = self._setup_distributed() if self.distributed else None

    # ------------------------------------------------------------------ training
    def fit(self) -> MLEResult:
        """Train until ``epochs`` or early stopping; restore and return the best epoch.

        The history has one row per epoch: ``epoch``, ``mle/loss`` (mean training loss; the
        total adversarial objective under a perturbation, then also ``mle/clean_loss`` and
        ``mle/adv_loss``), ``eval/NDCG@10``, ``eval/HR@10``, ``time/epoch_s``,
        ``time/elapsed_s``.
        """
        inputs, targets = training_windows(
            self.split, self.max_len, device=self.device,
            max_windows_per_user=self.config.max_windows_per_user,
        )  # fmt: skip
        if len(inputs) == 0:
            raise RecGymError(f"{self.split!r} has no training targets (every user has < 2 items)")
        if self.distributed:
            ddp.check_world_size(self._n_training_users())
        fork = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            seed = ddp.rank_seed(self.config.seed) if self.distributed else self.config.seed
            torch.manual_seed(seed)  # dropout draws from the (forked) global stream, per rank
            writer = _summary_writer(self.log_dir)
            try:
                return self._fit(inputs, targets, writer)
            finally:
                if writer is not None:
                    writer.close()

    def _fit(self, inputs: Tensor, targets: Tensor, writer) -> MLEResult:
        cfg = self.config
        order = torch.Generator().manual_seed(cfg.seed)
        negative_seed = ddp.rank_seed(cfg.seed + 1) if self.distributed else cfg.seed + 1
        negatives = torch.Generator(device=self.device).manual_seed(negative_seed)
        best = BestWeights.for_config(cfg)
        rows, first, elapsed, done = self._resume(order, negatives, best)
        start = time.perf_counter() - elapsed
        if first == 1 and cfg.evaluate_start:
            rows.append({"epoch": 0, **self.validate(), "time/elapsed_s": 0.0})
            best.update(rows[0], self.policy, self.checkpoint_path)
        bar = progress_bar(total=cfg.epochs, initial=first - 1, desc="mle",
                           enabled=self.progress and not done)  # fmt: skip
        with bar:
            for epoch in range(first, 0 if done else cfg.epochs + 1):
                tic = time.perf_counter()
                row = {"epoch": epoch, **self._epoch(inputs, targets, order, negatives, epoch)}
                row["time/epoch_s"] = time.perf_counter() - tic
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    row.update(self.validate())
                row["time/elapsed_s"] = time.perf_counter() - start
                rows.append(row)
                _log(writer, row, epoch)
                bar.update()
                bar.set_postfix(metric_postfix(row, loss="mle/loss", val_ndcg10="eval/NDCG@10"))
                stop = "eval/NDCG@10" in row and best.update(row, self.policy, self.checkpoint_path)
                self._save_state(rows, order, negatives, best, stop or epoch == cfg.epochs)
                if stop:
                    break
        best.restore(self.policy)
        stopped_early = rows[-1]["epoch"] < cfg.epochs
        return MLEResult(pd.DataFrame(rows), best.epoch, best.metrics, stopped_early)

    def _epoch(
        self,
        inputs: Tensor,
        targets: Tensor,
        order: torch.Generator,
        negatives: torch.Generator,
        epoch: int = 1,
    ) -> dict[str, float]:
        """One shuffled pass; returns the mean losses weighted by batch size."""
        self.policy.train()
        sums: dict[str, Tensor] = {}
        cfg = self.config
        if cfg.batching == "bucketed":
            lengths = (inputs != 0).sum(dim=1)
            batches = bucketed_minibatches(
                inputs, targets, lengths=lengths, batch_size=cfg.batch_size, generator=order
            )
        else:
            batches = minibatches(inputs, targets, batch_size=cfg.batch_size, generator=order)
        n_steps = math.ceil(len(inputs) / cfg.batch_size)
        # Bucketed batches hold very different numbers of targets (128 short histories vs 128
        # full windows): a per-batch mean would weight a target of a short batch up to L times
        # more than one of a long batch. Scaling each batch's mean by its share of the average
        # target count gives every target the weight it has under random batches.
        per_batch = float((targets > 0).sum()) * cfg.batch_size / len(inputs)
        sync = cfg.sync_interval(self.device)
        if cfg.trim_padding:
            batches = trimmed_batches(batches, sync)
        window: list[Tensor] = []  # the losses since the last read of the device
        for step, (batch_inputs, batch_targets) in enumerate(batches):
            self._set_lr(epoch - 1 + (step + 1) / n_steps)
            if self.distributed:
                losses = self._shard_step(batch_inputs, batch_targets, negatives)
            else:
                scale = (
                    (batch_targets > 0).sum() / per_batch if cfg.batching == "bucketed" else None
                )
                losses = self._step(
                    batch_inputs, batch_targets, negatives, scale, check_finite=sync == 1
                )
            for key, value in losses.items():
                # float64 on the device: the same sums, in the same order, as Python floats
                weighted = torch.as_tensor(value, dtype=torch.float64) * len(batch_inputs)
                sums[key] = sums[key] + weighted if key in sums else weighted
            if sync > 1:  # with 1, _step has refused a non-finite loss before its update
                window.append(losses["mle/loss"])
                if len(window) == sync:
                    self._check_finite(window, step)
                    window = []
        if window:
            self._check_finite(window, step)
        return {key: float(value) / len(inputs) for key, value in sums.items()}

    def _check_finite(self, losses: list, step: int) -> None:
        """One device read for the losses of the steps that end at ``step``."""
        if not bool(torch.isfinite(torch.stack([torch.as_tensor(x) for x in losses])).all()):
            raise RecGymError(
                f"MLE loss became non-finite within steps {step + 2 - len(losses)}..{step + 1} "
                f"of this epoch (one check per MLEConfig.sync_every="
                f"{self.config.sync_interval(self.device)} steps); lower MLEConfig.lr"
            )

    def _set_lr(self, progress: float) -> None:
        """The scheduled learning rate of the step that ends at ``progress`` epochs."""
        cfg = self.config
        horizon = cfg.epochs if cfg.schedule_epochs is None else cfg.schedule_epochs
        factor = lr_factor(cfg.lr_schedule, progress, warmup=cfg.warmup_epochs, horizon=horizon)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * factor

    def _step(
        self,
        inputs: Tensor,
        targets: Tensor,
        generator: torch.Generator,
        scale=None,
        check_finite: bool = True,
    ) -> dict:
        """One optimiser step on a batch (its loss times ``scale``, a 0-d tensor, when given);
        returns its unscaled losses as detached 0-d tensors (no device read unless
        ``check_finite``, which refuses a non-finite loss before the step)."""
        cfg, policy = self.config, self.policy
        negatives = (
            sample_negatives(targets, policy.n_items, generator) if cfg.loss == "bce" else None
        )

        def loss_at(delta: Tensor | None) -> Tensor:
            where = self.perturbation.targets if self.perturbation else ("input", "output")
            return sequence_loss(
                policy,
                inputs,
                targets,
                loss=cfg.loss,
                negatives=negatives,
                delta=delta,
                where=where,
                chunk_size=cfg.loss_chunk,
                matmul_dtype=LOSS_DTYPES[cfg.loss_dtype],
                compiled=cfg.compile_loss,
            )

        if self.perturbation is None:
            loss, parts = loss_at(None), {}
        else:
            adv = adversarial_loss(loss_at, policy.item_embedding.weight, self.perturbation)
            loss = adv.total
            parts = {"mle/clean_loss": adv.clean.detach(), "mle/adv_loss": adv.adversarial.detach()}
        scaled = loss if scale is None else loss * scale
        optimizer_step(scaled, self.optimizer, policy.parameters(), max_grad_norm=cfg.max_grad_norm,
                       what="MLE loss", hint="lower MLEConfig.lr",
                       check_finite=check_finite)  # fmt: skip
        return {"mle/loss": loss.detach(), **parts}

    # ------------------------------------------------------------------ resuming
    def _save_state(self, rows: list, order, negatives, best: BestWeights, done: bool) -> None:
        if self.state_path is None:
            return
        cuda = self.device.type == "cuda"
        if self.distributed:
            self._save_shared_state(rows, order, negatives, best, done)
            return
        atomic_torch_save({
            "format": MLE_STATE_FORMAT, "config": config_to_dict(self.config), "done": done,
            "rows": [dict(r) for r in rows], "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(), "order": order.get_state(),
            "negatives": negatives.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "best": best.state_dict(),
        }, self.state_path)  # fmt: skip

    def _resume(self, order, negatives, best: BestWeights) -> tuple[list, int, float, bool]:
        """``(rows, first epoch, elapsed seconds, done)`` from :attr:`state_path` if it exists."""
        if self.state_path is None or not self.state_path.exists():
            return [], 1, 0.0, False
        state = read_weights_only(self.state_path)
        if not isinstance(state, dict) or state.get("format") != MLE_STATE_FORMAT:
            raise RecGymError(f"{str(self.state_path)!r} is not an MLE training state")
        saved, now = state["config"], config_to_dict(self.config)
        default = config_to_dict(MLEConfig())  # a field newer than the state: its default
        changed = sorted(k for k in now if saved.get(k, default[k]) != now[k])
        if changed:
            raise ValueError(
                f"cannot resume {str(self.state_path)!r} with another MLEConfig (changed: "
                f"{changed}); delete it to start afresh"
            )
        if self.distributed or "ranks" in state:
            state.update(own_rank_state(state.get("ranks", [state]), path=str(self.state_path)))
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["order"])
        negatives.set_state(state["negatives"])
        torch.set_rng_state(state["torch_rng"])  # dropout's (forked) global stream
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        best.load_state_dict(state["best"])
        rows = state["rows"]
        last = rows[-1] if rows else {"epoch": 0}
        return rows, int(last["epoch"]) + 1, float(last.get("time/elapsed_s", 0.0)), state["done"]

    # ------------------------------------------------------------------ evaluation
    def validate(self) -> dict[str, float]:
        """Validation NDCG@10 and HR@10 under full ranking (eval mode, no gradient); sharded
        over the ranks under ``distributed`` (the same numbers, to the digit)."""
        metric_fn = ddp.sharded_validation_metrics if self.distributed else validation_metrics
        metrics = metric_fn(
            self.policy, self.split, max_len=self.max_len,
            batch_size=self.config.eval_batch_size, device=self.device,
        )  # fmt: skip
        return metrics if self.monitor is None else metrics | dict(self.monitor(self.policy))


def _summary_writer(log_dir: Path | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _log(writer, row: dict, epoch: int) -> None:
    if writer is None:
        return
    for key, value in row.items():
        if key != "epoch" and isinstance(value, float) and math.isfinite(value):
            writer.add_scalar(key, value, epoch)
