"""Training speed and memory: SASRec MLE to its best validation NDCG@10, and adversarial rounds.

Each dataset runs in a fresh child process, so its peak resident memory (``ru_maxrss``) is its
own. Per dataset the child measures:

- SASRec MLE (``agents.experiments.zoo`` settings: d = 64, 2 blocks, ``max_len`` 50, Adam 1e-3,
  batch 128,
  validation every 2 epochs, patience 5) until early stopping or ``--max-epochs``: seconds per
  epoch, seconds until the best validation NDCG@10 was reached, total seconds, that NDCG;
- the baseline measured in the same process: the faster of two epochs of the same model with
  the plainest possible loop (no validation, no gradient clipping, no bookkeeping) — the ratio
  shows what recgym's trainer costs on top of the arithmetic;
- MFGAN adversarial rounds (SASRec generator, multi-factor discriminator, rollouts of 256
  sessions × 5 steps, one g-step and one d-step per round): the median seconds per round;
- peak resident memory (and, on CUDA, peak allocated GPU memory).

Usage::

    python benchmarks/train_speed.py --data ml-100k amazon-beauty --threads 2
    python benchmarks/train_speed.py --data ml-100k --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["ml-100k", "amazon-beauty"])
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loss", default="ce", choices=("ce", "bce"))
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6, help="adversarial rounds timed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Everything for one dataset (run inside the child process)."""
    from agents.experiments.zoo import ModelZoo, ZooConfig
    from recgym import leave_one_out
    from recgym.datasets import load_dataset
    from recgym.device import resolve_device

    device = resolve_device(args.device)
    tic = time.perf_counter()
    split = leave_one_out(load_dataset(name, data_dir=args.data_dir))
    row = {"data": name, "load_s": time.perf_counter() - tic, "device": str(device)}
    zoo = ModelZoo(split, ZooConfig(mle_epochs=args.max_epochs), seed=0, device=device)
    row |= plain_epoch_seconds(zoo, args.loss)
    row |= mle_to_best(zoo, args.loss)
    row |= adversarial_round_seconds(zoo, args.rounds)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def plain_epoch_seconds(zoo, loss: str) -> dict:
    """The baseline: one epoch of the bare forward/backward/step loop on the same windows."""
    from agents.mle import sample_negatives, sequence_loss
    from agents.sequences import minibatches, training_windows

    policy = zoo.new_policy("sasrec").to(zoo.device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, betas=(0.9, 0.98))
    inputs, targets = training_windows(zoo.split, zoo.config.max_len, device=zoo.device)
    generator = torch.Generator().manual_seed(0)
    negatives = torch.Generator(device=zoo.device).manual_seed(1)
    policy.train()
    seconds = []
    for _ in range(2):  # the first epoch also pays allocation and Adam-state warm-up
        _sync(zoo.device)
        tic = time.perf_counter()
        for x, y in minibatches(inputs, targets, batch_size=128, generator=generator):
            neg = sample_negatives(y, policy.n_items, negatives) if loss == "bce" else None
            value = sequence_loss(policy, x, y, loss=loss, negatives=neg)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
        _sync(zoo.device)
        seconds.append(time.perf_counter() - tic)
    return {"plain_epoch_s": min(seconds), "windows": len(inputs)}


def mle_to_best(zoo, loss: str) -> dict:
    """recgym's MLETrainer until early stopping: time to the best validation NDCG@10."""
    from agents.mle import MLETrainer

    policy = zoo.new_policy("sasrec")
    trainer = MLETrainer(policy, zoo.split, zoo.mle_config(loss=loss), device=zoo.device)
    tic = time.perf_counter()
    result = trainer.fit()
    total = time.perf_counter() - tic
    history = result.history.set_index("epoch")
    return {
        "mle_epochs": int(history.index.max()),
        "mle_epoch_s": float(history["time/epoch_s"].median()),
        "best_epoch": result.best_epoch,
        "time_to_best_s": float(history.loc[result.best_epoch, "time/elapsed_s"]),
        "mle_total_s": total,
        "best_valid_ndcg10": result.best_metrics["eval/NDCG@10"],
    }


def adversarial_round_seconds(zoo, rounds: int) -> dict:
    """Median seconds of an MFGAN round (g-step + d-step), validation ranking excluded."""
    from agents.adversarial import AdversarialTrainer
    from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator

    c = zoo.config
    discriminator = MultiFactorDiscriminator(
        MultiFactorConfig(dim=c.dim, max_len=c.max_len), zoo.split.factors(), seed=0
    )
    config = zoo.adversarial_config(
        n_rounds=rounds, eval_every=rounds + 1, pretrain_reward_epochs=0, evaluate_start=False
    )
    trainer = AdversarialTrainer(
        zoo.new_policy("sasrec"), discriminator.to(zoo.device), zoo.split, config,
        device=zoo.device,
    )  # fmt: skip
    history = trainer.train()
    times = history["time/round_s"].iloc[1:-1]  # the first warms up; the last also evaluates
    return {"adv_round_s": statistics.median(times.tolist()), "adv_rounds": rounds}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table(rows: list[dict]) -> str:
    header = (
        "| data | device | windows | plain epoch s | recgym epoch s | ratio | best epoch | "
        "time to best s | total s | best valid NDCG@10 | MFGAN round s | peak RSS MB |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['device']} | {r['windows']} | {r['plain_epoch_s']:.2f} | "
            f"{r['mle_epoch_s']:.2f} | {r['mle_epoch_s'] / r['plain_epoch_s']:.2f} | "
            f"{r['best_epoch']} | {r['time_to_best_s']:.0f} | {r['mle_total_s']:.0f} | "
            f"{r['best_valid_ndcg10']:.4f} | {r['adv_round_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.data[0], args)))
        return 0
    rows = []
    for name in args.data:
        command = [sys.executable, __file__, "--child", "--data", name]
        for flag in ("data_dir", "device", "threads", "loss", "max_epochs", "rounds"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
