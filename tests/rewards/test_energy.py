"""EnergyDiscriminator: padding invariance, prefix energies, per-step rewards, margin loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.errors import RecGymError
from recgym.types import SessionState, append_items
from rewards import EnergyConfig, EnergyDiscriminator, RewardModel

N_ITEMS = 12
ENCODERS = ("gru", "cnn", "transformer")


def make(encoder: str, **kw) -> EnergyDiscriminator:
    config = EnergyConfig(encoder=encoder, dim=16, n_layers=2, max_len=12, **kw)
    return EnergyDiscriminator(config, n_items=N_ITEMS, seed=0).eval()


def left_pad(rows: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(r)) + r for r in rows], dtype=torch.int64)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_each_encoder_scores_non_negative_energies(encoder):
    model = make(encoder)
    history = left_pad([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]], 8)
    energy = model(history)
    assert isinstance(model, RewardModel) and model.reward_form == "neg_energy"
    assert energy.shape == (3,) and torch.isfinite(energy).all() and (energy >= 0).all()
    assert torch.allclose(model.reward(history), -energy)


@pytest.mark.parametrize("encoder", ENCODERS)
@settings(max_examples=15, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.integers(1, N_ITEMS), min_size=0, max_size=6), min_size=1, max_size=4
    ),
    extra=st.integers(1, 5),
)
def test_padding_never_changes_the_energy(encoder, rows, extra):
    model = make(encoder)
    short, long = left_pad(rows, 6), left_pad(rows, 6 + extra)
    assert torch.allclose(model(short), model(long), atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_prefix_energies_equal_energies_of_each_prefix(encoder):
    model = make(encoder)
    history = left_pad([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12]], 5)
    prefixes = model.prefix_energies(history)
    expected = torch.stack([model(F.pad(history[:, : t + 1], (4 - t, 0))) for t in range(5)], dim=1)
    assert prefixes.shape == (3, 5)
    assert torch.allclose(prefixes, expected, atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_per_step_reward_is_the_prefix_energy_drop(encoder):
    model = make(encoder, per_step=True)
    history = left_pad([[1, 2, 3, 4, 5], [6, 7], [8]], 5)
    previous = F.pad(history[:, :-1], (1, 0))
    expected = -(model(history) - model(previous))
    assert torch.allclose(model.reward(history), expected, atol=1e-5)
    energies = model.prefix_energies(history)
    assert torch.allclose(model.reward(history), -(energies[:, -1] - energies[:, -2]), atol=1e-5)
    single = torch.tensor([[3], [4]])  # L = 1: the previous prefix is the empty history
    expected = -(model(single) - model(torch.zeros_like(single)))
    assert torch.allclose(model.reward(single), expected, atol=1e-5)


def test_per_step_rewards_telescope_over_an_episode():
    model = make("gru", per_step=True)
    length = torch.tensor([1])
    history = left_pad([[3]], 6)
    start_energy, total = model(history), torch.zeros(1)
    for item in (4, 5, 6, 7):
        state = SessionState(history, length, torch.zeros(1, dtype=torch.int64), length, length)
        total += model(state, torch.tensor([item])).reward
        history, length = append_items(history, length, torch.tensor([item]))
    assert torch.allclose(total, start_energy - model(history), atol=1e-5)


def test_reward_fn_call_appends_the_action():
    model = make("cnn")
    state = SessionState(
        history=left_pad([[1, 2], [3]], 4),
        length=torch.tensor([2, 1]),
        user=torch.tensor([0, 1]),
        step=torch.zeros(2, dtype=torch.int64),
        target=torch.zeros(2, dtype=torch.int64),
    )
    out = model(state, torch.tensor([5, 6]))
    assert torch.allclose(out.reward, -model(left_pad([[1, 2, 5], [3, 6]], 4)))
    assert out.breakdown == {}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_margin_loss_separates_real_from_fake(encoder):
    config = EnergyConfig(encoder=encoder, dim=16, max_len=6, dropout=0.0, margin=2.0)
    model = EnergyDiscriminator(config, n_items=N_ITEMS, seed=1)
    g = torch.Generator().manual_seed(0)
    real = torch.randint(1, 7, (64, 6), generator=g)  # items 1..6
    fake = torch.randint(7, N_ITEMS + 1, (64, 6), generator=g)  # items 7..12
    model.configure_optimizer(lr=1e-2)
    first = model.update(real, fake)["disc/loss"]
    for _ in range(150):
        metrics = model.update(real, fake)
    assert metrics["disc/loss"] < 0.2 * first
    with torch.no_grad():
        e_real, e_fake = model.eval()(real), model(fake)
    assert metrics["disc/auc"] == 1.0
    assert e_real.mean() < 0.2 and e_fake.min() > 0.8 * config.margin


def test_loss_accepts_windows_of_different_widths():
    model = make("gru")
    real, fake = left_pad([[1, 2, 3]], 3), left_pad([[1, 2, 4]], 7)
    expected = model(real).mean() + F.relu(1.0 - model(fake)).mean()
    assert torch.allclose(model.loss(real, fake), expected, atol=1e-6)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_save_load_gives_identical_outputs(encoder, tmp_path):
    model = make(encoder, per_step=True)
    history = left_pad([[1, 2, 3], [4, 5]], 6)
    path = model.save(tmp_path / "energy.pt")
    loaded = EnergyDiscriminator.load(path)
    assert loaded.config == model.config
    assert torch.equal(loaded.eval()(history), model(history))
    assert torch.equal(loaded.reward(history), model.reward(history))


def test_seed_makes_initialisation_reproducible_without_touching_global_rng():
    state = torch.get_rng_state()
    a = EnergyDiscriminator(EnergyConfig(dim=8), n_items=5, seed=3)
    b = EnergyDiscriminator(EnergyConfig(dim=8), n_items=5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_load_rejects_another_class(tmp_path):
    path = make("gru").save(tmp_path / "m.pt")

    class Other(EnergyDiscriminator):
        pass

    with pytest.raises(RecGymError, match="expected"):
        Other.load(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoder": "lstm"}, "encoder must be one of"),
        ({"dim": 0}, "dim must be an int >= 1"),
        ({"encoder": "transformer", "dim": 10, "n_heads": 3}, "n_heads must divide dim"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"margin": 0.0}, "margin must be a finite float > 0"),
        ({"margin": float("inf")}, "margin must be a finite float > 0"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnergyConfig(**kwargs)


def test_history_errors_are_clear():
    model = make("gru")
    with pytest.raises(ValueError, match="left-padded"):
        model.reward(torch.tensor([[1, 0, 2]]))
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 12\]"):
        model.reward(torch.tensor([[1, 13]]))
    with pytest.raises(ValueError, match="int64"):
        model.reward(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="EnergyConfig"):
        EnergyDiscriminator({"encoder": "gru"}, n_items=3)  # type: ignore[arg-type]
