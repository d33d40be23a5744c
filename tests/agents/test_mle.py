"""Training windows, minibatches and MLE training (CE and BCE) with early stopping."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import require_data
from hypothesis import given, settings
from hypothesis import strategies as st

import recgym
from agents import mle as mle_module
from agents.gru import GRUConfig, GRUPolicy
from agents.mle import MLEConfig, MLETrainer, sample_negatives, sequence_loss
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.sequences import minibatches, training_windows
from recgym import SequenceDataset, SyntheticConfig, leave_one_out, make_synthetic
from recgym._torch_io import atomic_torch_save, read_weights_only


@pytest.fixture(scope="module")
def synthetic_split():
    config = SyntheticConfig(n_users=300, n_items=80, min_seq_len=10, max_seq_len=30)
    return leave_one_out(make_synthetic(config, seed=0).dataset)


def small_sasrec(n_items: int = 80) -> SASRecPolicy:
    return SASRecPolicy(SASRecConfig(max_len=20, dim=32, n_blocks=1), n_items=n_items)


# --------------------------------------------------------------------------- windows
def _reference_windows(sequences, train_len, max_len):
    """Per-user loop: the windows training_windows must produce, newest first."""
    inputs, targets = [], []
    for seq, n in zip(sequences, train_len, strict=True):
        seq = list(seq[:n])
        end = len(seq)
        while end - 1 >= 1:  # targets at positions [max(1, end - L), end)
            lo = max(1, end - max_len)
            inp = seq[lo - 1 : end - 1]
            tgt = seq[lo:end]
            pad = [0] * (max_len - len(inp))
            inputs.append(pad + inp)
            targets.append(pad + tgt)
            end -= max_len
    return inputs, targets


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    max_len=st.integers(1, 5),
)
def test_training_windows_match_a_per_user_loop(lengths, max_len):
    rng = np.random.default_rng(sum(lengths) + max_len)
    sequences = [list(rng.integers(1, 10, size=n)) for n in lengths]
    dataset = SequenceDataset.from_sequences(sequences, n_items=9)
    split = leave_one_out(dataset)
    train_len = split.train_end - dataset.offsets[:-1]
    inputs, targets = training_windows(split, max_len)
    ref_inputs, ref_targets = _reference_windows(sequences, train_len, max_len)
    assert inputs.tolist() == ref_inputs
    assert targets.tolist() == ref_targets


def test_training_windows_never_leak_held_out_items():
    # every user's last two items (valid, test) are ids 50+ that never occur in training
    rng = np.random.default_rng(0)
    sequences = [[*rng.integers(1, 50, size=n), 50 + 2 * u, 51 + 2 * u] for u, n in
                 enumerate([1, 3, 7, 12, 20])]  # fmt: skip
    split = leave_one_out(SequenceDataset.from_sequences(sequences, n_items=60))
    inputs, targets = training_windows(split, 4)
    assert inputs.shape == targets.shape and inputs.shape[1] == 4
    assert int(inputs.max()) < 50 and int(targets.max()) < 50
    assert int((targets > 0).sum()) == sum(n - 1 for n in [1, 3, 7, 12, 20])
    assert torch.all((targets > 0) == (inputs > 0))
    _, valid_targets = training_windows(split, 4, stage="valid")
    added = sorted(v for v in valid_targets.unique().tolist() if v >= 50)
    assert added == [50, 52, 54, 56, 58]  # the valid stage adds the validation items only


def test_training_windows_options(tiny_split):
    last, _ = training_windows(tiny_split, 1, max_windows_per_user=1)
    assert len(last) == int((tiny_split.train_end - tiny_split.dataset.offsets[:-1] >= 2).sum())
    full, _ = training_windows(tiny_split, 2, stage="test")
    assert len(full) > len(training_windows(tiny_split, 2)[0])
    with pytest.raises(ValueError, match="stage"):
        training_windows(tiny_split, 2, stage="dev")
    with pytest.raises(ValueError, match="max_len"):
        training_windows(tiny_split, 0)


def test_minibatches_are_seeded_and_cover_every_row():
    x = torch.arange(10)
    y = x * 2

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return [(a.tolist(), b.tolist()) for a, b in minibatches(x, y, batch_size=3, generator=g)]

    assert epoch(1) == epoch(1) and epoch(1) != epoch(2)
    rows = sorted(v for a, _ in epoch(1) for v in a)
    assert rows == list(range(10))
    assert all(b == [2 * v for v in a] for a, b in epoch(1))
    g = torch.Generator().manual_seed(0)
    assert len(list(minibatches(x, batch_size=3, generator=g, drop_last=True))) == 3
    with pytest.raises(TypeError, match="Generator"):
        next(minibatches(x, batch_size=3))


# --------------------------------------------------------------------------- losses
def test_sample_negatives_are_uniform_and_never_the_target():
    g = torch.Generator().manual_seed(0)
    targets = torch.full((20000,), 3)
    negatives = sample_negatives(targets, 5, g)
    assert not torch.any(negatives == targets)
    counts = torch.bincount(negatives, minlength=6)[1:].float() / len(targets)
    assert torch.allclose(counts[[0, 1, 3, 4]], torch.full((4,), 0.25), atol=0.02)


def test_ce_loss_ignores_padding_targets_and_padding_class():
    policy = small_sasrec(10).eval()
    inputs = torch.tensor([[0, 1, 2, 3]])
    targets = torch.tensor([[0, 2, 3, 4]])
    loss = sequence_loss(policy, inputs, targets, loss="ce")
    logits = policy.all_logits(inputs)[0, 1:, 1:]  # positions with a target, classes 1..n
    expected = torch.nn.functional.cross_entropy(logits, targets[0, 1:] - 1)
    assert torch.allclose(loss, expected, atol=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        sequence_loss(policy, inputs, targets, loss="bce")


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("loss", ["ce", "bce"])
@pytest.mark.parametrize("kind", ["sasrec", "gru"])
def test_mle_loss_falls_and_validation_rises(synthetic_split, loss, kind):
    if kind == "sasrec":
        policy = small_sasrec()
    else:
        policy = GRUPolicy(GRUConfig(max_len=20, dim=32), n_items=80)
    config = MLEConfig(epochs=3, loss=loss, lr=3e-3, batch_size=64)
    trainer = MLETrainer(policy, synthetic_split, config)
    untrained = trainer.validate()["eval/NDCG@10"]
    result = trainer.fit()
    losses = result.history["mle/loss"].to_numpy()
    assert losses[-1] < losses[0]
    assert result.best_metrics["eval/NDCG@10"] > untrained + 0.05
    assert set(result.history.columns) >= {"mle/loss", "eval/NDCG@10", "eval/HR@10"}


def test_training_is_reproducible(synthetic_split):
    def run():
        torch.manual_seed(123)  # same initial weights; the trainer itself forks the RNG
        policy = small_sasrec()
        result = MLETrainer(policy, synthetic_split, MLEConfig(epochs=1, loss="bce")).fit()
        return result.history["mle/loss"].tolist(), policy.item_embedding.weight.detach()

    (loss_a, w_a), (loss_b, w_b) = run(), run()
    # equal up to the CPU kernels' summation order (multi-threaded reductions)
    assert np.allclose(loss_a, loss_b, rtol=1e-6) and torch.allclose(w_a, w_b, atol=1e-6)


def test_fit_leaves_the_global_rng_alone(synthetic_split):
    policy = small_sasrec()
    trainer = MLETrainer(policy, synthetic_split, MLEConfig(epochs=1))
    state = torch.random.get_rng_state()
    trainer.fit()
    assert torch.equal(state, torch.random.get_rng_state())


def test_early_stopping_restores_the_best_weights(synthetic_split, monkeypatch, tmp_path):
    scripted = iter([0.10, 0.30, 0.20, 0.25, 0.90])
    snapshots = {}

    def fake_validate(self):
        epoch = len(snapshots) + 1
        snapshots[epoch] = self.policy.item_embedding.weight.detach().clone()
        return {"eval/NDCG@10": next(scripted), "eval/HR@10": 0.5}

    monkeypatch.setattr(mle_module.MLETrainer, "validate", fake_validate)
    policy = small_sasrec()
    config = MLEConfig(epochs=5, patience=2, lr=1e-2)
    checkpoint = tmp_path / "best.pt"
    result = MLETrainer(policy, synthetic_split, config, checkpoint_path=checkpoint).fit()
    assert result.stopped_early and len(result.history) == 4
    assert result.best_epoch == 2
    assert result.best_metrics == {"eval/NDCG@10": 0.30, "eval/HR@10": 0.5}
    assert torch.equal(policy.item_embedding.weight, snapshots[2])
    assert not torch.equal(snapshots[4], snapshots[2])
    loaded = SASRecPolicy.load(checkpoint)
    assert torch.equal(loaded.item_embedding.weight, snapshots[2])


def test_evaluate_start_lets_the_starting_weights_win(synthetic_split, monkeypatch):
    scripted = iter([0.50, 0.20, 0.30])  # the starting weights are best

    def fake_validate(self):
        return {"eval/NDCG@10": next(scripted), "eval/HR@10": 0.5}

    monkeypatch.setattr(mle_module.MLETrainer, "validate", fake_validate)
    policy = small_sasrec()
    start = policy.item_embedding.weight.detach().clone()
    config = MLEConfig(epochs=2, lr=1e-2, evaluate_start=True)
    result = MLETrainer(policy, synthetic_split, config).fit()
    assert result.history["epoch"].tolist() == [0, 1, 2]
    assert result.best_epoch == 0 and not result.stopped_early
    assert torch.equal(policy.item_embedding.weight, start)


# --------------------------------------------------------------------------- stopping rules
# A rising curve with one noisy dip at epoch 4, a new best at 6, then a sustained plateau.
CURVE = [0.10, 0.20, 0.30, 0.25, 0.295, 0.33, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30]


class Killed(Exception):
    """A run killed before its epoch's state was saved."""


def script_validation(monkeypatch, curve, *, start=0, fail_at=None):
    """Make ``MLETrainer.validate`` return ``curve`` in order (from call ``start``), raise on
    call ``fail_at`` (a kill before that epoch's state was saved); record the weights."""
    calls, snapshots = {"n": start}, {}

    def fake_validate(self):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise Killed
        snapshots[calls["n"]] = self.policy.item_embedding.weight.detach().clone()
        return {"eval/NDCG@10": curve[calls["n"] - 1], "eval/HR@10": 0.5}

    monkeypatch.setattr(mle_module.MLETrainer, "validate", fake_validate)
    return snapshots


def test_min_epochs_prevents_an_early_stop(synthetic_split, monkeypatch):
    curve = [0.30, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10]
    script_validation(monkeypatch, curve)
    plain = MLETrainer(small_sasrec(), synthetic_split, MLEConfig(epochs=8, patience=2)).fit()
    assert plain.stopped_early and plain.history["epoch"].max() == 3
    script_validation(monkeypatch, curve)
    config = MLEConfig(epochs=8, patience=2, min_epochs=5)
    result = MLETrainer(small_sasrec(), synthetic_split, config).fit()
    # evaluations at epochs 2-4 use no patience; 5 and 6 use it up: stop at 5 + (2 - 1) * 1
    assert result.stopped_early and result.history["epoch"].max() == 6
    assert result.best_epoch == 1  # the best is still tracked from the start


def test_min_epochs_lets_a_late_best_win(synthetic_split, monkeypatch):
    script_validation(monkeypatch, [0.30, 0.10, 0.10, 0.10, 0.40, 0.10])
    config = MLEConfig(epochs=6, patience=2, min_epochs=4)
    result = MLETrainer(small_sasrec(), synthetic_split, config).fit()
    assert result.best_epoch == 5 and not result.stopped_early


def test_smoothing_ignores_a_dip_stops_on_a_plateau_and_selects_the_raw_best(
    synthetic_split, monkeypatch
):
    script_validation(monkeypatch, CURVE)
    raw = MLETrainer(small_sasrec(), synthetic_split, MLEConfig(epochs=12, patience=2)).fit()
    assert raw.history["epoch"].max() == 5 and raw.best_epoch == 3  # the dip stopped it
    snapshots = script_validation(monkeypatch, CURVE)
    policy = small_sasrec()
    config = MLEConfig(epochs=12, patience=2, stop_smoothing=3)
    result = MLETrainer(policy, synthetic_split, config).fit()
    # trailing means of 3 rise through epoch 8 (0.31), then two plateau means of 0.30
    assert result.stopped_early and result.history["epoch"].max() == 10
    assert result.best_epoch == 6 and result.best_metrics["eval/NDCG@10"] == 0.33
    assert torch.equal(policy.item_embedding.weight, snapshots[6])


def test_the_smoothing_window_survives_a_resume(synthetic_split, monkeypatch, tmp_path):
    config = MLEConfig(epochs=12, patience=2, stop_smoothing=3, min_epochs=2)
    script_validation(monkeypatch, CURVE)
    straight = small_sasrec()
    killed = copy.deepcopy(straight)
    expected = MLETrainer(straight, synthetic_split, config).fit()
    state = tmp_path / "state.pt"
    script_validation(monkeypatch, CURVE, fail_at=6)
    with pytest.raises(Killed):
        MLETrainer(killed, synthetic_split, config, state_path=state).fit()
    # a window lost on resume would stop at epoch 8 (the mean of [0.33] alone is a new high)
    script_validation(monkeypatch, CURVE, start=5)
    result = MLETrainer(killed, synthetic_split, config, state_path=state).fit()
    assert result.history["epoch"].tolist() == expected.history["epoch"].tolist()
    assert result.best_epoch == expected.best_epoch == 6
    assert torch.equal(killed.item_embedding.weight, straight.item_embedding.weight)


def test_a_state_from_before_the_stopping_fields_resumes(synthetic_split, monkeypatch, tmp_path):
    script_validation(monkeypatch, CURVE, fail_at=3)
    state_path, config = tmp_path / "state.pt", MLEConfig(epochs=4)
    with pytest.raises(Killed):
        MLETrainer(small_sasrec(), synthetic_split, config, state_path=state_path).fit()
    state = read_weights_only(state_path)
    for key in ("min_epochs", "stop_smoothing"):
        del state["config"][key]
    for key in ("recent", "smoothed_best"):
        del state["best"][key]
    atomic_torch_save(state, state_path)  # with its digest, as the trainer writes it
    script_validation(monkeypatch, CURVE, start=2)
    result = MLETrainer(small_sasrec(), synthetic_split, config, state_path=state_path).fit()
    assert result.history["epoch"].tolist() == [1, 2, 3, 4] and result.best_epoch == 3
    with pytest.raises(ValueError, match=r"changed: \['stop_smoothing'\]"):
        changed = MLEConfig(epochs=4, stop_smoothing=2)
        MLETrainer(small_sasrec(), synthetic_split, changed, state_path=state_path).fit()


def test_eval_every_and_tensorboard(synthetic_split, tmp_path):
    config = MLEConfig(epochs=3, eval_every=2)
    result = MLETrainer(small_sasrec(), synthetic_split, config, log_dir=tmp_path / "tb").fit()
    evaluated = result.history["eval/NDCG@10"].notna().tolist()
    assert evaluated == [False, True, True]  # every 2nd epoch and the last
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "hinge"}, "loss"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"max_len": 0}, "max_len"),
        ({"min_epochs": -1}, "MLEConfig.min_epochs must be an int >= 0; got -1"),
        ({"min_epochs": 2.5}, "min_epochs"),
        ({"stop_smoothing": 0}, "MLEConfig.stop_smoothing must be an int >= 1; got 0"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLEConfig(**kwargs)


def test_trainer_checks_its_inputs(synthetic_split):
    with pytest.raises(ValueError, match="n_items"):
        MLETrainer(small_sasrec(n_items=79), synthetic_split)
    with pytest.raises(ValueError, match="max_len"):
        MLETrainer(small_sasrec(), synthetic_split, MLEConfig(max_len=21))
    with pytest.raises(TypeError, match="SequencePolicy"):
        MLETrainer(torch.nn.Linear(2, 2), synthetic_split)


@pytest.mark.gpu
def test_cuda_training_runs(synthetic_split):
    result = MLETrainer(small_sasrec(), synthetic_split, MLEConfig(epochs=1), device="cuda").fit()
    assert np.isfinite(result.history["mle/loss"]).all()


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.realdata
def test_sasrec_on_movielens_100k():
    from recgym.datasets.movielens import load_movielens_100k

    data_dir = require_data("movielens-100k/u.data", "movielens-100k/u.item")
    split = leave_one_out(load_movielens_100k(data_dir / "movielens-100k"))
    torch.manual_seed(0)
    policy = SASRecPolicy(SASRecConfig(max_len=50), n_items=split.dataset.n_items)
    config = MLEConfig(epochs=200, eval_every=2, patience=10, seed=0)
    MLETrainer(policy, split, config).fit()
    frame = recgym.evaluate(policy, split, "test", protocols=("full",), ks=(10,), max_len=50)
    values = frame.set_index(["metric", "k"])["value"]
    popularity = recgym.evaluate(
        recgym.PopularityRecommender.fit(split), split, "test", protocols=("full",), ks=(10,)
    ).set_index(["metric", "k"])["value"]
    # literature: SASRec on ML-100K, full ranking, NDCG@10 ~ 0.04-0.07, HR@10 ~ 0.08-0.13
    assert values[("NDCG", 10)] > 0.03
    assert values[("HR", 10)] > 0.06
    assert values[("NDCG", 10)] > popularity[("NDCG", 10)]


def test_progress_shows_the_epoch_and_the_validation_metric(synthetic_split, capsys):
    config = MLEConfig(epochs=2, batch_size=256)
    MLETrainer(small_sasrec(), synthetic_split, config, progress=True).fit()
    err = capsys.readouterr().err
    assert "mle" in err and "2/2" in err and "val_ndcg10=" in err


# --------------------------------------------------------------------------- device reads
@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_sync_every_changes_no_weight_and_no_logged_loss(synthetic_split, batching):
    """Reading the device every 7 steps instead of every step (CUDA's default is 64) trains
    the same weights and logs the same epoch losses, bit for bit."""
    runs = []
    for sync_every in (1, 7):
        torch.manual_seed(0)
        policy = small_sasrec()
        config = MLEConfig(epochs=2, batch_size=16, batching=batching, max_len=20, seed=3,
                           sync_every=sync_every)  # fmt: skip
        result = MLETrainer(policy, synthetic_split, config).fit()
        runs.append((policy.state_dict(), result.history["mle/loss"].tolist()))
    (weights_a, losses_a), (weights_b, losses_b) = runs
    assert losses_a == losses_b
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


@pytest.mark.parametrize(
    ("sync_every", "match"),
    [(1, r"non-finite \(nan\)"), (4, r"within steps \d+\.\.\d+.*sync_every=")],
)
def test_a_non_finite_loss_stops_training_at_any_sync_interval(
    synthetic_split, monkeypatch, sync_every, match
):
    policy = small_sasrec()
    before = copy.deepcopy(policy.state_dict())
    config = MLEConfig(epochs=1, batch_size=16, max_len=20, sync_every=sync_every)
    trainer = MLETrainer(policy, synthetic_split, config)
    monkeypatch.setattr(mle_module, "sequence_loss", lambda *a, **k: torch.tensor(float("nan"),
                        requires_grad=True))  # fmt: skip
    with pytest.raises(recgym.RecGymError, match=match):
        trainer.fit()
    if sync_every == 1:  # refused before the step: the weights are untouched
        for key, value in before.items():
            assert torch.equal(policy.state_dict()[key], value), key


def test_sync_every_must_be_a_positive_int():
    with pytest.raises(ValueError, match="sync_every"):
        MLEConfig(sync_every=0)
    assert MLEConfig().sync_interval(torch.device("cpu")) == 1
    assert MLEConfig().sync_interval(torch.device("cuda")) == 64
    assert MLEConfig(sync_every=5).sync_interval(torch.device("cpu")) == 5


def test_a_non_finite_loss_in_the_last_partial_interval_is_caught(synthetic_split, monkeypatch):
    """The epoch's last steps form a shorter interval; a NaN there still stops training."""
    n_steps = -(-len(training_windows(synthetic_split, 20)[0]) // 16)
    config = MLEConfig(epochs=1, batch_size=16, max_len=20, sync_every=n_steps - 1)
    trainer = MLETrainer(small_sasrec(), synthetic_split, config)
    calls, real_loss = [], mle_module.sequence_loss

    def nan_at_the_end(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == n_steps else loss

    monkeypatch.setattr(mle_module, "sequence_loss", nan_at_the_end)
    with pytest.raises(recgym.RecGymError, match=rf"within steps {n_steps}\.\.{n_steps}"):
        trainer.fit()
