"""Negative samplers, real sequences, and discriminator pre-training (incl. the ML-100K check)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from conftest import require_data
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import leave_one_out
from recgym.errors import RecGymError
from rewards import (
    ContinuationSampler,
    EnergyConfig,
    EnergyDiscriminator,
    NegativeSampler,
    PolicySampler,
    PretrainConfig,
    PretrainResult,
    ReplaceLastSampler,
    RewardModel,
    pretrain_discriminator,
    real_sequences,
)


# ---------------------------------------------------------------------- ReplaceLastSampler
@settings(max_examples=30, deadline=None)
@given(
    n_items=st.integers(2, 30),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["uniform", "popularity"]),
)
def test_replace_last_changes_only_the_newest_item_to_another_valid_item(n_items, seed, mode):
    gen = torch.Generator().manual_seed(seed)
    real = torch.randint(0, n_items + 1, (64, 5), generator=gen)
    real[:, -1] = torch.randint(1, n_items + 1, (64,), generator=gen)
    counts = None
    if mode == "popularity":
        counts = np.random.default_rng(seed).integers(0, 4, n_items + 1)
        counts[1:3] = [1, 2]  # at least two positive items
    sampler = ReplaceLastSampler(n_items, mode, counts)
    fake = sampler.sample(real, gen)
    assert isinstance(sampler, NegativeSampler)
    assert fake.shape == real.shape and fake.dtype == torch.int64
    assert torch.equal(fake[:, :-1], real[:, :-1])
    assert (fake[:, -1] != real[:, -1]).all()
    assert ((fake[:, -1] >= 1) & (fake[:, -1] <= n_items)).all()
    if counts is not None:
        assert (torch.as_tensor(counts)[fake[:, -1]] > 0).all()  # zero-count items never drawn


def test_replace_last_laws_match_their_definition():
    gen = torch.Generator().manual_seed(0)
    counts = np.array([50, 0, 1, 2, 0, 7])  # padding count ignored, items 1 and 4 never drawn
    sampler = ReplaceLastSampler(5, "popularity", counts)
    real = torch.full((60_000, 3), 3)  # exclude item 3: law of {2: 1, 5: 7} / 8
    drawn = torch.bincount(sampler.sample(real, gen)[:, -1], minlength=6).numpy() / 60_000
    np.testing.assert_allclose(drawn, [0, 0, 1 / 8, 0, 0, 7 / 8], atol=0.01)
    uniform = ReplaceLastSampler(4).sample(torch.full((40_000, 2), 2), gen)[:, -1]
    freq = torch.bincount(uniform, minlength=5).numpy() / 40_000
    np.testing.assert_allclose(freq, [0, 1 / 3, 0, 1 / 3, 1 / 3], atol=0.01)
    empty = ReplaceLastSampler(4).sample(torch.zeros((2000, 2), dtype=torch.int64), gen)
    assert (empty[:, :-1] == 0).all() and set(empty[:, -1].tolist()) == {1, 2, 3, 4}


def test_replace_last_is_reproducible_with_a_generator():
    real = torch.randint(1, 10, (32, 4), generator=torch.Generator().manual_seed(1))
    sampler = ReplaceLastSampler(9)
    a = sampler.sample(real, torch.Generator().manual_seed(5))
    b = sampler.sample(real, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1,), "n_items must be an int >= 2"),
        ((5, "zipf"), "mode must be"),
        ((5, "popularity"), "needs counts"),
        ((5, "popularity", np.ones(5, dtype=int)), r"counts must have shape \(6,\)"),
        ((5, "popularity", np.array([0, -1, 2, 2, 2, 2])), "non-negative"),
        ((5, "popularity", np.array([9, 0, 0, 3, 0, 0])), "at least two items"),
        ((5, "uniform", np.ones(6, dtype=int)), "only used with mode='popularity'"),
    ],
)
def test_replace_last_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ReplaceLastSampler(*args)


def test_sampler_input_errors():
    sampler = ReplaceLastSampler(5)
    gen = torch.Generator()
    with pytest.raises(ValueError, match=r"\(B, L\) int64"):
        sampler.sample(torch.ones(3, dtype=torch.int64), gen)
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 5\]"):
        sampler.sample(torch.tensor([[1, 6]]), gen)


# ---------------------------------------------------------------------- Policy / Continuation
def test_policy_sampler_replaces_the_newest_item_with_the_policys_choice():
    seen = []

    def policy(prefix):
        seen.append(prefix.clone())
        return prefix[:, -1] + 1  # "the next id after the previous item"

    real = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    fake = PolicySampler(policy).sample(real, torch.Generator())
    assert torch.equal(seen[0], torch.tensor([[0, 0, 1, 2], [0, 4, 5, 6]]))
    assert torch.equal(fake, torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]))
    with pytest.raises(ValueError, match=r"policy_fn must return an int64 tensor of shape \(2,\)"):
        PolicySampler(lambda p: p[:, -1:]).sample(real, torch.Generator())
    with pytest.raises(ValueError, match="ids are >= 1"):
        PolicySampler(lambda p: torch.zeros(2, dtype=torch.int64)).sample(real, torch.Generator())


def test_continuation_sampler_keeps_the_prefix_and_appends_generated_items():
    calls = []

    def generate(prefix, n_steps, generator):
        calls.append((prefix.clone(), n_steps))
        return torch.randint(8, 10, (prefix.shape[0], n_steps), generator=generator)

    real = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    fake = ContinuationSampler(generate, 2).sample(real, torch.Generator().manual_seed(0))
    assert torch.equal(calls[0][0], torch.tensor([[0, 0, 0, 1, 2], [0, 0, 1, 2, 3]]))
    assert calls[0][1] == 2
    assert torch.equal(fake[:, :3], real[:, :3]) and (fake[:, 3:] >= 8).all()
    with pytest.raises(ValueError, match="exceeds the sequence length"):
        ContinuationSampler(generate, 6).sample(real, torch.Generator())
    with pytest.raises(ValueError, match="n_steps must be an int >= 1"):
        ContinuationSampler(generate, 0)
    bad = ContinuationSampler(lambda p, k, g: torch.ones(2, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        bad.sample(real, torch.Generator())


# ---------------------------------------------------------------------- real_sequences
def test_real_sequences_are_every_training_prefix(tiny_split):
    # tiny sequences: [1,2] [3,4,5] [2,4,6,1] [7,1,3,5,2] [6,5,4,3,2,1]; leave-one-out keeps
    # users with >= 3 items' last two items out of train.
    real = real_sequences(tiny_split, 3)
    expected = [
        [0, 1, 2],  # user 0 (2 items, all train)
        [0, 2, 4],  # user 2's train segment is [2, 4]; user 1's [3] is too short
        [0, 7, 1],
        [7, 1, 3],
        [0, 6, 5],
        [6, 5, 4],
        [5, 4, 3],
    ]
    assert real.dtype == torch.int64 and real.tolist() == expected
    assert real_sequences(tiny_split, 3, min_len=3).shape == (3, 3)
    test = real_sequences(tiny_split, 4, stage="test")
    assert test.tolist() == [[0, 3, 4, 5], [2, 4, 6, 1], [1, 3, 5, 2], [4, 3, 2, 1]]


def test_real_sequences_errors(tiny_split):
    with pytest.raises(ValueError, match="stage must be one of"):
        real_sequences(tiny_split, 3, stage="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_len must be an int >= 1"):
        real_sequences(tiny_split, 3, min_len=0)
    with pytest.raises(TypeError, match="Split"):
        real_sequences(tiny_split.dataset, 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- pre-training
def synthetic_real(n: int, n_items: int, seed: int) -> torch.Tensor:
    """Sequences that walk +1 through the catalogue: real next items are predictable."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(1, n_items + 1, (n, 1), generator=gen)
    return (start + torch.arange(6)) % n_items + 1


def small_energy(n_items: int) -> EnergyDiscriminator:
    config = EnergyConfig(encoder="cnn", dim=16, max_len=6, dropout=0.0)
    return EnergyDiscriminator(config, n_items=n_items, seed=0)


def test_pretraining_improves_validation_auc_and_restores_the_best_weights():
    n_items = 40
    real = synthetic_real(2000, n_items, seed=0)
    model = small_energy(n_items)
    config = PretrainConfig(epochs=4, batch_size=64, lr=1e-2, valid_fraction=0.2, patience=2)
    result = pretrain_discriminator(model, real, ReplaceLastSampler(n_items), config)
    assert isinstance(result, PretrainResult)
    history = result.history
    assert list(history.columns) == [
        "epoch", "train_loss", "valid_loss", "valid_auc", "valid_accuracy", "seconds"
    ]  # fmt: skip
    assert result.best_auc == history["valid_auc"].max() and result.best_auc > 0.95
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert result.best_epoch == int(history.loc[history["valid_auc"].idxmax(), "epoch"])
    # The restored weights are the best epoch's: re-scoring the validation pairs (the first
    # 20 % of a seeded permutation, negatives from generator seed + 1) gives the best AUC.
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(config.seed))
    valid = real[order[: round(0.2 * len(real))]]
    fake = ReplaceLastSampler(n_items).sample(valid, torch.Generator().manual_seed(config.seed + 1))
    assert model.evaluate(valid, fake)["disc/auc"] == pytest.approx(result.best_auc, abs=1e-9)
    assert small_energy(n_items).evaluate(valid, fake)["disc/auc"] < 0.75  # untrained


def test_pretraining_is_seeded_and_leaves_the_global_rng_alone():
    real = synthetic_real(300, 20, seed=1)
    config = PretrainConfig(epochs=1, batch_size=32, seed=7)
    state = torch.get_rng_state()
    a = pretrain_discriminator(small_energy(20), real, ReplaceLastSampler(20), config)
    assert torch.equal(torch.get_rng_state(), state)
    b = pretrain_discriminator(small_energy(20), real, ReplaceLastSampler(20), config)
    assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))


def test_max_steps_caps_each_epoch_to_that_many_updates():
    real = synthetic_real(300, 20, seed=1)
    calls = []

    class Counting(EnergyDiscriminator):
        def loss(self, real, fake):
            if self.training:  # not the validation scoring
                calls.append(len(real))
            return super().loss(real, fake)

    config = PretrainConfig(epochs=2, batch_size=32, max_steps=3, patience=5)
    pretrain_discriminator(Counting(EnergyConfig(dim=8), n_items=20, seed=0), real,
                           ReplaceLastSampler(20), config)  # fmt: skip
    assert calls == [32] * 6  # 2 epochs x 3 updates
    calls.clear()
    uncapped = dataclasses.replace(config, max_steps=None, epochs=1)
    pretrain_discriminator(Counting(EnergyConfig(dim=8), n_items=20, seed=0), real,
                           ReplaceLastSampler(20), uncapped)  # fmt: skip
    assert sum(calls) == 270  # the whole training part: 300 minus 10 % held out
    with pytest.raises(ValueError, match="max_steps must be an int >= 1; got 0"):
        PretrainConfig(max_steps=0)


def test_pretraining_errors():
    real = synthetic_real(10, 20, seed=0)
    with pytest.raises(ValueError, match="valid_fraction must be in"):
        PretrainConfig(valid_fraction=0.0)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        PretrainConfig(epochs=0)
    with pytest.raises(TypeError, match="RewardModel"):
        pretrain_discriminator(object(), real, ReplaceLastSampler(20))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sample"):
        pretrain_discriminator(small_energy(20), real, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 real sequences"):
        pretrain_discriminator(small_energy(20), real[:1], ReplaceLastSampler(20))

    class Exploding(EnergyDiscriminator):
        def loss(self, real, fake):
            return super().loss(real, fake) * float("nan")

    model = Exploding(EnergyConfig(dim=8), n_items=20, seed=0)
    with pytest.raises(RecGymError, match="non-finite"):
        pretrain_discriminator(model, real, ReplaceLastSampler(20), PretrainConfig(epochs=1))


# ---------------------------------------------------------------------- the quality check
def _ml100k_models(split) -> dict[str, tuple[RewardModel, int, PretrainConfig]]:
    """Each model with the number of real sequences it trains on and its settings."""
    n_items = split.dataset.n_items
    energy = EnergyDiscriminator(
        EnergyConfig(encoder="cnn", dim=32, max_len=50, margin=3.0), n_items=n_items, seed=0
    )
    models = {
        "energy_cnn": (energy, 60_000, PretrainConfig(epochs=2, batch_size=64, lr=1e-2)),
    }
    try:
        from rewards import MultiFactorConfig, MultiFactorDiscriminator
    except ImportError:  # pragma: no cover - the MFGAN module ships with the package
        return models
    mfgan = MultiFactorDiscriminator(
        MultiFactorConfig(dim=32, max_len=50, dropout=0.1),
        split.factors(popularity_bins=10),
        seed=0,
    )
    models["mfgan"] = (mfgan, 20_000, PretrainConfig(epochs=1, batch_size=256, lr=3e-3))
    return models


@pytest.mark.realdata
def test_discriminators_separate_real_ml100k_sequences_from_corrupted_ones(capsys):
    from recgym.datasets import load_movielens_100k

    root = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    split = leave_one_out(load_movielens_100k(root / "movielens-100k"))
    real = real_sequences(split, 50)  # every training prefix, L = 50
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    sampler = ReplaceLastSampler(split.dataset.n_items)  # uniform: never the real item
    for name, (model, n, config) in _ml100k_models(split).items():
        start = time.perf_counter()
        result = pretrain_discriminator(model, real[order[:n]], sampler, config)
        seconds = time.perf_counter() - start
        with capsys.disabled():
            print(f"\n{name}: valid AUC {result.best_auc:.3f} in {seconds:.1f} s")
        assert result.best_auc >= 0.8, (name, result.history)
