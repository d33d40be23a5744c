"""ACVAE's fast training step against the direct form: the same losses and gradients.

The direct form is the objective as first written: the encoder's GRU over every slot, logits at
every position (then the loss picks those with a target), and both discriminators scored at
every position before the padding is masked out. Dropout is off (eval mode) and the noise is
drawn from the same seed, so the two forms see the same random numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.baselines.acvae.discriminators import AVBAdversary, ContrastiveDiscriminator
from agents.baselines.acvae.gru_scan import suffix_gru
from agents.baselines.acvae.model import (
    ACVAEConfig,
    ACVAEPolicy,
    CausalConv1d,
    LatentCodes,
    reconstruction_loss,
)
from agents.baselines.acvae.training import ACVAETrainer, ACVAETrainingConfig
from agents.checkpoint import forked_global_rng
from agents.sequences import training_windows

SMALL = ACVAEConfig(max_len=10, embed_dim=16, hidden_dim=16, latent_dim=8)
ALPHA = 0.3


def gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def direct_trunk(model: ACVAEPolicy, hidden: torch.Tensor, generator) -> torch.Tensor:
    """The convolutional encoder at every position of the ``(B, L, H)`` frame, noise sampled."""
    a = model.noise(hidden, torch.randn(hidden.shape, generator=generator))
    a = torch.nn.functional.softplus(model.pointwise_in(a))
    a = model.noise(a, torch.randn(a.shape, generator=generator))
    c = torch.nn.functional.softplus(model.temporal(a))
    return model.dropout(hidden + torch.nn.functional.softplus(model.pointwise_out(c)))


def direct_latent(model: ACVAEPolicy, history: torch.Tensor, generator) -> LatentCodes:
    """The encoder with its GRU run over every slot of the real-items-first frame."""
    inputs = model.item_embedding(history)
    keep = history != 0
    length = history.shape[1]
    pad = length - keep.sum(dim=1, keepdim=True)
    steps = torch.arange(length).unsqueeze(0)
    x = gather_steps(model.embed_dropout(inputs), (steps + pad).clamp(max=length - 1))
    hidden = model.gru(x)[0].contiguous()  # row-major like packed_gru's: dropout masks follow
    trunk = direct_trunk(model, hidden, generator)
    z = gather_steps(model.head(trunk), (steps - pad).clamp(min=0)) * keep.unsqueeze(-1)
    return LatentCodes(z, keep, inputs)


def direct_contrast(contrast: ContrastiveDiscriminator, codes: LatentCodes) -> torch.Tensor:
    x, z, mask = codes.inputs, codes.z, codes.mask
    shuffled, shuffled_mask = z.roll(1, dims=0), mask & mask.roll(1, dims=0)
    joint = contrast(x, z, mask)[mask]
    marginal = contrast(x, shuffled, shuffled_mask)[shuffled_mask]
    return nn.functional.softplus(-joint).mean() + nn.functional.softplus(marginal).mean()


def direct_objective(trainer: ACVAETrainer, inputs, targets, generator) -> torch.Tensor:
    model, codes = trainer.model, direct_latent(trainer.model, inputs, generator)
    recon = reconstruction_loss(model.decode(codes), targets)
    kl = trainer.adversary(codes.inputs, codes.z, codes.mask)[codes.mask].mean()
    return recon + ALPHA * kl + trainer.config.beta * direct_contrast(trainer.contrast, codes)


def make_trainer(split, **changes) -> ACVAETrainer:
    model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items, seed=1)
    trainer = ACVAETrainer(model, split, ACVAETrainingConfig(**changes))
    for module in (trainer.model, trainer.adversary, trainer.contrast):
        module.eval()  # dropout off; the noise is still sampled (sample=True)
    return trainer


def varied_batch(split) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of every length 1..10, shuffled, plus one all-padding row."""
    inputs, targets = training_windows(split, SMALL.max_len)
    lengths = (inputs != 0).sum(dim=1)
    rows = [int(torch.nonzero(lengths == n)[0]) for n in range(1, SMALL.max_len + 1)]
    rows = torch.tensor(rows)[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))]
    pad = torch.zeros(1, SMALL.max_len, dtype=torch.long)
    return torch.cat([inputs[rows], pad]), torch.cat([targets[rows], pad])


def grads(modules) -> dict[str, torch.Tensor]:
    out = {}
    for m, module in enumerate(modules):
        for name, p in module.named_parameters():
            out[f"{m}.{name}"] = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            p.grad = None
    return out


@pytest.mark.parametrize("loss_chunk", [3, None])
def test_objective_and_gradients_equal_the_direct_form(synthetic, loss_chunk):
    _, split = synthetic
    trainer = make_trainer(split, loss_chunk=loss_chunk)
    inputs, targets = varied_batch(split)
    modules = (trainer.model, trainer.adversary, trainer.contrast)
    trainer.noise.manual_seed(5)
    _, terms = trainer.objective(inputs, targets, alpha=ALPHA)
    terms["loss"].backward()
    fast = grads(modules)
    direct = direct_objective(trainer, inputs, targets, torch.Generator().manual_seed(5))
    direct.backward()
    slow = grads(modules)
    torch.testing.assert_close(terms["loss"], direct)
    assert float(terms["loss"].detach()) > 0 and any(
        float(g.abs().max()) > 0 for g in fast.values()
    )
    for name, value in slow.items():
        torch.testing.assert_close(fast[name], value, atol=1e-6, rtol=1e-4, msg=name)


def test_adversary_loss_and_gradients_equal_the_direct_form(synthetic):
    _, split = synthetic
    trainer = make_trainer(split)
    inputs, _ = varied_batch(split)
    codes = trainer.model.latent(inputs, sample=True, generator=torch.Generator().manual_seed(2))
    adversary = trainer.adversary
    fast = adversary.loss(codes, torch.Generator().manual_seed(3))
    fast["loss"].backward()
    fast_grads = grads([adversary])
    # The direct form at every position, its prior draws at real positions the same as above.
    mask, z = codes.mask, codes.z.detach()
    prior_z = torch.zeros_like(z)
    prior_z[mask] = torch.randn(
        int(mask.sum()), z.shape[-1], generator=torch.Generator().manual_seed(3)
    )
    posterior = adversary(codes.inputs.detach(), z, mask)[mask]
    prior = adversary(codes.inputs.detach(), prior_z, mask)[mask]
    direct = nn.functional.softplus(-posterior).mean() + nn.functional.softplus(prior).mean()
    direct.backward()
    torch.testing.assert_close(fast["loss"], direct)
    for name, value in grads([adversary]).items():
        torch.testing.assert_close(fast_grads[name], value, atol=1e-6, rtol=1e-4, msg=name)


def test_encoder_draws_the_same_noise_and_dropout(synthetic):
    """In training mode too: packing the GRU changes no random draw."""
    _, split = synthetic
    model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items, seed=1).train()
    inputs, _ = varied_batch(split)
    with forked_global_rng(7):
        fast = model.latent(inputs, sample=True, generator=torch.Generator().manual_seed(4))
    with forked_global_rng(7):
        direct = direct_latent(model, inputs, torch.Generator().manual_seed(4))
    torch.testing.assert_close(fast.z, direct.z)
    assert float(fast.z.detach().abs().sum()) > 0


def _gru_pair(zero_prefix: bool):
    """suffix_gru and the direct nn.GRU on rows starting at different columns (float64)."""
    gen = torch.Generator().manual_seed(0)
    gru = nn.GRU(3, 4, batch_first=True).double()
    start = torch.tensor([2, 0, 5, 6, 3, 2])  # 6 = never run
    run = torch.arange(6).unsqueeze(0) >= start.unsqueeze(1)  # (R, L)
    x = torch.randn(6, 6, 3, generator=gen, dtype=torch.float64) * run.unsqueeze(-1)
    x.requires_grad_()
    fast = suffix_gru(gru, x, start, zero_prefix=zero_prefix)
    if zero_prefix:  # the whole row, zeros before its start
        direct = gru(x)[0] * run.unsqueeze(-1)
    else:  # a fresh GRU on each row's suffix
        rows = [x.new_zeros(6, 4)] * len(start)
        for r, s in enumerate(start.tolist()):
            if s < 6:
                rows[r] = torch.cat([x.new_zeros(s, 4), gru(x[r : r + 1, s:])[0][0]])
        direct = torch.stack(rows)
    return gru, x, run, fast, direct


@pytest.mark.parametrize("zero_prefix", [False, True])
def test_suffix_gru_equals_the_gru_with_gradients(zero_prefix):
    gru, x, run, fast, direct = _gru_pair(zero_prefix)
    torch.testing.assert_close(fast, direct, rtol=0, atol=1e-12)
    weights = torch.randn(fast.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    found = []
    for out in (fast, direct):
        gru.zero_grad()
        x.grad = None
        (out * weights).sum().backward()
        found.append([p.grad.clone() for p in gru.parameters()] + [x.grad * run.unsqueeze(-1)])
    for a, b in zip(*found, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert float(fast[0, 2:].detach().abs().min()) > 0 and bool((fast[~run] == 0).all())


def test_suffix_gru_rejects_stacked_gru():
    with pytest.raises(ValueError, match="one-layer"):
        suffix_gru(
            nn.GRU(3, 4, num_layers=2), torch.zeros(1, 2, 3), torch.zeros(1), zero_prefix=False
        )


def test_causal_conv_at_some_positions_equals_the_dense_convolution():
    conv = CausalConv1d(3, 4, kernel_size=3)
    gen = torch.Generator().manual_seed(0)
    where = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    x = torch.randn(2, 5, 3, generator=gen) * where.unsqueeze(-1)  # zero off `where`
    torch.testing.assert_close(conv.at(x[where], where), conv(x)[where])


def test_contrastive_loss_with_no_padding_equals_the_direct_form():
    contrast = ContrastiveDiscriminator(embed_dim=4, latent_dim=3, hidden_dim=5)
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(3, 5, dtype=torch.bool)
    codes = LatentCodes(
        torch.randn(3, 5, 3, generator=gen), mask, torch.randn(3, 5, 4, generator=gen)
    )
    torch.testing.assert_close(contrast.loss(codes)["loss"], direct_contrast(contrast, codes))
    assert AVBAdversary(embed_dim=4, latent_dim=3).loss(codes)["loss"].ndim == 0


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_loss_chunk_validation_names_field_and_value(value):
    with pytest.raises((ValueError, TypeError), match="loss_chunk"):
        ACVAETrainingConfig(loss_chunk=value)
