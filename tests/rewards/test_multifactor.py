"""MFGAN's multi-factor discriminators: Eq. 9–10 combination, attention, padding, training, I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import RecGymError
from recgym._torch_io import atomic_torch_save
from recgym.factors import ItemFactors, categorical_factor
from rewards import multifactor
from rewards.attention import SelfAttentionEncoder
from rewards.base import auc
from rewards.multifactor import (
    MultiFactorConfig,
    MultiFactorDiscriminator,
    combine,
    combine_logits,
)

SMALL = {"dim": 16, "n_heads": 2, "dropout": 0.0, "max_len": 8}
HISTORY = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 1], [0, 0, 0, 0, 2]])


def make_model(table: ItemFactors, seed: int = 0, **overrides) -> MultiFactorDiscriminator:
    config = MultiFactorConfig(**{**SMALL, **overrides})
    return MultiFactorDiscriminator(config, table, seed=seed).eval()


@pytest.fixture
def model(tiny_dataset) -> MultiFactorDiscriminator:
    return make_model(tiny_dataset.factors)


# ---------------------------------------------------------------------- Eq. 9–10
scores_strategy = st.lists(
    st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), min_size=1, max_size=6
).map(lambda rows: torch.tensor(rows, dtype=torch.float64))


@settings(max_examples=50, deadline=None)
@given(scores=scores_strategy)
def test_combination_limits(scores):
    assert torch.allclose(combine(scores, 0.0), scores.mean(-1), atol=1e-12)
    assert torch.allclose(combine(scores, -1e4), scores.amin(-1), atol=1e-4)
    assert torch.allclose(combine(scores, 1e4), scores.amax(-1), atol=1e-4)
    assert torch.equal(combine(scores, "min"), scores.amin(-1))
    assert torch.equal(combine(scores, "max"), scores.amax(-1))
    assert torch.equal(combine(scores, "mean"), scores.mean(-1))
    mid = combine(scores, 3.0)  # a convex combination lies between the extremes
    assert bool((mid >= scores.amin(-1) - 1e-12).all() and (mid <= scores.amax(-1) + 1e-12).all())


@pytest.mark.parametrize("combination", ["mean", "min", "max", 0.0, -5.0, 7.5])
def test_forward_is_the_logit_of_the_combined_score(model, combination):
    logits = model.factor_logits(HISTORY)
    expected = combine(torch.sigmoid(logits), combination)
    got = torch.sigmoid(combine_logits(logits, combination))
    assert torch.allclose(got, expected, atol=1e-6)
    model = make_model(model.factors, combination=combination)
    assert torch.allclose(
        model.reward(HISTORY),
        combine(torch.sigmoid(model.factor_logits(HISTORY)), combination),
        atol=1e-6,
    )


def test_combined_logit_stays_finite_for_saturated_scores():
    logits = torch.tensor([[40.0, 60.0], [-80.0, -50.0]])
    out = combine_logits(logits, "mean")
    assert torch.isfinite(out).all() and out[0] > 30 and out[1] < -40


@pytest.mark.parametrize("bad", ["median", float("inf"), float("nan"), True, None])
def test_bad_combination_raises(bad):
    with pytest.raises((ValueError, TypeError), match="combination"):
        MultiFactorConfig(combination=bad)


# ---------------------------------------------------------------------- attention
@pytest.mark.parametrize("causal", [False, True])
def test_bidirectional_block_sees_later_positions_and_causal_does_not(causal, generator):
    encoder = SelfAttentionEncoder(dim=16, n_heads=2, dropout=0.0, max_len=6, causal=causal)
    encoder.reset_parameters(generator)
    emb = torch.randn(2, 6, 16, generator=generator)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    changed = emb.clone()
    changed[:, -1] += 1.0  # change the LATEST item only
    with torch.no_grad():
        first_before, first_after = encoder(emb, pad)[:, 2], encoder(changed, pad)[:, 2]
    moved = (first_before - first_after).abs().max()
    assert (moved > 1e-3) if not causal else (moved < 1e-6)


def test_last_query_path_equals_full_attention(generator):
    encoder = SelfAttentionEncoder(n_groups=3, dim=16, n_heads=4, dropout=0.0, max_len=9)
    encoder.reset_parameters(generator)
    emb = torch.randn(3, 4, 7, 16, generator=generator)
    pad = torch.zeros(4, 7, dtype=torch.bool)
    pad[0, :3] = pad[3, :] = True  # incl. an all-padding row
    with torch.no_grad():
        full, last = encoder(emb, pad)[:, :, -1], encoder(emb, pad, last_only=True)
        one = encoder(emb[1:2], pad, last_only=True, groups=slice(1, 2))
    assert torch.isfinite(full).all()
    assert torch.allclose(full, last, atol=1e-5)
    assert torch.allclose(one[0], last[1], atol=1e-6)


# ---------------------------------------------------------------------- padding
def test_more_left_padding_or_a_longer_window_changes_nothing(model):
    short = model.factor_logits(HISTORY)
    padded = torch.nn.functional.pad(HISTORY, (3, 0))  # L = 8 = max_len
    longer = torch.cat([torch.full((3, 12), 5), HISTORY], 1)  # L = 17: only newest 8 count
    assert torch.allclose(model.factor_logits(padded), short, atol=1e-6)
    windowed = model.factor_logits(longer)
    assert torch.allclose(windowed, model.factor_logits(longer[:, -8:]), atol=1e-6)


def test_a_sequence_scores_the_same_alone_and_in_a_batch(model):
    # alone: fewer positions than items, so embeddings are pooled per position;
    # in a batch: the per-item table is gathered. Both must agree.
    assert HISTORY[:1].numel() < model.n_items + 1 < HISTORY.numel()
    assert torch.allclose(
        model.factor_logits(HISTORY[:1]), model.factor_logits(HISTORY)[:1], atol=1e-6
    )


def test_blocked_cpu_inference_equals_a_single_block(model, monkeypatch, generator):
    history = torch.randint(1, 8, (9, 5), generator=generator)
    history[::2, :2] = 0
    whole = model.factor_logits(history)  # gradients on: one block
    monkeypatch.setattr(multifactor, "CPU_BLOCK_POSITIONS", 2 * 4 * 5)  # 2 rows per block
    with torch.no_grad():
        blocked = model.factor_logits(history)
        looped = model.factor_logits(history, one_pass=False)  # 8 rows per block per group
    assert torch.allclose(blocked, whole, atol=1e-6) and torch.allclose(looped, whole, atol=1e-6)


def test_padded_positions_embeddings_have_no_effect(model):
    history = torch.nn.functional.pad(HISTORY, (3, 0))  # items at distances 0-2, 0-4 and 0
    before = model.factor_logits(history)
    with torch.no_grad():
        model.encoder.position[:, 3:] += 100.0  # distances 3+: only padding in rows 0 and 2
        model.embedding[0] += 100.0  # the padding row
    after = model.factor_logits(history)
    assert torch.allclose(before[[0, 2]], after[[0, 2]], atol=1e-6)
    assert not torch.allclose(before[1], after[1], atol=1e-3)  # row 1 has items at 3 and 4


# ---------------------------------------------------------------------- shapes and variants
def test_all_factors_in_one_pass(model, tiny_dataset):
    assert model.discriminator_names == ("item_id", *tiny_dataset.factors.names)
    logits = model.factor_logits(HISTORY)
    assert logits.shape == (3, 4)
    assert torch.allclose(logits, model.factor_logits(HISTORY, one_pass=False), atol=1e-6)
    parts = model.breakdown(HISTORY)
    assert set(parts) == {f"factor/{n}" for n in model.discriminator_names}
    assert all(v.shape == (3,) and ((v > 0) & (v < 1)).all() for v in parts.values())


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"variant": "sdsf"}, ("item_id",)),
        ({"variant": "sdaf"}, ("all_factors",)),
        ({"factors": ("price",)}, ("item_id", "price")),
        ({"factors": ("genre",), "include_item_id": False}, ("genre",)),
        ({"variant": "sdaf", "factors": ("tags",), "pooling": "max"}, ("all_factors",)),
    ],
)
def test_variants(tiny_dataset, overrides, names):
    model = make_model(tiny_dataset.factors, **overrides)
    assert model.discriminator_names == names and model.n_discriminators == len(names)
    assert model.factor_logits(HISTORY).shape == (3, len(names))
    assert torch.isfinite(model.loss(HISTORY, HISTORY.flip(1)))


def test_one_block_readout_is_direction_free_but_two_blocks_are_not(tiny_dataset):
    # With ONE block the newest position already sees every item, so the causal ablation
    # only differs with n_blocks >= 2 (documented on MultiFactorConfig.causal).
    for n_blocks, same in ((1, True), (2, False)):
        a = make_model(tiny_dataset.factors, n_blocks=n_blocks)
        b = make_model(tiny_dataset.factors, n_blocks=n_blocks, causal=True)
        assert torch.allclose(a(HISTORY), b(HISTORY), atol=1e-6) == same


def test_seeded_initialisation_is_reproducible(tiny_dataset):
    a, b = make_model(tiny_dataset.factors, seed=3), make_model(tiny_dataset.factors, seed=3)
    assert torch.equal(a(HISTORY), b(HISTORY))
    assert not torch.equal(a(HISTORY), make_model(tiny_dataset.factors, seed=4)(HISTORY))


# ---------------------------------------------------------------------- training
def chain_data(n_items: int, batch_size: int, length: int, generator: torch.Generator):
    """Real: runs i, i+1, ... (mod n_items); fake: the newest item replaced at random."""
    start = torch.randint(0, n_items, (batch_size, 1), generator=generator)
    real = (start + torch.arange(length)) % n_items + 1
    shift = torch.randint(2, n_items, (batch_size,), generator=generator)
    fake = real.clone()
    fake[:, -1] = (real[:, -2] + shift - 1) % n_items + 1  # never the true successor
    return real, fake


def test_loss_falls_on_separable_data(generator):
    n_items = 12
    factors = ItemFactors(n_items=n_items).with_factor(
        categorical_factor("parity", [i % 2 for i in range(1, n_items + 1)])
    )
    model = make_model(factors, max_len=6)
    model.configure_optimizer(lr=1e-2)
    real, fake = chain_data(n_items, 256, 6, generator)
    with torch.no_grad():
        before = model.loss(real, fake).item()
    for _ in range(60):
        metrics = model.update(*chain_data(n_items, 64, 6, generator))
    with torch.no_grad():
        real, fake = chain_data(n_items, 256, 6, generator)
        after = model.loss(real, fake).item()
        separation = auc(model.reward(real), model.reward(fake))
    assert after < 0.5 * before, (before, after)
    assert separation > 0.95 and metrics["disc/accuracy"] > 0.8


# ---------------------------------------------------------------------- persistence and errors
def test_save_load_roundtrip(tmp_path, tiny_dataset):
    model = make_model(tiny_dataset.factors, variant="multi", combination=2.0)
    path = model.save(tmp_path / "mf.pt")
    loaded = MultiFactorDiscriminator.load(path)
    assert loaded.config == model.config and loaded.discriminator_names == model.discriminator_names
    assert torch.equal(loaded.eval().factor_logits(HISTORY), model.factor_logits(HISTORY))
    assert torch.equal(loaded.reward(HISTORY), model.reward(HISTORY))
    assert np.array_equal(loaded.factors["tags"].values, tiny_dataset.factors["tags"].values)


def test_mismatched_checkpoint_raises(tmp_path, tiny_dataset):
    path = make_model(tiny_dataset.factors).save(tmp_path / "mf.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["dim"] = 32  # weights of width 16 under a config of width 32
    atomic_torch_save(payload, tmp_path / "bad.pt")
    with pytest.raises(RecGymError, match="does not match"):
        MultiFactorDiscriminator.load(tmp_path / "bad.pt")
    payload["class"] = "rewards.energy.EnergyDiscriminator"
    atomic_torch_save(payload, tmp_path / "other.pt")
    expected = "holds a 'rewards.energy.EnergyDiscriminator'; expected a 'multifactor'"
    with pytest.raises(RecGymError, match=expected):
        MultiFactorDiscriminator.load(tmp_path / "other.pt")


def test_bad_histories_raise(model):
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 7\]"):
        model.factor_logits(torch.tensor([[1, 8]]))
    with pytest.raises(ValueError, match=r"item ids must lie"):
        model.reward(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="int64"):
        model.factor_logits(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="L >= 1"):
        model.factor_logits(torch.zeros(2, 0, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one sequence"):
        model.loss(torch.zeros(0, 3, dtype=torch.int64), HISTORY)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 10, "n_heads": 4}, "divisible"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_len": 0}, "max_len"),
        ({"pooling": "median"}, "pooling"),
        ({"variant": "mfgan"}, "variant"),
        ({"variant": "sdsf", "factors": ("genre",)}, "sdsf"),
        ({"factors": ("item_id",)}, "include_item_id"),
        ({"factors": (), "include_item_id": False}, "no discriminator"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiFactorConfig(**kwargs)


def test_unknown_factor_raises(tiny_dataset):
    with pytest.raises(ValueError, match=r"\['year'\] are not in the item-factor table"):
        make_model(tiny_dataset.factors, factors=("year",))
    with pytest.raises(TypeError, match="ItemFactors"):
        MultiFactorDiscriminator(MultiFactorConfig(), ["genre"])


# ---------------------------------------------------------------------- environment
def test_runs_inside_the_env_as_reward_function(tiny_split):
    env_module = pytest.importorskip("recgym.env")
    model = make_model(tiny_split.factors(popularity_bins=2))
    env = env_module.BatchedRecEnv(
        tiny_split, model, env_module.EnvConfig(max_len=6, horizon=2), batch_size=4, seed=0
    )
    obs, _ = env.reset(seed=0)
    action = torch.tensor([1, 2, 3, 4])
    _, reward, _, _, info = env.step(action)
    expected = model.reward(torch.cat([obs[:, 1:], action[:, None]], 1))
    assert torch.allclose(reward, expected, atol=1e-6)
    assert {f"reward/factor/{n}" for n in model.discriminator_names} <= set(info)
    assert "reward/factor/popularity" in info


@pytest.mark.gpu
def test_cpu_and_cuda_agree(tiny_dataset):
    model = make_model(tiny_dataset.factors)
    cuda = MultiFactorDiscriminator(model.config, tiny_dataset.factors, device="cuda")
    cuda.load_state_dict(model.state_dict())
    got = cuda.eval().factor_logits(HISTORY.cuda()).cpu()
    assert torch.allclose(got, model.factor_logits(HISTORY), atol=1e-4)
