"""Imitation against the synthetic ground truth: how close each method's policy is to the true user.

Every method starts from the same early-stopped SASRec MLE policy (behaviour cloning, ``bc``) on
the embedded synthetic data, whose true user model is known, and is judged by the exact per-step
KL divergences of its *self-generated* continuations of real prefixes
(:func:`agents.quality.cascading_error`, seen items masked for both, as the true user never
repeats): reverse ``KL(pi || p)`` and forward ``KL(p || pi)`` at steps 1, 5 and 10, their 10-step
sums, the cascading part (forward KL minus its teacher-forced value), the repeat rate, and test
full NDCG@10. Methods so far:

- ``bc``: the MLE start itself.
- ``pg-oracle``: REINFORCE from the start against ``OracleReward`` (``log p_true`` of each chosen
  item) with entropy coefficient 1, i.e. maximising ``E[sum_t log p(a_t) - log pi(a_t)]``, whose
  optimum is the true user: the upper bound any learned reward can reach.
- ``pg-oracle-ppo``: the same objective with PPO's clipped surrogate (``--ppo-epochs`` steps on
  each of ``--ppo-updates`` rollouts).
- ``mfgan-pg``: the adversarial loop in policy-gradient mode against a multi-factor
  discriminator read as ``logit = log D - log(1 - D)`` with entropy coefficient 1 (with the
  optimal D, ``logit = log p_data/pi``, so the same objective as ``pg-oracle`` with a learned
  reward).
- ``mfgan-pg-kl``: the same with a penalty ``kl_coef * KL(pi || pi_start)`` per state, which
  keeps the policy near its MLE start while the reward is learned.
- ``mfgan-wmle``: the loop in MFGAN's official mode, discriminator-weighted MLE, and its
  controls on the same code path: ``mfgan-wmle-permuted`` (the batch's weights permuted: the
  adversary's contribution is ``mfgan-wmle`` minus it) and ``mfgan-wmle-one`` (weight 1:
  continued MLE).
- ``ebseqgan``: the loop in policy-gradient mode with an energy model and the MaxEnt objective.
- ``pg-oracle-maxent``: ``pg-oracle`` with the entropy inside the reward (``-log pi`` per step,
  so the returns carry the future entropy: the exact gradient of ``-KL``).
- ``mfgan-pg-diff``: ``mfgan-pg`` rewarded by the *increments* of the discriminator's logit
  (``rewards.DifferenceReward``: AIRL's per-step ``log p / pi`` for a prefix discriminator) and
  no entropy bonus (it is in the reward already).
- ``gail-sb3``: GAIL-style through stable-baselines3: SB3 PPO whose actor starts as the MLE
  policy (``agents.sb3_policy.start_actor_from``), rewarded like ``mfgan-pg-diff``, its
  discriminator trained by ``agents.sb3.RewardModelCallback`` after every rollout. SB3 samples
  without masking seen items (no action masks); it is measured masked like every method.

Every adversarial run keeps its validation-best policy (the start competes, round 0); the row
``<method>@last`` scores its last-round policy too, and ``best_round`` says which was kept.

    python benchmarks/imitation.py --quick          # CI smoke run (~90 s of one core)
    python benchmarks/imitation.py --seeds 0 1 2    # docs/results/imitation.csv

Results (one row per method and seed, rewritten after every cell) go to ``--out``
(default ``docs/results/imitation.csv``); the per-step curves to ``<out stem>_steps.csv``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from agents import (
    AdversarialConfig,
    AdversarialTrainer,
    MLEConfig,
    MLETrainer,
    PGConfig,
    PolicyGradientTrainer,
    SASRecConfig,
    SASRecPolicy,
    WeightedMLEConfig,
    cascading_error,
)
from recgym import BatchedRecEnv, EnvConfig, OracleReward, evaluate, leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic
from rewards import EnergyConfig, EnergyDiscriminator, MultiFactorConfig, MultiFactorDiscriminator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the report helpers beside this file
from imitation_report import markdown_summary, plot_curves  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = (1, 5, 10)
METHODS = ("bc", "pg-oracle", "pg-oracle-ppo", "pg-oracle-maxent", "mfgan-pg", "mfgan-pg-kl",
           "mfgan-pg-diff", "mfgan-wmle", "mfgan-wmle-permuted", "mfgan-wmle-one",
           "ebseqgan", "gail-sb3")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--rounds", type=int, default=20, help="adversarial rounds")
    parser.add_argument("--wmle-steps", type=int, default=50, help="weighted-MLE steps per round")
    parser.add_argument("--adv-pg-steps", type=int, default=10,
                        help="policy-gradient updates per round (mfgan-pg, ebseqgan)")  # fmt: skip
    parser.add_argument("--d-steps", type=int, default=10, help="discriminator steps per round")
    parser.add_argument("--kl-coef", type=float, default=1.0,
                        help="mfgan-pg-kl: weight of KL(pi || pi_start)")  # fmt: skip
    parser.add_argument("--reward-epochs", type=int, default=3, help="discriminator pre-training")
    parser.add_argument("--pg-updates", type=int, default=300)
    parser.add_argument("--pg-lr", type=float, default=3e-4)
    parser.add_argument("--ppo-updates", type=int, default=100, help="pg-oracle-ppo rollouts")
    parser.add_argument("--ppo-epochs", type=int, default=4, help="pg-oracle-ppo steps per rollout")
    parser.add_argument("--pg-batch", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--mle-epochs", type=int, default=60)
    parser.add_argument("--n-users", type=int, default=512, help="prefixes for the KL curves")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny settings, one seed (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "imitation.csv")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw <out stem>_kl.png, print the tables of --out")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.pg_updates, args.mle_epochs, args.n_users = args.seeds[:1], 8, 4, 128
        args.pg_batch, args.rounds, args.wmle_steps, args.reward_epochs = 64, 2, 5, 1
        args.adv_pg_steps, args.d_steps, args.ppo_updates, args.horizon = 2, 2, 4, 5
    return args


def quality_row(policy, data, split, seed: int, n_users: int, max_len: int):
    """KL columns at :data:`STEPS`, 10-step sums, cascading part, repeats and test NDCG@10."""
    curve = cascading_error(policy, data.user_model, split, max_steps=10, n_users=n_users,
                            max_len=max_len, seed=seed, exclude_seen=True)  # fmt: skip
    row = {f"reverse_kl@{t}": float(curve.loc[curve.step == t, "reverse_kl"].item()) for t in STEPS}
    row |= {f"forward_kl@{t}": float(curve.loc[curve.step == t, "forward_kl"].item())
            for t in STEPS}  # fmt: skip
    row["reverse_kl_sum"] = float(curve["reverse_kl"].sum())
    row["forward_kl_sum"] = float(curve["forward_kl"].sum())
    row["cascading_sum"] = float((curve["forward_kl"] - curve["oracle_state_kl"]).sum())
    row["repeat_rate"] = float(curve["repeat_rate"].mean())
    metrics = evaluate(policy, split, "test", protocols=("full",), ks=(10,), max_len=max_len,
                       seed=seed)  # fmt: skip
    row["test_ndcg10"] = float(metrics.query("metric == 'NDCG' and k == 10")["value"].item())
    return row, curve


def pg_oracle(start, data, split, seed: int, args, ppo_epochs: int = 0,
              maxent: bool = False) -> SASRecPolicy:
    """PG against the true user's log-likelihood with entropy bonus 1 (``-KL(pi || p)``).

    ``ppo_epochs = 0``: REINFORCE, one step per rollout; else PPO's clipped surrogate.
    ``maxent``: the entropy as ``-log pi(a_t | s_t)`` in every reward (so the returns carry the
    future entropy too: the exact gradient of ``-KL``) instead of a per-state loss bonus.
    """
    policy = copy_of(start, seed)
    env = BatchedRecEnv(split, OracleReward(data.user_model),
                        EnvConfig(max_len=start.max_len, horizon=args.horizon, start="random"),
                        batch_size=args.pg_batch, seed=seed)  # fmt: skip
    config = PGConfig(n_steps=args.horizon, batch_size=args.pg_batch, lr=args.pg_lr,
                      entropy_coef=0.0 if maxent else 1.0, maxent=maxent, alpha=1.0,
                      baseline="leave_one_out", exclude_seen=True, normalize_advantages=False,
                      ppo_epochs=ppo_epochs)  # fmt: skip
    trainer = PolicyGradientTrainer(policy, env, config, seed=seed)
    updates = args.ppo_updates if ppo_epochs else args.pg_updates
    bar = tqdm(range(updates), desc=f"pg-oracle seed {seed}", leave=False)
    for _ in bar:
        stats = trainer.step()
        bar.set_postfix(reward=f"{stats.get('reward/mean', float('nan')):.3f}")
    return policy.eval()


def copy_of(start: SASRecPolicy, seed: int) -> SASRecPolicy:
    policy = SASRecPolicy(start.config, n_items=start.n_items, seed=seed)
    policy.load_state_dict(start.state_dict())
    return policy


def adversarial(method: str, start, data, split, seed: int, args):
    """One adversarial-loop run from the start; returns (best, last policy, info)."""
    n_items = data.dataset.n_items
    common = dict(n_rounds=args.rounds, pretrain_reward_epochs=args.reward_epochs, eval_every=2,
                  max_len=50, rollout_batch_size=args.pg_batch, d_batch_size=256, seed=seed,
                  exclude_seen=True, disc_lr=1e-3, d_steps=args.d_steps, progress=True)  # fmt: skip
    if method == "ebseqgan":
        reward_model = EnergyDiscriminator(EnergyConfig(encoder="cnn", dim=64, max_len=50),
                                           n_items=n_items, seed=seed)  # fmt: skip
        config = AdversarialConfig(**common, horizon=5, maxent=True, alpha=0.05,
                                   policy_lr=args.pg_lr, baseline="leave_one_out",
                                   g_steps=args.adv_pg_steps)  # fmt: skip
    else:
        reward_model = MultiFactorDiscriminator(
            MultiFactorConfig(dim=64, max_len=50, combination="mean"), split.factors(), seed=seed
        )
        if method in ("mfgan-pg", "mfgan-pg-kl", "mfgan-pg-diff"):
            # with the increments of the logit (AIRL's log p / pi) the entropy is in the reward
            diff = method == "mfgan-pg-diff"
            pg = PGConfig(n_steps=5, batch_size=args.pg_batch, lr=args.pg_lr,
                          entropy_coef=0.0 if diff else 1.0, baseline="leave_one_out",
                          exclude_seen=True,
                          kl_coef=args.kl_coef if method == "mfgan-pg-kl" else 0.0)  # fmt: skip
            config = AdversarialConfig(**common, horizon=5, reward_form="logit", pg=pg,
                                       reward_shaping="difference" if diff else "none",
                                       g_steps=args.adv_pg_steps)  # fmt: skip
        else:
            weights = {"mfgan-wmle": "discriminator", "mfgan-wmle-permuted": "permuted",
                       "mfgan-wmle-one": "one"}[method]  # fmt: skip
            wmle = WeightedMLEConfig(batch_size=128, lr=1e-3, weights=weights, seed=seed)
            config = AdversarialConfig(**common, horizon=1, negatives="replace_last",
                                       generator_update="weighted_mle", weighted_mle=wmle,
                                       g_steps=args.wmle_steps)  # fmt: skip
    policy = copy_of(start, seed)
    trainer = AdversarialTrainer(policy, reward_model, split, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # collapse warnings: the AUC is recorded
        history = trainer.train()
    last = copy_of(policy, seed)
    trainer.restore_best()
    evaluated = history.dropna(subset=["eval/NDCG@10"])
    info = {
        "best_round": int(evaluated.loc[evaluated["eval/NDCG@10"].idxmax(), "round"]),
        "heldout_auc_last": float(history["disc/heldout_auc"].iloc[-1]),
        "kl_from_start_last": float(history["policy/kl_from_start"].iloc[-1]),
    }
    return policy.eval(), last.eval(), info


def gail_sb3(start, data, split, seed: int, args):
    """SB3 PPO from the MLE start against a multi-factor discriminator (see the docstring)."""
    from stable_baselines3 import PPO

    from agents.adversarial_steps import (
        PolicyNegatives,
        heldout_metrics,
        heldout_reals,
        policy_drift,
    )
    from agents.sb3 import PolicyFeaturesExtractor, RewardModelCallback
    from agents.sb3_policy import SB3ActorPolicy, start_actor_from
    from recgym.sb3 import SB3VecEnv
    from rewards import (
        DifferenceReward,
        PretrainConfig,
        RewardFormWrapper,
        pretrain_discriminator,
        real_sequences,
    )

    encoder, horizon = copy_of(start, seed), 5
    reward_model = MultiFactorDiscriminator(
        MultiFactorConfig(dim=64, max_len=50, combination="mean"), split.factors(), seed=seed
    )
    real = real_sequences(split, 50, min_len=horizon + 1)
    pretrain = PretrainConfig(epochs=args.reward_epochs, batch_size=256, seed=seed)
    pretrain_discriminator(reward_model, real, PolicyNegatives(encoder, horizon, exclude_seen=True),
                           pretrain)  # fmt: skip
    reward_model.configure_optimizer(lr=1e-3)
    env = BatchedRecEnv(split, DifferenceReward(RewardFormWrapper(reward_model, "logit")),
                        EnvConfig(max_len=50, horizon=horizon, start="random"),
                        batch_size=args.pg_batch, seed=seed)  # fmt: skip
    model = PPO(
        "MlpPolicy", SB3VecEnv(env), n_steps=horizon, batch_size=args.pg_batch * horizon // 2,
        n_epochs=2, learning_rate=args.pg_lr, gamma=1.0, gae_lambda=0.95, ent_coef=0.0,
        seed=seed, device="cpu",
        policy_kwargs={"features_extractor_class": PolicyFeaturesExtractor,
                       "features_extractor_kwargs": {"policy": encoder},
                       "net_arch": {"pi": [], "vf": [64]}, "ortho_init": False},
    )  # fmt: skip
    start_actor_from(model.policy)
    actor = SB3ActorPolicy(model.policy)
    start_actor = copy.deepcopy(actor).eval().requires_grad_(False)
    callback = RewardModelCallback(reward_model, real_sampler=real, batch_size=256, seed=seed)
    # the budget of mfgan-pg: rounds x g-steps rollouts of pg_batch x horizon, one D step each
    model.learn(args.rounds * args.adv_pg_steps * args.pg_batch * horizon, callback=callback,
                progress_bar=True)  # fmt: skip
    # the loop's health, measured as AdversarialTrainer measures it
    heldout = heldout_reals(split, 50, 256, seed=seed + 3, device=torch.device("cpu"))
    fakes = PolicyNegatives(actor, horizon, exclude_seen=True)
    auc = heldout_metrics(reward_model, heldout, fakes, seed=seed + 4)["disc/heldout_auc"]
    prefixes = torch.nn.functional.pad(heldout[:, :-1], (1, 0))
    drift = policy_drift(actor, start_actor.state_dict(), start_actor, prefixes, exclude_seen=True)
    info = {"heldout_auc_last": auc, "kl_from_start_last": drift["policy/kl_from_start"]}
    return actor.eval(), info


def run_seed(seed: int, args, done: set) -> tuple[list[dict], list[pd.DataFrame]]:
    if all((method, seed) in done for method in args.methods):
        return [], []
    # --quick: a smaller catalogue, so that every method runs in CI in about a minute
    synthetic = SyntheticConfig(n_users=300, n_items=100) if args.quick else SyntheticConfig()
    data = make_synthetic(synthetic, seed=seed)
    split = leave_one_out(data.dataset)
    start = SASRecPolicy(SASRecConfig(max_len=50, dim=64, n_blocks=2), n_items=data.dataset.n_items,
                         seed=seed)  # fmt: skip
    tic = time.perf_counter()
    MLETrainer(start, split, MLEConfig(epochs=args.mle_epochs, lr=1e-3, patience=5, eval_every=2,
                                       seed=seed)).fit()  # fmt: skip
    mle_time = time.perf_counter() - tic
    rows, curves = [], []

    def score(name: str, policy, seconds: float, **info) -> None:
        row, curve = quality_row(policy, data, split, seed, args.n_users, start.max_len)
        rows.append({"method": name, "seed": seed, **row, "seconds": round(seconds, 1), **info})
        curves.append(curve.assign(method=name, seed=seed))

    for method in args.methods:
        if (method, seed) in done:
            continue
        tic = time.perf_counter()
        if method == "bc":
            score(method, start.eval(), mle_time)
        elif method.startswith("pg-oracle"):
            ppo_epochs = args.ppo_epochs if method == "pg-oracle-ppo" else 0
            policy = pg_oracle(start, data, split, seed, args, ppo_epochs,
                               maxent=method == "pg-oracle-maxent")  # fmt: skip
            score(method, policy, time.perf_counter() - tic)
        elif method == "gail-sb3":
            policy, info = gail_sb3(start, data, split, seed, args)
            score(method, policy, time.perf_counter() - tic, **info)
        else:
            best, last, info = adversarial(method, start, data, split, seed, args)
            seconds = time.perf_counter() - tic
            score(method, best, seconds, **info)
            score(f"{method}@last", last, seconds, **info)
    return rows, curves


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps_out = args.out.with_name(args.out.stem + "_steps.csv")
    png = args.out.with_name(args.out.stem + "_kl.png")
    if args.plot_only:
        print(f"wrote {plot_curves(pd.read_csv(steps_out), png)}")
        print(markdown_summary(pd.read_csv(args.out)))
        return 0
    print(f"imitation: methods {args.methods}, seeds {args.seeds}; results -> {args.out} "
          f"and {steps_out}")  # fmt: skip
    # a rerun resumes: finished (method, seed) cells are kept and skipped
    rows = pd.read_csv(args.out).to_dict("records") if args.out.exists() else []
    curves = [pd.read_csv(steps_out)] if steps_out.exists() and rows else []
    done = {(r["method"], int(r["seed"])) for r in rows}
    for seed in tqdm(args.seeds, desc="seeds"):
        new_rows, new_curves = run_seed(seed, args, done)
        rows += new_rows
        curves += new_curves
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_csv(pd.DataFrame(rows), args.out)
        if curves:
            atomic_csv(pd.concat(curves), steps_out)
    table = pd.DataFrame(rows)
    if curves:
        print(f"wrote {plot_curves(pd.concat(curves), png)}")
    cols = ["reverse_kl_sum", "forward_kl_sum", "cascading_sum", "repeat_rate", "test_ndcg10"]
    print(table.groupby("method")[cols].agg(["mean", "std"]).round(4).to_string())
    wide = table.pivot(index="seed", columns="method", values="reverse_kl_sum")
    for method in wide.columns.drop("bc", errors="ignore"):
        if "bc" in wide:
            cut = (1 - wide[method] / wide["bc"]).dropna()
            print(f"{method} cuts BC's 10-step reverse KL by {cut.mean():.1%} "
                  f"(per seed: {', '.join(f'{c:.1%}' for c in cut)})")  # fmt: skip
    if {"mfgan-wmle", "mfgan-wmle-permuted"} <= set(wide):
        diff = (wide["mfgan-wmle"] - wide["mfgan-wmle-permuted"]).dropna()
        print(f"the adversary's contribution (mfgan-wmle - permuted), reverse KL sum: "
              f"{diff.mean():+.4f} (per seed: {', '.join(f'{d:+.4f}' for d in diff)})")  # fmt: skip
    return 0


def atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
