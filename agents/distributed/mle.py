"""The data-parallel half of :class:`agents.mle.MLETrainer` (kept here so that ``mle.py``
reads as the single-process trainer it is; every method is a no-op path there).

Each global batch of ``batch_size`` windows — drawn from one seeded order, the same on every
rank — is split ``rows[rank::W]`` (``DistributedSampler``'s split), the DDP-wrapped
:func:`~agents.distributed.training.scaled_shard_loss` makes the averaged gradient that of the
whole batch, and rank 0 alone writes files.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from agents.distributed import group as ddp
from agents.distributed.shard import rank_slice
from agents.distributed.training import gather_rank_states, scaled_shard_loss, synced_step
from recgym._torch_io import config_to_dict


class DistributedMLEMixin:
    """Methods :class:`agents.mle.MLETrainer` calls when ``distributed`` is on.

    The trainer provides ``_loss_fn`` (``sequence_loss``), ``_negatives_fn``
    (``sample_negatives``) and ``_state_format`` as class attributes (no import back).
    """

    config: Any
    policy: Any
    device: torch.device

    def _setup_distributed(self) -> torch.nn.Module:
        """Check the group and the config on every rank; return the DDP-wrapped shard loss."""
        if not ddp.is_distributed():
            raise ValueError("distributed=True needs an initialised process group with more "
                             "than one rank (agents.distributed.init_distributed)")  # fmt: skip
        if self.perturbation is not None:
            raise ValueError("MLETrainer(distributed=True) does not support a perturbation "
                             "(APR / SAO) yet; train it in one process")  # fmt: skip
        ddp.check_same_config(self.config, what="MLEConfig")
        if not ddp.is_main_process():  # rank 0 alone writes files
            self.checkpoint_path = None
        shard_loss = functools.partial(self._loss_fn, chunk_size=self.config.loss_chunk)
        loss_fn = functools.partial(scaled_shard_loss, loss_fn=shard_loss, loss=self.config.loss)
        return ddp.wrap_ddp(self.policy, loss_fn, self.device)

    def _shard_step(self, inputs: Tensor, targets: Tensor, generator: torch.Generator) -> dict:
        """This rank's rows ``rank::W`` of a global ``(B, L)`` batch; one DDP step.

        Returns the loss of the whole global batch (the same float on every rank).
        """
        cfg = self.config
        n_global = int((targets > 0).sum())
        inputs, targets = rank_slice(inputs), rank_slice(targets)
        negatives = (
            self._negatives_fn(targets, self.policy.n_items, generator)
            if cfg.loss == "bce"
            else None
        )
        self.policy.train()
        loss = synced_step(self._ddp, (inputs, targets, negatives, max(n_global, 1)),
                           self.optimizer, self.policy.parameters(),
                           max_grad_norm=cfg.max_grad_norm, what="MLE loss",
                           hint="lower MLEConfig.lr")  # fmt: skip
        return {"mle/loss": loss}

    def _n_training_users(self) -> int:
        """Users with at least one training target (two training items)."""
        start, end = self.split.dataset.offsets[:-1], self.split.stage_bounds("train")[1]
        return int(((end - start) >= 2).sum())

    def _rank_rngs(self, negatives: torch.Generator) -> dict:
        cuda = self.device.type == "cuda"
        return {"negatives": negatives.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None}  # fmt: skip

    def _save_shared_state(self, rows: list, order, negatives, best, done: bool) -> None:
        """Rank 0 writes the state with every rank's RNG states; the others wait for it.

        The weights are the unwrapped policy's (no ``module.`` prefix): the file loads in one
        process; resuming it needs the same world size.
        """
        ranks = gather_rank_states(self._rank_rngs(negatives))
        ddp.save_on_main({
            "format": self._state_format, "config": config_to_dict(self.config), "done": done,
            "rows": [dict(r) for r in rows], "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(), "order": order.get_state(),
            **ranks[0], "best": best.state_dict(), "world_size": ddp.get_world_size(),
            "ranks": ranks,
        }, self.state_path)  # fmt: skip
