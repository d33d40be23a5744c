"""Per-epoch cost of each SASRec MLE speed lever, in one process, interleaved (issue 21).

One bare training epoch (forward, backward, Adam step; no validation) over the dataset's
training windows per setting, cumulative from the pre-issue arithmetic:

- ``dense``: the dense CE, every window padded to ``max_len`` (before issue 21);
- ``fused``: the fused chunked CE (``MLEConfig.loss_chunk = 256``);
- ``fused+trim``: plus each batch's all-padding leading columns dropped (exact);
- ``bucketed``: plus length-bucketed batches (``MLEConfig.batching = "bucketed"``);
- ``bucketed+bf16``: plus bfloat16 matmuls in the CE (``MLEConfig.loss_dtype``);
- ``bucketed+bf16+compiled``: plus the CE's softmax step as one ``torch.compile`` kernel
  (``MLEConfig.compile_loss``; compiled before the timed epochs, in an untimed warm-up step).

Each setting keeps its own model and optimiser; the settings alternate epoch by epoch (the
first round also pays allocation and Adam warm-up, so the faster of ``--repeats`` rounds is
reported). ``cpu_s`` is the process's CPU time for the epoch: on a shared machine wall time
swings with other jobs, CPU time far less.

Usage::

    python benchmarks/mle_levers.py --data amazon-beauty --threads 1 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)
LEVERS = {  # name -> (chunk, trim, batching, matmul dtype, compiled softmax step)
    "dense": (None, False, "random", torch.float32, False),
    "fused": (256, False, "random", torch.float32, False),
    "fused+trim": (256, True, "random", torch.float32, False),
    "bucketed": (256, True, "bucketed", torch.float32, False),
    "bucketed+bf16": (256, True, "bucketed", torch.bfloat16, False),
    "bucketed+bf16+compiled": (256, True, "bucketed", torch.bfloat16, True),
}


def epoch(state: dict, inputs, targets, lengths, lever: tuple, batch_size: int) -> tuple:
    """One bare epoch; returns ``(wall seconds, CPU seconds)``."""
    from agents.losses import sequence_loss
    from agents.sequences import bucketed_minibatches, drop_padding_columns, minibatches

    chunk, trim, batching, dtype, compiled = lever
    policy, optimizer, order = state["policy"], state["optimizer"], state["order"]
    policy.train()
    if batching == "bucketed":
        batches = bucketed_minibatches(
            inputs, targets, lengths=lengths, batch_size=batch_size, generator=order
        )
    else:
        batches = minibatches(inputs, targets, batch_size=batch_size, generator=order)
    tic, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        if trim:
            x, y = drop_padding_columns(x, y)
        loss = sequence_loss(
            policy, x, y, loss="ce", chunk_size=chunk, matmul_dtype=dtype, compiled=compiled
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - tic, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    from agents.experiments.zoo import ModelZoo, ZooConfig
    from agents.sequences import training_windows
    from recgym import leave_one_out
    from recgym.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data == "synthetic":  # the embedded default (a smoke run; no files needed)
        from recgym import make_synthetic

        dataset = make_synthetic(seed=0).dataset
    else:
        dataset = load_dataset(args.data, data_dir=args.data_dir)
    split = leave_one_out(dataset)
    zoo = ModelZoo(split, ZooConfig(), seed=0)
    inputs, targets = training_windows(split, zoo.config.max_len)
    lengths = (inputs != 0).sum(dim=1)
    states = {}
    for name in args.levers:
        policy = zoo.new_policy("sasrec")
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, betas=(0.9, 0.98))
        states[name] = {"policy": policy, "optimizer": optimizer,
                        "order": torch.Generator().manual_seed(0)}  # fmt: skip
    if any(LEVERS[name][4] for name in args.levers):  # compile outside the timed epochs
        from agents.losses import sequence_loss

        policy = zoo.new_policy("sasrec")
        sequence_loss(policy, inputs[:8], targets[:8], chunk_size=256, compiled=True,
                      matmul_dtype=torch.bfloat16).backward()  # fmt: skip
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in args.levers}
    for _ in range(args.repeats):
        for name in args.levers:
            times[name].append(
                epoch(states[name], inputs, targets, lengths, LEVERS[name], args.batch_size)
            )
    base = min(times[args.levers[0]], key=lambda t: t[1])
    print(f"| {args.data} (batch {args.batch_size}) | wall s | CPU s | CPU vs {args.levers[0]} |")
    print("|---|---|---|---|")
    for name in args.levers:
        wall, cpu = min(times[name], key=lambda t: t[1])
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {base[1] / cpu:.2f}x |")
        print(json.dumps({"data": args.data, "lever": name, "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
