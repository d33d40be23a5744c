"""Settings of :class:`agents.adversarial.AdversarialTrainer` (one frozen config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agents.reinforce import BASELINES, PGConfig
from agents.weighted_mle import WeightedMLEConfig
from recgym._checks import check_float, check_int
from rewards.base import REWARD_FORMS

Negatives = Literal["continuation", "replace_last", "greedy_topk"]
NEGATIVES = ("continuation", "replace_last", "greedy_topk")
GENERATOR_UPDATES = ("policy_gradient", "weighted_mle")
REWARD_SHAPINGS = ("none", "difference")
_FLAT_PG = ("gamma", "baseline", "entropy_coef", "mle_coef", "mc_rollouts", "maxent", "alpha",
            "max_grad_norm", "policy_lr")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class AdversarialConfig:
    """Settings of :class:`AdversarialTrainer`.

    Attributes:
        n_rounds: adversarial rounds (one round = ``g_steps`` then ``d_steps``).
        g_steps: policy-gradient updates per round.
        d_steps: reward-model updates per round.
        pretrain_policy_epochs: MLE epochs before the rounds (``0`` = policy already trained).
        pretrain_reward_epochs: reward-model pre-training epochs (``0`` = none).
        eval_every: rounds between validation rankings (the last round is always evaluated).
        rollout_batch_size: sessions per policy-gradient rollout.
        horizon: steps per rollout (items generated after each real prefix).
        max_len: history window of the env, the real sequences and the evaluation.
        d_batch_size: real (and as many fake) sequences per reward-model update.
        negatives: fakes for the reward model: ``"continuation"`` (the newest ``k`` items of a
            real sequence replaced by a policy continuation, ``k`` uniform in ``1..horizon``
            per update), ``"replace_last"`` (``k = 1``: the last item a policy sample) or
            ``"greedy_topk"`` (the official MFGAN code's: the last item replaced by each of the
            policy's greedy top-``n_fakes`` items, ``n_fakes`` fakes per real sequence).
        n_fakes: fakes per real sequence under ``"greedy_topk"`` (10 in the official code).
        reward_form: read the reward model's logits with another form (``None`` = its own).
        reward_shaping: ``"none"``: every step is rewarded with the score of the sequence so
            far; ``"difference"``: with its increment ``F(s_t + a_t) - F(s_t)``
            (:class:`rewards.DifferenceReward`; with ``reward_form="logit"`` that is AIRL's
            per-step ``log p / pi``, so use no entropy bonus).
        policy_lr: Adam learning rate of the policy gradient.
        disc_lr: Adam learning rate of the reward-model updates.
        gamma, baseline, entropy_coef, mle_coef, mc_rollouts, maxent, alpha, exclude_seen,
            max_grad_norm: the policy gradient's settings (see ``agents.reinforce.PGConfig``).
        pg: all of them as one nested ``PGConfig`` instead (PPO's ``ppo_epochs`` and
            ``clip_ratio`` included; its ``n_steps`` and ``batch_size`` must equal ``horizon``
            and ``rollout_batch_size``). With ``pg``, leave the flat fields above at their
            defaults; ``exclude_seen`` still governs the negatives and the evaluation.
        n_eval_users: real prefixes for the oracle continuation log-likelihood.
        eval_batch_size: targets ranked at once during validation.
        seed: seeds everything (generators, env resets, dropout, pre-training).
        evaluate_start: rank the validation targets once after pre-training (history row
            ``round = 0``), so the starting policy competes for "best": with it the selected
            policy can never be worse on validation than its MLE starting point.
        checkpoint_dir: write ``last.pt`` every round and ``best.pt`` (by validation NDCG@10).
        log_dir: TensorBoard directory (``None`` = no TensorBoard).
        progress: show a tqdm bar over rounds.
        generator_update: how the policy learns each round: ``"policy_gradient"`` (MFGAN's
            Eq. 11-12 and EB-SeqGAN: ``g_steps`` REINFORCE updates against the reward model) or
            ``"weighted_mle"`` (MFGAN's official code: ``g_steps`` minibatch steps of
            discriminator-weighted MLE, :mod:`agents.weighted_mle`).
        weighted_mle: that update's settings, controls included (``weights="one"``,
            ``"batch_mean"``, ``"permuted"``); default ``WeightedMLEConfig(seed=seed)``.
        n_heldout: validation sequences (never trained on) on which the discriminator's AUC
            is measured every round against the policy's fakes (``disc/heldout_auc``).
        auc_chance, auc_saturated: a held-out AUC below / above these warns (the reward model
            carries no signal / saturates).
        stop_on_collapse: also stop the rounds when that happens.
    """

    n_rounds: int = 10
    g_steps: int = 1
    d_steps: int = 1
    pretrain_policy_epochs: int = 0
    pretrain_reward_epochs: int = 0
    eval_every: int = 1
    rollout_batch_size: int = 256
    horizon: int = 5
    max_len: int = 50
    d_batch_size: int = 256
    negatives: Negatives = "continuation"
    n_fakes: int = 10
    reward_form: str | None = None
    reward_shaping: str = "none"
    policy_lr: float = 1e-4
    disc_lr: float = 1e-4
    gamma: float = 1.0
    baseline: str = "batch_mean"
    entropy_coef: float = 0.0
    mle_coef: float = 0.0
    mc_rollouts: int = 0
    maxent: bool = False
    alpha: float = 0.01
    exclude_seen: bool = False
    max_grad_norm: float | None = 1.0
    n_eval_users: int = 512
    eval_batch_size: int = 1024
    seed: int = 0
    evaluate_start: bool = True
    checkpoint_dir: str | None = None
    log_dir: str | None = None
    progress: bool = False
    generator_update: str = "policy_gradient"
    weighted_mle: WeightedMLEConfig | None = None
    n_heldout: int = 256
    auc_chance: float = 0.55
    auc_saturated: float = 0.99
    stop_on_collapse: bool = False
    pg: PGConfig | None = None

    def __post_init__(self) -> None:
        if self.generator_update not in GENERATOR_UPDATES:
            raise ValueError(
                f"AdversarialConfig.generator_update must be one of {GENERATOR_UPDATES}; "
                f"got {self.generator_update!r}"
            )
        if self.weighted_mle is None:
            object.__setattr__(self, "weighted_mle", WeightedMLEConfig(seed=self.seed))
        elif not isinstance(self.weighted_mle, WeightedMLEConfig):
            raise TypeError(
                "AdversarialConfig.weighted_mle must be a WeightedMLEConfig; "
                f"got {type(self.weighted_mle).__name__}"
            )
        if not (0.0 <= self.auc_chance < self.auc_saturated <= 1.0):
            raise ValueError(
                "AdversarialConfig needs 0 <= auc_chance < auc_saturated <= 1; "
                f"got {self.auc_chance!r}, {self.auc_saturated!r}"
            )
        positive = ("n_rounds", "g_steps", "d_steps", "eval_every", "rollout_batch_size")
        positive += (
            "horizon",
            "max_len",
            "d_batch_size",
            "n_eval_users",
            "eval_batch_size",
            "n_fakes",
        )
        for name in positive:
            check_int(self, name, 1)
        for name in ("pretrain_policy_epochs", "pretrain_reward_epochs", "seed", "n_heldout"):
            check_int(self, name, 0)
        for name in ("policy_lr", "disc_lr"):
            check_float(self, name, positive=True)
        if self.negatives not in NEGATIVES:
            raise ValueError(
                f"AdversarialConfig.negatives must be one of {NEGATIVES}; got {self.negatives!r}"
            )
        if self.reward_form is not None and self.reward_form not in REWARD_FORMS:
            raise ValueError(
                f"AdversarialConfig.reward_form must be None or one of {REWARD_FORMS}; "
                f"got {self.reward_form!r}"
            )
        if self.reward_shaping not in REWARD_SHAPINGS:
            raise ValueError(
                f"AdversarialConfig.reward_shaping must be one of {REWARD_SHAPINGS}; "
                f"got {self.reward_shaping!r}"
            )
        if self.baseline not in BASELINES:
            raise ValueError(f"AdversarialConfig.baseline must be one of {BASELINES}")
        self._check_pg()
        self.pg_config  # noqa: B018 - validates the policy-gradient fields

    def _check_pg(self) -> None:
        if self.pg is None:
            return
        if not isinstance(self.pg, PGConfig):
            raise TypeError(
                f"AdversarialConfig.pg must be a PGConfig; got {type(self.pg).__name__}"
            )
        for field, value in (("n_steps", self.horizon), ("batch_size", self.rollout_batch_size)):
            if getattr(self.pg, field) != value:
                raise ValueError(
                    f"AdversarialConfig.pg.{field}={getattr(self.pg, field)} must equal "
                    f"{'horizon' if field == 'n_steps' else 'rollout_batch_size'}={value}"
                )
        defaults = AdversarialConfig.__dataclass_fields__
        flat = [name for name in _FLAT_PG if getattr(self, name) != defaults[name].default]
        if flat:
            raise ValueError(
                f"AdversarialConfig sets the policy gradient twice: pg= and {flat}; "
                "put those settings in pg"
            )

    @property
    def pg_config(self) -> PGConfig:
        """The policy-gradient settings of the g-steps (``pg`` itself when given)."""
        if self.pg is not None:
            return self.pg
        return PGConfig(
            n_steps=self.horizon, batch_size=self.rollout_batch_size, gamma=self.gamma,
            baseline=self.baseline, entropy_coef=self.entropy_coef, lr=self.policy_lr,
            max_grad_norm=self.max_grad_norm, mle_coef=self.mle_coef,
            mc_rollouts=self.mc_rollouts, maxent=self.maxent, alpha=self.alpha,
            exclude_seen=self.exclude_seen,
        )  # fmt: skip
