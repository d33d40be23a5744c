"""How much signal each reward gives the policy gradient at the behaviour-cloning start.

On the embedded synthetic data (known true user), from the early-stopped SASRec MLE policy of
``benchmarks/imitation.py``, the REINFORCE gradient of ``n_rollouts`` rollouts (B sessions of
``horizon`` steps from real training prefixes, seen items masked, leave-one-out baseline) is
split into 8 groups of sessions and its signal-to-noise ratio measured
(:func:`agents.pg_losses.gradient_snr`: ``(||g||^2 - v) / v``, about 0 for a gradient that is
noise). The rewards, each as its imitation method uses it:

- ``oracle``: ``log p_true(a_t | s_t)`` with entropy bonus 1 (``pg-oracle``);
- ``mfgan-logit``: a multi-factor discriminator pre-trained on the start's continuations, its
  logit of the sequence so far at every step, entropy bonus 1 (``mfgan-pg``);
- ``mfgan-diff``: the increments of that logit, no entropy bonus (``mfgan-pg-diff``);
- ``energy``: an energy model's ``-E`` with the MaxEnt term ``-0.05 log pi`` (``ebseqgan``).

Also the cosine between each reward's mean gradient and the oracle's: does the learned reward
push the policy where the true user's would?

    python benchmarks/reward_snr.py --seeds 0 --threads 1   # 1540 s per seed on a shared 2-core CPU
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from agents import (
    MLEConfig,
    MLETrainer,
    PGConfig,
    PolicyGradientTrainer,
    SASRecConfig,
    SASRecPolicy,
)
from agents.adversarial_steps import PolicyNegatives
from agents.pg_losses import policy_gradient_loss
from recgym import BatchedRecEnv, EnvConfig, OracleReward, leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic
from rewards import (
    DifferenceReward,
    EnergyConfig,
    EnergyDiscriminator,
    MultiFactorConfig,
    MultiFactorDiscriminator,
    PretrainConfig,
    RewardFormWrapper,
    pretrain_discriminator,
    real_sequences,
)

HORIZON = 5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--n-rollouts", type=int, default=10)
    parser.add_argument("--mle-epochs", type=int, default=60)
    parser.add_argument("--reward-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.n_rollouts, args.mle_epochs, args.reward_epochs = 64, 2, 2, 1
    return args


def rewards_for(start, split, seed: int, args) -> dict:
    """``{name: (reward_fn, PGConfig overrides)}`` of the four rewards, discriminators trained."""
    real = real_sequences(split, 50, min_len=HORIZON + 1)
    negatives = PolicyNegatives(start, HORIZON, exclude_seen=True)
    pretrain = PretrainConfig(epochs=args.reward_epochs, batch_size=256, seed=seed)
    mf = MultiFactorDiscriminator(MultiFactorConfig(dim=64, max_len=50, combination="mean"),
                                  split.factors(), seed=seed)  # fmt: skip
    energy = EnergyDiscriminator(EnergyConfig(encoder="cnn", dim=64, max_len=50),
                                 n_items=split.dataset.n_items, seed=seed)  # fmt: skip
    for model in (mf, energy):
        pretrain_discriminator(model, real, negatives, pretrain)
    logit = RewardFormWrapper(mf, "logit")
    return {
        "mfgan-logit": (logit, {"entropy_coef": 1.0}),
        "mfgan-diff": (DifferenceReward(logit), {}),
        "energy": (energy, {"maxent": True, "alpha": 0.05}),
    }


def mean_gradient(trainer: PolicyGradientTrainer) -> torch.Tensor:
    """The flattened REINFORCE gradient of the trainer's last rollout (eval mode)."""
    params = [p for p in trainer.policy.parameters() if p.requires_grad]
    trainer.policy.eval()
    loss, _ = policy_gradient_loss(
        trainer.policy, trainer.last_rollout, trainer.last_advantages,
        entropy_coef=trainer.config.entropy_coef, exclude_seen=True,
    )  # fmt: skip
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads, strict=True)])  # fmt: skip


def measure(start, split, reward_fn, overrides: dict, seed: int, args) -> tuple[float, Tensor]:
    """Mean SNR over ``n_rollouts`` rollouts at the start (no update), and the mean gradient."""
    env = BatchedRecEnv(split, reward_fn, EnvConfig(max_len=50, horizon=HORIZON, start="random"),
                        batch_size=args.batch, seed=seed)  # fmt: skip
    config = PGConfig(n_steps=HORIZON, batch_size=args.batch, baseline="leave_one_out",
                      exclude_seen=True, lr=1e-12, max_grad_norm=None, **overrides)  # fmt: skip
    trainer = PolicyGradientTrainer(start, env, config, seed=seed)
    state = {k: v.clone() for k, v in start.state_dict().items()}
    snrs, grads = [], []
    for _ in range(args.n_rollouts):
        trainer.step()  # lr 1e-12: a rollout, practically no move
        start.load_state_dict(state)  # and not even that
        snrs.append(trainer.gradient_snr())
        grads.append(mean_gradient(trainer))
    return float(torch.tensor(snrs).mean()), torch.stack(grads).mean(0)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    synthetic = SyntheticConfig(n_users=300, n_items=100) if args.quick else SyntheticConfig()
    print("| seed | reward | gradient SNR | cosine to the oracle's gradient |\n|---|---|---|---|")
    for seed in args.seeds:
        tic = time.perf_counter()
        data = make_synthetic(synthetic, seed=seed)
        split = leave_one_out(data.dataset)
        start = SASRecPolicy(SASRecConfig(max_len=50, dim=64, n_blocks=2),
                             n_items=data.dataset.n_items, seed=seed)  # fmt: skip
        MLETrainer(start, split, MLEConfig(epochs=args.mle_epochs, lr=1e-3, patience=5,
                                           eval_every=2, seed=seed)).fit()  # fmt: skip
        start.eval()
        rewards = {"oracle": (OracleReward(data.user_model), {"entropy_coef": 1.0})}
        rewards |= rewards_for(start, split, seed, args)
        results = {name: measure(start, split, fn, extra, seed, args)
                   for name, (fn, extra) in rewards.items()}  # fmt: skip
        oracle = results["oracle"][1]
        for name, (snr, grad) in results.items():
            cosine = float(torch.nn.functional.cosine_similarity(grad, oracle, dim=0))
            print(f"| {seed} | {name} | {snr:.2f} | {cosine:+.3f} |")
        print(f"(seed {seed}: {time.perf_counter() - tic:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
