"""The model zoo: every system fits on tiny data, ranks with recgym.evaluate, and fine-tuned
systems never end worse on validation than their starting point."""

from __future__ import annotations

import dataclasses
import time
import warnings

import pytest
import torch

from agents.adversarial import AdversarialTrainer
from agents.experiments.zoo import MODELS, ModelZoo, ZooConfig
from agents.experiments.zoo_adversarial import mfgan_pg_config, mfgan_wmle_config
from recgym.evaluation import evaluate
from rewards.base import RewardModel


@pytest.fixture(scope="module")
def zoo(synthetic):
    data, split = synthetic
    return ModelZoo(split, ZooConfig.quick(), seed=0)


@pytest.mark.parametrize("name", MODELS)
def test_every_system_fits_and_ranks(zoo, name):
    fit = zoo.fit(name)
    assert fit.name == name and fit.total_seconds >= fit.fit_seconds >= 0
    frame = evaluate(fit.recommender, zoo.split, "valid", protocols=("full",), ks=(10,),
                     max_len=fit.max_len)  # fmt: skip
    assert (frame["n_targets"] == zoo.split.dataset.n_users).all()
    if "valid_ndcg10" in fit.info:  # what the zoo reports is what recgym.evaluate measures
        ndcg = frame.loc[frame["metric"] == "NDCG", "value"].item()
        assert ndcg == pytest.approx(fit.info["valid_ndcg10"], abs=1e-6)
    # the scores rank: finite on every item and not constant over items
    users_np, ends = zoo.split.targets("valid")
    history = zoo.split.dataset.windows(users_np[:8], ends[:8], fit.max_len)
    users = torch.as_tensor(users_np[:8])
    scores = fit.recommender.score(history, users)
    assert scores.shape == (8, zoo.split.dataset.n_items + 1)
    assert torch.isfinite(scores[:, 1:]).all() and (scores[:, 1:].std(dim=1) > 0).all()


@pytest.mark.parametrize(("name", "base"), [("sao", "sasrec"), ("sasrec-continued", "sasrec"),
                                            ("mfgan", "sasrec"), ("mfgan-wmle", "sasrec"),
                                            ("mfgan-wmle-permuted", "sasrec"),
                                            ("ebseqgan", "gru4rec")])  # fmt: skip
def test_fine_tuning_never_loses_on_validation(zoo, name, base):
    start, tuned = zoo.fit(base), zoo.fit(name)
    assert tuned.info["valid_ndcg10"] >= start.info["valid_ndcg10"]
    assert zoo.fit(base) is start  # the base is cached, and fine-tuning works on a copy
    assert tuned.recommender is not start.recommender


def test_sao_and_its_control_start_from_the_same_weights(zoo):
    """SAO's control differs from SAO only by the adversary: same start, same epochs."""
    start, sao, control = zoo.fit("sasrec"), zoo.fit("sao"), zoo.fit("sasrec-continued")
    for fit in (sao, control):
        assert fit.info["valid_ndcg10_start"] == pytest.approx(start.info["valid_ndcg10"])
        assert fit.info["epochs_run"] <= zoo.config.sao_epochs
    pairs = zip(control.recommender.parameters(), start.recommender.parameters(), strict=True)
    changed = any((a != b).any() for a, b in pairs)
    assert changed or control.info["best_epoch"] == 0


def test_same_seed_same_model(synthetic):
    data, split = synthetic
    a = ModelZoo(split, ZooConfig.quick(), seed=3).fit("sasrec").recommender
    b = ModelZoo(split, ZooConfig.quick(), seed=3).fit("sasrec").recommender
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert (x == y).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dim": 0}, "dim must be an int >= 1; got 0"), ({"lr": -1.0}, "lr must be a float > 0"),
     ({"mle_epochs": 2.5}, "mle_epochs"), ({"mle_loss": "mse"}, "'ce' or 'bce'; got 'mse'"),
     ({"sasrec_min_epochs": -1}, "sasrec_min_epochs must be an int >= 0; got -1")],
)  # fmt: skip
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZooConfig(**kwargs)


def test_zoo_errors(synthetic):
    data, split = synthetic
    with pytest.raises(TypeError, match="Split"):
        ModelZoo(data.dataset)
    with pytest.raises(ValueError, match="unknown model 'bert4rec'"):
        ModelZoo(split, ZooConfig.quick()).fit("bert4rec")
    with pytest.raises(ValueError, match=r"unknown model 'mfgan-wmle-random'; expected one of"):
        ModelZoo(split, ZooConfig.quick()).fit("mfgan-wmle-random")


def test_mle_loss_reaches_the_trainer_and_mfgan_variants_share_the_start(synthetic):
    data, split = synthetic
    zoo = ModelZoo(split, ZooConfig(**(ZooConfig.quick().__dict__ | {"mle_loss": "bce"})))
    assert zoo.mle_config().loss == "bce"
    start = zoo.fit("sasrec")
    sdsf = zoo.fit_mfgan(variant="sdsf")
    assert sdsf.total_seconds >= start.total_seconds + sdsf.fit_seconds - 1e-9
    assert sdsf.recommender is not start.recommender and zoo.fit("sasrec") is start


def test_only_fresh_sasrec_waits_for_its_schedule(synthetic):
    data, split = synthetic
    zoo = ModelZoo(split, ZooConfig(sasrec_min_epochs=7))
    assert zoo.mle_config(fresh_sasrec=True).min_epochs == 7
    assert zoo.mle_config().min_epochs == 0  # GRU4Rec, SAO and its control: as before
    assert ModelZoo(split).mle_config(fresh_sasrec=True).min_epochs == 20


@pytest.mark.parametrize(("old", "new"), [("asasrec", "sao"), ("ebgan", "ebseqgan")])
def test_former_names_are_aliases_with_a_warning(old, new):
    from agents.experiments.zoo import canonical_name

    with pytest.warns(DeprecationWarning, match=f"now '{new}'"):
        assert canonical_name(old) == new
    assert canonical_name(new) == new


# ---------------------------------------------------------------------- MFGAN's two modes
CONTROLS = {"mfgan-wmle": "discriminator", "mfgan-wmle-one": "one",
            "mfgan-wmle-mean": "batch_mean", "mfgan-wmle-permuted": "permuted"}  # fmt: skip


class CertainD(RewardModel):
    """A discriminator that calls every sequence real with D = 1.0 exactly (logit 30)."""

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items=n_items)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, history):
        return torch.full((len(history),), 30.0) + 0.0 * self.w

    def loss(self, real, fake):
        return 0.0 * self.w.sum()


def test_the_two_modes_and_the_controls_are_configured_as_documented(zoo):
    c = zoo.config
    pg = mfgan_pg_config(zoo)
    assert pg.generator_update == "policy_gradient" and pg.pg.lr == 3e-4
    assert (pg.n_rounds, pg.g_steps, pg.d_steps) == (c.mfgan_rounds, c.mfgan_pg_steps,
                                                     c.mfgan_d_steps)  # fmt: skip
    wmle = mfgan_wmle_config(zoo, "discriminator")
    assert (wmle.negatives, wmle.n_fakes, wmle.pretrain_reward_epochs) == ("greedy_topk", 10, 1)
    assert wmle.weighted_mle.loss == c.mle_loss and wmle.g_steps == c.mfgan_wmle_steps
    for name, weights in CONTROLS.items():  # the same config but for the weights
        control = mfgan_wmle_config(zoo, weights)
        assert control.weighted_mle.weights == weights
        same = dataclasses.replace(control.weighted_mle, weights="discriminator")
        assert dataclasses.replace(control, weighted_mle=same) == wmle, name


def test_the_controls_share_every_random_stream(zoo):
    """With D = 1 everywhere, every weighting gives weight 1: the four runs must then be the
    same run to the bit: same batches, dropout, negatives and discriminator draws."""
    finals = {}
    for weights in CONTROLS.values():
        policy = zoo.start_from("sasrec")
        trainer = AdversarialTrainer(policy, CertainD(policy.n_items), zoo.split,
                                     mfgan_wmle_config(zoo, weights))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the AUC of a constant D is 0.5
            history = trainer.train()
        assert history["gen/weight_mean"].dropna().eq(1.0).all()
        finals[weights] = [p.detach().clone() for p in policy.parameters()]
    start = list(zoo.fit("sasrec").recommender.parameters())
    assert any((a != b).any() for a, b in zip(finals["one"], start, strict=True))  # it trained
    for weights, params in finals.items():
        for a, b in zip(params, finals["one"], strict=True):
            assert torch.equal(a, b), weights


def test_a_start_fitted_on_the_way_is_timed_once(synthetic):
    """``reproduce.py --models mfgan-wmle`` alone fits SASRec inside MFGAN's fit."""
    data, split = synthetic
    zoo = ModelZoo(split, ZooConfig.quick(), seed=0)
    tic = time.perf_counter()
    fit = zoo.fit("mfgan-wmle-one")
    wall = time.perf_counter() - tic
    start = zoo.fit("sasrec")
    assert 0 < fit.fit_seconds < fit.total_seconds <= wall
    assert fit.total_seconds == pytest.approx(fit.fit_seconds + start.total_seconds)
    assert zoo.fit_mfgan().total_seconds > start.total_seconds


def test_a_control_is_the_same_fit_whatever_ran_before_it(synthetic):
    """Cells of one seed may run in any order or process: each fit depends on the seed only."""
    data, split = synthetic
    alone = ModelZoo(split, ZooConfig.quick(), seed=1).fit("mfgan-wmle-permuted")
    after = ModelZoo(split, ZooConfig.quick(), seed=1)
    after.fit("mfgan-wmle"), after.fit("mfgan")
    again = after.fit("mfgan-wmle-permuted")
    assert again.info == alone.info
    for a, b in zip(alone.recommender.parameters(), again.recommender.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sasrec_batch_size_holds_the_same_targets_per_step(synthetic):
    from agents.sequences import training_windows

    _, split = synthetic
    inputs, targets = training_windows(split, 50)
    per_window = float((targets > 0).sum()) / len(inputs)
    auto = ModelZoo(split, ZooConfig(sasrec_batch_targets=40 * 64)).sasrec_batch_size()
    assert 64 <= auto <= 256 and auto == min(256, max(64, round(40 * 64 / per_window)))
    big = ModelZoo(split, ZooConfig(sasrec_batch_targets=10**6)).sasrec_batch_size()
    assert big == 256  # clamped
    fixed = ModelZoo(split, ZooConfig(sasrec_batch_size=32))
    assert fixed.mle_config(fresh_sasrec=True).batch_size == 32
    config = ModelZoo(split).mle_config(fresh_sasrec=True)
    assert (config.batching, config.loss_dtype) == ("bucketed", "bfloat16")
    assert ModelZoo(split).mle_config().batching == "random"  # GRU4Rec, SAO: unchanged


def test_the_test_monitor_records_test_scores_without_changing_the_fit(synthetic):
    """``monitor_test`` ranks test at every validation (the best of them is reported) and
    leaves training and selection exactly as they were."""
    _, split = synthetic
    config = dataclasses.replace(ZooConfig.quick(), mle_epochs=3)
    plain = ModelZoo(split, config, seed=0).fit("sasrec")
    watched_zoo = ModelZoo(split, dataclasses.replace(config, monitor_test=True), seed=0)
    watched = watched_zoo.fit("sasrec")
    assert "test_ndcg10_best_of_evals" not in plain.info
    for a, b in zip(plain.recommender.state_dict().values(),
                    watched.recommender.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    test = evaluate(watched.recommender, split, "test", protocols=("full",), ks=(10,),
                    max_len=watched.max_len)  # fmt: skip
    selected = test.loc[test["metric"] == "NDCG", "value"].item()
    # the selected weights were among those ranked, so the best test score is at least theirs
    assert watched.info["test_ndcg10_best_of_evals"] >= selected - 1e-9
    assert watched.info["test_ndcg10_last_eval"] <= watched.info["test_ndcg10_best_of_evals"]
    adversarial = watched_zoo.fit("mfgan-wmle")
    last = adversarial.info["test_ndcg10_last_eval"]
    assert 0.0 <= last <= adversarial.info["test_ndcg10_best_of_evals"]
    assert adversarial.info["valid_ndcg10_last_eval"] <= adversarial.info["valid_ndcg10"]


def test_monitor_must_be_callable(synthetic):
    from agents.mle import MLETrainer

    _, split = synthetic
    policy = ModelZoo(split, ZooConfig.quick(), seed=0).new_policy("sasrec")
    with pytest.raises(TypeError, match="monitor must be callable"):
        MLETrainer(policy, split, monitor="test")
    with pytest.raises(ValueError, match="ZooConfig.monitor_test must be a bool"):
        ZooConfig(monitor_test=1)


def test_sasrec_dropout_follows_the_sparsity_of_the_windows():
    import numpy as np

    from recgym import SequenceDataset, leave_one_out

    rng = np.random.default_rng(0)
    short = [rng.integers(1, 60, size=6).tolist() for _ in range(40)]  # Amazon-like histories
    long = [rng.integers(1, 60, size=80).tolist() for _ in range(40)]  # MovieLens-like
    sparse = ModelZoo(leave_one_out(SequenceDataset.from_sequences(short, n_items=60)), seed=0)
    dense = ModelZoo(leave_one_out(SequenceDataset.from_sequences(long, n_items=60)), seed=0)
    assert sparse.sasrec_dropout() == 0.5 and sparse.new_policy("sasrec").config.dropout == 0.5
    assert dense.sasrec_dropout() == 0.2 and dense.new_policy("sasrec").config.dropout == 0.2
    fixed = ModelZoo(sparse.split, ZooConfig(sasrec_dropout=0.3), seed=0)
    assert fixed.new_policy("sasrec").config.dropout == 0.3
    # the rate does not change the initial weights' draws
    a, b = sparse.new_policy("sasrec"), fixed.new_policy("sasrec")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="sasrec_dropout must be None or a float"):
            ZooConfig(sasrec_dropout=bad)
