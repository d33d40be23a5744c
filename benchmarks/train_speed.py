"""Training speed and memory: SASRec MLE to its best validation NDCG@10, and adversarial rounds.

Each dataset runs in a fresh child process, so its peak resident memory (``ru_maxrss``) is its
own. Per dataset the child measures:

- SASRec MLE (``agents.experiments.zoo`` settings: d = 64, 2 blocks, ``max_len`` 50, fused CE,
  batch 64, lr 2e-3 with 1 epoch of warm-up and a cosine to epoch 40, validation every 2
  epochs, patience 5) for each ``--seeds`` seed until early stopping or ``--max-epochs``:
  seconds per epoch, seconds until the best validation NDCG@10 was reached, total seconds,
  that NDCG and the best weights' test full NDCG@10; ``--old-defaults`` adds the pre-issue-21
  settings (dense CE, constant lr 1e-3, batch 128);
- ``--reference-epochs N``: SASRec.pytorch (``benchmarks/reference``) with the same threads,
  its training seconds to its best validation NDCG@10;
- an epoch's FLOPs over its seconds (GFLOP/s) next to a dense matmul timed in the same process;
- the baselines measured in the same process: the faster of two epochs of the same model with
  the plainest possible loop (no validation, no gradient clipping, no bookkeeping), with the
  dense and with the fused chunked CE;
- MFGAN adversarial rounds (SASRec generator, multi-factor discriminator, rollouts of 256
  sessions × 5 steps, one g-step and one d-step per round): the median seconds per round;
- peak resident memory (and, on CUDA, peak allocated GPU memory).

Usage::

    python benchmarks/train_speed.py --data ml-100k amazon-beauty --threads 2
    python benchmarks/train_speed.py --data ml-100k --device cuda
    python benchmarks/train_speed.py --data ml-100k --threads 1 --rounds 0 --seeds 0 1 2 \
        --old-defaults --reference-epochs 200 --reference-eval-every 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
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
    parser.add_argument("--rounds", type=int, default=6, help="adversarial rounds timed (0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="MLE seeds to best")
    parser.add_argument(
        "--old-defaults",
        action="store_true",
        help="also train with the pre-issue-21 settings (dense CE, constant lr 1e-3, batch 128)",
    )
    parser.add_argument(
        "--compile-loss",
        choices=("off", "on", "both"),
        default="off",
        help="today's defaults with MLEConfig.compile_loss off, on, or both (two fits, timed "
        "in one process: 'on' after 'off' pays the compilation itself)",
    )
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=0,
        help="also train SASRec.pytorch (benchmarks/reference) this many epochs, same threads",
    )
    parser.add_argument("--reference-eval-every", type=int, default=5)
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
    compiled = args.compile_loss == "on"
    config = ZooConfig(mle_epochs=args.max_epochs, sasrec_compile_loss=compiled)
    zoo = ModelZoo(split, config, seed=0, device=device)
    row |= plain_epoch_seconds(zoo, args.loss)
    row |= flop_rates(zoo, row)
    for seed in args.seeds:
        seed_zoo = ModelZoo(split, zoo.config, seed=seed, device=device)
        row[f"seed{seed}"] = mle_to_best(seed_zoo, args.loss)
    row |= row[f"seed{args.seeds[0]}"]
    if args.compile_loss == "both":  # after the uncompiled fit: this one pays the compilation
        on = ModelZoo(split, dataclasses.replace(config, sasrec_compile_loss=True), seed=0,
                      device=device)  # fmt: skip
        row["compiled"] = mle_to_best(on, args.loss)
    row["epoch_gflops"] = row["epoch_gflop"] / row["mle_epoch_s"]
    if args.old_defaults:
        row["old"] = mle_to_best(zoo, args.loss, old=True)
    if args.rounds:
        row |= adversarial_round_seconds(zoo, args.rounds)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def plain_epoch_seconds(zoo, loss: str) -> dict:
    """The baselines: the bare forward/backward/step loop on the same windows, batch 128, with
    the dense CE (``plain_epoch_s``, the pre-issue-21 arithmetic) and the fused chunked CE
    (``fused_epoch_s``), each the faster of two epochs, interleaved."""
    from agents.sequences import training_windows

    inputs, targets = training_windows(zoo.split, zoo.config.max_len, device=zoo.device)
    seconds: dict[str, list[float]] = {"plain_epoch_s": [], "fused_epoch_s": []}
    runs = {"plain_epoch_s": None, "fused_epoch_s": 256}
    states = {key: _bare_state(zoo) for key in runs}
    for _ in range(2):  # the first epoch also pays allocation and Adam-state warm-up
        for key, chunk in runs.items():
            seconds[key].append(_bare_epoch(zoo, states[key], inputs, targets, loss, chunk))
    return {key: min(v) for key, v in seconds.items()} | {
        "windows": len(inputs), "targets": int((targets > 0).sum()),
    }  # fmt: skip


def _bare_state(zoo) -> tuple:
    policy = zoo.new_policy("sasrec").to(zoo.device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, betas=(0.9, 0.98))
    generators = (torch.Generator().manual_seed(0), torch.Generator(zoo.device).manual_seed(1))
    return policy, optimizer, generators


def _bare_epoch(zoo, state: tuple, inputs, targets, loss: str, chunk: int | None) -> float:
    from agents.mle import sample_negatives, sequence_loss
    from agents.sequences import minibatches

    policy, optimizer, (order, negatives) = state
    policy.train()
    _sync(zoo.device)
    tic = time.perf_counter()
    for x, y in minibatches(inputs, targets, batch_size=128, generator=order):
        neg = sample_negatives(y, policy.n_items, negatives) if loss == "bce" else None
        value = sequence_loss(policy, x, y, loss=loss, negatives=neg, chunk_size=chunk)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    _sync(zoo.device)
    return time.perf_counter() - tic


def flop_rates(zoo, row: dict) -> dict:
    """FLOPs of one CE epoch (forward + backward = 3x forward) and a dense matmul's GFLOP/s.

    Forward per window position and block: ``12 d^2`` (q/k/v, output, 2-layer FFN) ``+ 4 L d``
    (scores and weighted values, every key); per target: ``2 n_items d`` (the logits). The
    matmul is ``(4096, 1024) @ (1024, 1024)`` float32, best of 5, measured in this process.
    """
    c = zoo.config
    n_blocks = zoo.new_policy("sasrec").config.n_blocks
    positions = row["windows"] * c.max_len
    forward = positions * n_blocks * (12 * c.dim**2 + 4 * c.max_len * c.dim)
    forward += row["targets"] * 2 * zoo.split.dataset.n_items * c.dim
    a = torch.randn(4096, 1024, device=zoo.device)
    b = torch.randn(1024, 1024, device=zoo.device)
    best = float("inf")
    for _ in range(6):
        _sync(zoo.device)
        tic = time.perf_counter()
        a @ b
        _sync(zoo.device)
        best = min(best, time.perf_counter() - tic)
    epoch_gflop = 3 * forward / 1e9
    return {
        "epoch_gflop": epoch_gflop, "matmul_gflops": 2 * 4096 * 1024 * 1024 / best / 1e9,
        "fused_epoch_gflops": epoch_gflop / row["fused_epoch_s"],
    }  # fmt: skip


def mle_to_best(zoo, loss: str, old: bool = False) -> dict:
    """recgym's MLETrainer until early stopping: time to the best validation NDCG@10 (the
    elapsed time includes every validation ranking), and the best weights' test full NDCG@10.
    ``old``: the pre-issue-21 settings (dense CE, constant lr 1e-3, batch 128, every window
    padded to ``max_len``). ``cpu_to_best_s``: the process's CPU time scaled to the best epoch
    (robust to other jobs on a shared machine)."""
    from agents.mle import MLETrainer
    from recgym import evaluate

    policy = zoo.new_policy("sasrec")
    if old:  # the pre-issue evaluation too: every validation window scored at full width
        policy.padding_invariant = False
    config = zoo.mle_config(
        fresh_sasrec=not old, loss=loss,
        **({"loss_chunk": None, "trim_padding": False} if old else {}),
    )  # fmt: skip
    trainer = MLETrainer(policy, zoo.split, config, device=zoo.device)
    tic, cpu = time.perf_counter(), time.process_time()
    result = trainer.fit()
    total, cpu = time.perf_counter() - tic, time.process_time() - cpu
    history = result.history.set_index("epoch")
    test = evaluate(policy, zoo.split, "test", protocols=("full",), ks=(10,),
                    max_len=zoo.config.max_len, device=zoo.device)  # fmt: skip
    return {
        "mle_epochs": int(history.index.max()),
        "mle_epoch_s": float(history["time/epoch_s"].median()),
        "best_epoch": result.best_epoch,
        "time_to_best_s": float(history.loc[result.best_epoch, "time/elapsed_s"]),
        "cpu_to_best_s": cpu * float(history.loc[result.best_epoch, "time/elapsed_s"]) / total,
        "mle_total_s": total,
        "best_valid_ndcg10": result.best_metrics["eval/NDCG@10"],
        "test_full_ndcg10": float(test[test.metric == "NDCG"].value.iloc[0]),
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


def reference_to_best(name: str, args: argparse.Namespace) -> dict:
    """SASRec.pytorch (``benchmarks/reference``, d 64, ``max_len`` 50, pre-LN, its BCE loop) in
    a child process with the same threads: its training seconds (evaluation excluded) until
    the evaluation with the best validation full NDCG@10 (recgym's protocol)."""
    script = Path(__file__).resolve().parent / "reference" / "run_sasrec_pytorch.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ref.csv"
        command = [
            sys.executable, str(script), "--data", name, "--data-dir", args.data_dir,
            "--maxlen", "50", "--hidden-units", "64", "--norm-first", "--seed", "0",
            "--threads", str(args.threads), "--epochs", str(args.reference_epochs),
            "--eval-every", str(args.reference_eval_every), "--out", str(out),
        ]  # fmt: skip
        subprocess.run(command, capture_output=True, text=True, check=True)
        frame = pd.read_csv(out)
    best = frame.loc[frame.valid_full_ndcg10.idxmax()]
    return {
        "ref_best_epoch": int(best.epoch), "ref_time_to_best_s": float(best.train_s),
        "ref_epoch_s": float(frame.train_s.iloc[-1] / frame.epoch.iloc[-1]),
        "ref_best_valid_ndcg10": float(best.valid_full_ndcg10),
        "ref_test_full_ndcg10": float(best.test_full_ndcg10),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    header = (
        "| data | device | windows | plain epoch s | fused epoch s | recgym epoch s | best epoch | "
        "time to best s | total s | best valid NDCG@10 | test full NDCG@10 | MFGAN round s | "
        "peak RSS MB |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['device']} | {r['windows']} | {r['plain_epoch_s']:.2f} | "
            f"{r['fused_epoch_s']:.2f} | {r['mle_epoch_s']:.2f} | {r['best_epoch']} | "
            f"{r['time_to_best_s']:.0f} | {r['mle_total_s']:.0f} | {r['best_valid_ndcg10']:.4f} | "
            f"{r['test_full_ndcg10']:.4f} | {r.get('adv_round_s', float('nan')):.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def quality_table(rows: list[dict], seeds: list[int]) -> str:
    """Time to best and test NDCG per run: today's defaults (per seed, mean), the old
    defaults, SASRec.pytorch; and an epoch's GFLOP/s next to a dense matmul's."""
    lines = [
        "| data | run | best epoch | time to best s | CPU to best s | test full NDCG@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = [(f"recgym seed {s}", r[f"seed{s}"]) for s in seeds]
        runs += [("recgym old defaults, seed 0", r["old"])] if "old" in r else []
        for label, m in runs:
            cpu_s = m.get("cpu_to_best_s", float("nan"))
            lines.append(f"| {r['data']} | {label} | {m['best_epoch']} | "
                         f"{m['time_to_best_s']:.1f} | {cpu_s:.1f} | "
                         f"{m['test_full_ndcg10']:.4f} |")  # fmt: skip
        mean = statistics.mean(r[f"seed{s}"]["time_to_best_s"] for s in seeds)
        cpu = statistics.mean(r[f"seed{s}"].get("cpu_to_best_s", float("nan")) for s in seeds)
        ndcg = [r[f"seed{s}"]["test_full_ndcg10"] for s in seeds]
        spread = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        lines.append(f"| {r['data']} | recgym mean of {len(seeds)} | | {mean:.1f} | {cpu:.1f} | "
                     f"{statistics.mean(ndcg):.4f} ± {spread:.4f} |")  # fmt: skip
        if "old" in r:
            old = r["old"]
            lines.append(f"| {r['data']} | old defaults / recgym mean | | "
                         f"{old['time_to_best_s'] / mean:.2f}x | "
                         f"{old.get('cpu_to_best_s', float('nan')) / cpu:.2f}x | |")  # fmt: skip
        if "ref_time_to_best_s" in r:
            lines.append(
                f"| {r['data']} | SASRec.pytorch seed 0 | {r['ref_best_epoch']} | "
                f"{r['ref_time_to_best_s']:.1f} | | {r['ref_test_full_ndcg10']:.4f} |"
            )
            lines.append(f"| {r['data']} | SASRec.pytorch / recgym mean | | "
                         f"{r['ref_time_to_best_s'] / mean:.2f}x | | |")  # fmt: skip
        lines.append(
            f"\n{r['data']}: an epoch is {r['epoch_gflop']:.1f} GFLOP; recgym epoch "
            f"{r['epoch_gflops']:.1f} GFLOP/s, bare fused {r['fused_epoch_gflops']:.1f} GFLOP/s, "
            f"dense matmul {r['matmul_gflops']:.1f} GFLOP/s (same process)\n"
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
        command = [sys.executable, __file__, "--child", "--data", name, "--seeds"]
        command += [str(s) for s in args.seeds] + ["--old-defaults"] * args.old_defaults
        for flag in (
            "data_dir",
            "device",
            "threads",
            "loss",
            "max_epochs",
            "rounds",
            "compile_loss",
        ):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if args.reference_epochs:
            rows[-1] |= reference_to_best(name, args)
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    print(quality_table(rows, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
