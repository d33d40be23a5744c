"""Seconds per ACVAE training step and epoch: the dense step, the first lever and recgym's.

A step is everything :meth:`agents.baselines.acvae.training.ACVAETrainer.step` does on one
minibatch (official sizes: batch 64, window 50, embeddings 128, GRU 100, latent 64): latent
codes with sampled noise, next-item NLL, KL term ``E_q[T_psi]``, contrastive term of
``G_omega``, one backward, clipped AdamW/Adam updates of the encoder-decoder and ``G_omega``,
then the adversary ``T_psi``'s own update (its loss, backward, clipped Adam). Three forms, each
training its own copy (same initial weights) on the same minibatches of the dataset's
all-position training windows:

* ``dense``: the step as first written (commit 07c5967), kept here as a reference
  implementation (:func:`reference_step`; with the same seeds it gives that code's losses):
  every one of the ``64 x 50`` positions encoded and decoded into ``(64, 50, n_items + 1)``
  logits, the loss picking the positions with a target; both discriminators scored at every
  position before the padding is masked out; plain AdamW/Adam.
* ``first lever``: the same after the first change (commit 28921e7: all-padding leading
  columns dropped, logits only at target positions), the rest untouched: the code that issue
  21's 110 / 170 s per epoch (Beauty / Sports) were measured with.
* ``recgym``: ``ACVAETrainer.step`` today: additionally, the fused chunked cross-entropy, the
  GRUs run from each row's first real input only, the convolution and ``T_psi`` at real
  positions only, fused optimisers (the same losses and gradients:
  ``tests/agents/baselines/test_acvae_step.py``).

The forms alternate step by step, so machine load hits them alike; the first step of each is
a warm-up and is not timed. Per epoch = mean seconds per step x steps per epoch
(``ceil(windows / 64)``): the timed batches are the first of a shuffled epoch, a random sample
of its batches. One validation is timed for recgym and reported apart.
``--parts`` times the pieces of the dense and recgym steps in isolation instead.

Usage::

    python benchmarks/acvae_step.py --data amazon-beauty --threads 1 --steps 25
    python benchmarks/acvae_step.py --data amazon-beauty --threads 1 --steps 20 --parts
    python benchmarks/acvae_step.py --data synthetic --steps 3      # smoke (the embedded data)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from agents.baselines.acvae.discriminators import _accuracy
from agents.baselines.acvae.model import (
    ACVAEConfig,
    ACVAEPolicy,
    LatentCodes,
    reconstruction_loss,
)
from agents.baselines.acvae.training import (
    ACVAETrainer,
    ACVAETrainingConfig,
    _update,
    drop_padding_columns,
)
from agents.sequences import minibatches, training_windows
from recgym import leave_one_out
from recgym.datasets import load_dataset
from recgym.errors import RecGymError
from recgym.synthetic import SyntheticConfig, make_synthetic

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)
BATCH = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="amazon-beauty")
    p.add_argument("--data-dir", default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--parts", action="store_true", help="time the pieces of a step instead")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- the old step
def gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, index[b, t]]`` for ``(B, L, C)`` x and ``(B, L)`` index."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def reference_trunk(model: ACVAEPolicy, hidden: torch.Tensor, generator) -> torch.Tensor:
    """The convolutional encoder at every position of the ``(B, L, H)`` frame, noise sampled."""
    a = model.noise(hidden, torch.randn(hidden.shape, generator=generator, device=hidden.device))
    a = torch.nn.functional.softplus(model.pointwise_in(a))
    a = model.noise(a, torch.randn(a.shape, generator=generator, device=a.device))
    c = torch.nn.functional.softplus(model.temporal(a))
    return model.dropout(hidden + torch.nn.functional.softplus(model.pointwise_out(c)))


def reference_latent(model: ACVAEPolicy, history, generator) -> LatentCodes:
    """``ACVAEPolicy.latent`` as it was: the GRU over every slot of the real-first frame."""
    inputs = model.item_embedding(history)
    keep = history != 0
    length = history.shape[1]
    pad = length - keep.sum(dim=1, keepdim=True)
    steps = torch.arange(length, device=history.device).unsqueeze(0)
    x = gather_steps(model.embed_dropout(inputs), (steps + pad).clamp(max=length - 1))
    hidden, _ = model.gru(x)
    trunk = reference_trunk(model, hidden, generator)
    mask = keep.unsqueeze(-1).to(trunk.dtype)
    return LatentCodes(
        gather_steps(model.head(trunk), (steps - pad).clamp(min=0)) * mask, keep, inputs
    )


def reference_recon(model: ACVAEPolicy, codes: LatentCodes, targets, first_lever: bool):
    states = model.decoder_states(codes.z, codes.mask)  # (B, L, E + 1)
    if not first_lever:
        return reconstruction_loss(states @ model.item_table().T, targets)
    valid = targets > 0
    return reconstruction_loss(states[valid] @ model.item_table().T, targets[valid])


def reference_contrast(contrast, codes: LatentCodes) -> dict:
    x, z, mask = codes.inputs, codes.z, codes.mask
    shuffled, shuffled_mask = z.roll(1, dims=0), mask & mask.roll(1, dims=0)
    joint = contrast(x, z, mask)[mask]
    marginal = contrast(x, shuffled, shuffled_mask)[shuffled_mask]
    loss = F.softplus(-joint).mean() + F.softplus(marginal).mean()
    return {"loss": loss, "accuracy": _accuracy(joint, marginal)}


def reference_adversary(adversary, codes: LatentCodes, generator) -> dict:
    x, z, mask = codes.inputs.detach(), codes.z.detach(), codes.mask
    posterior = adversary(x, z, mask)[mask]
    prior_z = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    prior = adversary(x, prior_z, mask)[mask]
    loss = F.softplus(-posterior).mean() + F.softplus(prior).mean()
    return {"loss": loss, "accuracy": _accuracy(posterior, prior)}


def reference_step(trainer: ACVAETrainer, inputs, targets, *, first_lever: bool) -> dict:
    """``ACVAETrainer.step`` before issue 21 (``first_lever``: after its first change)."""
    cfg, model = trainer.config, trainer.model
    for module in (model, trainer.adversary, trainer.contrast):
        module.train()
    alpha = cfg.alpha_at(trainer.steps)
    if first_lever:
        inputs, targets = drop_padding_columns(inputs, targets)
    codes = reference_latent(model, inputs, trainer.noise)
    recon = reference_recon(model, codes, targets, first_lever)
    kl = trainer.adversary(codes.inputs, codes.z, codes.mask)[codes.mask].mean()
    contrast = reference_contrast(trainer.contrast, codes)
    loss = recon + alpha * kl + cfg.beta * contrast["loss"]
    if not torch.isfinite(loss):
        raise RecGymError(f"ACVAE loss became non-finite ({float(loss)})")
    _update(loss, [trainer.optimizer, trainer.contrast_optimizer], cfg.max_grad_norm)
    row = {"acvae/loss": float(loss.detach()), "acvae/recon": float(recon.detach())}
    row |= {"acvae/kl": float(kl.detach()), "acvae/contrast": float(contrast["loss"].detach())}
    adv = reference_adversary(trainer.adversary, codes, trainer.noise)
    _update(adv["loss"], [trainer.adversary_optimizer], cfg.max_grad_norm)
    row |= {"adversary/loss": float(adv["loss"].detach()), "adversary/accuracy": adv["accuracy"]}
    trainer.steps += 1
    return row


# ----------------------------------------------------------------------------- setup
def load(args: argparse.Namespace):
    if args.data == "synthetic":
        return leave_one_out(make_synthetic(SyntheticConfig(), seed=0).dataset)
    return leave_one_out(load_dataset(args.data, data_dir=args.data_dir))


def make_trainer(split, device, *, plain_optimizers: bool) -> ACVAETrainer:
    model = ACVAEPolicy(ACVAEConfig(), n_items=split.dataset.n_items, seed=0)
    trainer = ACVAETrainer(model, split, ACVAETrainingConfig(), device=device)
    if plain_optimizers:  # what the trainer used before issue 21 (for-loop Adam)
        cfg = trainer.config
        trainer.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        adversary, contrast = trainer.adversary.parameters(), trainer.contrast.parameters()
        trainer.adversary_optimizer = torch.optim.Adam(adversary, lr=cfg.adversary_lr)
        trainer.contrast_optimizer = torch.optim.Adam(contrast, lr=cfg.contrast_lr)
    return trainer


FORMS = ("dense", "first lever", "recgym")


def run_step(name: str, trainer: ACVAETrainer, inputs, targets) -> dict:
    if name == "recgym":
        return trainer.step(inputs, targets)
    return reference_step(trainer, inputs, targets, first_lever=name == "first lever")


def sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def time_steps(args, split, batches) -> tuple[dict[str, float], float]:
    """Seconds per step of each form (alternating step by step), and of one validation."""
    trainers = {name: make_trainer(split, args.device, plain_optimizers=name != "recgym")
                for name in FORMS}  # fmt: skip
    seconds = dict.fromkeys(FORMS, 0.0)
    for step, (batch_inputs, batch_targets) in enumerate(batches):
        for name, trainer in trainers.items():
            tic = time.perf_counter()
            run_step(name, trainer, batch_inputs, batch_targets)
            sync(args.device)
            if step > 0:  # the first step warms up allocators and kernels
                seconds[name] += time.perf_counter() - tic
    tic = time.perf_counter()
    trainers["recgym"].validate()
    validation = time.perf_counter() - tic
    return {name: value / (len(batches) - 1) for name, value in seconds.items()}, validation


# ----------------------------------------------------------------------------- --parts
def _detached(codes: LatentCodes) -> LatentCodes:
    z, x = codes.z.detach().requires_grad_(), codes.inputs.detach().requires_grad_()
    return LatentCodes(z, codes.mask, x)


def _parts(name: str, trainer: ACVAETrainer) -> dict:
    """The pieces of one step of form ``name`` as ``f(inputs, targets, codes)`` (fwd + bwd)."""
    old, model = name == "dense", trainer.model

    def encoder(inputs, targets, codes):
        codes = (reference_latent(model, inputs, trainer.noise) if old
                 else model.latent(inputs, sample=True, generator=trainer.noise))  # fmt: skip
        (codes.z.sum() + codes.inputs.sum()).backward()

    def decoder(inputs, targets, codes):
        if old:
            reference_recon(model, codes, targets, first_lever=False).backward()
        else:
            trainer._reconstruction(codes, targets, targets > 0).backward()

    def kl(inputs, targets, codes):
        adversary = trainer.adversary
        if old:
            adversary(codes.inputs, codes.z, codes.mask)[codes.mask].mean().backward()
        else:
            adversary.logits(codes.inputs[codes.mask], codes.z[codes.mask]).mean().backward()

    def contrast(inputs, targets, codes):
        loss = reference_contrast if old else type(trainer.contrast).loss
        loss(trainer.contrast, codes)["loss"].backward()

    def adversary(inputs, targets, codes):
        adv = (reference_adversary(trainer.adversary, codes, trainer.noise) if old
               else trainer.adversary.loss(codes, trainer.noise))  # fmt: skip
        _update(adv["loss"], [trainer.adversary_optimizer], trainer.config.max_grad_norm)

    def optimizers(inputs, targets, codes):
        for opt in (trainer.optimizer, trainer.contrast_optimizer):
            params = [p for group in opt.param_groups for p in group["params"]]
            for p in params:
                p.grad = torch.zeros_like(p) if p.grad is None else p.grad
            torch.nn.utils.clip_grad_norm_(params, trainer.config.max_grad_norm)
            opt.step()

    return {"encoder (GRU + CNN)": encoder, "decoder + NLL": decoder, "KL term (T_psi)": kl,
            "contrastive (G_omega)": contrast, "T_psi update": adversary,
            "optimisers + clip": optimizers}  # fmt: skip


def time_parts(args, split, batches) -> dict[str, dict[str, float]]:
    """Milliseconds per step of each piece and of the whole step, dense vs recgym."""
    forms = {"dense": True, "recgym": False}
    trainers = {name: make_trainer(split, args.device, plain_optimizers=plain)
                for name, plain in forms.items()}  # fmt: skip
    parts = {name: _parts(name, trainer) for name, trainer in trainers.items()}
    ms = {name: dict.fromkeys([*parts[name], "whole step"], 0.0) for name in forms}
    for step, (full_inputs, full_targets) in enumerate(batches):
        for name, trainer in trainers.items():
            inputs, targets = full_inputs, full_targets
            if name == "recgym":
                inputs, targets = drop_padding_columns(inputs, targets)
            with torch.no_grad():
                codes = _detached(trainer.model.latent(inputs, sample=True))
            for part, run in [*parts[name].items(), ("whole step", None)]:
                trainer.model.zero_grad(set_to_none=True)
                tic = time.perf_counter()
                if run is None:
                    run_step(name, trainer, full_inputs, full_targets)
                else:
                    run(inputs, targets, codes)
                sync(args.device)
                if step > 0:
                    ms[name][part] += 1000 * (time.perf_counter() - tic) / (len(batches) - 1)
    return ms


def print_parts(ms: dict[str, dict[str, float]]) -> None:
    print("| piece | dense (ms/step) | share | recgym (ms/step) | share | speed-up |")
    print("|---|---|---|---|---|---|")
    old, new = ms["dense"], ms["recgym"]
    for part in old:
        print(f"| {part} | {old[part]:.1f} | {old[part] / old['whole step']:.0%} | "
              f"{new[part]:.1f} | {new[part] / new['whole step']:.0%} | "
              f"{old[part] / new[part]:.1f}x |")  # fmt: skip


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load(args)
    inputs, targets = training_windows(split, 50, device=args.device)
    order = torch.Generator().manual_seed(0)
    batches = list(minibatches(inputs, targets, batch_size=BATCH, generator=order))
    steps_per_epoch = len(batches)
    batches = batches[: args.steps + 1]
    share = float((targets > 0).float().mean())  # over every window, not the timed ones
    print(f"{args.data}: {split.dataset.n_items} items, {len(inputs)} windows "
          f"({steps_per_epoch} steps per epoch), {share:.0%} of positions have a target; "
          f"{len(batches) - 1} timed steps, threads={torch.get_num_threads()}\n")  # fmt: skip
    if args.parts:
        print_parts(time_parts(args, split, batches))
        return 0
    seconds, valid = time_steps(args, split, batches)
    epoch = {name: seconds[name] * steps_per_epoch for name in FORMS}
    print("| data | form | ms/step | s/epoch (x steps) | vs dense | vs first lever |")
    print("|---|---|---|---|---|---|")
    for name in FORMS:
        print(f"| {args.data} | {name} | {1000 * seconds[name]:.1f} | {epoch[name]:.1f} | "
              f"{epoch['dense'] / epoch[name]:.2f}x | "
              f"{epoch['first lever'] / epoch[name]:.2f}x |")  # fmt: skip
    dense, lever, ours = (epoch[name] + valid for name in FORMS)
    print(f"\nvalidation (recgym, once): {valid:.1f} s; counted once per epoch for every form, "
          f"recgym is {dense / ours:.2f}x dense and {lever / ours:.2f}x first lever")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
