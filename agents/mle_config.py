"""Optimisation settings of :class:`agents.mle.MLETrainer` (re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.early_stopping import check_stopping
from agents.losses import LOSSES
from agents.schedules import SCHEDULES
from recgym._checks import check_float, check_int

BATCHINGS = ("random", "bucketed")
LOSS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True, kw_only=True)
class MLEConfig:
    """Optimisation settings of :class:`MLETrainer`.

    Attributes:
        epochs: maximum passes over the training windows.
        batch_size: windows per step.
        lr: Adam learning rate (betas ``(0.9, 0.98)`` as in the SASRec reference).
        weight_decay: Adam L2 weight decay.
        loss: ``"ce"`` (full softmax) or ``"bce"`` (one sampled negative per position).
        eval_every: epochs between validation rankings (the last epoch is always evaluated).
        patience: evaluations without a better validation NDCG@10 before stopping.
        min_epochs: evaluations before this epoch never use up patience (the best is still
            tracked from the start): no early stop before ``min_epochs + (patience - 1) *
            eval_every``. For a warm-up + cosine schedule, whose high-lr phase gives early,
            noisy bests (issue 21); ``0`` = count from the start.
        stop_smoothing: patience counts evaluations since the trailing mean of the last this
            many validation NDCG@10 values reached a new high (``1`` = the raw values; for a
            noisy curve such as BCE's). The weights kept are still the raw best's.
        eval_batch_size: targets ranked at once during validation.
        max_len: window length; ``None`` = the policy's ``max_len``.
        seed: seeds the batch order, the negatives and dropout.
        max_grad_norm: gradient-norm clip, ``None`` for none.
        evaluate_start: rank the validation targets before the first epoch (history row
            ``epoch = 0``) so the starting weights compete for "best" — for fine-tuning a
            trained policy (SAO), which then can never end worse on validation than it began.
        loss_chunk: ``"ce"`` only: rows of logits per chunk of the fused cross-entropy
            (:func:`agents.losses.chunked_cross_entropy`: the same loss and gradients, ~3x
            faster on CPU, never the ``(positions, n_items)`` logit matrix); ``None`` = dense.
        lr_schedule: ``"constant"`` or ``"cosine"`` (:func:`agents.schedules.lr_factor`, set
            per step; a pure function of progress, so resuming needs no scheduler state).
        warmup_epochs: epochs of linear learning-rate warm-up (fractional; ``0`` = none).
        schedule_epochs: the cosine's length in epochs (``None`` = ``epochs``); must exceed
            ``warmup_epochs``. Early stopping still decides when training ends.
        max_windows_per_user: train on each user's newest this many windows only (``None`` =
            every window, so every training target; ``1`` = SASRec.pytorch's one window each).
        batching: ``"random"`` (uniform minibatches) or ``"bucketed"`` (rows of similar length
            share a batch, :func:`agents.sequences.bucketed_minibatches`; with trimming, the
            cheap setting for short-history data such as Amazon).
        loss_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the chunked CE's matmuls
            (:func:`agents.losses.chunked_cross_entropy`; bf16 is 2-4x faster on CPUs with
            AVX512-BF16 and on GPUs, softmax and accumulation stay fp32).
        compile_loss: run the chunked CE's per-chunk softmax and logit gradient as one
            ``torch.compile`` kernel (two sweeps over the logits instead of six; the first
            fit in a process pays the compilation, ~16 s on a CPU with a cold inductor cache
            and ~4 s with a warm one, and needs a C++ compiler there). The same loss to float
            rounding.
        trim_padding: drop each batch's all-padding leading columns before the forward pass
            (:func:`agents.sequences.drop_padding_columns`): the same loss and gradients for a
            left-padding-invariant policy (SASRec, GRU4Rec); turn off for a policy that is not.
        sync_every: steps between the step loop's reads of the device (the finite-loss check,
            the logged loss, the trimmed widths of the next batches); ``None`` = 1 on CPU,
            where a read costs nothing, and 64 on CUDA, where each one stalls the queue. With
            1 a non-finite loss is refused before its step (the weights stay as they were);
            with ``k > 1`` it is caught within ``k`` steps and training stops with the same
            error. The trained weights and the history do not depend on it.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "ce"
    eval_every: int = 1
    patience: int = 5
    min_epochs: int = 0
    stop_smoothing: int = 1
    eval_batch_size: int = 1024
    max_len: int | None = None
    seed: int = 0
    max_grad_norm: float | None = 5.0
    evaluate_start: bool = False
    loss_chunk: int | None = 256
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    schedule_epochs: int | None = None
    max_windows_per_user: int | None = None
    batching: str = "random"
    loss_dtype: str = "float32"
    trim_padding: bool = True
    compile_loss: bool = False
    sync_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size"):
            check_int(self, name, 1)
        if self.max_len is not None:
            check_int(self, "max_len", 1)
        check_int(self, "seed", 0)
        check_stopping(self)
        check_float(self, "lr", positive=True)
        check_float(self, "weight_decay")
        if self.loss not in LOSSES:
            raise ValueError(f"MLEConfig.loss must be one of {LOSSES}; got {self.loss!r}")
        check_float(self, "max_grad_norm", positive=True, optional=True)
        self._check_schedule()

    def sync_interval(self, device: torch.device) -> int:
        """``sync_every``, or its device default (1 on CPU, 64 on CUDA)."""
        if self.sync_every is not None:
            return self.sync_every
        return 64 if device.type == "cuda" else 1

    def _check_schedule(self) -> None:
        if self.loss_chunk is not None:
            check_int(self, "loss_chunk", 1)
        if self.batching not in BATCHINGS:
            raise ValueError(
                f"MLEConfig.batching must be one of {BATCHINGS}; got {self.batching!r}"
            )
        if self.loss_dtype not in LOSS_DTYPES:
            raise ValueError(
                f"MLEConfig.loss_dtype must be one of {tuple(LOSS_DTYPES)}; got {self.loss_dtype!r}"
            )
        for name in ("trim_padding", "compile_loss"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"MLEConfig.{name} must be a bool; got {type(getattr(self, name)).__name__}"
                )
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"MLEConfig.lr_schedule must be one of {SCHEDULES}; got {self.lr_schedule!r}"
            )
        check_float(self, "warmup_epochs")
        for name in ("schedule_epochs", "max_windows_per_user", "sync_every"):
            if getattr(self, name) is not None:
                check_int(self, name, 1)
        horizon = self.epochs if self.schedule_epochs is None else self.schedule_epochs
        if self.lr_schedule == "cosine" and horizon <= self.warmup_epochs:
            raise ValueError(
                f"MLEConfig: the cosine horizon (schedule_epochs or epochs) must exceed "
                f"warmup_epochs={self.warmup_epochs!r}; got {horizon!r}"
            )
