"""ACVAE: causality, padding, training steps and ablations, determinism, persistence, metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import require_data

import recgym
from agents.baselines.acvae.analysis import latent_correlation, mean_abs_correlation
from agents.baselines.acvae.model import ACVAEConfig, ACVAEPolicy, CausalConv1d, reconstruction_loss
from agents.baselines.acvae.training import (
    ABLATIONS,
    ACVAETrainer,
    ACVAETrainingConfig,
    ablation_configs,
    drop_padding_columns,
)
from agents.sequences import training_windows
from recgym import leave_one_out

TINY = ACVAEConfig(max_len=6, embed_dim=8, hidden_dim=6, latent_dim=4, kernel_size=3)
SMALL = ACVAEConfig(max_len=10, embed_dim=16, hidden_dim=16, latent_dim=8)
FAST = ACVAETrainingConfig(epochs=2, batch_size=32, eval_batch_size=256)


def tiny_model(**changes) -> ACVAEPolicy:
    return ACVAEPolicy(dataclasses.replace(TINY, **changes), n_items=7).eval()


def one_batch(split, size: int = 24):
    inputs, targets = training_windows(split, SMALL.max_len)
    return inputs[:size], targets[:size]


# --------------------------------------------------------------------------- shapes, padding
def test_shapes_and_padding_are_masked():
    model = tiny_model()
    history = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 5, 6], [1, 2, 3, 4, 5, 6]])
    logits = model.all_logits(history)
    assert logits.shape == (3, 6, 8)
    assert model.score(history, torch.zeros(3, dtype=torch.long)).shape == (3, 8)
    codes = model.latent(history)
    assert codes.z.shape == (3, 6, 4) and codes.inputs.shape == (3, 6, 8)
    assert torch.all(codes.z[history == 0] == 0) and torch.all(logits[history == 0] == 0)
    assert torch.all(torch.isinf(model.masked_logits(history)[:, 0]))
    actions = model.act(history, torch.Generator().manual_seed(0))
    assert actions.shape == (3,) and bool((actions >= 1).all())
    assert torch.isfinite(model.log_prob(history, actions)).all()
    # Extra left padding changes nothing (the encoder runs on the real items only).
    short = torch.tensor([[3, 4], [5, 6]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 4], [0, 0, 0, 0, 5, 6]])
    torch.testing.assert_close(model(short), model(padded))


def test_decoding_only_target_positions_equals_full_decoding():
    model = tiny_model()
    history = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 5, 6]])
    targets = torch.tensor([[0, 0, 2, 3, 4, 5], [0, 0, 0, 0, 6, 0]])
    codes, where = model.latent(history), targets > 0
    torch.testing.assert_close(model.decode(codes, where), model.decode(codes)[where])
    torch.testing.assert_close(
        reconstruction_loss(model.decode(codes, where), targets[where]),
        reconstruction_loss(model.decode(codes), targets),
    )
    with pytest.raises(ValueError, match="targets of shape"):
        reconstruction_loss(model.decode(codes, where), targets)


def test_drop_padding_columns_keeps_every_real_position():
    inputs = torch.tensor([[0, 0, 0, 1, 2], [0, 0, 3, 4, 5]])
    targets = torch.tensor([[0, 0, 0, 2, 6], [0, 0, 4, 5, 6]])
    short_inputs, short_targets = drop_padding_columns(inputs, targets)
    assert short_inputs.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert short_targets.tolist() == [[0, 2, 6], [4, 5, 6]]
    model = tiny_model(max_len=5)
    torch.testing.assert_close(model.latent(short_inputs).z, model.latent(inputs).z[:, 2:])
    full = torch.tensor([[1, 2], [3, 4]])
    assert drop_padding_columns(full, full)[0].shape == (2, 2)


def test_right_padding_and_perturbations_are_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="left-padded"):
        model.latent(torch.tensor([[1, 2, 0]]))
    with pytest.raises(ValueError, match="untied"):
        model.item_table(torch.zeros(8, 9))


# --------------------------------------------------------------------------- causality
def _changed_after(history: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    other = history.clone()
    shift = torch.randint(1, 7, other[:, t + 1 :].shape, generator=generator)
    other[:, t + 1 :] = (other[:, t + 1 :] + shift - 1) % 7 + 1  # another of the 7 real items
    return other


def test_causal_conv_never_sees_the_future():
    conv = CausalConv1d(3, 4, kernel_size=3)
    x = torch.randn(2, 6, 3)
    for t in range(5):
        y = x.clone()
        y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :])
        torch.testing.assert_close(conv(x)[:, : t + 1], conv(y)[:, : t + 1])


@pytest.mark.parametrize("cnn", [True, False])
@pytest.mark.parametrize("avb", [True, False])
def test_no_label_leakage(cnn, avb):
    model = tiny_model(cnn=cnn, avb=avb)
    gen = torch.Generator().manual_seed(0)
    history = torch.randint(1, 8, (4, 6), generator=gen)
    history[0, :2] = 0  # a left-padded row too
    for t in range(5):
        other = _changed_after(history, t, gen)
        other[0, :2] = 0
        assert bool((other[1:, t + 1 :] != history[1:, t + 1 :]).all())
        torch.testing.assert_close(
            model.encoder_states(history)[:, : t + 1], model.encoder_states(other)[:, : t + 1]
        )
        torch.testing.assert_close(
            model.all_logits(history)[:, : t + 1], model.all_logits(other)[:, : t + 1]
        )
        noisy = [  # the sampled path too, with the same noise draws
            model.latent(h, sample=True, generator=torch.Generator().manual_seed(1)).z
            for h in (history, other)
        ]
        torch.testing.assert_close(noisy[0][:, : t + 1], noisy[1][:, : t + 1])


# --------------------------------------------------------------------------- training
def test_reconstruction_loss_falls(synthetic):
    _, split = synthetic
    inputs, targets = one_batch(split)
    model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items)
    trainer = ACVAETrainer(model, split, ACVAETrainingConfig(lr=3e-3))
    with torch.no_grad():
        before = reconstruction_loss(model.eval().decode(model.latent(inputs)), targets)
    for _ in range(15):
        trainer.step(inputs, targets)
    with torch.no_grad():
        after = reconstruction_loss(model.eval().decode(model.latent(inputs)), targets)
    assert float(after) < float(before) - 0.1


def test_discriminators_learn(synthetic):
    _, split = synthetic
    inputs, targets = one_batch(split)
    model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items)
    config = ACVAETrainingConfig(adversary_lr=3e-3, contrast_lr=3e-3)
    trainer = ACVAETrainer(model, split, config)
    rows = [trainer.step(inputs, targets) for _ in range(40)]
    assert rows[-1]["adversary/loss"] < rows[0]["adversary/loss"] - 0.5
    assert rows[-1]["adversary/accuracy"] > 0.6
    assert rows[-1]["acvae/contrast"] < rows[0]["acvae/contrast"]
    assert rows[-1]["contrast/accuracy"] > 0.55


@pytest.mark.parametrize("name", ABLATIONS)
def test_each_ablation_trains(synthetic, name):
    _, split = synthetic
    model_config, training_config = ablation_configs(name, SMALL, FAST)
    model = ACVAEPolicy(model_config, n_items=split.dataset.n_items)
    trainer = ACVAETrainer(model, split, training_config)
    result = trainer.fit()
    history = result.history
    assert list(history["epoch"]) == [1, 2] and result.best_epoch in (1, 2)
    assert history["acvae/recon"].notna().all() and history["eval/NDCG@10"].notna().all()
    assert (trainer.adversary is None) == (name == "no_avb")
    assert (trainer.contrast is None) == (name == "no_contrastive")
    assert history["adversary/loss"].isna().all() == (name == "no_avb")
    assert history["acvae/contrast"].isna().all() == (name == "no_contrastive")
    assert model.config.cnn == (name != "no_cnn")


def test_same_seed_same_weights_and_losses(synthetic):
    _, split = synthetic
    config = dataclasses.replace(FAST, epochs=1)
    runs = []
    for _ in range(2):
        model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items, seed=3)
        runs.append((model, ACVAETrainer(model, split, config).fit().history))
    (a, ha), (b, hb) = runs
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=0)
    losses = ["acvae/loss", "acvae/recon", "adversary/loss", "acvae/contrast"]
    assert ha[losses].equals(hb[losses])


def test_alpha_annealing():
    config = ACVAETrainingConfig(alpha=0.2, anneal_steps=10)
    assert config.alpha_at(0) == 0.0 and config.alpha_at(5) == pytest.approx(0.1)
    assert config.alpha_at(50) == pytest.approx(0.2)
    assert ACVAETrainingConfig(alpha=0.2).alpha_at(0) == 0.2


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("avb", [True, False])
def test_save_load_round_trip(tmp_path, avb):
    model = tiny_model(avb=avb)
    path = model.save(tmp_path / "acvae.pt")
    loaded = ACVAEPolicy.load(path)
    assert loaded.config == model.config
    history = torch.tensor([[0, 1, 2, 3, 4, 5]])
    user = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(loaded.score(history, user), model.score(history, user))


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ACVAEConfig(latent_dim=0), ValueError, r"latent_dim.*got 0"),
        (lambda: ACVAEConfig(dropout=1.0), ValueError, r"dropout.*got 1\.0"),
        (lambda: ACVAEConfig(avb="yes"), TypeError, r"avb.*'yes'"),
        (lambda: ACVAETrainingConfig(lr=-1.0), ValueError, r"lr .*> 0; got -1\.0"),
        (lambda: ACVAETrainingConfig(alpha=math.nan), ValueError, r"alpha.*got nan"),
        (lambda: ACVAETrainingConfig(batch_size=1), ValueError, r"batch_size.*>= 2; got 1"),
        (lambda: ACVAETrainingConfig(contrastive=1), TypeError, r"contrastive.*got 1"),
        (lambda: ablation_configs("no_gru"), ValueError, r"ablation.*'no_gru'"),
    ],
)
def test_config_validation_names_field_and_value(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_trainer_rejects_a_mismatched_model(tiny_split):
    with pytest.raises(ValueError, match="n_items=9"):
        ACVAETrainer(ACVAEPolicy(TINY, n_items=9), tiny_split)


# --------------------------------------------------------------------------- metrics
def test_recgym_evaluate_runs(tiny_split):
    frame = recgym.evaluate(
        tiny_model(), tiny_split, "test", protocols=("full", "uniform-100"), ks=(10,)
    )
    assert set(frame["protocol"]) == {"full", "uniform-100"}
    assert frame["value"].between(0, 1).all()


def test_latent_correlation_is_in_range(synthetic):
    _, split = synthetic
    model = ACVAEPolicy(SMALL, n_items=split.dataset.n_items)
    for between in ("dimensions", "users"):
        value = latent_correlation(model, split, between=between)
        assert math.isfinite(value) and 0.0 <= value <= 1.0
    with pytest.raises(ValueError, match="between"):
        latent_correlation(model, split, between="items")


def test_mean_abs_correlation_extremes():
    x = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    assert mean_abs_correlation(torch.cat([x, -2 * x, 3 * x + 1], dim=1)) == pytest.approx(1.0)
    independent = torch.randn(20000, 4, generator=torch.Generator().manual_seed(1))
    assert mean_abs_correlation(independent) < 0.03
    constant = torch.cat([x, torch.ones(500, 1)], dim=1)
    assert mean_abs_correlation(constant) == 0.0


# --------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.slow
def test_acvae_beats_popularity_on_movielens_100k():
    from recgym.datasets.movielens import load_movielens_100k

    data_dir = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    split = leave_one_out(load_movielens_100k(data_dir / "movielens-100k"))
    model = ACVAEPolicy(ACVAEConfig(max_len=50), n_items=split.dataset.n_items)
    config = ACVAETrainingConfig(epochs=6, eval_every=2, patience=3)  # 90 s idle, ~3 min loaded
    ACVAETrainer(model, split, config).fit()
    full = ("full",)
    values = recgym.evaluate(model, split, "test", protocols=full, ks=(10,))
    popularity = recgym.evaluate(
        recgym.PopularityRecommender.fit(split), split, "test", protocols=full, ks=(10,)
    )
    ndcg = values.set_index(["metric", "k"])["value"][("NDCG", 10)]
    assert ndcg > popularity.set_index(["metric", "k"])["value"][("NDCG", 10)]
