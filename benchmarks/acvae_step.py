"""Milliseconds per ACVAE encoder-decoder step: decoding every position vs recgym's.

A step = latent codes (noise sampled), next-item softmax NLL, backward, AdamW update, on the
same minibatches of the dataset's all-position training windows (official sizes: batch 64,
window 50, embeddings 128, GRU 100, latent 64). The discriminators are left out: they are
the same in both forms.

* ``every position``: logits at all ``B x L`` positions (``(64, 50, n_items + 1)``), then the
  loss picks the positions that have a target.
* ``recgym``: :func:`agents.baselines.acvae.training.drop_padding_columns` drops the leading
  columns that are padding in every row, and ``ACVAEPolicy.decode(codes, where)`` computes
  logits only at target positions (the same loss, ``tests/agents/baselines/test_acvae.py``).

The two forms alternate step by step, so machine load hits both alike.

Usage::

    python benchmarks/acvae_step.py --data amazon-beauty --threads 1
    python benchmarks/acvae_step.py --data ml-100k --threads 1
    python benchmarks/acvae_step.py --data synthetic --steps 3      # smoke (the embedded data)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from agents.baselines.acvae.model import ACVAEConfig, ACVAEPolicy, reconstruction_loss
from agents.baselines.acvae.training import drop_padding_columns
from agents.sequences import minibatches, training_windows
from recgym import leave_one_out
from recgym.datasets import load_dataset
from recgym.synthetic import SyntheticConfig, make_synthetic

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="amazon-beauty")
    p.add_argument("--data-dir", default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def every_position_loss(model: ACVAEPolicy, inputs, targets, noise):
    codes = model.latent(inputs, sample=True, generator=noise)
    return reconstruction_loss(model.decode(codes), targets)


def recgym_loss(model: ACVAEPolicy, inputs, targets, noise):
    inputs, targets = drop_padding_columns(inputs, targets)
    codes = model.latent(inputs, sample=True, generator=noise)
    valid = targets > 0
    return reconstruction_loss(model.decode(codes, valid), targets[valid])


FORMS = {"every position": every_position_loss, "recgym": recgym_loss}


def load(args: argparse.Namespace):
    if args.data == "synthetic":
        return leave_one_out(make_synthetic(SyntheticConfig(), seed=0).dataset)
    return leave_one_out(load_dataset(args.data, data_dir=args.data_dir))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load(args)
    n_items = split.dataset.n_items
    inputs, targets = training_windows(split, 50, device=args.device)
    order = torch.Generator().manual_seed(0)
    batches = list(minibatches(inputs, targets, batch_size=64, generator=order))[: args.steps + 1]
    setups = {}
    for name in FORMS:
        model = ACVAEPolicy(ACVAEConfig(), n_items=n_items, seed=0).to(args.device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
        noise = torch.Generator(device=args.device).manual_seed(1)
        setups[name] = (model, optimizer, noise)
    seconds = dict.fromkeys(FORMS, 0.0)
    for step, (batch_inputs, batch_targets) in enumerate(batches):
        for name, loss_of in FORMS.items():
            model, optimizer, noise = setups[name]
            tic = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_of(model, batch_inputs, batch_targets, noise).backward()
            optimizer.step()
            if args.device != "cpu":
                torch.cuda.synchronize()
            if step > 0:  # the first step warms up allocators and kernels
                seconds[name] += time.perf_counter() - tic
    share = float((targets > 0).float().mean())  # over every window, not the timed ones
    print(f"{args.data}: {n_items} items, {len(inputs)} windows, {share:.0%} of positions have a "
          f"target; {args.steps} steps, threads={torch.get_num_threads()}\n")  # fmt: skip
    print("| data | every position (ms/step) | recgym (ms/step) | speed-up |\n|---|---|---|---|")
    base, ours = (1000 * seconds[name] / args.steps for name in FORMS)
    print(f"| {args.data} | {base:.1f} | {ours:.1f} | {base / ours:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
