"""Adversarial training of a next-item policy against a learned reward model.

Algorithm 1 of MFGAN (and its EB-SeqGAN twin with an energy model and ``maxent=True``):

1. pre-train the policy by MLE (``agents.mle.MLETrainer``);
2. pre-train the reward model on real training sequences vs policy-generated negatives
   (``rewards.pretrain_discriminator``);
3. for each round: ``g_steps`` policy-gradient updates on rollouts that continue real prefixes,
   rewarded by the current reward model (it *is* the env's ``RewardFn``, so any
   ``RewardModel`` swaps in) — or, with ``generator_update="weighted_mle"``, ``g_steps``
   minibatches of the official MFGAN code's discriminator-weighted MLE
   (:mod:`agents.weighted_mle`) — then ``d_steps`` reward-model updates on real training
   sequences vs freshly generated ones.

Every round is logged (TensorBoard, a tqdm bar, and the tidy frame :meth:`train` returns) with
its loop health — the discriminator's AUC on held-out sequences it never trains on, the
policy's KL from its start and weight change (:meth:`AdversarialTrainer.health`) — and
checkpointed; :meth:`AdversarialTrainer.resume` continues an interrupted run so that it ends
with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from agents import distributed as ddp
from agents.adversarial_config import AdversarialConfig
from agents.adversarial_steps import (
    GeneratorAlgorithm,
    GreedyTopKNegatives,
    PolicyNegatives,
    check_components,
    check_env,
    check_gen_algo,
    discriminator_health,
    discriminator_step,
    heldout_metrics,
    heldout_reals,
    mean_metrics,
    policy_drift,
    reward_env,
    summary_writer,
)
from agents.checkpoint import (
    draw_seed,
    forked_global_rng,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from agents.distributed import rl as ddp_rl
from agents.distributed.training import gather_rank_states, own_rank_state
from agents.early_stopping import Monitor, validation_metrics
from agents.mle import MLEConfig, MLETrainer
from agents.policy import SequencePolicy
from agents.quality import catalogue_coverage, gini, oracle_continuation_loglik
from agents.reinforce import PolicyGradientTrainer
from agents.weighted_mle import WeightedMLEGenerator
from recgym._progress import metric_postfix, progress_bar
from recgym._torch_io import config_to_dict
from recgym.device import resolve_device
from recgym.env import BatchedRecEnv
from recgym.errors import RecGymError
from recgym.splits import Split
from rewards.base import RewardModel
from rewards.negatives import real_sequences
from rewards.pretrain import PretrainConfig, pretrain_discriminator

# Fields that may change between an interrupted run and its resumption.
_RESUMABLE = ("n_rounds", "eval_every", "checkpoint_dir", "log_dir", "progress")


# ----------------------------------------------------------------------------- the trainer
class AdversarialTrainer:
    """Alternate policy-gradient and reward-model updates (see the module docstring).

    Args:
        policy: the generator; trained in place on ``device``.
        reward_model: the discriminator / energy; trained in place, and the env's reward.
        split: real sequences (train segments), prefixes, and validation targets.
        config: the settings.
        device: where everything runs.
        user_model: a known user model (synthetic data): also log the oracle continuation
            log-likelihood of the policy every evaluation.
        mle_config: settings of the MLE pre-training (its ``epochs`` come from
            ``config.pretrain_policy_epochs``).
        pretrain_config: settings of the reward pre-training (``epochs`` from the config).
        env: the env the built-in policy gradient rolls out in (default: one built from the
            config, rewarding with ``reward_model`` read by ``reward_form`` and
            ``reward_shaping``). It must reward with ``reward_model`` (directly or through
            wrappers), hold ``rollout_batch_size`` sessions and a horizon ``>= horizon``.
        gen_algo: the generator update (a :class:`~agents.adversarial_steps.
            GeneratorAlgorithm` training ``policy``) instead of the one the config builds;
            ``g_steps`` of its ``step()`` make a round, and its ``state_dict()`` goes into
            every checkpoint.
        distributed: data-parallel over the initialised process group (``None`` = when one
            with more than one rank is): the policy gradient and the reward model each train
            under their own DDP wrapper and optimiser, each rank rolls out its own users and
            updates the reward model on its own share of the real sequences; pre-training
            (MLE data-parallel, the reward model on every rank alike, then rank 0's weights
            broadcast) and validation (sharded) are too; rank 0 alone writes checkpoints,
            which hold every rank's generator states. Built-in policy gradient only.
        monitor: extra metrics recorded at every evaluation and never used to select or stop
            (e.g. :func:`agents.early_stopping.test_monitor`).
    """

    def __init__(
        self,
        policy: SequencePolicy,
        reward_model: RewardModel,
        split: Split,
        config: AdversarialConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        user_model: Any | None = None,
        mle_config: MLEConfig | None = None,
        pretrain_config: PretrainConfig | None = None,
        env: BatchedRecEnv | None = None,
        gen_algo: GeneratorAlgorithm | None = None,
        distributed: bool | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.config = c = AdversarialConfig() if config is None else config
        if monitor is not None and not callable(monitor):
            raise TypeError(f"monitor must be callable (policy -> dict); got {monitor!r}")
        self.monitor = monitor
        if not isinstance(c, AdversarialConfig):
            raise TypeError(f"config must be an AdversarialConfig; got {type(c).__name__}")
        check_components(policy, reward_model, split)
        self.device = resolve_device(device)
        self.distributed = ddp.is_distributed() if distributed is None else bool(distributed)
        if self.distributed:
            ddp_rl.check_adversarial_distributed(c, gen_algo)
            ddp.check_same_config(c, what="AdversarialConfig")
        self.policy, self.reward_model, self.split = policy.to(self.device), reward_model, split
        reward_model.to(self.device)
        reward_model.configure_optimizer(lr=c.disc_lr)
        self.user_model = None if user_model is None else user_model.to(self.device)
        self.mle_config, self.pretrain_config = mle_config, pretrain_config
        env = (reward_env(split, reward_model, c, device=self.device) if env is None
               else check_env(env, reward_model, c))  # fmt: skip
        self.pg = PolicyGradientTrainer(
            policy, env, c.pg_config, device=self.device, seed=c.seed, reward_model=env.reward_fn
        )
        min_len = c.horizon + 1 if c.negatives == "continuation" else 2
        self.real_pool = real_sequences(split, c.max_len, min_len=min_len, device=self.device)
        if len(self.real_pool) == 0:
            raise ValueError(f"no training sequence has >= {min_len} items; lower horizon")
        self.full_pool = self.real_pool  # reward pre-training sees all of it, on every rank
        if self.distributed:
            self.real_pool = ddp_rl.shard_rows(self.real_pool, seed=c.seed + 5)
            self._reward_ddp = ddp_rl.reward_ddp(reward_model, self.device)
        if c.negatives == "greedy_topk":
            self.negatives = GreedyTopKNegatives(policy, c.n_fakes, exclude_seen=c.exclude_seen)
        else:
            steps = c.horizon if c.negatives == "continuation" else 1
            self.negatives = PolicyNegatives(policy, steps, exclude_seen=c.exclude_seen)
        seeds = [ddp.rank_seed(s) if self.distributed else s for s in (c.seed + 1, c.seed)]
        self.generator = torch.Generator(device=self.device).manual_seed(seeds[0])
        self.rng = np.random.default_rng(seeds[1])
        self.wmle = None
        if c.generator_update == "weighted_mle" and gen_algo is None:
            self.wmle = WeightedMLEGenerator(
                policy, reward_model, split, c.weighted_mle,
                max_len=min(c.max_len, policy.max_len), device=self.device,
            )  # fmt: skip
        self.gen_algo: GeneratorAlgorithm = (
            check_gen_algo(gen_algo, policy, c) if gen_algo is not None
            else self.pg if self.wmle is None else self.wmle
        )  # fmt: skip
        self.heldout = None
        if c.n_heldout:
            self.heldout = heldout_reals(split, c.max_len, c.n_heldout, seed=c.seed + 3,
                                         device=self.device)  # fmt: skip
        self.round, self.best_metric, self.pretrained = 0, -math.inf, False
        self.best_state: dict[str, Tensor] | None = None
        self.start_state: dict[str, Tensor] | None = None  # the policy when the rounds begin
        self.start_policy: SequencePolicy | None = None
        self.history: list[dict[str, float]] = []
        self.stop_reason: str | None = None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ the loop
    def train(self) -> pd.DataFrame:
        """Pre-train (once), then run the remaining rounds; returns one row per round."""
        c = self.config
        if not self.pretrained:
            self.pretrain()
        writer = summary_writer(c.log_dir)
        bar = progress_bar(total=c.n_rounds, initial=self.round, desc="adversarial", unit="round",
                           enabled=c.progress)  # fmt: skip
        try:
            while self.round < c.n_rounds and self.stop_reason is None:
                tic = time.perf_counter()
                g_metrics = self._g_steps()
                with forked_global_rng(draw_seed(self.generator), self.device):  # dropout
                    d_metrics = mean_metrics([self._d_step() for _ in range(c.d_steps)])
                self.round += 1
                row = {"round": self.round, **g_metrics, **d_metrics, **self.rollout_metrics()}
                row.update(self.health())
                if self.round % c.eval_every == 0 or self.round == c.n_rounds:
                    row.update(self.evaluate())
                row["time/round_s"] = time.perf_counter() - tic
                self._check_health(row)
                self._end_round(row, writer)
                bar.update(1)
                bar.set_postfix(metric_postfix(
                    row, auc="disc/heldout_auc", kl0="policy/kl_from_start",
                    val_ndcg10="eval/NDCG@10",
                ))  # fmt: skip
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return self.frame()

    def pretrain(self) -> None:
        """MLE for the policy, then real-vs-generated pre-training of the reward model."""
        c = self.config
        if c.pretrain_policy_epochs:
            max_len = min(c.max_len, self.policy.max_len)
            base = self.mle_config or MLEConfig(seed=c.seed, max_len=max_len)
            mle = dataclasses.replace(base, epochs=c.pretrain_policy_epochs)
            MLETrainer(self.policy, self.split, mle, device=self.device).fit()
        if c.pretrain_reward_epochs:
            base = self.pretrain_config or PretrainConfig(seed=c.seed, batch_size=c.d_batch_size)
            config = dataclasses.replace(base, epochs=c.pretrain_reward_epochs)
            pretrain_discriminator(
                self.reward_model, self.full_pool, self.negatives, config, device=self.device
            )
            ddp.broadcast_module(self.reward_model)  # the ranks' runs agree; make sure of it
            self.reward_model.configure_optimizer(lr=c.disc_lr)  # fresh Adam for the rounds
        self.pretrained = True
        self._mark_start()
        if c.evaluate_start:
            self._end_round({"round": 0, **self.health(), **self.evaluate()}, writer=None)
        else:
            self.save(self._path("last.pt"))

    def restore_best(self) -> float:
        """Load the policy weights with the best validation NDCG@10 seen; returns that NDCG.

        Raises:
            RecGymError: nothing was evaluated yet (call :meth:`train` first).
        """
        if self.best_state is None:
            raise RecGymError("no evaluated policy yet: call train() before restore_best()")
        self.policy.load_state_dict(self.best_state)
        return self.best_metric

    def _g_steps(self) -> dict[str, float]:
        c, algo = self.config, self.gen_algo
        if algo is self.pg:  # it forks the global RNG itself, from its own generator
            return mean_metrics([self.pg.step() for _ in range(c.g_steps)])
        with forked_global_rng(draw_seed(self.generator), self.device):  # dropout
            return mean_metrics([algo.step() for _ in range(c.g_steps)])

    def _mark_start(self) -> None:
        self.start_state = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        self.start_policy = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.pg.set_reference(self.start_state)  # PGConfig.kl_coef: the penalty's reference

    def _check_health(self, row: dict[str, float]) -> None:
        c = self.config
        if "disc/heldout_auc" not in row:
            return
        problem = discriminator_health(
            row["disc/heldout_auc"], chance=c.auc_chance, saturated=c.auc_saturated
        )
        if problem is None:
            return
        kind = "chance" if row["disc/heldout_auc"] < c.auc_chance else "saturated"
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"round {self.round}: {problem}", RuntimeWarning, stacklevel=3)
        if c.stop_on_collapse:
            self.stop_reason = f"round {self.round}: {problem}"

    def _d_step(self) -> dict[str, float]:
        if self.distributed:  # this rank's real rows and fakes; gradients all-reduced
            rows = self.rng.choice(len(self.real_pool), size=min(self.config.d_batch_size,
                                   len(self.real_pool)), replace=False)  # fmt: skip
            real = self.real_pool[torch.as_tensor(rows, device=self.real_pool.device)]
            fake = self.negatives.sample(real, self.generator)
            return ddp_rl.ddp_reward_update(self.reward_model, self._reward_ddp, real, fake)
        return discriminator_step(
            self.reward_model, self.real_pool, self.negatives,
            batch_size=self.config.d_batch_size, rng=self.rng, generator=self.generator,
        )  # fmt: skip

    # ------------------------------------------------------------------ metrics
    def rollout_metrics(self) -> dict[str, float]:
        """Catalogue coverage and Gini of the last g-step rollout's recommendations."""
        if self.pg.last_rollout is None:  # weighted MLE makes no rollouts
            return {}
        actions = self.pg.last_rollout.actions
        n_items = self.policy.n_items
        return {
            "rollout/coverage": catalogue_coverage(actions, n_items),
            "rollout/gini": gini(actions, n_items),
        }

    def health(self) -> dict[str, float]:
        """Loop health: held-out discriminator AUC, policy drift from its start, coverage.

        Computed on the fixed held-out set with its own seeded generators, so measuring it
        changes nothing in the training streams. In policy-gradient mode also the gradient's
        signal-to-noise ratio on the round's last rollout (``policy/grad_snr``, about 0 when
        the reward gives the policy only noise to follow).
        """
        if self.heldout is None or self.start_state is None:
            return {}
        c = self.config
        out = heldout_metrics(self.reward_model, self.heldout, self.negatives, seed=c.seed + 4)
        prefixes = torch.nn.functional.pad(self.heldout[:, :-1], (1, 0))
        out |= policy_drift(self.policy, self.start_state, self.start_policy, prefixes,
                            exclude_seen=c.exclude_seen)  # fmt: skip
        if self.wmle is None and self.pg.last_rollout is not None:
            out["policy/grad_snr"] = self.pg.gradient_snr()
        return out

    def evaluate(self) -> dict[str, float]:
        """Validation HR@10/NDCG@10 and, with a user model, the oracle log-likelihood."""
        c = self.config
        metric_fn = ddp.sharded_validation_metrics if self.distributed else validation_metrics
        metrics = metric_fn(
            self.policy, self.split, max_len=c.max_len, batch_size=c.eval_batch_size,
            device=self.device,
        )  # fmt: skip
        if self.user_model is not None:
            metrics["eval/oracle_loglik"] = oracle_continuation_loglik(
                self.policy, self.user_model, self.split, n_steps=c.horizon,
                n_users=c.n_eval_users, max_len=c.max_len, seed=c.seed,
                exclude_seen=c.exclude_seen,
            )  # fmt: skip
        if self.monitor is not None:
            metrics |= dict(self.monitor(self.policy))
        return metrics

    def frame(self) -> pd.DataFrame:
        """The per-round metrics so far as a tidy frame (one row per round)."""
        return pd.DataFrame(self.history)

    def _end_round(self, row: dict[str, float], writer: Any) -> None:
        self.history.append(row)
        if writer is not None:
            for key, value in row.items():
                if "/" in key and math.isfinite(value):
                    writer.add_scalar(key, value, self.round)
        ndcg = row.get("eval/NDCG@10", -math.inf)
        if ndcg > self.best_metric:
            self.best_metric = ndcg
            self.best_state = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
            self.save(self._path("best.pt"))
        self.save(self._path("last.pt"))

    # ------------------------------------------------------------------ checkpoints
    def _path(self, name: str) -> Path | None:
        return (
            None if self.config.checkpoint_dir is None else Path(self.config.checkpoint_dir) / name
        )

    def _parts(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "reward_model": self.reward_model,
            "optimizers": {"policy": self.pg.optimizer, "reward": self.reward_model.optimizer}
            | ({} if self.wmle is None else {"weighted_mle": self.wmle.optimizer}),
            "generators": {"policy": self.pg.generator, "disc": self.generator}
            | ({} if self.wmle is None else self.wmle.generators),
            "numpy_rng": self.rng,
        }

    def save(self, path: str | Path | None) -> Path | None:
        """Write an exact-resume checkpoint (no-op for ``None``)."""
        if path is None:
            return None
        extra = {
            "config": config_to_dict(self.config),
            "n_updates": self.pg.n_updates,
            "pretrained": self.pretrained,
            "history": [dict(row) for row in self.history],
            "best_policy": self.best_state,
            "start_policy": self.start_state,
            "weighted_mle": None if self.wmle is None else self.wmle.state(),
            "gen_algo": None if self._builtin_gen() else self.gen_algo.state_dict(),
        }
        if self.distributed:  # every rank's streams, for an exact resume
            parts = self._parts()
            extra["ranks"] = gather_rank_states(
                ddp_rl.rank_states(parts["generators"], parts["numpy_rng"])
            )
        checkpoint = make_checkpoint(
            **self._parts(), round=self.round, best_metric=self.best_metric, extra=extra
        )
        if not self.distributed:
            return save_checkpoint(path, checkpoint)
        written = save_checkpoint(path, checkpoint) if ddp.is_main_process() else None
        ddp.barrier()
        return written

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` into this trainer (in place).

        Raises:
            ValueError: the checkpoint's config differs in a field that changes the run.
            RecGymError: mismatched models, optimisers or generators.
        """
        checkpoint = load_checkpoint(path)
        saved, current = checkpoint["extra"].get("config", {}), config_to_dict(self.config)
        changed = sorted(k for k in current if k not in _RESUMABLE and saved.get(k) != current[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            raise ValueError(
                f"cannot resume {str(path)!r} with a different config ({diffs}); only "
                f"{list(_RESUMABLE)} may change"
            )
        restore_checkpoint(checkpoint, **self._parts())
        if self.distributed or "ranks" in checkpoint["extra"]:
            parts = self._parts()
            mine = own_rank_state(checkpoint["extra"].get("ranks", [{}]), path=str(path))
            ddp_rl.restore_rank_states(mine, parts["generators"], parts["numpy_rng"])
        self.round, self.best_metric = int(checkpoint["round"]), float(checkpoint["best_metric"])
        self.pg.n_updates = int(checkpoint["extra"]["n_updates"])
        self.pretrained = bool(checkpoint["extra"]["pretrained"])
        self.history = [dict(row) for row in checkpoint["extra"]["history"]]
        best = checkpoint["extra"].get("best_policy")
        self.best_state = None if best is None else {k: v.to(self.device) for k, v in best.items()}
        start = checkpoint["extra"].get("start_policy")
        if start is not None:
            current = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
            self.policy.load_state_dict(start)
            self._mark_start()
            self.policy.load_state_dict(current)
        if self.wmle is not None:
            self.wmle.set_state(checkpoint["extra"]["weighted_mle"])
        if not self._builtin_gen():
            state = checkpoint["extra"].get("gen_algo")
            if state is None:
                raise RecGymError(f"{str(path)!r} holds no gen_algo state: written without it")
            self.gen_algo.load_state_dict(state)

    def _builtin_gen(self) -> bool:
        return self.gen_algo is self.pg or self.gen_algo is self.wmle

    @classmethod
    def resume(
        cls,
        path: str | Path,
        policy: SequencePolicy,
        reward_model: RewardModel,
        split: Split,
        config: AdversarialConfig,
        **kwargs: Any,
    ) -> AdversarialTrainer:
        """A trainer restored from ``path``; :meth:`train` then continues where it stopped.

        ``policy`` and ``reward_model`` must be built like the interrupted run's (their
        weights, optimisers and every generator come from the checkpoint); ``kwargs`` are the
        constructor's keyword arguments (``device``, ``user_model``, ...).
        """
        trainer = cls(policy, reward_model, split, config, **kwargs)
        trainer.load(path)
        return trainer
