"""Pre-train a discriminator on real vs negative sequences before adversarial training.

:func:`pretrain_discriminator` holds out a validation part of the real sequences (its negatives
drawn once, with a fixed generator, so every epoch is judged on the same pairs), trains with
minibatches of freshly sampled negatives, stops early on validation AUC and restores the best
weights. Everything random (the split, the batches, the negatives, dropout) follows
``config.seed``; the global torch RNG is forked, so the caller's stream is left untouched.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from recgym._checks import check_float, check_int
from recgym._progress import progress_bar
from recgym._torch_io import evaluating, optimizer_step
from recgym.device import resolve_device
from rewards.base import RewardModel, auc, logits_to_reward, separation_accuracy
from rewards.negatives import NegativeSampler


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """Optimisation settings of :func:`pretrain_discriminator`.

    Attributes:
        epochs: maximum passes over the training part.
        batch_size: real sequences per step (each paired with one negative).
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        valid_fraction: share of the real sequences held out for validation, in ``(0, 1)``.
        patience: epochs without a better validation AUC before stopping.
        seed: seeds the split, the batch order, the negatives and dropout.
        max_grad_norm: gradient-norm clip, ``None`` for none.
        max_steps: updates per epoch at most (``None`` = the whole pass): a capped epoch
            trains on a random sample of ``max_steps * batch_size`` real sequences, for
            catalogues where one pass costs more than the budget.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    valid_fraction: float = 0.1
    patience: int = 2
    seed: int = 0
    max_grad_norm: float | None = 5.0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            check_int(self, name, 1)
        if self.max_steps is not None:
            check_int(self, "max_steps", 1)
        check_int(self, "seed", 0)
        check_float(self, "lr", positive=True)
        check_float(self, "weight_decay")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(
                f"PretrainConfig.valid_fraction must be in (0, 1); got {self.valid_fraction!r}"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"PretrainConfig.max_grad_norm must be None or > 0; got {self.max_grad_norm!r}"
            )


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain_discriminator` measured.

    Attributes:
        history: one row per epoch: ``epoch``, ``train_loss``, ``valid_loss``, ``valid_auc``,
            ``valid_accuracy``, ``seconds`` (wall time since the start).
        best_auc: the best validation AUC (the restored weights').
        best_epoch: the epoch (1-based) that reached it.
    """

    history: pd.DataFrame
    best_auc: float
    best_epoch: int


def pretrain_discriminator(
    model: RewardModel,
    real: Tensor,
    sampler: NegativeSampler,
    config: PretrainConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> PretrainResult:
    """Train ``model`` to tell ``real`` sequences from ``sampler``'s negatives.

    Args:
        model: the discriminator; moved to ``device`` and left holding the best weights. Its
            :meth:`~rewards.base.RewardModel.update` optimiser is replaced by Adam.
        real: ``(N, L)`` int64 left-padded real sequences (e.g. :func:`real_sequences`).
        sampler: makes the negatives (e.g. ``ReplaceLastSampler``).
        config: optimisation settings (default ``PretrainConfig()``).
        device: where to train.
        progress: show a tqdm bar over epochs.

    Returns:
        The per-epoch metrics, best validation AUC and its epoch.

    Raises:
        RecGymError: the loss became non-finite.
    """
    config = PretrainConfig() if config is None else config
    if not isinstance(model, RewardModel):
        raise TypeError(f"model must be a rewards.RewardModel; got {type(model).__name__}")
    if not callable(getattr(sampler, "sample", None)):
        raise TypeError(f"sampler must have a sample(real, generator) method; got {sampler!r}")
    device = resolve_device(device)
    model.to(device)
    real = real.to(device) if isinstance(real, Tensor) else real
    model.check_history(real)
    n_valid = max(1, round(len(real) * config.valid_fraction))
    if len(real) - n_valid < 1:
        raise ValueError(f"need at least 2 real sequences to hold some out; got {len(real)}")
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(config.seed)  # dropout draws from the (forked) global stream
        return _train(model, real, n_valid, sampler, config, device, progress)


def _train(
    model: RewardModel,
    real: Tensor,
    n_valid: int,
    sampler: NegativeSampler,
    config: PretrainConfig,
    device: torch.device,
    progress: bool,
) -> PretrainResult:
    cpu = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(real), generator=cpu).to(device)
    valid_real, train_real = real[order[:n_valid]], real[order[n_valid:]]
    valid_fake = sampler.sample(valid_real, _generator(device, config.seed + 1))
    generator = _generator(device, config.seed + 2)
    optimizer = model.configure_optimizer(lr=config.lr, weight_decay=config.weight_decay)
    rows, best, best_state, stale, start = [], -math.inf, None, 0, time.perf_counter()
    with progress_bar(total=config.epochs, desc="pretrain", enabled=progress) as bar:
        for epoch in range(1, config.epochs + 1):
            train_loss = _epoch(model, train_real, sampler, generator, cpu, optimizer, config)
            metrics = _validate(model, valid_real, valid_fake, config.batch_size)
            rows.append(
                {"epoch": epoch, "train_loss": train_loss, **metrics,
                 "seconds": time.perf_counter() - start}
            )  # fmt: skip
            bar.update()
            bar.set_postfix(loss=f"{train_loss:.4f}", val_auc=f"{metrics['valid_auc']:.4f}")
            if metrics["valid_auc"] > best:
                best, stale = metrics["valid_auc"], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    best_epoch = int(history.loc[history["valid_auc"].idxmax(), "epoch"]) if len(history) else 0
    return PretrainResult(history=history, best_auc=float(best), best_epoch=best_epoch)


def _epoch(
    model: RewardModel,
    real: Tensor,
    sampler: NegativeSampler,
    generator: torch.Generator,
    cpu: torch.Generator,
    optimizer: torch.optim.Optimizer,
    config: PretrainConfig,
) -> float:
    """One pass over ``real`` in shuffled minibatches; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(real), generator=cpu).to(real.device)
    if config.max_steps is not None:
        order = order[: config.max_steps * config.batch_size]
    total, seen = 0.0, 0
    for batch in order.split(config.batch_size):
        real_b = real[batch]
        fake_b = sampler.sample(real_b, generator)
        loss = model.loss(real_b, fake_b)
        optimizer_step(
            loss, optimizer, model.parameters(), max_grad_norm=config.max_grad_norm,
            what=f"{type(model).__name__}.loss", hint="lower PretrainConfig.lr",
        )  # fmt: skip
        total += float(loss.detach()) * len(batch)
        seen += len(batch)
    return total / seen


@torch.no_grad()
def _validate(model: RewardModel, real: Tensor, fake: Tensor, batch_size: int) -> dict[str, float]:
    """Loss, AUC and accuracy on the fixed validation pairs, scored in chunks."""
    chunk = 4 * batch_size
    per_real = max(len(fake) // max(len(real), 1), 1)  # k fakes per real (greedy top-k), in order
    losses, r_real, r_fake = [], [], []
    with evaluating(model):
        for real_b, fake_b in zip(real.split(chunk), fake.split(chunk * per_real), strict=True):
            losses.append(float(model.loss(real_b, fake_b)) * len(real_b))
            r_real.append(logits_to_reward(model(real_b), model.reward_form).float())
            r_fake.append(logits_to_reward(model(fake_b), model.reward_form).float())
    pos, neg = torch.cat(r_real), torch.cat(r_fake)
    return {
        "valid_loss": sum(losses) / len(real),
        "valid_auc": auc(pos, neg),
        "valid_accuracy": separation_accuracy(pos, neg, model.reward_form),
    }


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
