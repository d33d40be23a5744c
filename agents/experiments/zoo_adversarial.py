"""The zoo's adversarial systems: MFGAN in both generator modes (with controls) and EB-SeqGAN.

Every MFGAN system fine-tunes the zoo's cached SASRec MLE start against a multi-factor
discriminator (item id and the split's factors, mean combination) and keeps its validation-best
round (the start competes as round 0). The discriminator is pre-trained for one epoch over the
start's fakes, as in the official code, capped at ``ZooConfig.mfgan_pretrain_steps`` updates:
a full pass over every training prefix is over 100k sequences on Amazon Beauty, and with 10
fakes each that alone would cost hours of CPU. The systems differ in how the generator learns
(``AdversarialConfig.generator_update``):

- ``mfgan``: the paper's Eq. 11-12, REINFORCE against ``D`` (the paper's reward) on 256
  five-step rollouts that continue real prefixes. It uses ``benchmarks/imitation.py``'s policy
  gradient (lr 3e-4, leave-one-out baseline, one discriminator step per update), which moved the
  policy there. The zoo's former setting, 50 rounds of one update at lr 1e-4 with a batch-mean
  baseline, ended within noise of the start on every dataset (docs/results.md), so it tested
  nothing. Imitation's 100 updates do not fit a CPU budget of a few minutes per fit at Beauty's
  size: one update took 9.5 s of a shared core on a synthetic split of that size (12k items),
  so the default is ``mfgan_rounds`` x ``mfgan_pg_steps`` = 5 x 6 updates. On ML-100K, 20 such
  updates moved the policy 0.14 nats from its start (``policy/kl_from_start``, held-out
  prefixes), against 0.11 after the first 10: the reward does move it.
- ``mfgan-wmle``: the official code's update, discriminator-weighted MLE
  (:mod:`agents.weighted_mle`, with the start's own loss ``ZooConfig.mle_loss``), and its fakes
  (``negatives="greedy_topk"``: each real sequence's last item replaced by the generator's
  greedy top 10). The official code runs 100 rounds of 80 generator epochs and one
  discriminator epoch. Here a round is ``mfgan_wmle_steps`` minibatches of 128 windows and
  ``mfgan_d_steps`` discriminator steps of 32 real sequences (the official batch is 16).
- ``mfgan-wmle-one``, ``mfgan-wmle-mean``, ``mfgan-wmle-permuted``: its controls. They run the
  same code path with weight 1 (continued MLE), with the batch's mean ``D``, and with the
  batch's ``D`` values permuted among its sequences. Everything else is ``mfgan-wmle``'s, seeds
  included: the same start, discriminator initialisation and pre-training, batches, dropout and
  discriminator draws. ``WeightedMLEGenerator`` draws the permutation from its own generator.
  Both are tested. The adversary's contribution is ``mfgan-wmle`` minus
  ``mfgan-wmle-permuted``, paired per seed.
- ``ebseqgan``: unchanged. It starts from GRU4Rec MLE, uses a CNN energy model and the MaxEnt
  policy gradient (``alpha`` 0.05), and runs ``ZooConfig.adversarial_rounds`` rounds of one
  update each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.adversarial_config import AdversarialConfig
    from agents.experiments.zoo import Fitted, ModelZoo

PG_LR = 3e-4
"""Policy-gradient learning rate of ``mfgan`` (``benchmarks/imitation.py --pg-lr``)."""
WMLE_BATCH, WMLE_LR = 128, 1e-3
"""Weighted-MLE minibatch and Adam learning rate (the official code's, and imitation's)."""
N_FAKES = 10
"""Greedy top-``k`` fakes per real sequence in weighted-MLE mode (the official code's)."""
PG_D_BATCH, WMLE_D_BATCH = 256, 32
"""Real sequences per discriminator step: ``mfgan`` (one continuation fake each), and the
weighted-MLE systems (``N_FAKES`` fakes each; the official code's batch is 16)."""
PRETRAIN_VALID_FRACTION = 0.01
"""Real sequences held out to validate the discriminator's pre-training (scored once)."""


def multifactor(zoo: ModelZoo, **discriminator: Any) -> Any:
    """The MFGAN discriminator on the zoo's split, ``MultiFactorConfig`` overrides applied."""
    from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator

    c = zoo.config
    settings = dict(dim=c.dim, max_len=c.max_len, combination="mean")
    config = MultiFactorConfig(**(settings | discriminator))
    return MultiFactorDiscriminator(config, zoo.split.factors(), seed=zoo.seed)


def mfgan_pg_config(zoo: ModelZoo) -> AdversarialConfig:
    """``mfgan``'s loop: imitation's policy gradient against ``D``, the zoo's budget."""
    from agents.reinforce import PGConfig

    c = zoo.config
    pg = PGConfig(n_steps=5, batch_size=256, lr=PG_LR, baseline="leave_one_out",
                  exclude_seen=True)  # fmt: skip
    return zoo.adversarial_config(
        n_rounds=c.mfgan_rounds, g_steps=c.mfgan_pg_steps, d_steps=c.mfgan_d_steps, pg=pg,
        pretrain_reward_epochs=1, d_batch_size=PG_D_BATCH,
    )  # fmt: skip


def mfgan_wmle_config(zoo: ModelZoo, weights: str) -> AdversarialConfig:
    """``mfgan-wmle``'s loop with ``WeightedMLEConfig.weights = weights`` (its controls)."""
    from agents.weighted_mle import WeightedMLEConfig

    c = zoo.config
    wmle = WeightedMLEConfig(batch_size=WMLE_BATCH, lr=WMLE_LR, loss=c.mle_loss,
                             weights=weights, seed=zoo.seed)  # fmt: skip
    return zoo.adversarial_config(
        n_rounds=c.mfgan_rounds, g_steps=c.mfgan_wmle_steps, d_steps=c.mfgan_d_steps,
        pretrain_reward_epochs=1, d_batch_size=WMLE_D_BATCH, horizon=1, negatives="greedy_topk",
        n_fakes=N_FAKES, generator_update="weighted_mle", weighted_mle=wmle,
    )  # fmt: skip


def mfgan_pretrain_config(zoo: ModelZoo, config: AdversarialConfig) -> Any:
    """The discriminator's pre-training: one epoch, capped at ``ZooConfig.mfgan_pretrain_steps``
    updates (a full pass over every training prefix is over 100k sequences on Amazon Beauty)."""
    from rewards.pretrain import PretrainConfig

    return PretrainConfig(
        batch_size=config.d_batch_size, seed=zoo.seed, valid_fraction=PRETRAIN_VALID_FRACTION,
        max_steps=zoo.config.mfgan_pretrain_steps,
    )  # fmt: skip


def mfgan(zoo: ModelZoo, **discriminator: Any) -> Fitted:
    """``mfgan`` (policy-gradient mode) from the cached SASRec MLE."""
    config = mfgan_pg_config(zoo)
    pretrain = mfgan_pretrain_config(zoo, config)
    return fit_adversarial(zoo, "sasrec", multifactor(zoo, **discriminator), config, pretrain)


def mfgan_wmle(weights: str) -> Callable[[ModelZoo], Fitted]:
    """The fitter of ``mfgan-wmle`` (``weights="discriminator"``) or one of its controls."""

    def fit(zoo: ModelZoo) -> Fitted:
        config = mfgan_wmle_config(zoo, weights)
        pretrain = mfgan_pretrain_config(zoo, config)
        return fit_adversarial(zoo, "sasrec", multifactor(zoo), config, pretrain)

    return fit


def ebseqgan(zoo: ModelZoo) -> Fitted:
    """EB-SeqGAN from the cached GRU4Rec MLE (``ZooConfig.adversarial_rounds`` rounds)."""
    from rewards.energy import EnergyConfig, EnergyDiscriminator

    c = zoo.config
    config = EnergyConfig(encoder="cnn", dim=c.dim, max_len=c.max_len)
    n_items = zoo.split.dataset.n_items
    reward_model = EnergyDiscriminator(config, n_items=n_items, seed=zoo.seed)
    adversarial = zoo.adversarial_config(maxent=True, alpha=0.05)
    return fit_adversarial(zoo, "gru4rec", reward_model, adversarial)


def fit_adversarial(
    zoo: ModelZoo, base: str, reward_model: Any, config: Any, pretrain: Any = None
) -> Fitted:
    """Fine-tune a copy of cached ``base`` against ``reward_model``; keep the validation best.

    ``pretrain``: the discriminator's ``PretrainConfig`` (``None``: the trainer's default).
    """
    from agents.adversarial import AdversarialTrainer
    from agents.early_stopping import monitor_info

    policy = zoo.start_from(base)
    trainer = AdversarialTrainer(
        policy, reward_model.to(zoo.device), zoo.split, config, device=zoo.device,
        pretrain_config=pretrain, monitor=zoo.monitor(),
    )  # fmt: skip
    history = trainer.train()
    best = trainer.restore_best()
    evaluated = history.dropna(subset=["eval/NDCG@10"])
    best_round = int(evaluated.loc[evaluated["eval/NDCG@10"].idxmax(), "round"])
    last = history.iloc[-1]
    info = {
        "best_round": best_round,
        "valid_ndcg10": best,
        "valid_ndcg10_start": float(history.iloc[0]["eval/NDCG@10"]),
        "disc_auc_last": float(last.get("disc/auc", float("nan"))),
        "heldout_auc_last": float(last.get("disc/heldout_auc", float("nan"))),
        "kl_from_start_last": float(last.get("policy/kl_from_start", float("nan"))),
    } | monitor_info(history)
    return policy, info, base
