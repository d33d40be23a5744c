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

    python benchmarks/imitation.py --quick          # CI smoke run (~1 min)
    python benchmarks/imitation.py --seeds 0 1 2    # docs/results/imitation.csv

Results (one row per method and seed, rewritten after every cell) go to ``--out``
(default ``docs/results/imitation.csv``); the per-step curves to ``<out stem>_steps.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from agents import (
    MLEConfig,
    MLETrainer,
    PGConfig,
    PolicyGradientTrainer,
    SASRecConfig,
    SASRecPolicy,
    cascading_error,
)
from recgym import BatchedRecEnv, EnvConfig, OracleReward, evaluate, leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic

ROOT = Path(__file__).resolve().parents[1]
STEPS = (1, 5, 10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["bc", "pg-oracle"],
                        choices=["bc", "pg-oracle"])  # fmt: skip
    parser.add_argument("--pg-updates", type=int, default=300)
    parser.add_argument("--pg-lr", type=float, default=3e-4)
    parser.add_argument("--pg-batch", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--mle-epochs", type=int, default=60)
    parser.add_argument("--n-users", type=int, default=512, help="prefixes for the KL curves")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny settings, one seed (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "imitation.csv")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.pg_updates, args.mle_epochs, args.n_users = args.seeds[:1], 20, 4, 128
        args.pg_batch = 128
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


def pg_oracle(start, data, split, seed: int, args) -> SASRecPolicy:
    """REINFORCE against the true user's log-likelihood with entropy bonus 1 (``-KL(pi || p)``)."""
    policy = SASRecPolicy(start.config, n_items=start.n_items, seed=seed)
    policy.load_state_dict(start.state_dict())
    env = BatchedRecEnv(split, OracleReward(data.user_model),
                        EnvConfig(max_len=start.max_len, horizon=args.horizon, start="random"),
                        batch_size=args.pg_batch, seed=seed)  # fmt: skip
    config = PGConfig(n_steps=args.horizon, batch_size=args.pg_batch, lr=args.pg_lr,
                      entropy_coef=1.0, baseline="leave_one_out", exclude_seen=True,
                      normalize_advantages=False)  # fmt: skip
    trainer = PolicyGradientTrainer(policy, env, config, seed=seed)
    bar = tqdm(range(args.pg_updates), desc=f"pg-oracle seed {seed}", leave=False)
    for _ in bar:
        stats = trainer.step()
        bar.set_postfix(reward=f"{stats.get('reward/mean', float('nan')):.3f}")
    return policy.eval()


def run_seed(seed: int, args) -> tuple[list[dict], list[pd.DataFrame]]:
    data = make_synthetic(SyntheticConfig(), seed=seed)
    split = leave_one_out(data.dataset)
    start = SASRecPolicy(SASRecConfig(max_len=50, dim=64, n_blocks=2), n_items=data.dataset.n_items,
                         seed=seed)  # fmt: skip
    tic = time.perf_counter()
    MLETrainer(start, split, MLEConfig(epochs=args.mle_epochs, lr=1e-3, patience=5, eval_every=2,
                                       seed=seed)).fit()  # fmt: skip
    mle_time = time.perf_counter() - tic
    rows, curves = [], []
    for method in args.methods:
        tic = time.perf_counter()
        policy = start.eval() if method == "bc" else pg_oracle(start, data, split, seed, args)
        seconds = (mle_time if method == "bc" else 0.0) + time.perf_counter() - tic
        row, curve = quality_row(policy, data, split, seed, args.n_users, start.max_len)
        rows.append({"method": method, "seed": seed, **row, "seconds": round(seconds, 1)})
        curves.append(curve.assign(method=method, seed=seed))
    return rows, curves


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps_out = args.out.with_name(args.out.stem + "_steps.csv")
    print(f"imitation: methods {args.methods}, seeds {args.seeds}; results -> {args.out} "
          f"and {steps_out}")  # fmt: skip
    rows, curves = [], []
    for seed in tqdm(args.seeds, desc="seeds"):
        new_rows, new_curves = run_seed(seed, args)
        rows += new_rows
        curves += new_curves
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        pd.concat(curves).to_csv(steps_out, index=False)
    table = pd.DataFrame(rows)
    cols = ["reverse_kl_sum", "forward_kl_sum", "cascading_sum", "repeat_rate", "test_ndcg10"]
    print(table.groupby("method")[cols].agg(["mean", "std"]).round(4).to_string())
    if {"bc", "pg-oracle"} <= set(table.method):
        wide = table.pivot(index="seed", columns="method", values="reverse_kl_sum")
        cut = 1 - wide["pg-oracle"] / wide["bc"]
        print(f"pg-oracle cuts BC's 10-step reverse KL by {cut.mean():.1%} "
              f"(per seed: {', '.join(f'{c:.1%}' for c in cut)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
