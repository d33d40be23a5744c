"""MF-BPR: training pairs, negative sampling, the model, BPR training and persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, require_data

import recgym
from agents.baselines.bpr import BPRConfig, BPRResult, BPRTrainer
from agents.baselines.mf import BPRMFRecommender, NegativeSampler, training_pairs
from recgym import SequenceDataset, leave_one_out
from recgym._torch_io import atomic_torch_save
from recgym.errors import RecGymError


def planted_split(n_groups: int = 4, group_size: int = 10, users_per_group: int = 20, seed=0):
    """Users of group g consume 8 of the items of block g, in random order.

    Whatever a user has seen, the unseen items of their block are the only ones that co-occur
    with it, so MF ranks the held-out item near the top while popularity cannot tell blocks
    apart (every block is equally popular).
    """
    rng = np.random.default_rng(seed)
    sequences = []
    for g in range(n_groups):
        block = np.arange(1, group_size + 1) + g * group_size
        for _ in range(users_per_group):
            sequences.append(rng.permutation(block)[:8].tolist())
    dataset = SequenceDataset.from_sequences(sequences, n_items=n_groups * group_size)
    return leave_one_out(dataset)


@pytest.fixture(scope="module")
def planted():
    return planted_split()


def full_metric(recommender, split, metric="HR", stage="test") -> float:
    frame = recgym.evaluate(recommender, split, stage, protocols=("full",), ks=(10,), max_len=1)
    return float(frame.set_index(["metric", "k"])["value"][(metric, 10)])


def fit(split, seed=0, **overrides) -> tuple[BPRMFRecommender, BPRResult]:
    model = BPRMFRecommender.for_split(split, dim=16, seed=seed)
    settings = {"epochs": 30, "batch_size": 64, "eval_every": 5, "patience": 100, "seed": seed}
    result = BPRTrainer(model, split, BPRConfig(**{**settings, **overrides})).fit()
    return model, result


# --------------------------------------------------------------------------- training data
def test_training_pairs_hold_out_valid_and_test_items():
    # every user's last two items (valid, test) are ids 50+ that never occur in training
    rng = np.random.default_rng(0)
    sequences = [[*rng.integers(1, 50, size=n), 50 + 2 * u, 51 + 2 * u] for u, n in
                 enumerate([1, 3, 7, 12, 20])]  # fmt: skip
    split = leave_one_out(SequenceDataset.from_sequences(sequences, n_items=60))
    users, items = training_pairs(split)
    assert int(items.max()) < 50
    expected = {(u, int(i)) for u, seq in enumerate(sequences) for i in seq[:-2]}
    assert set(zip(users.tolist(), items.tolist(), strict=True)) == expected
    assert len(users) == len(expected)  # repeated training items count once


def test_negatives_never_hit_the_users_training_items():
    rng = np.random.default_rng(1)
    sequences = [rng.choice(np.arange(1, 13), size=n, replace=False).tolist() for n in
                 [3, 5, 9, 11, 12, 4]]  # fmt: skip
    split = leave_one_out(SequenceDataset.from_sequences(sequences, n_items=12))
    users, items = training_pairs(split)
    sampler = NegativeSampler(users, items, 12)
    draw_users = users.repeat(200)
    negatives = sampler(draw_users, torch.Generator().manual_seed(0))
    seen = {(u, i) for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    pairs = list(zip(draw_users.tolist(), negatives.tolist(), strict=True))
    assert not any(pair in seen for pair in pairs)
    assert negatives.min() >= 1 and negatives.max() <= 12
    # every allowed item is drawn: the user with 10 training items gets both of the others
    user = 4
    allowed = set(range(1, 13)) - {i for u, i in seen if u == user}
    assert {i for u, i in pairs if u == user} == allowed
    assert sampler.contains(users, items).all()


def test_negative_sampler_is_seeded_and_refuses_users_who_saw_everything():
    users, items = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1])
    sampler = NegativeSampler(users, items, 3)
    a = sampler(users, torch.Generator().manual_seed(5))
    b = sampler(users, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.tolist()[:2] == [3, 3]
    with pytest.raises(RecGymError, match="all 2 items"):
        NegativeSampler(users, items, 2)


# --------------------------------------------------------------------------- model
def test_scores_are_user_dot_items_and_ignore_history():
    model = BPRMFRecommender(n_users=3, n_items=5, dim=4, seed=0)
    user = torch.tensor([2, 0])
    scores = model.score(torch.zeros(2, 7, dtype=torch.long), user)
    assert scores.shape == (2, 6)
    expected = model.user_embedding.weight[user] @ model.item_embedding.weight.T
    torch.testing.assert_close(scores, expected)
    items = torch.tensor([4, 1])
    torch.testing.assert_close(model.pair_scores(user, items), scores[[0, 1], [4, 1]])
    assert torch.all(model.item_embedding.weight[0] == 0)
    assert model.item_embedding.weight.abs().max() <= 0.02  # truncated at two stds
    other = model.score(torch.randint(0, 6, (2, 3)), user)
    torch.testing.assert_close(scores, other)


def test_item_bias_is_off_by_default_and_adds_when_on():
    assert BPRMFRecommender(n_users=2, n_items=3).item_bias is None
    model = BPRMFRecommender(n_users=2, n_items=3, dim=2, item_bias=True)
    with torch.no_grad():
        model.item_bias[2] = 5.0
    scores = model(torch.tensor([0]))
    assert scores[0, 2] > 4.9 and scores[0, 1].abs() < 0.1


def test_sparse_adagrad_step_equals_the_dense_step():
    """Sparse embedding gradients (only the batch's rows) give the dense Adagrad update."""
    sparse = BPRMFRecommender(n_users=6, n_items=9, dim=3, seed=4, item_bias=True, sparse_grad=True)
    dense = BPRMFRecommender(n_users=6, n_items=9, dim=3, seed=4, item_bias=True)
    assert not dense.sparse_grad  # small tables: dense by default
    assert BPRMFRecommender(n_users=30_000, n_items=9, dim=3).sparse_grad
    users, pos = torch.tensor([1, 1, 4, 0]), torch.tensor([2, 3, 2, 9])
    neg = torch.tensor([5, 2, 7, 1])

    def dense_loss(model):
        p, q = model.user_embedding.weight, model.item_embedding.weight
        x = (p[users] * (q[pos] - q[neg])).sum(-1) + model.item_bias[pos] - model.item_bias[neg]
        return torch.nn.functional.softplus(-x).sum()

    for model, loss in ((sparse, lambda m: m.bpr_loss(users, pos, neg)), (dense, dense_loss)):
        # dense_loss indexes the tables itself: dense gradients whatever sparse_grad says
        optimizer = torch.optim.Adagrad(model.parameters(), lr=0.1, initial_accumulator_value=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            loss(model).backward()
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                optimizer.step()
    assert sparse.user_embedding.weight.grad.is_sparse
    for a, b in zip(sparse.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("user", "match"),
    [
        (torch.tensor([0, 3]), r"\[0, 2\]"),
        (torch.tensor([0.0, 1.0]), "int64"),
        (torch.tensor([0]), r"\(2,\) int64"),
    ],
)
def test_score_rejects_bad_users(user, match):
    model = BPRMFRecommender(n_users=3, n_items=5, dim=4)
    with pytest.raises(ValueError, match=match):
        model.score(torch.zeros(2, 1, dtype=torch.long), user)


def test_same_seed_gives_identical_weights(planted):
    a = BPRMFRecommender(n_users=4, n_items=6, seed=3)
    b = BPRMFRecommender(n_users=4, n_items=6, seed=3)
    c = BPRMFRecommender(n_users=4, n_items=6, seed=4)
    assert torch.equal(a.user_embedding.weight, b.user_embedding.weight)
    assert not torch.equal(a.user_embedding.weight, c.user_embedding.weight)
    state = torch.random.get_rng_state()
    first, r1 = fit(planted, epochs=4, eval_every=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    second, r2 = fit(planted, epochs=4, eval_every=2)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert r1.history["bpr/loss"].tolist() == r2.history["bpr/loss"].tolist()


def test_save_load_round_trip_and_mismatched_files(tmp_path):
    model = BPRMFRecommender(n_users=3, n_items=5, dim=4, item_bias=True, seed=1)
    path = model.save(tmp_path / "mf.pt")
    loaded = BPRMFRecommender.load(path)
    history, user = torch.zeros(3, 2, dtype=torch.long), torch.arange(3)
    assert torch.equal(model.score(history, user), loaded.score(history, user))
    assert loaded.init_kwargs() == model.init_kwargs()
    payload = torch.load(path, weights_only=True)
    payload["init_kwargs"]["dim"] = 8
    atomic_torch_save(payload, tmp_path / "shape.pt")
    with pytest.raises(RecGymError, match="does not match"):
        BPRMFRecommender.load(tmp_path / "shape.pt")
    payload["class"] = "agents.sasrec.SASRecPolicy"
    atomic_torch_save(payload, tmp_path / "class.pt")
    expected = "holds a .agents.sasrec.SASRecPolicy.; expected a .bpr-mf."
    with pytest.raises(RecGymError, match=expected):
        BPRMFRecommender.load(tmp_path / "class.pt")
    with pytest.raises(FileNotFoundError):
        BPRMFRecommender.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 2.5),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("reg", -1.0),
        ("eval_every", True),
        ("patience", 0),
        ("min_epochs", -1),
        ("stop_smoothing", 0),
        ("seed", -1),
    ],
)
def test_config_errors_name_the_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"BPRConfig\.{field} .*got {value!r}"):
        BPRConfig(**{field: value})


def test_trainer_checks_its_inputs(planted, tiny_split):
    model = BPRMFRecommender.for_split(tiny_split)
    with pytest.raises(ValueError, match="n_users=5"):
        BPRTrainer(model, planted)
    with pytest.raises(TypeError, match="BPRConfig"):
        BPRTrainer(model, tiny_split, {"epochs": 1})
    with pytest.raises(TypeError, match="BPRMFRecommender"):
        BPRTrainer(torch.nn.Linear(2, 2), tiny_split)


# --------------------------------------------------------------------------- training
def test_bpr_learns_a_planted_pattern(planted):
    model, result = fit(planted, epochs=30)
    losses = result.history["bpr/loss"].to_numpy()
    assert losses[-1] < 0.5 * losses[0] and losses[4] < losses[0]
    hr = full_metric(model, planted)
    popularity = full_metric(recgym.PopularityRecommender.fit(planted), planted)
    random = full_metric(recgym.RandomRecommender.fit(planted, seed=0), planted)
    assert hr > 0.9 and hr > popularity + 0.4 and hr > random + 0.4
    assert result.best_metrics["eval/HR@10"] > 0.9
    assert set(result.history.columns) >= {
        "epoch",
        "bpr/loss",
        "eval/NDCG@10",
        "eval/HR@10",
        "time/epoch_s",
        "time/elapsed_s",
    }


def test_early_stopping_restores_the_best_weights(planted, tmp_path):
    model = BPRMFRecommender.for_split(planted, dim=8)
    config = BPRConfig(epochs=40, batch_size=64, lr=0.5, eval_every=1, patience=2)
    trainer = BPRTrainer(model, planted, config, checkpoint_path=tmp_path / "best.pt")
    result = trainer.fit()
    evaluated = result.history.dropna(subset=["eval/NDCG@10"])
    assert result.best_metrics["eval/NDCG@10"] == evaluated["eval/NDCG@10"].max()
    assert trainer.validate() == result.best_metrics
    if result.stopped_early:
        assert len(result.history) == result.best_epoch + config.patience
    saved = BPRMFRecommender.load(tmp_path / "best.pt")
    assert torch.equal(saved.user_embedding.weight, model.user_embedding.weight)
    assert result.fit_seconds > 0


@pytest.mark.parametrize(
    ("stopping", "last_epoch"),
    [({}, 4), ({"min_epochs": 4}, 5), ({"stop_smoothing": 2}, 5), ({"stop_smoothing": 3}, 6)],
)
def test_min_epochs_and_smoothing_reach_bpr(planted, monkeypatch, stopping, last_epoch):
    curve = iter([0.1, 0.4, 0.3, 0.36, 0.3, 0.3, 0.3, 0.3])  # trailing means of 3 rise to 4
    monkeypatch.setattr(
        BPRTrainer, "validate", lambda self: {"eval/NDCG@10": next(curve), "eval/HR@10": 0.5}
    )
    config = BPRConfig(epochs=8, batch_size=64, eval_every=1, patience=2, **stopping)
    result = BPRTrainer(BPRMFRecommender.for_split(planted, dim=8), planted, config).fit()
    assert result.history["epoch"].max() == last_epoch and result.best_epoch == 2


def test_recgym_evaluate_runs_on_the_model(tiny_split):
    model = BPRMFRecommender.for_split(tiny_split, dim=8)
    frame = recgym.evaluate(model, tiny_split, "test", ks=(5, 10))
    assert set(frame["protocol"]) == {"full", "uniform-100", "popularity-100"}
    assert frame["value"].between(0, 1).all()
    assert model.training  # evaluate restores the mode


@pytest.mark.realdata
def test_bpr_beats_popularity_on_movielens_100k():
    require_data("movielens-100k")
    from recgym.datasets import load_dataset

    split = leave_one_out(load_dataset("ml-100k", data_dir=DATA_DIR))
    model = BPRMFRecommender.for_split(split, seed=0)
    BPRTrainer(model, split, BPRConfig(epochs=20, eval_every=10, patience=5)).fit()
    ndcg = full_metric(model, split, "NDCG")
    popularity = full_metric(recgym.PopularityRecommender.fit(split), split, "NDCG")
    assert ndcg > popularity + 0.005, (ndcg, popularity)
