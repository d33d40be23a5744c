"""Data-parallel throughput: 1 process vs N processes (1 thread each), in one run.

For each world size the benchmark spawns that many gloo ranks (``torch.multiprocessing``, the
environment ``torchrun`` would set) on the same synthetic data and measures:

- **MLE**: SASRec training windows per second over ``--epochs`` epochs (``time/epoch_s``, the
  validation excluded), the same global batch on every world size;
- **adversarial**: sessions rolled out per second over ``--rounds`` MFGAN rounds after
  pre-training (each rank rolls out its own ``rollout_batch_size`` sessions, so a round of N
  ranks does N times the work of one).

It prints one table with the N-to-1 throughput ratio. On a machine whose cores are shared with
other work the ratio is a floor, not the scaling of dedicated cores.

Usage::

    python benchmarks/distributed.py                      # 1 vs 2 processes, CPU, ~1 min
    python benchmarks/distributed.py --world 1 2 4 --users 4000 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    from agents import distributed

    distributed.init_distributed("cpu", timeout_s=120)
    result = {"mle": _mle(args), "adversarial": _adversarial(args)}
    if rank == 0:
        torch.save(result, Path(out) / f"world{world}.pt")
    distributed.destroy_distributed()


def _data(args):
    from recgym import SyntheticConfig, leave_one_out, make_synthetic

    config = SyntheticConfig(n_users=args.users, n_items=args.items, min_seq_len=10,
                             max_seq_len=40)  # fmt: skip
    data = make_synthetic(config, seed=0)
    return data, leave_one_out(data.dataset)


def _policy(n_items: int):
    from agents.sasrec import SASRecConfig, SASRecPolicy

    return SASRecPolicy(SASRecConfig(max_len=30, dim=32, n_blocks=2), n_items=n_items, seed=0)


def _mle(args) -> float:
    """Training windows per second (all ranks together)."""
    from agents.mle import MLEConfig, MLETrainer
    from agents.sequences import training_windows

    _, split = _data(args)
    config = MLEConfig(epochs=args.epochs, batch_size=128, eval_every=args.epochs, seed=0,
                       eval_batch_size=1024)  # fmt: skip
    result = MLETrainer(_policy(split.dataset.n_items), split, config).fit()
    n_windows = len(training_windows(split, 30)[0])
    return n_windows * args.epochs / float(result.history["time/epoch_s"].sum())


def _adversarial(args) -> float:
    """Rolled-out sessions per second of the adversarial rounds (all ranks together)."""
    from agents import distributed
    from agents.adversarial import AdversarialTrainer
    from agents.adversarial_config import AdversarialConfig
    from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator

    data, split = _data(args)
    reward = MultiFactorDiscriminator(MultiFactorConfig(dim=16, max_len=30), split.factors(),
                                      seed=0)  # fmt: skip
    config = AdversarialConfig(n_rounds=args.rounds, rollout_batch_size=128, horizon=5,
                               max_len=30, d_batch_size=128, n_heldout=64, n_eval_users=64,
                               eval_every=10**6, evaluate_start=False)  # fmt: skip
    trainer = AdversarialTrainer(_policy(split.dataset.n_items), reward, split, config)
    history = trainer.train()
    seconds = float(history["time/round_s"].sum())
    return 128 * args.rounds * distributed.get_world_size() / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for world in args.world:
            mp.spawn(_rank, args=(world, _port(), args, out), nprocs=world, join=True)
            rows[world] = torch.load(Path(out) / f"world{world}.pt")
    base = rows[args.world[0]]
    print(f"cpu cores visible: {os.cpu_count()}, 1 thread per process, gloo; "
          f"{args.users} users, {args.items} items")  # fmt: skip
    header = ("processes", "MLE windows/s", "ratio", "adv sessions/s", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 14, 6, 15, 6), strict=True)))
    for world, row in rows.items():
        print(f"{world:>9} {row['mle']:>14.1f} {row['mle'] / base['mle']:>6.2f} "
              f"{row['adversarial']:>15.1f} {row['adversarial'] / base['adversarial']:>6.2f}")


if __name__ == "__main__":
    main()
