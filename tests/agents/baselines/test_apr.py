"""APR / AMF: the adversarial objective, its perturbations, training, and the robustness table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recgym
from agents.baselines.apr import (
    APRConfig,
    APRTrainer,
    adversarial_direction,
    apr_loss,
    perturbation_robustness,
)
from agents.baselines.bpr import BPRConfig, BPRTrainer
from agents.baselines.mf import BPRMFRecommender
from agents.perturbation import PerturbationConfig, adversarial_loss


@pytest.fixture(scope="module")
def planted():
    """Users of group g consume 8 of the 10 items of block g (as in test_mf.planted_split)."""
    rng = np.random.default_rng(0)
    blocks = [np.arange(1, 11) + 10 * g for g in range(4)]
    sequences = [rng.permutation(block)[:8].tolist() for block in blocks for _ in range(20)]
    return recgym.leave_one_out(recgym.SequenceDataset.from_sequences(sequences, n_items=40))


@pytest.fixture(scope="module")
def pretrained(planted):
    # Module fixtures run before the per-test one-thread fixture of tests/conftest.py.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = BPRMFRecommender.for_split(planted, dim=16, seed=0)
        config = BPRConfig(epochs=30, batch_size=64, eval_every=5, patience=100)
        BPRTrainer(model, planted, config).fit()
    finally:
        torch.set_num_threads(threads)
    return model


def full_hr(model, split) -> float:
    frame = recgym.evaluate(model, split, "test", protocols=("full",), ks=(10,), max_len=1)
    return float(frame.set_index(["metric", "k"])["value"][("HR", 10)])


def test_apr_perturbs_only_the_batch_rows_by_eps():
    model = BPRMFRecommender(n_users=6, n_items=9, dim=5, seed=0)
    users = torch.tensor([0, 2, 2, 4])
    positives, negatives = torch.tensor([1, 3, 5, 1]), torch.tensor([7, 8, 7, 2])
    config = PerturbationConfig(eps=0.3, lam=2.0)
    adv = apr_loss(model, users, positives, negatives, config)
    user_delta, item_delta = adv.delta
    assert user_delta.shape == (6, 5) and item_delta.shape == (10, 5)
    user_norms, item_norms = user_delta.norm(dim=1), item_delta.norm(dim=1)
    touched_users, touched_items = [0, 2, 4], [1, 2, 3, 5, 7, 8]
    torch.testing.assert_close(user_norms[touched_users], torch.full((3,), 0.3), atol=1e-5, rtol=0)
    torch.testing.assert_close(item_norms[touched_items], torch.full((6,), 0.3), atol=1e-5, rtol=0)
    assert torch.all(user_delta[[1, 3, 5]] == 0)
    assert torch.all(item_delta[[0, 4, 6, 9]] == 0)  # row 0 is padding
    assert not user_delta.requires_grad and not item_delta.requires_grad
    torch.testing.assert_close(adv.total, adv.clean + 2.0 * adv.adversarial)
    # to first order (a small eps) the fast gradient is the loss-increasing direction
    small = apr_loss(model, users, positives, negatives, PerturbationConfig(eps=1e-3))
    assert small.adversarial > small.clean
    torch.testing.assert_close(adv.clean, model.bpr_loss(users, positives, negatives))


def test_batch_rows_objective_equals_the_whole_table_objective():
    """Perturbing the batch's distinct rows is APR's whole-table objective, values and grads."""
    model = BPRMFRecommender(n_users=7, n_items=11, dim=4, seed=2, sparse_grad=True)
    users = torch.tensor([3, 3, 0, 6, 3])  # duplicates: a row's gradient sums its occurrences
    positives, negatives = torch.tensor([1, 2, 2, 11, 5]), torch.tensor([4, 1, 9, 2, 2])
    config = PerturbationConfig(eps=0.7, lam=0.5)
    tables = (model.user_embedding.weight, model.item_embedding.weight)

    def reference(delta):
        return model.bpr_loss(users, positives, negatives, delta=delta)

    expected = adversarial_loss(reference, tables, config, padding_idx=(None, 0))
    got = apr_loss(model, users, positives, negatives, config)
    for a, b in ((got.total, expected.total), (got.adversarial, expected.adversarial)):
        torch.testing.assert_close(a, b)
    for a, b in zip(got.delta, expected.delta, strict=True):
        torch.testing.assert_close(a, b)
    grads = [torch.autograd.grad(x.total, tables) for x in (got, expected)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a.to_dense(), b.to_dense())  # sparse: only batch rows


def test_apr_gradient_flows_through_both_terms():
    model = BPRMFRecommender(n_users=3, n_items=4, dim=3, seed=1)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 4])
    adv = apr_loss(model, users, pos, neg, PerturbationConfig(eps=0.5, lam=1.0))
    adv.total.backward()
    grad = model.user_embedding.weight.grad.to_dense()  # sparse: only the batch's rows
    table = model.user_embedding.weight
    (clean_grad,) = torch.autograd.grad(model.bpr_loss(users, pos, neg), table)
    clean_grad = clean_grad.to_dense()
    assert not torch.allclose(grad, clean_grad)  # the adversarial term contributes
    assert torch.all(grad[2] == 0)  # a user outside the batch is not updated


def test_apr_trains_from_a_pretrained_bpr_model(planted, pretrained):
    model = pretrained.perturbed()  # a copy: the fixture stays pre-trained
    config = APRConfig(epochs=6, batch_size=64, eval_every=3, patience=5, eps=0.5, lam=1.0)
    result = APRTrainer(model, planted, config).fit()
    history = result.history
    assert {"apr/loss", "apr/clean_loss", "apr/adv_loss"} <= set(history.columns)
    total = history["apr/clean_loss"] + config.lam * history["apr/adv_loss"]
    torch.testing.assert_close(
        torch.tensor(history["apr/loss"].to_numpy()), torch.tensor(total.to_numpy())
    )
    assert (history["apr/adv_loss"] > history["apr/clean_loss"]).all()
    assert full_hr(model, planted) > 0.8
    assert not torch.equal(model.user_embedding.weight, pretrained.user_embedding.weight)


@pytest.mark.parametrize(("field", "value"), [("eps", 0.0), ("lam", -1.0), ("epochs", 0)])
def test_apr_config_errors_name_the_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"APRConfig\.{field} .*got {value!r}"):
        APRConfig(**{field: value})


def test_apr_config_defaults_and_type_check(planted):
    config = APRConfig()
    assert (config.eps, config.lam, config.lr, config.batch_size) == (0.5, 1.0, 0.05, 512)
    assert config.perturbation == PerturbationConfig(eps=0.5, lam=1.0)
    with pytest.raises(TypeError, match="APRConfig"):
        APRTrainer(BPRMFRecommender.for_split(planted), planted, BPRConfig())


# --------------------------------------------------------------------------- robustness
def test_adversarial_direction_is_chunk_invariant(planted, pretrained):
    whole = adversarial_direction(pretrained, planted, seed=3)
    chunked = adversarial_direction(pretrained, planted, seed=3, batch_size=7)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert torch.all(whole[1][0] == 0)  # padding has no gradient


def test_robustness_frame_adversarial_hurts_more_than_random(planted, pretrained):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    frame = perturbation_robustness(pretrained, planted, (0.5, 1.0, 2.0), seed=0)
    assert list(frame.columns) == [
        "eps",
        "ndcg_clean",
        "ndcg_adversarial",
        "ndcg_random",
        "drop_adversarial",
        "drop_random",
    ]
    assert frame["eps"].tolist() == [0.5, 1.0, 2.0]
    assert frame["ndcg_clean"].nunique() == 1
    torch.testing.assert_close(
        torch.tensor(frame["drop_adversarial"].to_numpy()),
        torch.tensor(1 - frame["ndcg_adversarial"].to_numpy() / frame["ndcg_clean"].to_numpy()),
    )
    # The blocks are far apart, so at small eps neither perturbation moves many rankings of the
    # 80 test users (both drops are within noise); at eps = 2 the adversary is far worse.
    assert frame["drop_adversarial"].mean() >= frame["drop_random"].mean()
    assert frame["drop_adversarial"].iloc[-1] > frame["drop_random"].iloc[-1] + 0.3
    for key, value in pretrained.state_dict().items():
        assert torch.equal(value, before[key])  # the model itself is never perturbed
    assert frame.attrs["stage"] == "test"


def test_robustness_rejects_bad_eps(planted, pretrained):
    with pytest.raises(ValueError, match="eps"):
        perturbation_robustness(pretrained, planted, (0.5, -1.0))
