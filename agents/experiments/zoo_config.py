"""The zoo's shared sizes and budgets: :class:`ZooConfig` (re-exported by
:mod:`agents.experiments.zoo`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ZooConfig:
    """Model sizes and training budgets shared by every system of the zoo.

    Attributes:
        max_len: history window of every sequential model and of evaluation.
        dim: embedding size of every model.
        mle_epochs: maximum MLE epochs (SASRec, GRU4Rec); early stopping decides.
        mle_loss: ``"ce"`` (full softmax, the default) or ``"bce"`` (one sampled negative per
            position, SASRec's own loss: ~n_items times cheaper per position, for large
            catalogues on CPU).
        lr: Adam learning rate of MLE (GRU4Rec; SASRec's SAO / continued fine-tuning).
        sasrec_lr: peak Adam learning rate of SASRec MLE from scratch (batch
            ``sasrec_batch_size``, 1 epoch of warm-up, then a cosine to 0 at
            ``sasrec_schedule_epochs``; docs/benchmarks.md, issue 21: the validation best in
            about half the epochs of constant 1e-3 at batch 128, at the same NDCG).
        sasrec_batch_size: windows per SASRec MLE step; ``None`` = as many as hold about
            ``sasrec_batch_targets`` training targets on average, within 64..256 (ML-100K's
            long windows: 64; Amazon's short histories: 256 — the same work per step).
        sasrec_batch_targets: the targets per step that choose the automatic batch size.
        sasrec_batching, sasrec_loss_dtype: ``MLEConfig.batching`` / ``loss_dtype`` of SASRec
            MLE from scratch (length-bucketed batches and bf16 CE matmuls: ~3x cheaper epochs
            on Amazon Beauty, docs/benchmarks.md "Amazon Beauty: time to quality").
        sasrec_dropout: SASRec's dropout rate; ``None`` = by sparsity, as the SASRec paper sets
            it per dataset (0.2 on MovieLens, 0.5 on its sparse sets): 0.5 when the training
            windows are on average less than a quarter full (short histories: Amazon's ~0.11),
            else 0.2 (ML-100K 0.81, the synthetic default 0.53). Beauty, validation-selected
            (docs/results.md, 3 seeds): 0.5 lifts test full NDCG@10 from 0.0517 to 0.0558 on
            Beauty and from 0.0277 to 0.0321 on Sports.
        sasrec_compile_loss: ``MLEConfig.compile_loss`` of SASRec MLE from scratch (the CE's
            softmax step as one ``torch.compile`` kernel; needs a C++ compiler on CPU).
        sasrec_schedule_epochs: the cosine's length in epochs.
        sasrec_min_epochs: SASRec MLE's ``MLEConfig.min_epochs``: validations before this epoch
            never use up patience, so training outlasts the high-lr phase (issue 22; ``0`` =
            off; docs/benchmarks.md "stopping that covers the schedule").
        eval_every: epochs (or adversarial rounds) between validation rankings.
        patience: validation rankings without improvement before stopping.
        sao_epochs: maximum SAO fine-tuning epochs from SASRec MLE.
        sao_eps: SAO perturbation norm per embedding vector.
        adversarial_rounds: EB-SeqGAN rounds after MLE (one policy-gradient update each).
        reward_pretrain_epochs: EB-SeqGAN's discriminator pre-training epochs.
        mfgan_rounds: rounds of every MFGAN system (:mod:`agents.experiments.zoo_adversarial`).
        mfgan_pg_steps: policy-gradient updates per round of ``mfgan``.
        mfgan_wmle_steps: weighted-MLE minibatches per round of ``mfgan-wmle`` and its controls.
        mfgan_d_steps: discriminator updates per round of every MFGAN system.
        mfgan_pretrain_steps: discriminator pre-training updates of every MFGAN system (one
            epoch, capped).
        mf_epochs: maximum BPR-MF epochs.
        apr_epochs: maximum APR epochs from BPR-MF.
        acvae_epochs: maximum ACVAE epochs.
        monitor_test: also rank the test stage at every validation of every fit and report
            the best of those test scores (``info["test_ndcg10_best_of_evals"]``), to measure
            how much choosing on test (the official MFGAN code's practice) would inflate a
            row; selection never sees it. One extra full ranking per validation.
    """

    max_len: int = 50
    dim: int = 64
    mle_epochs: int = 200
    mle_loss: str = "ce"
    lr: float = 1e-3
    sasrec_lr: float = 2e-3
    sasrec_batch_size: int | None = None
    sasrec_batch_targets: int = 2500
    sasrec_batching: str = "bucketed"
    sasrec_loss_dtype: str = "bfloat16"
    sasrec_dropout: float | None = None
    sasrec_compile_loss: bool = False
    sasrec_schedule_epochs: int = 40
    sasrec_min_epochs: int = 20
    eval_every: int = 2
    patience: int = 5
    sao_epochs: int = 10
    sao_eps: float = 0.5
    adversarial_rounds: int = 50
    reward_pretrain_epochs: int = 3
    mfgan_rounds: int = 5
    mfgan_pg_steps: int = 6
    mfgan_wmle_steps: int = 50
    mfgan_d_steps: int = 6
    mfgan_pretrain_steps: int = 50
    mf_epochs: int = 500
    apr_epochs: int = 200
    acvae_epochs: int = 200
    monitor_test: bool = False

    def __post_init__(self) -> None:
        if self.mle_loss not in ("ce", "bce"):
            raise ValueError(f"ZooConfig.mle_loss must be 'ce' or 'bce'; got {self.mle_loss!r}")
        for name in ("monitor_test", "sasrec_compile_loss"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ZooConfig.{name} must be a bool; got {getattr(self, name)!r}")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("monitor_test", "sasrec_compile_loss"):
                continue
            if item.name == "sasrec_dropout":
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if value is not None and not (number and 0 <= value < 1):
                    raise ValueError(
                        f"ZooConfig.sasrec_dropout must be None or a float in [0, 1); got {value!r}"
                    )
                continue
            if item.name in ("mle_loss", "sasrec_batching", "sasrec_loss_dtype") or (
                item.name == "sasrec_batch_size" and value is None
            ):
                continue  # strings are checked by MLEConfig when a config is built
            if item.name in ("lr", "sasrec_lr", "sao_eps"):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
                expected = "a float > 0"
            else:
                low = 0 if item.name == "sasrec_min_epochs" else 1
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
                expected = f"an int >= {low}"
            if not ok:
                raise ValueError(f"ZooConfig.{item.name} must be {expected}; got {value!r}")

    @classmethod
    def quick(cls) -> ZooConfig:
        """A smoke setting: every system trains for a moment (CI, ``reproduce.py --quick``)."""
        return cls(
            max_len=20, dim=16, mle_epochs=2, eval_every=1, patience=1, sao_epochs=1,
            adversarial_rounds=2, reward_pretrain_epochs=1, mfgan_rounds=2, mfgan_pg_steps=2,
            mfgan_wmle_steps=2, mfgan_d_steps=2, mfgan_pretrain_steps=2, mf_epochs=2,
            apr_epochs=1, acvae_epochs=2,
        )  # fmt: skip
