"""MFGAN's official generator step: discriminator-weighted MLE, and its controls."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agents.mle import MLEConfig, MLETrainer, sequence_loss
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.sequences import training_windows
from agents.weighted_mle import (
    WeightedMLEConfig,
    WeightedMLEGenerator,
    discriminator_probability,
    greedy_last_item_fakes,
)
from rewards import EnergyConfig, EnergyDiscriminator


class LastItemD(nn.Module):
    """A sigmoid discriminator whose logit is a fixed value per newest item."""

    reward_form = "d"

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.table = nn.Parameter(torch.linspace(-2.0, 2.0, n_items + 1))

    def forward(self, history):
        return self.table[history[:, -1]]


def policy(n_items: int, seed: int = 0) -> SASRecPolicy:
    config = SASRecConfig(max_len=10, dim=16, n_blocks=1, dropout=0.0)
    return SASRecPolicy(config, n_items=n_items, seed=seed)


@pytest.fixture(scope="module")
def split(synthetic):
    return synthetic[1]


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_weight_one_is_mle_step_for_step(split, loss):
    """The "one" control runs exactly MLETrainer's epoch: same batches, negatives and updates."""
    n_items = split.dataset.n_items
    mle_policy, wmle_policy = policy(n_items), policy(n_items)
    mle = MLETrainer(
        mle_policy, split, MLEConfig(epochs=1, batch_size=64, lr=1e-3, loss=loss, seed=3,
                                     max_grad_norm=5.0),
    )  # fmt: skip
    mle.fit()
    config = WeightedMLEConfig(batch_size=64, lr=1e-3, loss=loss, weights="one", seed=3,
                               max_grad_norm=5.0)  # fmt: skip
    gen = WeightedMLEGenerator(wmle_policy, LastItemD(n_items), split, config)
    for _ in range(math.ceil(len(gen.inputs) / 64)):
        gen.step()
    for (name, a), b in zip(
        mle_policy.state_dict().items(), wmle_policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_weighted_loss_is_the_mean_of_weighted_positions(split):
    model = policy(split.dataset.n_items)
    inputs, targets = training_windows(split, 10)
    inputs, targets = inputs[:16], targets[:16]
    w = torch.rand(16, generator=torch.Generator().manual_seed(0))
    logits = model.encode(inputs) @ model.item_table().T
    logits[..., 0] = float("-inf")
    per_position = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    valid = targets.flatten() > 0
    expected = (per_position * w.repeat_interleave(10))[valid].mean()
    torch.testing.assert_close(sequence_loss(model, inputs, targets, weights=w), expected)
    torch.testing.assert_close(
        sequence_loss(model, inputs, targets, weights=torch.ones(16)),
        sequence_loss(model, inputs, targets),
    )
    with pytest.raises(ValueError, match=r"weights must have shape \(16,\); got \(15,\)"):
        sequence_loss(model, inputs, targets, weights=w[:15])


def test_fakes_replace_the_last_item_by_the_greedy_unseen_item(split):
    model = policy(split.dataset.n_items)
    inputs = training_windows(split, 10)[0][:32]
    fakes = greedy_last_item_fakes(model, inputs)
    assert torch.equal(fakes[:, :-1], inputs[:, 1:])
    seen = (fakes[:, -1:] == inputs).any(1)
    assert not seen.any() and (fakes[:, -1] > 0).all()


@pytest.mark.parametrize("weights", ["discriminator", "batch_mean", "permuted"])
def test_the_controls_keep_the_weights_and_break_only_their_link(split, weights):
    n_items = split.dataset.n_items
    d = LastItemD(n_items)
    config = WeightedMLEConfig(batch_size=64, weights=weights)
    gen = WeightedMLEGenerator(policy(n_items), d, split, config)
    inputs = gen.inputs[:64]
    published = discriminator_probability(d, greedy_last_item_fakes(gen.policy, inputs))
    assert published.std() > 0  # otherwise the controls could not differ
    w = gen.weights(inputs)
    if weights == "discriminator":
        assert torch.equal(w, published)
    elif weights == "batch_mean":
        torch.testing.assert_close(w, published.mean().expand(64))
    else:  # the same values, not in the same rows
        assert torch.equal(w.sort().values, published.sort().values)
        assert not torch.equal(w, published)


def test_discriminator_weighting_lowers_the_training_loss(split):
    gen = WeightedMLEGenerator(
        policy(split.dataset.n_items), LastItemD(split.dataset.n_items), split,
        WeightedMLEConfig(batch_size=64, lr=3e-3),
    )  # fmt: skip
    inputs, targets = gen.inputs, gen.targets
    before = float(sequence_loss(gen.policy, inputs, targets).detach())
    for _ in range(60):
        gen.step()
    assert float(sequence_loss(gen.policy, inputs, targets).detach()) < before - 0.1


def test_resume_from_state_continues_exactly(split):
    n_items = split.dataset.n_items

    def fresh():
        config = WeightedMLEConfig(batch_size=64, weights="permuted", loss="bce")
        return WeightedMLEGenerator(policy(n_items), LastItemD(n_items), split, config)

    straight, first = fresh(), fresh()
    for _ in range(7):
        straight.step()
    for _ in range(4):
        first.step()
    second = fresh()
    second.policy.load_state_dict(first.policy.state_dict())
    second.optimizer.load_state_dict(first.optimizer.state_dict())
    for name, g in first.generators.items():
        second.generators[name].set_state(g.get_state())
    second.set_state(first.state())
    for _ in range(3):
        second.step()
    for a, b in zip(straight.policy.parameters(), second.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("weights", "uniform", ValueError, "WeightedMLEConfig.weights must be one of"),
        ("loss", "mse", ValueError, "WeightedMLEConfig.loss must be one of"),
        ("batch_size", 0, ValueError, "batch_size"),
        ("lr", -1.0, ValueError, "lr"),
        ("exclude_seen", 1, TypeError, "exclude_seen must be a bool; got 1"),
    ],
)
def test_bad_configs_name_the_field(field, value, error, match):
    with pytest.raises(error, match=match):
        WeightedMLEConfig(**{field: value})


def test_an_energy_model_is_refused(split):
    n_items = split.dataset.n_items
    energy = EnergyDiscriminator(EnergyConfig(dim=8, max_len=10), n_items=n_items, seed=0)
    gen = WeightedMLEGenerator(policy(n_items), energy, split)
    with pytest.raises(ValueError, match="needs a sigmoid discriminator.*'neg_energy'"):
        gen.step()
    with pytest.raises(ValueError, match="n_items"):
        WeightedMLEGenerator(policy(n_items), LastItemD(n_items + 1), split)
