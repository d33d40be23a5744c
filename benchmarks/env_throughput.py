"""Environment steps per second: N single envs in a SyncVectorEnv versus the batched env.

Compares, for N sessions and random actions on the synthetic dataset:

* ``sync``: ``gymnasium.vector.SyncVectorEnv`` over N :class:`recgym.gym_env.NextItemEnv`
  (each a B = 1 core: what a naive Gymnasium env gives you);
* ``vector``: :class:`recgym.gym_env.NextItemVectorEnv` (one batched core, numpy in/out);
* ``core``: the raw :class:`recgym.env.BatchedRecEnv` (torch in/out, ``reset_where`` autoreset),

each with the hit reward and with the oracle (user-model log-likelihood) reward.

Usage::

    python benchmarks/env_throughput.py                      # N in 64 1024 8192
    python benchmarks/env_throughput.py --sizes 1024 --rewards hit --threads 2

On a small machine shared with other jobs, ``--threads 1`` avoids OpenMP oversubscription,
which otherwise slows the batched envs (not the B = 1 envs) by several times.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium
import numpy as np
import torch

from recgym import leave_one_out
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.gym_env import NextItemEnv, NextItemVectorEnv
from recgym.reference import HitReward, OracleReward
from recgym.synthetic import make_synthetic


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 1024, 8192], help="values of N")
    p.add_argument("--rewards", nargs="+", default=["hit", "oracle"], choices=["hit", "oracle"])
    p.add_argument("--steps", type=int, default=300, help="timed steps of the batched envs")
    p.add_argument(
        "--sync-budget",
        type=int,
        default=40_000,
        help="env steps (N x steps) timed for SyncVectorEnv; at least 3 steps are timed",
    )
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def timed(step: Callable[[int], None], n_steps: int, warmup: int = 2) -> float:
    """Seconds per call of ``step(t)`` over ``n_steps`` calls, after ``warmup`` calls."""
    for t in range(warmup):
        step(t)
    start = time.perf_counter()
    for t in range(n_steps):
        step(t)
    return (time.perf_counter() - start) / n_steps


def bench_sync(split, reward_fn, config, n: int, n_steps: int, seed: int, device) -> float:
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: NextItemEnv(split, reward_fn, config, device=device) for _ in range(n)]
    )
    envs.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, split.dataset.n_items, (n_steps + 2, n))
    per_step = timed(lambda t: envs.step(actions[t]), n_steps)
    envs.close()
    return n / per_step


def bench_vector(split, reward_fn, config, n: int, n_steps: int, seed: int, device) -> float:
    env = NextItemVectorEnv(split, reward_fn, config, num_envs=n, device=device)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, split.dataset.n_items, (n_steps + 2, n))
    return n / timed(lambda t: env.step(actions[t]), n_steps)


def bench_core(split, reward_fn, config, n: int, n_steps: int, seed: int, device) -> float:
    env = BatchedRecEnv(split, reward_fn, config, batch_size=n, device=device, seed=seed)
    env.reset()
    gen = torch.Generator(device=env.device).manual_seed(seed)
    actions = torch.randint(1, env.n_items + 1, (n_steps + 2, n), generator=gen, device=env.device)

    def step(t: int) -> None:
        _, _, terminated, truncated, _ = env.step(actions[t])
        env.reset_where(terminated | truncated)

    per_step = timed(step, n_steps)
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return n / per_step


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = make_synthetic(seed=args.seed, device=args.device)
    split = leave_one_out(data.dataset)
    config = EnvConfig(max_len=args.max_len, horizon=args.horizon, start="random")
    rewards = {"hit": HitReward(), "oracle": OracleReward(data.user_model)}
    print(
        f"dataset: {data.dataset}\nconfig: {config}\ndevice: {args.device}, torch threads: "
        f"{torch.get_num_threads()}\n"
    )
    header = (
        f"{'reward':<7} {'N':>6} {'sync steps/s':>13} {'vector steps/s':>15} "
        f"{'core steps/s':>13} {'vector/sync':>12} {'core/sync':>10}"
    )
    print(header + "\n" + "-" * len(header))
    for name in args.rewards:
        for n in args.sizes:
            common = (split, rewards[name], config, n)
            sync_steps = max(3, args.sync_budget // n)
            sync = bench_sync(*common, sync_steps, args.seed, args.device)
            vector = bench_vector(*common, args.steps, args.seed, args.device)
            core = bench_core(*common, args.steps, args.seed, args.device)
            print(
                f"{name:<7} {n:>6} {sync:>13,.0f} {vector:>15,.0f} {core:>13,.0f} "
                f"{vector / sync:>11.1f}x {core / sync:>9.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
